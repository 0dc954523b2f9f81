package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berthvm/berth/images/imagetest"
)

// testImage is the busybox image the container tests load through the
// host's docker socket.
const testImage = "berth-e2e/busybox:latest"

// dockerEnv is a started instance driven with the real docker CLI
// through the "berth" context.
type dockerEnv struct {
	*env
	docker string
}

// startDocker starts an instance and returns a docker CLI bound to it. It
// skips the test when the docker CLI is missing or when the guest's
// Docker API does not serve containers yet.
func startDocker(t *testing.T) *dockerEnv {
	e := newEnv(t)
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("the docker CLI is not installed")
	}
	e.must("start", "--cpus", "2", "--memory", "2GiB", "--disk", "8GiB")
	d := &dockerEnv{env: e, docker: docker}
	sock := filepath.Join(e.home, "default", "docker.sock")
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", sock)
		},
	}}
	// The engine starts once the guest's boot has settled, a little
	// after its agent answers: 502 (nothing on guest port 2375) for a
	// while is normal.
	var code int
	var body []byte
	for deadline := time.Now().Add(90 * time.Second); ; {
		resp, err := hc.Get("http://docker/containers/json")
		if err != nil {
			t.Fatalf("GET /containers/json through %s: %v", sock, err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
		if code != http.StatusBadGateway || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code == http.StatusNotImplemented || code == http.StatusBadGateway {
		t.Skipf("the guest's Docker API answers %d for containers (%s): the container engine does not run in the VM yet",
			code, strings.TrimSpace(string(body)))
	}
	d.loadImage()
	return d
}

func (d *dockerEnv) cmd(args ...string) *exec.Cmd {
	c := exec.Command(d.docker, append([]string{"--context", "berth"}, args...)...)
	c.Env = append(os.Environ(), "DOCKER_CONFIG="+d.dockerConfig, "DOCKER_HOST=", "DOCKER_CONTEXT=")
	return c
}

// dockerRun runs docker and returns its combined output and error.
func (d *dockerEnv) dockerRun(args ...string) (string, error) {
	out, err := d.cmd(args...).CombinedOutput()
	return string(out), err
}

func (d *dockerEnv) dockerMust(args ...string) string {
	d.t.Helper()
	start := time.Now()
	out, err := d.dockerRun(args...)
	d.t.Logf("docker %s (%.1fs):\n%s", strings.Join(args, " "), time.Since(start).Seconds(), out)
	if err != nil {
		d.t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// loadImage builds a busybox image, with udpecho (testdata/udpecho) as
// /bin/udpecho, and loads it through the socket.
func (d *dockerEnv) loadImage() {
	d.t.Helper()
	bin := filepath.Join(d.t.TempDir(), "udpecho")
	build := exec.Command("go", "build", "-o", bin, "./testdata/udpecho")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if out, err := build.CombinedOutput(); err != nil {
		d.t.Fatalf("building udpecho: %v\n%s", err, out)
	}
	udpecho, err := os.ReadFile(bin)
	if err != nil {
		d.t.Fatal(err)
	}
	img := imagetest.Busybox(d.t, runtime.GOARCH, imagetest.File{Name: "bin/udpecho", Body: string(udpecho), Mode: 0o755})
	ref, err := name.NewTag(testImage)
	if err != nil {
		d.t.Fatal(err)
	}
	path := filepath.Join(d.t.TempDir(), "busybox.tar")
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		d.t.Fatal(err)
	}
	d.dockerMust("load", "-i", path)
}

// requireBridge skips a test that needs container networking when the
// engine in the VM cannot give containers a network.
func (d *dockerEnv) requireBridge(t *testing.T) {
	out, err := d.dockerRun("run", "--rm", testImage, "sh", "-c", "ip -4 route | grep ^default")
	if err != nil || !strings.Contains(out, "default via") {
		t.Skipf("containers on the default network get no network in the VM (%s): container networking is not ready", strings.TrimSpace(out))
	}
}

// TestContainerPorts: "docker run -p" through the host socket publishes
// on the host's loopback, TCP and UDP.
func TestContainerPorts(t *testing.T) {
	d := startDocker(t)
	d.requireBridge(t)

	t.Run("tcp", func(t *testing.T) {
		port := freeHostPort(t)
		d.dockerMust("run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:80", port), testImage,
			"sh", "-c", "mkdir -p /www && echo hello from a container > /www/index.html && exec httpd -f -p 80 -h /www")
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		took := waitHTTP(t, url, "hello from a container", 20*time.Second)
		t.Logf("the published port answered %v after docker run returned", took)
		if out := d.must("ports"); !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d", port)) {
			t.Fatalf("berth ports: %q", out)
		}
		// 0.0.0.0 in the guest is the host's loopback, both families.
		waitHTTP(t, fmt.Sprintf("http://[::1]:%d/", port), "hello from a container", 10*time.Second)

		// Kill -9 the host agent and start it again: the VM and the
		// container keep running, and the forward comes back.
		s := d.status("default")
		syscall.Kill(s.HostagentPid, syscall.SIGKILL)
		d.waitState("default", "Running (host agent down)", 10*time.Second)
		if out := d.must("start"); !strings.Contains(out, "reattached") {
			t.Fatalf("start after kill -9: %q", out)
		}
		took = waitHTTP(t, url, "hello from a container", 20*time.Second)
		t.Logf("the container's forward came back %v after the host agent restarted", took)

		// Stopped, the port closes; started again, it comes back.
		d.dockerMust("stop", "-t", "1", "web")
		waitClosed(t, url, 10*time.Second)
		d.dockerMust("start", "web")
		waitHTTP(t, url, "hello from a container", 20*time.Second)
		d.dockerMust("rm", "-f", "web")
		waitClosed(t, url, 10*time.Second)
	})

	t.Run("udp", func(t *testing.T) {
		port := freeHostPort(t)
		d.dockerMust("run", "-d", "--name", "udpecho", "-p", fmt.Sprintf("%d:53/udp", port), testImage, "udpecho", "-l", ":53")
		defer d.dockerRun("rm", "-f", "udpecho")
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 100)
		deadline := time.Now().Add(20 * time.Second)
		for {
			c.Write([]byte("ping\n"))
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			if err == nil && strings.Contains(string(buf[:n]), "ping") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no UDP echo through the published port: %q %v", buf[:n], err)
			}
		}
	})
}

