package shim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthvm/berth/guestagent/reaper"
	"github.com/opencontainers/cgroups"
	lcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"
)

// The test binary is also the shim and the container init. As the shim
// it delays its answers to exec and attach by BERTH_SHIM_TEST_REPLY_DELAY.
func init() {
	if d, err := time.ParseDuration(os.Getenv("BERTH_SHIM_TEST_REPLY_DELAY")); err == nil {
		beforeReply = func() { time.Sleep(d) }
	}
	HandleReexec()
}

// busyboxLower builds a one-layer rootfs from the host's static busybox.
func busyboxLower(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containers need namespaces, mounts and cgroups")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs busybox (busybox-static)")
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Skipf("busybox --list: %v", err)
	}
	lower := t.TempDir()
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(lower, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(lower, "tmp"), 0o1777)
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			os.Symlink("busybox", filepath.Join(lower, "bin", a))
		}
	}
	os.WriteFile(filepath.Join(lower, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	return lower
}

type fixture struct {
	lower string
	mgr   Manager
}

func newFixture(t *testing.T) *fixture {
	lower := busyboxLower(t)
	// Overlay on the test's temp dir must work, or nothing will.
	probe := t.TempDir()
	for _, d := range []string{"u", "w", "m"} {
		os.Mkdir(filepath.Join(probe, d), 0o755)
	}
	if err := unix.Mount("overlay", filepath.Join(probe, "m"), "overlay", 0,
		fmt.Sprintf("lowerdir=%s,upperdir=%s/u,workdir=%s/w", lower, probe, probe)); err != nil {
		t.Skipf("overlayfs unusable here: %v", err)
	}
	unix.Unmount(filepath.Join(probe, "m"), 0)
	// So must making a cgroup where libcontainer will.
	cg := "/sys/fs/cgroup/pids"
	if cgroups.IsCgroup2UnifiedMode() {
		cg = "/sys/fs/cgroup"
	}
	cg = filepath.Join(cg, fmt.Sprintf("berth-probe-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil && !os.IsExist(err) {
		t.Skipf("cgroups unusable here: %v", err)
	}
	os.Remove(cg)
	// BERTH_SHIM_TEST_EXE runs the shims from a built agent instead of
	// the test binary, to check the real build (static, seccomp tag).
	return &fixture{lower: lower, mgr: NewManager(Options{Executable: os.Getenv("BERTH_SHIM_TEST_EXE")})}
}

var idSeq struct {
	sync.Mutex
	n int
}

func (f *fixture) spec(t *testing.T, args ...string) Spec {
	idSeq.Lock()
	idSeq.n++
	n := idSeq.n
	idSeq.Unlock()
	dir := t.TempDir()
	for _, d := range []string{"upper", "work", "rootfs"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	return Spec{
		ID:        fmt.Sprintf("shimtest-%d-%d", os.Getpid(), n),
		StateDir:  filepath.Join(dir, "state"),
		Rootfs:    filepath.Join(dir, "rootfs"),
		LowerBase: filepath.Dir(f.lower),
		Lowers:    []string{filepath.Base(f.lower)},
		Upper:     filepath.Join(dir, "upper"),
		Work:      filepath.Join(dir, "work"),
		Hostname:  "box",
		Process:   Process{Args: args},
		LogPath:   filepath.Join(dir, "log.json"),
	}
}

func (f *fixture) create(t *testing.T, s Spec) Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := f.mgr.Create(ctx, s)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.StateDir, shimLog))
		t.Fatalf("create: %v\nshim log:\n%s", err, log)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c.Signal(ctx, int(unix.SIGKILL))
		c.Wait(ctx)
		c.Delete(ctx)
	})
	return c
}

