package dockerapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/berthvm/berth/images/imagetest"
)

// TestDockerCLI drives the server with the real docker CLI against a
// registry on 127.0.0.1: the image and system commands, end to end.
func TestDockerCLI(t *testing.T) {
	e := startEnv(t, nil)
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{})
	busybox := reg.Ref("test/busybox:latest")
	layered := reg.Ref("test/layered:v1")
	reg.Push(t, busybox, imagetest.Busybox(t, runtime.GOARCH))
	layeredDigest := reg.Push(t, layered, imagetest.Layered(t)).String()
	start := time.Now()

	t.Run("version", func(t *testing.T) {
		out := e.mustDocker(t, "version")
		for _, want := range []string{"Server: berth", "0.0.0-test", "API version:      " + APIVersion + " (minimum version " + MinAPIVersion + ")", "linux/" + runtime.GOARCH} {
			if !strings.Contains(out, want) {
				t.Errorf("docker version lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("info", func(t *testing.T) {
		out := e.mustDocker(t, "info")
		for _, want := range []string{"Storage Driver: overlay2", "Operating System: berth", "Name: berth-test",
			fmt.Sprintf("CPUs: %d", runtime.NumCPU()), "Docker Root Dir: " + e.srv.cfg.RootDir, "Images: 0", "Cgroup Version: "} {
			if !strings.Contains(out, want) {
				t.Errorf("docker info lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("pull", func(t *testing.T) {
		out := e.mustDocker(t, "pull", busybox)
		for _, want := range []string{"Pulling from test/busybox", "Pull complete", "Digest: sha256:", "Status: Downloaded newer image for " + busybox} {
			if !strings.Contains(out, want) {
				t.Errorf("docker pull lacks %q:\n%s", want, out)
			}
		}
		list := e.mustDocker(t, "images", "--format", "{{.Repository}}:{{.Tag}}")
		if !strings.Contains(list, busybox) {
			t.Errorf("docker images lacks %s:\n%s", busybox, list)
		}
		// Pulling again is a no-op.
		if out := e.mustDocker(t, "pull", busybox); !strings.Contains(out, "Image is up to date") {
			t.Errorf("second pull:\n%s", out)
		}
	})
	t.Run("pull by digest", func(t *testing.T) {
		ref := reg.Ref("test/layered@" + layeredDigest)
		out := e.mustDocker(t, "pull", ref)
		if !strings.Contains(out, layeredDigest) {
			t.Errorf("docker pull by digest:\n%s", out)
		}
		digests := e.mustDocker(t, "images", "--digests", "--format", "{{.Repository}}@{{.Digest}}")
		if !strings.Contains(digests, reg.Addr+"/test/layered@"+layeredDigest) {
			t.Errorf("docker images --digests lacks the pulled digest:\n%s", digests)
		}
	})
	t.Run("pull missing", func(t *testing.T) {
		_, errOut, err := e.docker(t, nil, "pull", reg.Ref("test/nothing:here"))
		if err == nil || !strings.Contains(errOut, "not found") && !strings.Contains(errOut, "unknown") {
			t.Errorf("pull of a missing image: err=%v stderr=%s", err, errOut)
		}
	})

	img, err := e.store.Resolve(context.Background(), busybox)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("inspect", func(t *testing.T) {
		out := e.mustDocker(t, "image", "inspect", "--format", "{{.Id}} {{.Os}} {{.Architecture}}", busybox)
		if want := img.ID + " linux " + runtime.GOARCH; strings.TrimSpace(out) != want {
			t.Errorf("inspect = %q, want %q", out, want)
		}
		_, errOut, err := e.docker(t, nil, "image", "inspect", "nosuchimage:1")
		if err == nil || !strings.Contains(errOut, "No such image") {
			t.Errorf("inspect of a missing image: %v %s", err, errOut)
		}
	})
	t.Run("history", func(t *testing.T) {
		out := e.mustDocker(t, "history", "--no-trunc", "--format", "{{.ID}}|{{.CreatedBy}}", layered[:strings.LastIndex(layered, ":")]+"@"+layeredDigest)
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) < 3 {
			t.Errorf("history has %d lines:\n%s", len(lines), out)
		}
	})
	retagged := reg.Ref("test/retagged:v2")
	t.Run("tag and push", func(t *testing.T) {
		e.mustDocker(t, "tag", busybox, retagged)
		list := e.mustDocker(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
		if !strings.Contains(list, retagged) {
			t.Errorf("docker images lacks the new tag:\n%s", list)
		}
		out := e.mustDocker(t, "push", retagged)
		if !strings.Contains(out, "The push refers to repository ["+reg.Addr+"/test/retagged]") || !strings.Contains(out, "v2: digest: sha256:") {
			t.Errorf("docker push:\n%s", out)
		}
	})
	t.Run("save and load", func(t *testing.T) {
		archive := filepath.Join(t.TempDir(), "bb.tar")
		e.mustDocker(t, "save", "-o", archive, retagged)
		if fi, err := os.Stat(archive); err != nil || fi.Size() < 1024 {
			t.Fatalf("saved archive: %v %v", fi, err)
		}
		out := e.mustDocker(t, "rmi", retagged)
		if !strings.Contains(out, "Untagged: "+retagged) || strings.Contains(out, "Deleted:") {
			t.Errorf("rmi of one of two tags:\n%s", out)
		}
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out, errOut, err := e.docker(t, f, "load")
		if err != nil || !strings.Contains(out, "Loaded image: "+retagged) {
			t.Errorf("docker load: %v\n%s\n%s", err, out, errOut)
		}
		if id := strings.TrimSpace(e.mustDocker(t, "image", "inspect", "--format", "{{.Id}}", retagged)); id != img.ID {
			t.Errorf("loaded image ID %s, want %s", id, img.ID)
		}
	})
	t.Run("rmi", func(t *testing.T) {
		e.mustDocker(t, "rmi", retagged)
		out := e.mustDocker(t, "rmi", busybox)
		if !strings.Contains(out, "Untagged: "+busybox) || !strings.Contains(out, "Deleted: "+img.ID) {
			t.Errorf("rmi of the last tag:\n%s", out)
		}
		if _, _, err := e.docker(t, nil, "image", "inspect", img.ID); err == nil {
			t.Errorf("image %s still there after rmi", img.ID)
		}
	})
	t.Run("system df", func(t *testing.T) {
		out := e.mustDocker(t, "system", "df")
		if !strings.Contains(out, "Images") || !strings.Contains(out, "Containers") {
			t.Errorf("docker system df:\n%s", out)
		}
		n := strings.Count(strings.TrimSpace(e.mustDocker(t, "images", "-aq")), "\n") + 1
		if !strings.Contains(out, fmt.Sprintf("Images          %d ", n)) {
			t.Errorf("docker system df does not count %d images:\n%s", n, out)
		}
	})
	t.Run("prune", func(t *testing.T) {
		out := e.mustDocker(t, "image", "prune", "-a", "-f")
		if !strings.Contains(out, "Total reclaimed space:") || !strings.Contains(out, "deleted: sha256:") {
			t.Errorf("docker image prune -a:\n%s", out)
		}
		if left := strings.TrimSpace(e.mustDocker(t, "images", "-aq")); left != "" {
			t.Errorf("images left after prune -a: %q", left)
		}
	})
	t.Run("events", func(t *testing.T) {
		until := time.Now()
		since := fmt.Sprintf("%d", start.Unix())
		out := e.mustDocker(t, "events", "--since", since, "--until", fmt.Sprintf("%d.%09d", until.Unix(), until.Nanosecond()),
			"--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{index .Actor.Attributes \"name\"}}")
		for _, want := range []string{
			"image pull " + busybox,
			"image tag " + img.ID + " " + retagged,
			"image push " + retagged,
			"image save " + retagged,
			"image untag " + img.ID + " " + retagged,
			"image load " + retagged,
			"image delete " + img.ID,
			"image prune",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("docker events lacks %q:\n%s", want, out)
			}
		}
		tags := e.mustDocker(t, "events", "--since", since, "--until", fmt.Sprintf("%d", until.Unix()+1), "--filter", "event=tag", "--format", "{{.Action}}")
		if got := strings.Fields(tags); len(got) != 1 || got[0] != "tag" {
			t.Errorf("events filtered on tag = %q", got)
		}
		if out := e.mustDocker(t, "events", "--since", since, "--until", fmt.Sprintf("%d", until.Unix()+1), "--filter", "type=container"); strings.TrimSpace(out) != "" {
			t.Errorf("container events where there are none: %q", out)
		}
	})
}

// TestDockerLogin checks `docker login` against an htpasswd registry and
// that the CLI's credentials then reach the registry on pull.
func TestDockerLogin(t *testing.T) {
	e := startEnv(t, nil)
	reg := imagetest.StartRegistry(t, imagetest.RegistryOptions{BasicAuth: true})
	ref := reg.Ref("private/busybox:1")
	reg.Push(t, ref, imagetest.Busybox(t, runtime.GOARCH))

	_, errOut, err := e.docker(t, nil, "pull", ref)
	if err == nil {
		t.Fatalf("anonymous pull from an htpasswd registry succeeded")
	}
	if !strings.Contains(strings.ToLower(errOut), "unauthorized") && !strings.Contains(errOut, "denied") {
		t.Errorf("anonymous pull error: %s", errOut)
	}
	out, errOut, err := e.docker(t, strings.NewReader("wrong-password\n"), "login", "-u", reg.Username, "--password-stdin", reg.Addr)
	if err == nil || strings.Contains(out, "Login Succeeded") {
		t.Errorf("login with a wrong password: err=%v out=%s", err, out)
	}
	if !strings.Contains(errOut, "401") && !strings.Contains(strings.ToLower(errOut), "unauthorized") {
		t.Errorf("login failure message: %s", errOut)
	}
	out, errOut, err = e.docker(t, strings.NewReader(reg.Password+"\n"), "login", "-u", reg.Username, "--password-stdin", reg.Addr)
	if err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %v\n%s\n%s", err, out, errOut)
	}
	if out := e.mustDocker(t, "pull", ref); !strings.Contains(out, "Downloaded newer image") {
		t.Errorf("authenticated pull:\n%s", out)
	}
	target := reg.Ref("private/pushed:2")
	e.mustDocker(t, "tag", ref, target)
	if out := e.mustDocker(t, "push", target); !strings.Contains(out, "2: digest: sha256:") {
		t.Errorf("authenticated push:\n%s", out)
	}
}

// TestDockerCLIContainers drives the container, exec, volume, network
// and prune routes with the real docker CLI against the fake engine.
func TestDockerCLIContainers(t *testing.T) {
	e, fe, fv := startFake(t)
	start := time.Now()

	t.Run("run --rm", func(t *testing.T) {
		out := e.mustDocker(t, "run", "--rm", "--name", "once", "busybox", "echo", "hello", "world")
		if out != "hello world\n" {
			t.Errorf("docker run output %q", out)
		}
		if _, _, err := e.docker(t, nil, "inspect", "once"); err == nil {
			t.Error("--rm container still there")
		}
	})
	t.Run("run -i with stdin", func(t *testing.T) {
		in := "line one\nline two\n"
		out, errOut, err := e.docker(t, strings.NewReader(in), "run", "--rm", "-i", "busybox", "cat")
		if err != nil || out != in {
			t.Errorf("docker run -i cat: %v %q %q", err, out, errOut)
		}
	})
	t.Run("run exit code and stderr", func(t *testing.T) {
		out, errOut, err := e.docker(t, nil, "run", "--name", "failer", "busybox", "fail", "7")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 7 || out != "" || errOut != "failing with 7\n" {
			t.Errorf("docker run fail 7: %v %q %q", err, out, errOut)
		}
		if _, errOut, err := e.docker(t, nil, "run", "busybox", "nosuch"); err == nil || !strings.Contains(errOut, "executable file not found") {
			t.Errorf("run of a missing executable: %v %q", err, errOut)
		}
		// docker start -a attaches, then starts, then reports the exit.
		_, errOut, err = e.docker(t, nil, "start", "-a", "failer")
		if !errors.As(err, &exit) || exit.ExitCode() != 7 || errOut != "failing with 7\n" {
			t.Errorf("docker start -a: %v %q", err, errOut)
		}
		id := strings.TrimSpace(e.mustDocker(t, "create", "--name", "made", "busybox", "echo", "created"))
		if out := e.mustDocker(t, "start", "-a", id); out != "created\n" {
			t.Errorf("docker create + start -a: %q", out)
		}
	})
	t.Run("detached, ps, exec", func(t *testing.T) {
		id := strings.TrimSpace(e.mustDocker(t, "run", "-d", "--name", "svc", "-l", "app=svc", "busybox", "sleep"))
		if len(id) != 64 {
			t.Fatalf("docker run -d printed %q", id)
		}
		ps := e.mustDocker(t, "ps", "--format", "{{.Names}} {{.State}} {{.Command}}")
		if !strings.Contains(ps, "svc running \"sleep\"") || strings.Contains(ps, "failer") {
			t.Errorf("docker ps:\n%s", ps)
		}
		all := e.mustDocker(t, "ps", "-a", "--format", "{{.Names}} {{.State}}")
		if !strings.Contains(all, "failer exited") || !strings.Contains(all, "svc running") {
			t.Errorf("docker ps -a:\n%s", all)
		}
		if out := e.mustDocker(t, "exec", "svc", "echo", "from", "exec"); out != "from exec\n" {
			t.Errorf("docker exec: %q", out)
		}
		if out, _, err := e.docker(t, strings.NewReader("piped\n"), "exec", "-i", "svc", "cat"); err != nil || out != "piped\n" {
			t.Errorf("docker exec -i: %v %q", err, out)
		}
		_, errOut, err := e.docker(t, nil, "exec", "svc", "fail", "3")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 3 || errOut != "failing with 3\n" {
			t.Errorf("docker exec fail 3: %v %q", err, errOut)
		}
		if _, errOut, err := e.docker(t, nil, "exec", "failer", "echo"); err == nil || !strings.Contains(errOut, "is not running") {
			t.Errorf("exec in a stopped container: %v %q", err, errOut)
		}
		if out := e.mustDocker(t, "top", "svc"); !strings.Contains(out, "sleep") {
			t.Errorf("docker top: %q", out)
		}
		if out := e.mustDocker(t, "inspect", "-f", "{{.NetworkSettings.IPAddress}} {{.State.Status}}", "svc"); out != "172.17.0.2 running\n" {
			t.Errorf("docker inspect: %q", out)
		}
		if out := e.mustDocker(t, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "svc"); out != "svc 1\n" {
			t.Errorf("docker stats: %q", out)
		}
		e.mustDocker(t, "pause", "svc")
		e.mustDocker(t, "unpause", "svc")
		e.mustDocker(t, "rename", "svc", "svc2")
		e.mustDocker(t, "restart", "-t", "1", "svc2")
	})
	t.Run("logs", func(t *testing.T) {
		e.mustDocker(t, "run", "--name", "talker", "busybox", "lines", "5")
		if out := e.mustDocker(t, "logs", "--tail", "2", "talker"); out != "line 4\nline 5\n" {
			t.Errorf("docker logs --tail 2: %q", out)
		}
		out := e.mustDocker(t, "logs", "-t", "--tail", "1", "talker")
		if ts, rest, _ := strings.Cut(out, " "); rest != "line 5\n" || !strings.HasPrefix(ts, time.Now().UTC().Format("2006-01-02T")) {
			t.Errorf("docker logs -t: %q", out)
		}
		// failer ran twice: docker run, then docker start -a.
		if _, errOut, _ := e.docker(t, nil, "logs", "failer"); errOut != "failing with 7\nfailing with 7\n" {
			t.Errorf("docker logs of stderr: %q", errOut)
		}
	})
	t.Run("kill and wait", func(t *testing.T) {
		e.mustDocker(t, "run", "-d", "--name", "victim", "busybox", "sleep")
		e.mustDocker(t, "kill", "-s", "HUP", "victim")
		if out := e.mustDocker(t, "wait", "victim"); out != "129\n" {
			t.Errorf("docker wait after SIGHUP: %q", out)
		}
		if _, errOut, err := e.docker(t, nil, "kill", "victim"); err == nil || !strings.Contains(errOut, "is not running") {
			t.Errorf("kill of a stopped container: %v %q", err, errOut)
		}
		if _, errOut, err := e.docker(t, nil, "wait", "nope"); err == nil || !strings.Contains(errOut, "No such container: nope") {
			t.Errorf("wait of a missing container: %v %q", err, errOut)
		}
	})
	t.Run("cp both ways", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "in.txt")
		if err := os.WriteFile(src, []byte("copied in\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		e.mustDocker(t, "cp", src, "svc2:/etc/")
		e.mustDocker(t, "cp", src, "svc2:/etc/renamed.txt")
		e.mustDocker(t, "cp", "svc2:/etc/in.txt", filepath.Join(dir, "out.txt"))
		if b, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(b) != "copied in\n" {
			t.Errorf("round trip: %q %v", b, err)
		}
		e.mustDocker(t, "cp", "svc2:/etc", filepath.Join(dir, "etc"))
		if b, err := os.ReadFile(filepath.Join(dir, "etc", "renamed.txt")); err != nil || string(b) != "copied in\n" {
			t.Errorf("directory copy: %q %v", b, err)
		}
		if _, errOut, err := e.docker(t, nil, "cp", "svc2:/nothing", dir); err == nil || !strings.Contains(errOut, "Could not find the file /nothing") {
			t.Errorf("cp of a missing path: %v %q", err, errOut)
		}
		if out := e.mustDocker(t, "diff", "svc2"); !strings.Contains(out, "A /etc/in.txt") {
			t.Errorf("docker diff: %q", out)
		}
		tarball := filepath.Join(dir, "export.tar")
		e.mustDocker(t, "export", "-o", tarball, "svc2")
		if b, err := os.ReadFile(tarball); err != nil || !bytes.Contains(b, []byte("copied in")) {
			t.Errorf("docker export: %v", err)
		}
		if out := e.mustDocker(t, "commit", "-c", "ENV A=1", "-m", "msg", "svc2", "me/img:v1"); !strings.HasPrefix(out, "sha256:") {
			t.Errorf("docker commit: %q", out)
		}
		if c := fe.calls().commits; len(c) != 1 || c[0].Reference != "docker.io/me/img:v1" || c[0].Comment != "msg" || len(c[0].Changes) != 1 || c[0].Changes[0] != "ENV A=1" || !c[0].Pause {
			t.Errorf("commit options: %+v", c)
		}
	})
	t.Run("volumes", func(t *testing.T) {
		if out := e.mustDocker(t, "volume", "create", "--label", "k=v", "vol1"); out != "vol1\n" {
			t.Errorf("volume create: %q", out)
		}
		e.mustDocker(t, "volume", "create", "vol2")
		if out := e.mustDocker(t, "volume", "ls", "-q"); out != "vol1\nvol2\n" {
			t.Errorf("volume ls: %q", out)
		}
		if out := e.mustDocker(t, "volume", "ls", "-q", "-f", "label=k=v"); out != "vol1\n" {
			t.Errorf("volume ls -f: %q", out)
		}
		if out := e.mustDocker(t, "volume", "inspect", "-f", "{{.Driver}} {{.Mountpoint}}", "vol1"); out != "local /var/lib/berth/volumes/vol1/_data\n" {
			t.Errorf("volume inspect: %q", out)
		}
		fv.setInUse("vol2", true)
		if _, errOut, err := e.docker(t, nil, "volume", "rm", "vol2"); err == nil || !strings.Contains(errOut, "in use") {
			t.Errorf("rm of a volume in use: %v %q", err, errOut)
		}
		if out := e.mustDocker(t, "volume", "rm", "vol1"); out != "vol1\n" {
			t.Errorf("volume rm: %q", out)
		}
		fv.setInUse("vol2", false)
		e.mustDocker(t, "volume", "create", "vol3")
		if out := e.mustDocker(t, "volume", "prune", "-af"); !strings.Contains(out, "vol2") || !strings.Contains(out, "vol3") {
			t.Errorf("volume prune -a: %q", out)
		}
		if out := e.mustDocker(t, "volume", "ls", "-q"); out != "" {
			t.Errorf("volumes left: %q", out)
		}
		if out := e.mustDocker(t, "system", "df"); !strings.Contains(out, "Local Volumes") || !strings.Contains(out, "Containers") {
			t.Errorf("system df: %q", out)
		}
		ev := e.mustDocker(t, "events", "--since", fmt.Sprint(start.Unix()), "--until", fmt.Sprint(time.Now().Unix()+1),
			"--filter", "type=volume", "--format", "{{.Action}} {{.Actor.ID}}")
		for _, want := range []string{"create vol1", "destroy vol1", "destroy vol3", "prune "} {
			if !strings.Contains(ev, want) {
				t.Errorf("volume events lack %q:\n%s", want, ev)
			}
		}
	})
	t.Run("networks", func(t *testing.T) {
		out := e.mustDocker(t, "network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
		if out != "bridge bridge local\nhost host local\nnone null local\n" {
			t.Errorf("network ls: %q", out)
		}
		if out := e.mustDocker(t, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "bridge"); out != "172.17.0.0/16\n" {
			t.Errorf("network inspect: %q", out)
		}
		if _, errOut, err := e.docker(t, nil, "network", "create", "mynet"); err == nil || !strings.Contains(errOut, "user-defined networks are not supported") {
			t.Errorf("network create: %v %q", err, errOut)
		}
		if _, errOut, err := e.docker(t, nil, "network", "rm", "bridge"); err == nil || !strings.Contains(errOut, "pre-defined network") {
			t.Errorf("network rm bridge: %v %q", err, errOut)
		}
		if _, errOut, err := e.docker(t, nil, "inspect", "nothing-at-all"); err == nil || !strings.Contains(errOut, "No such object") {
			t.Errorf("docker inspect of nothing: %v %q", err, errOut)
		}
	})
	t.Run("system prune", func(t *testing.T) {
		out := e.mustDocker(t, "system", "prune", "-f")
		if !strings.Contains(out, "Deleted Containers:") || !strings.Contains(out, "Total reclaimed space:") {
			t.Errorf("system prune: %q", out)
		}
		left := e.mustDocker(t, "ps", "-a", "--format", "{{.Names}}")
		if left != "svc2\n" {
			t.Errorf("containers left after prune: %q", left)
		}
		e.mustDocker(t, "rm", "-f", "svc2")
		if out := e.mustDocker(t, "ps", "-aq"); out != "" {
			t.Errorf("containers left: %q", out)
		}
	})
}

// TestDockerCLITTY runs `docker run -it` and `docker attach` on a pty:
// keystrokes reach the container, the CLI's resize arrives, and the
// detach keys end the CLI while the container keeps running.
func TestDockerCLITTY(t *testing.T) {
	e, fe, _ := startFake(t)
	if _, err := os.Stat(dockerCLI); err != nil {
		t.Skipf("docker CLI not installed at %s", dockerCLI)
	}
	// runOnPTY starts the CLI on a pty and returns its terminal side
	// and a channel with its exit.
	runOnPTY := func(args ...string) (*os.File, <-chan error) {
		cmd := exec.Command(dockerCLI, args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+e.sock, "DOCKER_CONFIG="+e.config, "DOCKER_CLI_HINTS=false", "DOCKER_CONTEXT=")
		tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 33, Cols: 101})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tty.Close(); _ = cmd.Process.Kill() })
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return tty, done
	}
	expect := func(tty *os.File, want string) {
		t.Helper()
		var got []byte
		buf := make([]byte, 256)
		_ = tty.SetReadDeadline(time.Now().Add(10 * time.Second))
		for !strings.Contains(string(got), want) {
			n, err := tty.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				t.Fatalf("waiting for %q on the terminal: %v (got %q)", want, err, got)
			}
		}
	}
	// exited checks the CLI's exit; `docker attach` reports the detach
	// as dockerd's CLI always has: "read escape sequence", status 1.
	exited := func(tty *os.File, done <-chan error, escapeErr bool) {
		t.Helper()
		select {
		case err := <-done:
			_ = tty.SetReadDeadline(time.Now().Add(time.Second))
			rest, _ := io.ReadAll(tty)
			if (err != nil) != escapeErr || escapeErr && !strings.Contains(string(rest), "read escape sequence") {
				t.Errorf("docker CLI after detaching: %v: %q", err, rest)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the CLI did not exit on the detach keys")
		}
	}
	running := func() {
		t.Helper()
		if out := e.mustDocker(t, "inspect", "-f", "{{.State.Status}}", "ttyc"); out != "running\n" {
			t.Errorf("container after detach: %q", out)
		}
	}

	// resized waits for the CLI's resize to the pty's size: by then it
	// has put the terminal in raw mode (before that, the pty would echo
	// and buffer input itself).
	resized := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			count := 0
			for _, r := range fe.calls().resizes {
				if strings.HasSuffix(r, " 33x101") {
					count++
				}
			}
			if count >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no resize to the terminal's size: %v", fe.calls().resizes)
			}
		}
	}

	tty, done := runOnPTY("run", "-it", "--name", "ttyc", "busybox", "cat")
	resized(1)
	_, _ = tty.Write([]byte("typed"))
	expect(tty, "typed")
	_, _ = tty.Write([]byte{16, 17}) // ctrl-p ctrl-q
	exited(tty, done, false)
	running()

	tty, done = runOnPTY("attach", "--detach-keys", "ctrl-x", "ttyc")
	resized(2)
	_, _ = tty.Write([]byte("again"))
	expect(tty, "again")
	_, _ = tty.Write([]byte{24})
	exited(tty, done, true)
	running()
}
