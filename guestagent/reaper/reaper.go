//go:build unix

// Package reaper owns the reaping of child processes for the guest agent.
//
// As PID 1 (or as a child subreaper in native mode) the agent inherits every
// orphan in the system, and orphans become zombies until someone waits for
// them. A plain wait(-1) loop would also steal the exit status of processes
// that os/exec (and later the engine) is waiting for. So every process the
// agent starts goes through Reaper.Start and Reaper.Wait: Start registers
// the pid under the same lock the reaping loop takes, held across
// cmd.Start, so no exit can be reaped before it has a waiter; the loop
// reaps everything with wait4(-1, WNOHANG) on SIGCHLD, hands registered
// statuses to their waiters and discards the orphans'.
//
// The package does not start processes by itself, choose their stdio or
// kill them; and nothing else in the process may call wait on children
// while a Reaper runs.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Status is how a process ended.
type Status struct {
	Pid int
	// Code is the exit code, or 128+signal when a signal killed the
	// process, as a shell reports it.
	Code int
	// Signal is the signal that killed the process, 0 when it exited.
	Signal syscall.Signal
	// CoreDumped is set when the kernel wrote a core dump.
	CoreDumped bool
}

func (s Status) String() string {
	if s.Signal != 0 {
		return fmt.Sprintf("pid %d killed by %v (code %d)", s.Pid, s.Signal, s.Code)
	}
	return fmt.Sprintf("pid %d exited %d", s.Pid, s.Code)
}

func statusOf(pid int, ws unix.WaitStatus) Status {
	st := Status{Pid: pid}
	switch {
	case ws.Exited():
		st.Code = ws.ExitStatus()
	case ws.Signaled():
		st.Signal = ws.Signal()
		st.Code = 128 + int(st.Signal)
		st.CoreDumped = ws.CoreDump()
	default:
		// Stopped or continued cannot come back without WUNTRACED or
		// WCONTINUED; keep the raw value visible if it ever does.
		st.Code = -1
	}
	return st
}

// Reaper reaps all children of the process and routes exit statuses to
// the waiters registered through Start.
type Reaper struct {
	log *slog.Logger

	mu sync.Mutex
	// running maps the pid of a started, not yet reaped process to the
	// channel its status goes to. An entry leaves when the status is
	// delivered, so a reused pid never meets a stale entry.
	running map[int]chan Status
	// byCmd finds the channel for Wait; an entry leaves when Wait returns.
	byCmd   map[*exec.Cmd]chan Status
	orphans uint64
	runs    bool
}

// New returns a Reaper. Run must be running for Wait to return.
func New(log *slog.Logger) *Reaper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reaper{
		log:     log,
		running: map[int]chan Status{},
		byCmd:   map[*exec.Cmd]chan Status{},
	}
}

// Run reaps children until ctx is done. It must run for as long as
// processes are started through the Reaper; only one Run may be active.
func (r *Reaper) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.runs {
		r.mu.Unlock()
		return errors.New("reaper: Run is already active")
	}
	r.runs = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.runs = false
		r.mu.Unlock()
	}()

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	defer signal.Stop(sigc)

	// Children may have exited before Notify was in place.
	r.reap()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sigc:
			r.reap()
		}
	}
}

// reap collects every exited child. Holding mu for the whole pass is what
// makes Start safe: a child whose Start holds mu cannot be reaped until it
// is registered.
func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			// ECHILD: no children at all; 0: none has exited yet.
			break
		}
		st := statusOf(pid, ws)
		if ch, ok := r.running[pid]; ok {
			delete(r.running, pid)
			ch <- st // buffered, never blocks
			continue
		}
		r.orphans++
		r.log.Debug("reaped orphan", "pid", pid, "status", st.String())
	}
}

// Start starts cmd and registers it for Wait. Use it instead of cmd.Start
// for every process the agent creates, then call Wait (not cmd.Wait).
func (r *Reaper) Start(cmd *exec.Cmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	ch := make(chan Status, 1)
	r.running[cmd.Process.Pid] = ch
	r.byCmd[cmd] = ch
	return nil
}

// Wait waits for a command started with Start to end and returns its
// status. It then finishes what cmd.Wait would have done (copying
// goroutines for non-file stdio, closing pipes) and releases the process.
// The error is about that cleanup, such as a failed copy; the status is
// valid whenever ctx was not the reason to return. After Wait,
// cmd.Process.Pid is -1 (released); use Status.Pid.
func (r *Reaper) Wait(ctx context.Context, cmd *exec.Cmd) (Status, error) {
	r.mu.Lock()
	ch, ok := r.byCmd[cmd]
	r.mu.Unlock()
	if !ok {
		return Status{}, errors.New("reaper: command was not started with Start, or already waited for")
	}
	var st Status
	select {
	case st = <-ch:
	case <-ctx.Done():
		return Status{}, fmt.Errorf("waiting for pid %d: %w", cmd.Process.Pid, ctx.Err())
	}
	r.mu.Lock()
	delete(r.byCmd, cmd)
	r.mu.Unlock()

	// The child is reaped already, so cmd.Wait's own wait fails with
	// ECHILD. Its pidfd (Linux 5.4+) keeps it from touching a reused pid.
	// What matters is the rest: it joins the stdio goroutines and closes
	// the parent's pipe ends.
	err := cmd.Wait()
	_ = cmd.Process.Release()
	var ee *exec.ExitError
	if err == nil || errors.Is(err, syscall.ECHILD) || errors.As(err, &ee) {
		return st, nil
	}
	return st, fmt.Errorf("finishing pid %d: %w", st.Pid, err)
}

// Signal sends sig to a command started with Start, unless it has been
// reaped already (then it returns os.ErrProcessDone). The check and the
// kill happen under the reaping lock, so the signal cannot reach another
// process that reused the pid.
func (r *Reaper) Signal(cmd *exec.Cmd, sig syscall.Signal) error {
	return r.signal(cmd, sig, false)
}

// SignalGroup is Signal for the process group the command leads (it must
// have been started with Setsid or Setpgid).
func (r *Reaper) SignalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	return r.signal(cmd, sig, true)
}

func (r *Reaper) signal(cmd *exec.Cmd, sig syscall.Signal, group bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.byCmd[cmd]
	if !ok || cmd.Process == nil {
		return errors.New("reaper: command was not started with Start, or already waited for")
	}
	pid := cmd.Process.Pid
	if r.running[pid] != ch {
		return os.ErrProcessDone
	}
	if group {
		pid = -pid
	}
	if err := unix.Kill(pid, sig); err != nil {
		return fmt.Errorf("sending %v to %d: %w", sig, pid, err)
	}
	return nil
}

// Orphans reports how many statuses of unregistered processes were
// discarded.
func (r *Reaper) Orphans() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans
}

// Pending reports how many started processes have not been reaped yet.
func (r *Reaper) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.running)
}