// run creates and starts s, waits for it and returns its exit and log.
func (f *fixture) run(t *testing.T, s Spec) (Exit, string, string) {
	t.Helper()
	c := f.create(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	exit, err := c.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	stdout, stderr := readLog(t, s.LogPath)
	return exit, stdout, stderr
}

func readLog(t *testing.T, path string) (string, string) {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatalf("reading log: %v", err)
	}
	defer fh.Close()
	var out, errb strings.Builder
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var e logEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			t.Errorf("log time %q: %v", e.Time, err)
		}
		switch e.Stream {
		case "stdout":
			out.WriteString(e.Log)
		case "stderr":
			errb.WriteString(e.Log)
		default:
			t.Errorf("log stream %q", e.Stream)
		}
	}
	return out.String(), errb.String()
}

func TestRun(t *testing.T) {
	f := newFixture(t)
	// A privileged container sees the host's devices; loop-control is
	// not among the default ones.
	hostDev := "echo dev"
	if _, err := os.Stat("/dev/loop-control"); err == nil {
		hostDev = "test -c /dev/loop-control && echo dev"
	}
	tests := []struct {
		name       string
		script     string
		mod        func(*Spec)
		code       int
		out, errs  string
		outContain string
	}{
		{name: "exit 0", script: "true"},
		{name: "exit 3", script: "exit 3", code: 3},
		{name: "streams apart", script: "echo out; echo err >&2", out: "out\n", errs: "err\n"},
		{name: "env cwd user", script: `echo "$FOO $(pwd) $(id -u):$(id -g)"`,
			mod: func(s *Spec) {
				s.Process.Env = []string{"FOO=bar"}
				s.Process.Cwd = "/tmp"
				s.Process.UID, s.Process.GID = 1000, 1001
			}, out: "bar /tmp 1000:1001\n"},
		{name: "hostname", script: "hostname", out: "box\n"},
		{name: "pid namespace", script: "echo $$; ps -o pid | sed -n 2p | tr -d ' '", out: "1\n1\n"},
		{name: "masked path", script: "test -e /proc/keys && cat /proc/keys /proc/timer_list | wc -c", out: "0\n"},
		{name: "read-only rootfs", script: "touch /x", mod: func(s *Spec) { s.Readonly = true }, code: 1, outContain: ""},
		{name: "writable rootfs", script: "touch /x && echo ok", out: "ok\n"},
		{name: "read-only sys", script: "touch /sys/x", code: 1},
		{name: "default devices", script: "ls /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty /dev/ptmx /dev/shm /dev/mqueue >/dev/null && echo x > /dev/null && head -c 3 /dev/zero | wc -c && test ! -e /dev/loop-control && echo ok", out: "3\nok\n"},
		{name: "sys ro", script: "grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1", out: "ro\n"},
		{name: "privileged", script: "grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; " + hostDev, mod: func(s *Spec) { s.Privileged = true }, out: "rw\ndev\n"},
		{name: "init ignores its own SIGKILL", script: "kill -9 $$; sh -c 'kill -9 $$'; echo $?", out: "137\n"},
	}
	data := t.TempDir()
	os.WriteFile(filepath.Join(data, "f"), []byte("data\n"), 0o644)
	hosts := filepath.Join(data, "hosts")
	os.WriteFile(hosts, []byte("10.0.0.1 peer\n"), 0o644)
	tests = append(tests, []struct {
		name       string
		script     string
		mod        func(*Spec)
		code       int
		out, errs  string
		outContain string
	}{
		{name: "mounts", script: "cat /data/f /etc/hosts; touch /data/x 2>/dev/null || echo ro; touch /scratch/x && grep -c ' /scratch tmpfs' /proc/mounts",
			mod: func(s *Spec) {
				s.Hosts = hosts
				s.Mounts = []Mount{
					{Source: data, Destination: "/data", Type: "bind", Options: []string{"ro"}},
					{Destination: "/scratch", Type: "tmpfs", Options: []string{"size=1m"}},
				}
			}, out: "data\n10.0.0.1 peer\nro\n1\n"},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := f.spec(t, "sh", "-c", tt.script)
			if tt.mod != nil {
				tt.mod(&s)
			}
			exit, out, errs := f.run(t, s)
			if exit.Code != tt.code {
				t.Errorf("exit %+v, want code %d (stdout %q stderr %q)", exit, tt.code, out, errs)
			}
			if tt.out != "" && out != tt.out {
				t.Errorf("stdout %q, want %q (stderr %q)", out, tt.out, errs)
			}
			if tt.errs != "" && errs != tt.errs {
				t.Errorf("stderr %q, want %q", errs, tt.errs)
			}
		})
	}
}

