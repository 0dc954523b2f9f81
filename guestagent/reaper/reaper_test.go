//go:build linux

package reaper

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startReaper makes the test process a subreaper (as native mode does) and
// runs a Reaper for the length of the test. Tests here must not run in
// parallel: one process can have only one reaper.
func startReaper(t *testing.T) *Reaper {
	t.Helper()
	if err := SetSubreaper(); err != nil {
		t.Fatalf("SetSubreaper: %v", err)
	}
	r := New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

func run(t *testing.T, r *Reaper, cmd *exec.Cmd) Status {
	t.Helper()
	if err := r.Start(cmd); err != nil {
		t.Fatalf("Start %v: %v", cmd.Args, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := r.Wait(ctx, cmd)
	if err != nil {
		t.Fatalf("Wait %v: %v", cmd.Args, err)
	}
	return st
}

func TestExitStatuses(t *testing.T) {
	r := startReaper(t)
	tests := []struct {
		name   string
		script string
		code   int
		signal syscall.Signal
	}{
		{"zero", "exit 0", 0, 0},
		{"one", "exit 1", 1, 0},
		{"max", "exit 255", 255, 0},
		{"term", "kill -TERM $$", 128 + int(syscall.SIGTERM), syscall.SIGTERM},
		{"kill", "kill -KILL $$", 128 + int(syscall.SIGKILL), syscall.SIGKILL},
		{"segv-like", "kill -USR1 $$", 128 + int(syscall.SIGUSR1), syscall.SIGUSR1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := run(t, r, exec.Command("sh", "-c", tt.script))
			if st.Code != tt.code || st.Signal != tt.signal {
				t.Errorf("got code %d signal %v, want code %d signal %v", st.Code, st.Signal, tt.code, tt.signal)
			}
			if st.Pid <= 0 {
				t.Errorf("pid %d", st.Pid)
			}
		})
	}
}

// TestManyConcurrent races many short commands, each with its own exit
// code, against the reaping loop; a lost or misrouted status shows up as a
// wrong code or a hang.
func TestManyConcurrent(t *testing.T) {
	r := startReaper(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := i % 256
			cmd := exec.Command("sh", "-c", "exit "+strconv.Itoa(want))
			if err := r.Start(cmd); err != nil {
				errs <- fmt.Errorf("start %d: %w", i, err)
				return
			}
			pid := cmd.Process.Pid
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			st, err := r.Wait(ctx, cmd)
			if err != nil {
				errs <- fmt.Errorf("wait %d: %w", i, err)
				return
			}
			if st.Code != want || st.Pid != pid {
				errs <- fmt.Errorf("command %d: got %v, want code %d pid %d", i, st, want, pid)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p := r.Pending(); p != 0 {
		t.Errorf("%d processes still registered", p)
	}
}

// TestStdioThroughWriters checks that Wait finishes os/exec's copying
// goroutines, so output written to a non-file writer is complete.
func TestStdioThroughWriters(t *testing.T) {
	r := startReaper(t)
	var out, errb bytes.Buffer
	cmd := exec.Command("sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; echo err >&2; exit 7")
	cmd.Stdout, cmd.Stderr = &out, &errb
	st := run(t, r, cmd)
	if st.Code != 7 {
		t.Errorf("code %d, want 7", st.Code)
	}
	if out.Len() != 300000 || strings.Trim(out.String(), "x") != "" {
		t.Errorf("stdout has %d bytes, want 300000 x", out.Len())
	}
	if errb.String() != "err\n" {
		t.Errorf("stderr %q", errb.String())
	}
}

// TestOrphan double-forks: the grandchild outlives its parent, is
// reparented to the test process (a subreaper) and must be reaped as an
// orphan, while a registered command running at the same time still gets
// its own status.
func TestOrphan(t *testing.T) {
	r := startReaper(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	before := r.Orphans()

	other := exec.Command("sh", "-c", "sleep 0.5; exit 42")
	if err := r.Start(other); err != nil {
		t.Fatal(err)
	}
	st := run(t, r, exec.Command("sh", "-c", "sh -c 'echo $$ > "+pidFile+".tmp; mv "+pidFile+".tmp "+pidFile+"; sleep 0.2; exit 3' & exit 5"))
	if st.Code != 5 {
		t.Errorf("parent code %d, want 5", st.Code)
	}

	deadline := time.Now().Add(10 * time.Second)
	var orphanPid int
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil {
			orphanPid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if orphanPid == 0 {
		t.Fatal("grandchild never wrote its pid")
	}
	for r.Orphans() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r.Orphans() == before {
		t.Fatal("orphan was not reaped")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", orphanPid)); err == nil {
		t.Errorf("orphan %d still exists (zombie?)", orphanPid)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ost, err := r.Wait(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if ost.Code != 42 {
		t.Errorf("concurrent command code %d, want 42", ost.Code)
	}
}

func TestWaitErrors(t *testing.T) {
	r := startReaper(t)
	if _, err := r.Wait(context.Background(), exec.Command("true")); err == nil {
		t.Error("Wait on an unstarted command succeeded")
	}
	if err := r.Start(exec.Command("/nonexistent/berth-test")); err == nil {
		t.Error("Start of a missing binary succeeded")
	}
	if p := r.Pending(); p != 0 {
		t.Errorf("failed start left %d registered", p)
	}

	cmd := exec.Command("sleep", "10")
	if err := r.Start(cmd); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Wait(ctx, cmd); err == nil {
		t.Error("Wait ignored its context")
	}
	_ = cmd.Process.Kill()
	st, err := r.Wait(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if st.Signal != syscall.SIGKILL {
		t.Errorf("got %v, want SIGKILL", st)
	}
	if _, err := r.Wait(context.Background(), cmd); err == nil {
		t.Error("second Wait succeeded")
	}
}

func TestSecondRunRefused(t *testing.T) {
	r := startReaper(t)
	time.Sleep(10 * time.Millisecond) // let the first Run take its place
	if err := r.Run(context.Background()); err == nil {
		t.Error("second Run was accepted")
	}
}

func TestSignal(t *testing.T) {
	r := startReaper(t)
	cmd := exec.Command("sh", "-c", "sleep 10 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := r.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := r.SignalGroup(cmd, syscall.SIGTERM); err != nil {
		t.Fatalf("SignalGroup: %v", err)
	}
	st, err := r.Wait(context.Background(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if st.Signal != syscall.SIGTERM {
		t.Errorf("got %v, want SIGTERM", st)
	}
	if err := r.Signal(cmd, syscall.SIGTERM); err == nil {
		t.Error("Signal after Wait succeeded")
	}

	done := exec.Command("true")
	if err := r.Start(done); err != nil {
		t.Fatal(err)
	}
	for r.Pending() != 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.Signal(done, syscall.SIGKILL); err != os.ErrProcessDone {
		t.Errorf("Signal to a reaped process: %v, want ErrProcessDone", err)
	}
	if _, err := r.Wait(context.Background(), done); err != nil {
		t.Fatal(err)
	}
}
