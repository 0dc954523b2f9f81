// Package e2e boots real VMs under QEMU with the built berth binary and
// guest bundles, and drives them the way a user does. It runs when
// BERTH_E2E=1 ("make e2e", "make test") and needs out/bin/berth and the
// bundles in out/share (make build guest).
package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

type env struct {
	t            *testing.T
	bin          string
	home         string
	path         string // PATH for berth
	dockerConfig string // DOCKER_CONFIG for berth and docker
}

func newEnv(t *testing.T) *env {
	if os.Getenv("BERTH_E2E") == "" {
		t.Skip("end-to-end tests boot VMs; run them with BERTH_E2E=1 (make e2e)")
	}
	root := repoRoot(t)
	bin := filepath.Join(root, "out", "bin", "berth")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run \"make build guest\" first", bin)
	}
	// A short home: socket paths must stay under 104 bytes.
	home, err := os.MkdirTemp("", "be2e")
	if err != nil {
		t.Fatal(err)
	}
	// The docker CLI's config too: "berth start" writes a docker context.
	dockerConfig, err := os.MkdirTemp("", "be2edc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dockerConfig) })
	e := &env{t: t, bin: bin, home: home, path: os.Getenv("PATH"), dockerConfig: dockerConfig}
	t.Cleanup(func() {
		// Never leave a VM behind, whatever failed.
		names, _ := os.ReadDir(home)
		for _, n := range names {
			e.run("delete", "--force", n.Name())
		}
		if t.Failed() {
			for _, n := range names {
				for _, f := range []string{"hostagent.log", "serial.log"} {
					if b, err := os.ReadFile(filepath.Join(home, n.Name(), f)); err == nil {
						t.Logf("---- %s/%s (tail) ----\n%s", n.Name(), f, tail(string(b), 60))
					}
				}
			}
		}
		os.RemoveAll(home)
	})
	return e
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *env) cmd(args ...string) *exec.Cmd {
	c := exec.Command(e.bin, args...)
	c.Env = append(os.Environ(), "BERTH_HOME="+e.home, "PATH="+e.path, "DOCKER_CONFIG="+e.dockerConfig)
	return c
}

// run runs berth and returns its combined output and exit code.
func (e *env) run(args ...string) (string, int) {
	out, err := e.cmd(args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		e.t.Fatalf("berth %v: %v", args, err)
	}
	return string(out), 0
}

// must runs berth and fails the test unless it exits 0.
func (e *env) must(args ...string) string {
	e.t.Helper()
	start := time.Now()
	out, code := e.run(args...)
	e.t.Logf("berth %s (%.1fs):\n%s", strings.Join(args, " "), time.Since(start).Seconds(), out)
	if code != 0 {
		e.t.Fatalf("berth %s: exit %d", strings.Join(args, " "), code)
	}
	return out
}

// fails runs berth and fails the test unless it exits with code and says has.
func (e *env) fails(code int, has string, args ...string) {
	e.t.Helper()
	out, got := e.run(args...)
	if got != code || !strings.Contains(out, has) {
		e.t.Fatalf("berth %s: exit %d, output %q; want exit %d and %q", strings.Join(args, " "), got, out, code, has)
	}
}

type status struct {
	State        string
	HostagentPid int
	Errors       []string
}

func (e *env) status(name string) status {
	e.t.Helper()
	out, code := e.run("status", name, "--format", "json")
	if code != 0 {
		e.t.Fatalf("status: %d %s", code, out)
	}
	var s status
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		e.t.Fatalf("status json %q: %v", out, err)
	}
	return s
}