func TestCapabilitiesInContainer(t *testing.T) {
	f := newFixture(t)
	capEff := func(mod func(*Spec)) string {
		s := f.spec(t, "sh", "-c", "grep CapEff /proc/self/status")
		mod(&s)
		exit, out, errs := f.run(t, s)
		if exit.Code != 0 {
			t.Fatalf("exit %+v: %s", exit, errs)
		}
		return strings.TrimSpace(strings.TrimPrefix(out, "CapEff:"))
	}
	def := capEff(func(*Spec) {})
	priv := capEff(func(s *Spec) { s.Privileged = true })
	none := capEff(func(s *Spec) { s.CapDrop = []string{"ALL"} })
	added := capEff(func(s *Spec) { s.CapAdd = []string{"NET_ADMIN"} })
	if none != "0000000000000000" {
		t.Errorf("cap-drop ALL: CapEff %s", none)
	}
	if def == priv || def == none || def == added {
		t.Errorf("CapEff default %s privileged %s none %s +NET_ADMIN %s", def, priv, none, added)
	}
	d, _ := strconv.ParseUint(def, 16, 64)
	if d != 0xa80425fb {
		t.Errorf("default CapEff %x, want Docker's a80425fb", d)
	}
	a, _ := strconv.ParseUint(added, 16, 64)
	if a != d|1<<unix.CAP_NET_ADMIN {
		t.Errorf("+NET_ADMIN CapEff %x", a)
	}
}

