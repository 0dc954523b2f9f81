//go:build linux

// Package integration tests the container engine end to end: the real
// berth-guestagent binary in native mode, in a network namespace of its
// own, driven by the real docker CLI. The images are built by the tests
// (images/imagetest) and pulled from Debian's docker-registry, which the
// tests start on 127.0.0.1 inside the engine's namespace. It needs root
// and the docker CLI, and skips without them.
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berthvm/berth/images/imagetest"
)

// Images TestEngine loads (docker load). TestImages pulls its own from a
// registry that runs in the engine's network namespace.
const (
	busyboxImg = "berthtest/busybox:latest"
	layeredImg = "berthtest/layered:latest"
	volumeImg  = "berthtest/vol:latest"
)

// env is a running engine and the CLI pointed at it.
type env struct {
	t       *testing.T
	bin     string
	root    string // --root, short: the shims' sockets live under it
	listen  string // --listen dir: 2375.sock is the Docker API
	bridge  string
	subnet  string
	nsName  string
	ns      netns.NsHandle
	cfgDir  string // DOCKER_CONFIG
	logPath string
	cmd     *exec.Cmd
	exited  chan error
}

func requireRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("integration tests need root")
	}
	cli, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("the docker CLI is not installed")
	}
	return cli
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatal("no go.mod above the test")
		}
	}
}

// agent is the berth-guestagent binary the tests share, built once.
var agent struct {
	once      sync.Once
	dir, path string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if agent.dir != "" {
		os.RemoveAll(agent.dir)
	}
	os.Exit(code)
}

// agentBinary builds the agent on first use.
func agentBinary(t *testing.T) string {
	t.Helper()
	root := moduleRoot(t)
	agent.once.Do(func() {
		dir, err := os.MkdirTemp("", "berth-it-bin")
		if err != nil {
			agent.err = err
			return
		}
		agent.dir, agent.path = dir, filepath.Join(dir, "berth-guestagent")
		args := []string{"build", "-o", agent.path}
		// With libseccomp, as the guest build: containers get Docker's
		// default seccomp profile.
		if exec.Command("pkg-config", "--exists", "libseccomp").Run() == nil {
			args = append(args, "-tags", "seccomp")
		}
		build := exec.Command("go", append(args, "./cmd/berth-guestagent")...)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			agent.err = fmt.Errorf("building the agent: %v\n%s", err, out)
		}
	})
	if agent.err != nil {
		t.Fatal(agent.err)
	}
	return agent.path
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newEnv builds the agent, makes a network namespace and starts the
// agent in it.
func newEnv(t *testing.T) *env {
	t.Helper()
	requireRoot(t)
	// The shims' sockets are ROOT/containers/ID/shim.sock: keep ROOT short.
	root, err := os.MkdirTemp("/tmp", "bt")
	if err != nil {
		t.Fatal(err)
	}
	// As a real root (/var/lib/...): user-namespaced containers' root,
	// an unprivileged host user, must traverse it to reach their rootfs.
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	e := &env{
		t: t, root: root, listen: filepath.Join(root, "s"),
		bridge: "bt" + randHex(3), nsName: "berth-it-" + randHex(4),
		cfgDir: t.TempDir(), logPath: filepath.Join(t.TempDir(), "agent.log"),
	}
	var b [1]byte
	rand.Read(b[:])
	e.subnet = fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0])%50, int(b[0]))
	e.bin = agentBinary(t)

	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	e.ns, err = netns.NewNamed(e.nsName)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("creating a network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("leaving the test namespace: %v", err) // the thread stays locked and dies
	}
	orig.Close()
	runtime.UnlockOSThread()
	t.Cleanup(e.cleanup)
	nl, err := netlink.NewHandleAt(e.ns)
	if err != nil {
		t.Fatal(err)
	}
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	nl.Close()
	if err != nil {
		t.Fatalf("bringing lo up: %v", err)
	}
	e.start()
	return e
}

// start runs the agent in the namespace and waits for its Docker socket.
func (e *env) start() {
	t := e.t
	t.Helper()
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.bin, "serve", "--listen", "unix://"+e.listen, "--root", e.root,
		"--bridge", e.bridge, "--subnet", e.subnet, "--debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The child inherits the network namespace of the thread that forks.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(e.ns); err != nil {
			errc <- err
			return
		}
		err = cmd.Start()
		if serr := netns.Set(orig); serr != nil {
			panic(fmt.Sprintf("cannot return to the test's network namespace: %v", serr))
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		logf.Close()
		t.Fatalf("starting the agent: %v", err)
	}
	logf.Close()
	e.cmd = cmd
	e.exited = make(chan error, 1)
	go func() { e.exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", e.sock()); err == nil {
			c.Close()
			if _, _, err := e.docker(nil, "version"); err == nil {
				return
			}
		}
		select {
		case err := <-e.exited:
			t.Fatalf("the agent exited: %v\n%s", err, e.agentLog())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not serve in time\n%s", e.agentLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill SIGKILLs the agent (containers survive it).
func (e *env) kill() {
	e.cmd.Process.Kill()
	<-e.exited
}

// stop SIGTERMs the agent, which stops the containers first.
func (e *env) stop() error {
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-e.exited:
		return err
	case <-time.After(30 * time.Second):
		e.cmd.Process.Kill()
		<-e.exited
		return fmt.Errorf("the agent did not stop in 30 s")
	}
}

