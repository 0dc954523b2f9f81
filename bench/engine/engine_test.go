//go:build linux

// Package engine is the engine benchmark: berth's engine in native mode
// against dockerd 20.10 (Debian's docker.io, with the containerd it
// manages), each on a private socket and data root, driven by the same
// docker CLI with the same images from the same local registry, in one
// run:
//
//	go test ./bench/engine -run '^$' -bench . -benchtime 1x
//
// It prints, for berth and dockerd and their ratio: `docker run --rm IMG
// true` (median of -runs), the pull of a 3-layer image of about 50 MB
// (median of -pulls, each into an empty store), `docker ps -a` with 100
// containers (median of -runs), and the idle RSS of each engine's
// processes. It needs root, the docker CLI, dockerd and docker-registry
// (make deps installs them), and the build of cmd/berth-guestagent.
package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berthvm/berth/bench/internal/benchutil"
	"github.com/berthvm/berth/images/imagetest"
)

var (
	runs  = flag.Int("runs", 20, "runs of the start and list measures; the median is reported")
	pulls = flag.Int("pulls", 3, "pulls of the big image, each into an empty store")
	many  = flag.Int("containers", 100, "containers that exist for the list measure")
)

// engineUnderTest is one daemon and the docker CLI pointed at it.
type engineUnderTest struct {
	name string
	host string // DOCKER_HOST
	log  string // the daemon's log file
	pids func() []int
	stop func()
}

func (e *engineUnderTest) docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.host, "DOCKER_CONFIG="+os.Getenv("BENCH_DOCKER_CONFIG"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: docker %s: %w: %s", e.name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (e *engineUnderTest) must(b *testing.B, args ...string) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := e.docker(ctx, args...)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// apiGet times one GET of a JSON list over the engine's socket, on a new
// connection as the CLI makes, and checks it holds want items.
func (e *engineUnderTest) apiGet(b *testing.B, path string, want int) time.Duration {
	b.Helper()
	sock := strings.TrimPrefix(e.host, "unix://")
	hc := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	start := time.Now()
	resp, err := hc.Get("http://engine" + path)
	if err != nil {
		b.Fatalf("%s: GET %s: %v", e.name, path, err)
	}
	var list []json.RawMessage
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK || len(list) < want {
		b.Fatalf("%s: GET %s: %d, %d items, %v", e.name, path, resp.StatusCode, len(list), err)
	}
	return took
}

// timed runs the docker CLI once and returns how long it took.
func (e *engineUnderTest) timed(b *testing.B, args ...string) time.Duration {
	b.Helper()
	start := time.Now()
	e.must(b, args...)
	return time.Since(start)
}

func BenchmarkEngine(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: both engines run containers")
	}
	for _, bin := range []string{"docker", "dockerd"} {
		if _, err := exec.LookPath(bin); err != nil {
			b.Skipf("%s is missing: apt-get install docker.io (make deps)", bin)
		}
	}
	cfgDir := b.TempDir()
	os.Setenv("BENCH_DOCKER_CONFIG", cfgDir)

	reg := imagetest.StartRegistry(b, imagetest.RegistryOptions{})
	small := reg.Ref("bench/busybox:1")
	reg.Push(b, small, imagetest.Busybox(b, runtime.GOARCH))
	big := reg.Ref("bench/big:1")
	bigImg := bigImage(b)
	reg.Push(b, big, bigImg)

	berth := startBerth(b)
	defer berth.stop()
	peer := startDockerd(b, reg.Addr)
	defer peer.stop()
	engines := []*engineUnderTest{berth, peer}

	type row struct {
		what        string
		berth, peer float64
		unit        string
		goal        string
	}
	var rows []row
	add := func(what, unit, goal string, f func(e *engineUnderTest) float64) {
		var v [2]float64
		for i, e := range engines {
			v[i] = f(e)
		}
		rows = append(rows, row{what, v[0], v[1], unit, goal})
	}

	// Pull first, into empty stores; the image stays for what follows.
	add(fmt.Sprintf("pull 3-layer %.0f MB image (median of %d)", float64(compressedSize(b, bigImg))/1e6, *pulls), "s", "<= 0.8x", func(e *engineUnderTest) float64 {
		var ds []time.Duration
		for i := 0; i < *pulls; i++ {
			e.docker(context.Background(), "rmi", "-f", big)
			e.docker(context.Background(), "image", "prune", "-af")
			ds = append(ds, e.timed(b, "pull", "-q", big))
		}
		return benchutil.Median(ds).Seconds()
	})
	for _, e := range engines {
		e.must(b, "pull", "-q", small)
		e.must(b, "run", "--rm", small, "true") // warm caches
	}
	add(fmt.Sprintf("docker run --rm IMG true (median of %d)", *runs), "s", "<= 0.5x", func(e *engineUnderTest) float64 {
		var ds []time.Duration
		for i := 0; i < *runs; i++ {
			ds = append(ds, e.timed(b, "run", "--rm", small, "true"))
		}
		return benchutil.Median(ds).Seconds()
	})
	add("idle RSS (no containers)", "MiB", "berth < 30 MiB", func(e *engineUnderTest) float64 {
		time.Sleep(5 * time.Second) // both engines settle after the work above
		return float64(rssKiB(e.pids())) / 1024
	})
	add(fmt.Sprintf("docker ps -a with %d containers (median of %d)", *many, *runs), "s", "<= 0.5x", func(e *engineUnderTest) float64 {
		for i := 0; i < *many; i++ {
			e.must(b, "create", "--label", "bench=1", small, "true")
		}
		var ds []time.Duration
		for i := 0; i < *runs; i++ {
			ds = append(ds, e.timed(b, "ps", "-a"))
		}
		if out := e.must(b, "ps", "-aq"); strings.Count(out, "\n") < *many {
			b.Fatalf("%s lists %d containers, want %d", e.name, strings.Count(out, "\n"), *many)
		}
		return benchutil.Median(ds).Seconds()
	})
	// The CLI's own start-up (the same for both) is most of the figure
	// above; this is the engine's part alone.
	add(fmt.Sprintf("GET /containers/json?all=1, %d containers (median of %d)", *many, 5**runs), "ms", "<= 0.5x", func(e *engineUnderTest) float64 {
		var ds []time.Duration
		for i := 0; i < 5**runs; i++ {
			ds = append(ds, e.apiGet(b, "/v1.41/containers/json?all=1", *many))
		}
		e.must(b, "container", "prune", "-f")
		return float64(benchutil.Median(ds).Microseconds()) / 1000
	})

	fmt.Printf("\n%-58s %10s %10s %8s   %s\n", "measure", "berth", "dockerd", "ratio", "goal")
	for _, r := range rows {
		fmt.Printf("%-58s %9.3f%s %9.3f%s %7.2fx   %s\n", r.what, r.berth, unitSuffix(r.unit), r.peer, unitSuffix(r.unit), r.berth/r.peer, r.goal)
		b.ReportMetric(r.berth, "berth-"+metricName(r.what)+"-"+r.unit)
		b.ReportMetric(r.peer, "dockerd-"+metricName(r.what)+"-"+r.unit)
	}
	fmt.Println("(dockerd's idle RSS counts dockerd and its containerd)")
}