func TestSignals(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		script string
		sig    syscall.Signal
		code   int
		signal int
	}{
		{"SIGKILL", "while true; do sleep 1; done", unix.SIGKILL, 137, 9},
		{"SIGTERM trapped", "trap 'exit 7' TERM; echo ready; while true; do sleep 0.1; done", unix.SIGTERM, 7, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := f.spec(t, "sh", "-c", tt.script)
			c := f.create(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if c.Pid() <= 0 {
				t.Errorf("pid %d", c.Pid())
			}
			// Let the shell install its trap.
			waitFor(t, func() bool { out, _ := readLog(t, s.LogPath); return out != "" || tt.sig == unix.SIGKILL })
			if err := c.Signal(ctx, int(tt.sig)); err != nil {
				t.Fatal(err)
			}
			exit, err := c.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if exit.Code != tt.code || exit.Signal != tt.signal {
				t.Errorf("exit %+v, want code %d signal %d", exit, tt.code, tt.signal)
			}
			if c.Pid() != 0 {
				t.Errorf("pid after exit %d", c.Pid())
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPauseResume(t *testing.T) {
	f := newFixture(t)
	s := f.spec(t, "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/c; sleep 0.05; done")
	c := f.create(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	counter := func() string {
		b, _ := os.ReadFile(filepath.Join(s.Upper, "tmp/c"))
		return strings.TrimSpace(string(b))
	}
	waitFor(t, func() bool { return counter() != "" })
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	v1 := counter()
	time.Sleep(500 * time.Millisecond)
	if v2 := counter(); v1 != v2 {
		t.Errorf("counter moved while paused: %s -> %s", v1, v2)
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return counter() != v1 })
	pids, err := c.Top(ctx)
	if err != nil || len(pids) == 0 || !contains(pids, c.Pid()) {
		t.Errorf("top %v (pid %d): %v", pids, c.Pid(), err)
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUUsageNs == 0 || st.PidsCurrent == 0 || st.SystemCPUNs == 0 {
		t.Errorf("stats look empty: %+v", st)
	}
	// Killing a paused container must not leave it frozen.
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "x", Process{Args: []string{"true"}}, Streams{}); err == nil {
		t.Error("exec in a paused container: no error")
	}
	if err := c.Signal(ctx, int(unix.SIGKILL)); err != nil {
		t.Fatal(err)
	}
	if exit, err := c.Wait(ctx); err != nil || exit.Signal != int(unix.SIGKILL) {
		t.Errorf("exit %+v: %v", exit, err)
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestExec(t *testing.T) {
	f := newFixture(t)
	s := f.spec(t, "sleep", "100")
	c := f.create(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		p         Process
		stdin     string
		code      int
		out, errs string
	}{
		{name: "exit code", p: Process{Args: []string{"sh", "-c", "echo hi; echo oops >&2; exit 5"}}, code: 5, out: "hi\n", errs: "oops\n"},
		{name: "user env cwd", p: Process{Args: []string{"sh", "-c", `echo $A $(pwd) $(id -u)`}, Env: []string{"A=b"}, Cwd: "/etc", UID: 7}, out: "b /etc 7\n"},
		{name: "stdin", p: Process{Args: []string{"cat"}}, stdin: "piped\n", out: "piped\n"},
		{name: "tty", p: Process{Args: []string{"stty", "size"}, Tty: true, Width: 90, Height: 33}, out: "33 90\r\n"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			st := Streams{Stdout: &out, Stderr: &errb}
			if tt.stdin != "" {
				st.Stdin = io.NopCloser(strings.NewReader(tt.stdin))
			}
			e, err := c.Exec(ctx, fmt.Sprintf("e%d", i), tt.p, st)
			if err != nil {
				t.Fatal(err)
			}
			if e.Pid() <= 0 {
				t.Errorf("exec pid %d", e.Pid())
			}
			exit, err := e.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if exit.Code != tt.code || out.String() != tt.out || (tt.errs != "" && errb.String() != tt.errs) {
				t.Errorf("exit %+v stdout %q stderr %q; want %d %q %q", exit, out.String(), errb.String(), tt.code, tt.out, tt.errs)
			}
		})
	}
}

// TestReplyBeforeOutput holds the shim's answers to exec and attach back
// while the process already writes: the client must still read the
// answer first, and then all of the output.
func TestReplyBeforeOutput(t *testing.T) {
	f := newFixture(t)
	t.Setenv("BERTH_SHIM_TEST_REPLY_DELAY", "300ms")
	s := f.spec(t, "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo tick; sleep 0.1; done; sleep 100")
	c := f.create(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	e, err := c.Exec(ctx, "e1", Process{Args: []string{"sh", "-c", "echo out; echo err >&2"}}, Streams{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	if exit, err := e.Wait(ctx); err != nil || exit.Code != 0 || out.String() != "out\n" || errb.String() != "err\n" {
		t.Errorf("exec: exit %+v, %v, stdout %q stderr %q", exit, err, out.String(), errb.String())
	}

	var ticks syncBuffer
	actx, acancel := context.WithCancel(ctx)
	attachErr := make(chan error, 1)
	go func() { attachErr <- c.Attach(actx, Streams{Stdout: &ticks}) }()
	for !strings.Contains(ticks.String(), "tick") {
		select {
		case err := <-attachErr:
			t.Fatalf("attach ended before any output: %v", err)
		case <-ctx.Done():
			t.Fatal("no output through attach")
		case <-time.After(50 * time.Millisecond):
		}
	}
	acancel()
	if err := <-attachErr; !errors.Is(err, context.Canceled) {
		t.Errorf("attach: %v (output %q)", err, ticks.String())
	}
}

// syncBuffer is written by the attach and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTTYAttachResize(t *testing.T) {
	f := newFixture(t)
	s := f.spec(t, "sh", "-c", "read x; stty size; read y; stty size")
	s.Process.Tty, s.Process.Width, s.Process.Height = true, 100, 30
	s.OpenStdin = true
	c := f.create(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inR, inW := io.Pipe()
	var out syncBuffer
	attached := make(chan struct{})
	attachErr := make(chan error, 1)
	go func() {
		attachErr <- c.Attach(ctx, Streams{Stdin: inR, Stdout: &out, OnAttached: func() { close(attached) }})
	}()
	<-attached
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	io.WriteString(inW, "a\n")
	waitFor(t, func() bool { return strings.Contains(out.String(), "30 100") })
	if err := c.Resize(ctx, 120, 40); err != nil {
		t.Fatal(err)
	}
	io.WriteString(inW, "b\n")
	waitFor(t, func() bool { return strings.Contains(out.String(), "40 120") })
	exit, err := c.Wait(ctx)
	if err != nil || exit.Code != 0 {
		t.Errorf("exit %+v: %v", exit, err)
	}
	if err := <-attachErr; err != nil {
		t.Errorf("attach: %v", err)
	}
	inW.Close()
}

func TestRestore(t *testing.T) {
	f := newFixture(t)
	s := f.spec(t, "sh", "-c", "echo started; while true; do sleep 1; done")
	c := f.create(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := c.Pid()
	// A new engine knows only the state directory.
	m2 := NewManager(Options{})
	c2, err := m2.Restore(ctx, s.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if c2.ID() != s.ID || c2.Pid() != pid || pid <= 0 {
		t.Fatalf("restored %s pid %d, want %s pid %d", c2.ID(), c2.Pid(), s.ID, pid)
	}
	if err := unix.Kill(pid, 0); err != nil {
		t.Fatalf("container process gone: %v", err)
	}
	if err := c2.Signal(ctx, int(unix.SIGKILL)); err != nil {
		t.Fatal(err)
	}
	exit, err := c2.Wait(ctx)
	if err != nil || exit.Code != 137 {
		t.Fatalf("exit %+v: %v", exit, err)
	}
	if err := c2.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	// After Delete the shim is gone, and a restore finds the record.
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(s.StateDir, socketFile)); return os.IsNotExist(err) })
	c3, err := m2.Restore(ctx, s.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := c3.Wait(ctx); err != nil || e.Code != 137 {
		t.Errorf("restored after delete: %+v %v", e, err)
	}
}

func TestOOM(t *testing.T) {
	f := newFixture(t)
	s := f.spec(t, "dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	s.Resources.MemoryBytes = 64 << 20
	s.Resources.MemorySwap = 64 << 20
	c := f.create(t, s)
	for _, w := range Warnings(c) {
		if strings.Contains(w, "memory limit") {
			t.Skipf("memory limits unavailable: %s", w)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	exit, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !exit.OOMKilled || exit.Code != 137 {
		t.Errorf("exit %+v, want OOMKilled code 137 (warnings %v)", exit, Warnings(c))
	}
}

func TestSeccomp(t *testing.T) {
	f := newFixture(t)
	if !lcseccomp.Enabled {
		t.Skip("built without seccomp support: run with -tags seccomp")
	}
	tests := []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"default profile", func(*Spec) {}, "2"},
		{"unconfined", func(s *Spec) { s.SeccompUnconfined = true }, "0"},
		{"privileged", func(s *Spec) { s.Privileged = true }, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := f.spec(t, "sh", "-c", "grep '^Seccomp:' /proc/self/status")
			tt.mod(&s)
			exit, out, errs := f.run(t, s)
			if exit.Code != 0 {
				t.Fatalf("exit %+v: %s", exit, errs)
			}
			if got := strings.TrimSpace(strings.TrimPrefix(out, "Seccomp:")); got != tt.want {
				t.Errorf("Seccomp mode %q, want %s", got, tt.want)
			}
		})
	}
}

// TestLifecycle covers what the engine does around runs: delete a
// container that was created but never started, create one again in the
// same state directory after Delete (docker start of a stopped
// container), and start shims through a Reaper, as PID 1 does.
func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s := f.spec(t, "sh", "-c", "echo run >> /tmp/runs; cat /tmp/runs | wc -l; exit 4")
	c := f.create(t, s)
	if err := c.Delete(ctx); err != nil {
		t.Fatalf("delete of created container: %v", err)
	}

	r := reaper.New(nil)
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- r.Run(rctx) }()
	defer func() { rcancel(); <-rdone }()
	m := NewManager(Options{Executable: os.Getenv("BERTH_SHIM_TEST_EXE"), Reaper: r})
	for run := 1; run <= 2; run++ {
		c, err := m.Create(ctx, s)
		if err != nil {
			t.Fatalf("run %d: create: %v", run, err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		exit, err := c.Wait(ctx)
		if err != nil || exit.Code != 4 {
			t.Fatalf("run %d: exit %+v: %v", run, exit, err)
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatalf("run %d: delete: %v", run, err)
		}
	}
	out, _ := readLog(t, s.LogPath)
	if out != "1\n2\n" {
		t.Errorf("log %q, want two runs on the same writable layer", out)
	}
	// The shims end after Delete, and the reaper collects them.
	waitFor(t, func() bool { return r.Pending() == 0 })
}

// detachingStdin yields its data, then fails as a client that detached.
type detachingStdin struct {
	data string
	hold chan struct{} // closed to let the error through
}

func (d *detachingStdin) Read(p []byte) (int, error) {
	if d.data != "" {
		n := copy(p, d.data)
		d.data = d.data[n:]
		return n, nil
	}
	<-d.hold
	return 0, errors.New("client detached")
}

func (d *detachingStdin) Close() error { return nil }

// TestStdinDetach checks that only the end of the client's input closes
// a process's stdin: a client that detaches leaves it open, the exec
// running and the container's stdin ready for the next attach.
func TestStdinDetach(t *testing.T) {
	f := newFixture(t)
	s := f.spec(t, "sh", "-c", "cat; echo closed")
	s.OpenStdin, s.StdinOnce = true, true
	c := f.create(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The first attach sends a line and detaches.
	var out1 syncBuffer
	in1 := &detachingStdin{data: "one\n", hold: make(chan struct{})}
	attached := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- c.Attach(ctx, Streams{Stdin: in1, Stdout: &out1, OnAttached: func() { close(attached) }})
	}()
	<-attached
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return out1.String() == "one\n" })
	close(in1.hold)
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "client detached") {
			t.Errorf("detached attach returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the attach did not end when its client detached")
	}
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	exit, err := c.Wait(wctx)
	wcancel()
	if err == nil {
		t.Fatalf("the container's stdin was closed by a detach: it exited %+v", exit)
	}

	// An exec whose client detaches keeps running with its stdin open.
	in2 := &detachingStdin{data: "two\n", hold: make(chan struct{})}
	var eout syncBuffer
	e, err := c.Exec(ctx, "ex", Process{Args: []string{"sh", "-c", "cat; echo exec-closed"}}, Streams{Stdin: in2, Stdout: &eout})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return eout.String() == "two\n" })
	close(in2.hold)
	wctx, wcancel = context.WithTimeout(ctx, time.Second)
	_, err = e.Wait(wctx)
	wcancel()
	if err == nil {
		t.Fatal("the exec ended when its client detached")
	}
	if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", e.Pid())); err != nil || !strings.Contains(string(cmd), "exec-closed") {
		t.Errorf("the exec is not running after the detach: %q %v", cmd, err)
	}
	e.Signal(ctx, int(unix.SIGKILL))

	// The next attach's end of input closes stdin (StdinOnce), and the
	// attach returns only once the output ended: "closed" is not lost.
	var out3 syncBuffer
	if err := c.Attach(ctx, Streams{Stdin: io.NopCloser(strings.NewReader("three\n")), Stdout: &out3}); err != nil {
		t.Errorf("attach: %v", err)
	}
	if out3.String() != "three\nclosed\n" {
		t.Errorf("output after the end of input %q, want %q", out3.String(), "three\nclosed\n")
	}
	if exit, err := c.Wait(ctx); err != nil || exit.Code != 0 {
		t.Errorf("exit %+v: %v", exit, err)
	}
}