func (e *env) sock() string { return filepath.Join(e.listen, "2375.sock") }

// nsPath is the engine's network namespace, as netns.NewNamed made it.
func (e *env) nsPath() string { return filepath.Join("/var/run/netns", e.nsName) }

// registry starts a registry on 127.0.0.1 of the engine's network
// namespace, which the engine pulls from and pushes to.
func (e *env) registry(t *testing.T, opts imagetest.RegistryOptions) *imagetest.Registry {
	t.Helper()
	opts.NetNS = e.nsPath()
	return imagetest.StartRegistry(t, opts)
}

// agentLog is the part of the agent's log a failure report needs: its
// warnings and errors, then its last lines. It stays short so that a CI
// excerpt of the test output still shows the failing test's own message.
func (e *env) agentLog() string {
	b, _ := os.ReadFile(e.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	const tail = 15
	var out []string
	for _, l := range lines[:max(0, len(lines)-tail)] {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	if len(out) > 20 {
		out = append([]string{fmt.Sprintf("[%d earlier warnings]", len(out)-20)}, out[len(out)-20:]...)
	}
	out = append(out, "[last lines]")
	out = append(out, lines[max(0, len(lines)-tail):]...)
	for i, l := range out {
		if len(l) > 300 {
			out[i] = l[:300] + "..."
		}
	}
	return strings.Join(out, "\n")
}

func (e *env) cleanup() {
	if e.cmd != nil && e.cmd.ProcessState == nil {
		// Containers outlive the agent: remove them first.
		if out, _, err := e.docker(nil, "ps", "-aq"); err == nil {
			ids := strings.Fields(out)
			if len(ids) > 0 {
				e.docker(nil, append([]string{"rm", "-f"}, ids...)...)
			}
		}
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(10 * time.Second):
			e.cmd.Process.Kill()
			<-e.exited
		}
	}
	if e.t.Failed() {
		e.t.Logf("agent log:\n%s", e.agentLog())
	}
	// Whatever is still mounted under the root (a failed test's rootfs).
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		var mps []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(f[4], e.root+"/") {
				mps = append(mps, f[4])
			}
		}
		for i := len(mps) - 1; i >= 0; i-- {
			unix.Unmount(mps[i], unix.MNT_DETACH)
		}
	}
	os.RemoveAll(e.root)
	if e.ns.IsOpen() {
		e.ns.Close()
	}
	netns.DeleteNamed(e.nsName)
}

// docker runs the CLI against the engine; stdin may be nil.
func (e *env) docker(stdin []byte, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+e.sock(), "DOCKER_CONFIG="+e.cfgDir, "DOCKER_CLI_HINTS=false")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// must runs the CLI and fails the test on an error.
func (e *env) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := e.docker(nil, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// exitCode runs the CLI and returns its exit status.
func (e *env) exitCode(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	out, errOut, err := e.docker(nil, args...)
	if err == nil {
		return 0, out, errOut
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out, errOut
	}
	t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	return -1, out, errOut
}

// api sends one request to the engine's Docker API and returns the
// status and body: for what the docker CLI cannot ask.
func (e *env) api(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sock())
		},
	}}
	req, err := http.NewRequest(method, "http://berth/v1.43"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// dial connects to addr from inside the engine's network namespace.
func (e *env) dial(addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	rc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			rc <- result{nil, err}
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if err := netns.Set(e.ns); err != nil {
			rc <- result{nil, err}
			runtime.UnlockOSThread()
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if serr := netns.Set(orig); serr != nil {
			rc <- result{c, err}
			return // the thread stays locked and exits with the goroutine
		}
		runtime.UnlockOSThread()
		rc <- result{c, err}
	}()
	r := <-rc
	return r.c, r.err
}

// pullImages builds the test images, pushes them to a registry in the
// engine's network namespace, pulls them and tags them with the short
// names the tests use.
func (e *env) pullImages(t *testing.T) {
	t.Helper()
	layered := imagetest.Layered(t)
	cf, err := layered.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Volumes = map[string]struct{}{"/data": {}}
	cf.Config.User = ""
	cf.Config.Entrypoint = nil
	cf.Config.Cmd = []string{"sh"}
	vol, err := mutate.ConfigFile(layered, cf)
	if err != nil {
		t.Fatal(err)
	}
	reg := e.registry(t, imagetest.RegistryOptions{})
	for ref, img := range map[string]v1.Image{busyboxImg: imagetest.Busybox(t, runtime.GOARCH), layeredImg: layered, volumeImg: vol} {
		src := reg.Ref(ref)
		reg.Push(t, src, img)
		e.must(t, "pull", "-q", src)
		e.must(t, "tag", src, ref)
		e.must(t, "rmi", src)
	}
}

// underTTY runs "docker ARGS" (a shell word list) under script(1), which
// gives the CLI a terminal, and returns what the terminal showed.
func (e *env) underTTY(t *testing.T, args string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-qec", "stty cols 100 rows 30; docker "+args, "/dev/null")
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+e.sock(), "DOCKER_CONFIG="+e.cfgDir, "DOCKER_CLI_HINTS=false", "TERM=xterm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s under a terminal: %v\n%s", args, err, out)
	}
	return strings.ReplaceAll(string(out), "\r", "")
}