func unitSuffix(u string) string {
	switch u {
	case "MiB":
		return "M"
	case "ms":
		return "m"
	}
	return u
}

func metricName(s string) string {
	f := strings.Fields(s)
	if len(f) > 2 {
		f = f[:2]
	}
	return strings.Join(f, "_")
}

// bigImage is busybox plus two layers of random bytes, about 50 MB
// compressed, since random data does not compress.
func bigImage(b *testing.B) v1.Image {
	img := imagetest.Busybox(b, runtime.GOARCH)
	for i := 0; i < 2; i++ {
		blob := make([]byte, 24<<20)
		rand.Read(blob)
		layer := imagetest.GzipLayer(b, imagetest.Tar(b, imagetest.File{Name: fmt.Sprintf("data%d.bin", i), Body: string(blob)}), types.DockerLayer)
		var err error
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			b.Fatal(err)
		}
	}
	return img
}

// compressedSize is what a pull of img transfers: its layers and config.
func compressedSize(b *testing.B, img v1.Image) int64 {
	m, err := img.Manifest()
	if err != nil {
		b.Fatal(err)
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// rssKiB sums VmRSS over the processes.
func rssKiB(pids []int) int {
	total := 0
	for _, pid := range pids {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(st), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				total += n
			}
		}
	}
	return total
}

// children returns pid's descendants whose command name is one of names.
func children(pid int, names ...string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(st)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		comm := s[open+1 : close]
		f := strings.Fields(s[close+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if ppid == pid {
			for _, n := range names {
				if comm == n {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

func repoRoot(b *testing.B) string {
	root, err := benchutil.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	return root
}

// startBerth builds the guest agent and serves it in native mode.
func startBerth(b *testing.B) *engineUnderTest {
	// Short: the engine's state dir holds unix sockets (108-byte limit).
	dir, err := os.MkdirTemp("", "b")
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "berth-guestagent")
	build := exec.Command("go", "build", "-tags", "seccomp", "-o", bin, "./cmd/berth-guestagent")
	build.Dir = repoRoot(b)
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the guest agent: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "s")
	logf, err := os.Create(filepath.Join(dir, "engine.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--listen", "unix://"+sock, "--root", filepath.Join(dir, "r"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	e := &engineUnderTest{
		log:  logf.Name(),
		name: "berth",
		host: "unix://" + filepath.Join(sock, "2375.sock"),
		pids: func() []int { return []int{cmd.Process.Pid} },
	}
	e.stop = func() {
		benchutil.Stop(cmd, os.Interrupt, 10*time.Second)
		logf.Close()
		os.RemoveAll(dir)
	}
	waitPing(b, e)
	return e
}

// startDockerd starts Debian's dockerd with its own socket, data root,
// exec root and bridge, trusting the local registry over plain HTTP.
func startDockerd(b *testing.B, registry string) *engineUnderTest {
	dir, err := os.MkdirTemp("", "bbd")
	if err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command("dockerd",
		"--host", "unix://"+sock,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"--insecure-registry", registry,
		"--storage-driver", "overlay2",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	e := &engineUnderTest{
		log:  logf.Name(),
		name: "dockerd",
		host: "unix://" + sock,
		pids: func() []int {
			return append([]int{cmd.Process.Pid}, children(cmd.Process.Pid, "containerd")...)
		},
	}
	e.stop = func() {
		benchutil.Stop(cmd, os.Interrupt, 20*time.Second)
		logf.Close()
		exec.Command("umount", "-R", filepath.Join(dir, "data")).Run()
		os.RemoveAll(dir)
	}
	waitPing(b, e)
	return e
}

func waitPing(b *testing.B, e *engineUnderTest) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := e.docker(ctx, "version")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(e.log)
			e.stop()
			b.Fatalf("%s did not answer: %v\n%s", e.name, err, log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