// TestContainerTTY: "docker run -it" through the host socket, with a
// real pseudo-terminal.
func TestContainerTTY(t *testing.T) {
	d := startDocker(t)
	c := d.cmd("run", "--rm", "-it", "--network", "none", testImage, "sh")
	ptmx, err := pty.StartWithSize(c, &pty.Winsize{Rows: 33, Cols: 101})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&buf, ptmx); close(done) }()
	time.Sleep(2 * time.Second) // let the shell start before typing
	io.WriteString(ptmx, "stty size; tty; exit 3\n")
	werr := c.Wait()
	ptmx.Close()
	<-done
	out := buf.String()
	if !strings.Contains(out, "33 101") || !strings.Contains(out, "/dev/pts/") {
		t.Fatalf("tty session output %q", out)
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit %v, want 3", werr)
	}
}

// TestContainerReachesHost: a container reaches the host's loopback as
// host.docker.internal.
func TestContainerReachesHost(t *testing.T) {
	d := startDocker(t)
	d.requireBridge(t)
	port := hostHTTP(t, "hello from the host")
	out := d.dockerMust("run", "--rm", testImage, "sh", "-c",
		fmt.Sprintf("timeout 20 wget -qO- http://host.docker.internal:%d/", port))
	if !strings.Contains(out, "hello from the host") {
		t.Fatalf("container -> host.docker.internal: %q", out)
	}
}

// TestContainerCannotReachAgent: a process in a container cannot open the
// guest agent's control service, port forwarding or Docker API: they are
// on the transport (virtio-serial, vsock), which containers do not see,
// not on TCP. Checked from the default network (the bridge gateway, the
// guest's eth0 address) and from the guest's own network namespace.
func TestContainerCannotReachAgent(t *testing.T) {
	d := startDocker(t)
	const probe = `
for a in $TARGETS; do
  for p in 1024 1025 2375; do
    if nc -z -w 2 $a $p; then echo "OPEN $a:$p"; fi
  done
done
ls /dev/virtio-ports 2>/dev/null && echo "SEES /dev/virtio-ports"
ls /dev/vsock 2>/dev/null && echo "SEES /dev/vsock"
echo probed`
	t.Run("host network", func(t *testing.T) {
		out := d.dockerMust("run", "--rm", "--network", "host", "-e", "TARGETS=127.0.0.1 192.168.127.2 ::1", testImage, "sh", "-c", probe)
		if strings.Contains(out, "OPEN") || strings.Contains(out, "SEES") || !strings.Contains(out, "probed") {
			t.Fatalf("a host-network container reaches the agent:\n%s", out)
		}
	})
	t.Run("bridge", func(t *testing.T) {
		d.requireBridge(t)
		script := `TARGETS="$(ip route | awk '/^default/ {print $3}') 192.168.127.2"` + probe
		out := d.dockerMust("run", "--rm", testImage, "sh", "-c", script)
		if strings.Contains(out, "OPEN") || strings.Contains(out, "SEES") || !strings.Contains(out, "probed") {
			t.Fatalf("a container reaches the agent:\n%s", out)
		}
	})
}

// waitClosed waits until nothing answers at url on the host.
func waitClosed(t *testing.T, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, err := httpGet(url); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still answers", url)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