func (e *env) waitState(name, state string, within time.Duration) status {
	e.t.Helper()
	deadline := time.Now().Add(within)
	var s status
	for time.Now().Before(deadline) {
		if s = e.status(name); s.State == state {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("%s never became %q; last %+v", name, state, s)
	return s
}

func qemuPid(t *testing.T, home, name string) int {
	b, err := os.ReadFile(filepath.Join(home, name, "qemu.pid"))
	if err != nil {
		t.Fatalf("reading qemu.pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestLifecycle is the foundation's end-to-end scenario: start, exec,
// persistence across a stop and start, reattachment after the host agent
// is killed, a VM dying under its agent, and delete.
func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	e.must("start", "--cpus", "2", "--memory", "1GiB", "--disk", "4GiB")

	out := e.must("exec", "default", "--", "uname", "-a")
	if !strings.Contains(out, "Linux") || !strings.Contains(out, "x86_64") {
		t.Fatalf("uname -a: %q", out)
	}
	if _, code := e.run("exec", "default", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Fatalf("exit code did not propagate: got %d, want 7", code)
	}
	e.fails(127, "no such file", "exec", "default", "--", "/no/such/command")
	// Huge pages only where asked for: the guest agent stays small.
	if out := e.must("exec", "default", "--", "cat", "/sys/kernel/mm/transparent_hugepage/enabled"); !strings.Contains(out, "[madvise]") {
		t.Errorf("transparent huge pages: %q, want madvise", out)
	}

	marker := fmt.Sprintf("berth-e2e-%d", time.Now().UnixNano())
	e.must("exec", "default", "--", "sh", "-c", "echo "+marker+" > /var/lib/berth/marker && sync")
	out = e.must("exec", "default", "--", "sh", "-c", "grep -w /var/lib/berth /proc/mounts")
	if !strings.Contains(out, "ext4") {
		t.Fatalf("/var/lib/berth is not the ext4 data disk: %q", out)
	}
	// stdin passes with -i.
	c := e.cmd("exec", "-i", "default", "--", "tr", "a-z", "A-Z")
	c.Stdin = strings.NewReader("piped input")
	if b, err := c.Output(); err != nil || string(b) != "PIPED INPUT" {
		t.Fatalf("exec -i: %q %v", b, err)
	}

	// Faults on a running instance.
	e.fails(1, "already running", "start")
	e.fails(1, "stop it first", "delete")
	e.fails(1, "is running: stop it to change its settings", "start", "--cpus", "1")

	e.must("stop")
	if s := e.status("default"); s.State != "Stopped" {
		t.Fatalf("after stop: %+v", s)
	}
	e.must("start")
	out = e.must("exec", "default", "--", "cat", "/var/lib/berth/marker")
	if strings.TrimSpace(out) != marker {
		t.Fatalf("the data disk lost the marker across a restart: %q, want %q", out, marker)
	}

	// Kill -9 the host agent: the VM keeps running and a new agent
	// reattaches without a reboot (same boot id).
	bootID := e.must("exec", "default", "--", "cat", "/proc/sys/kernel/random/boot_id")
	s := e.status("default")
	if s.HostagentPid == 0 {
		t.Fatalf("no host agent pid in %+v", s)
	}
	syscall.Kill(s.HostagentPid, syscall.SIGKILL)
	e.waitState("default", "Running (host agent down)", 10*time.Second)
	out = e.must("start")
	if !strings.Contains(out, "reattached") {
		t.Fatalf("start after kill -9 did not reattach: %q", out)
	}
	if got := e.must("exec", "default", "--", "cat", "/proc/sys/kernel/random/boot_id"); got != bootID {
		t.Fatalf("the VM rebooted: boot id %q, was %q", got, bootID)
	}

	// The VM dies under its host agent: status says so and start works.
	syscall.Kill(qemuPid(t, e.home, "default"), syscall.SIGKILL)
	s = e.waitState("default", "Stopped", 20*time.Second)
	if len(s.Errors) == 0 || !strings.Contains(strings.Join(s.Errors, " "), "exited unexpectedly") {
		t.Fatalf("status after the VM died: %+v", s)
	}
	e.must("start")
	out = e.must("exec", "default", "--", "cat", "/var/lib/berth/marker")
	if strings.TrimSpace(out) != marker {
		t.Fatalf("marker after a crash: %q", out)
	}

	e.must("delete", "--force")
	if _, err := os.Stat(filepath.Join(e.home, "default")); !os.IsNotExist(err) {
		t.Fatal("delete left the instance directory")
	}
	e.fails(1, "does not exist", "status")
}

// TestExecTTY drives "berth exec -it" through a real pseudo-terminal.
func TestExecTTY(t *testing.T) {
	e := newEnv(t)
	e.must("start", "--memory", "1GiB", "--disk", "2GiB")
	c := e.cmd("exec", "-it", "default", "--", "sh")
	ptmx, err := pty.StartWithSize(c, &pty.Winsize{Rows: 33, Cols: 101})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	io.WriteString(ptmx, "stty size; tty; exit 3\n")
	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() { _, err := io.Copy(&buf, ptmx); done <- err }()
	werr := c.Wait()
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

// TestStartFaults checks the errors of starts that cannot work.
func TestStartFaults(t *testing.T) {
	e := newEnv(t)
	// No QEMU on PATH: the error says how to install it.
	dir := t.TempDir()
	e.path = dir
	out, code := e.run("start", "noqemu", "--memory", "512MiB", "--disk", "1GiB")
	if code == 0 || !strings.Contains(out, "apt-get install qemu-system") {
		t.Fatalf("start without qemu: exit %d, %q", code, out)
	}
	e.path = os.Getenv("PATH")
	// No guest bundle for an arch: the error says how to build it.
	empty := t.TempDir()
	c := e.cmd("start", "nobundle", "--memory", "512MiB", "--disk", "1GiB")
	c.Env = append(c.Env, "BERTH_GUEST_DIR="+empty)
	b, _ := c.CombinedOutput()
	if c.ProcessState.ExitCode() == 0 || !strings.Contains(string(b), "make guest") {
		t.Fatalf("start without a bundle: %q", b)
	}
}

// TestArm64Smoke boots the aarch64 bundle under qemu-system-aarch64 -M virt
// and checks that its agent answers as aarch64.
func TestArm64Smoke(t *testing.T) {
	e := newEnv(t)
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("no guest bundle for", runtime.GOARCH)
	}
	out := e.must("start", "arm", "--arch", "aarch64", "--cpus", "2", "--memory", "1GiB", "--disk", "2GiB")
	if !strings.Contains(out, "aarch64") {
		t.Fatalf("start did not report an aarch64 guest: %q", out)
	}
	out = e.must("exec", "arm", "--", "uname", "-m")
	if strings.TrimSpace(out) != "aarch64" {
		t.Fatalf("uname -m = %q", out)
	}
	e.must("stop", "arm")
}
