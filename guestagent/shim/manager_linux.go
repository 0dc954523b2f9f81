package shim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berthvm/berth/guestagent/reaper"
	"github.com/opencontainers/runc/libcontainer"
)

// Options configure a Manager.
type Options struct {
	// Executable is the binary that serves "shim" and libcontainer's
	// "init" (see HandleReexec); default: this process's executable.
	Executable string
	// Reaper starts and waits for the shims when this process reaps
	// all children (PID 1, or a subreaper); nil uses os/exec alone.
	Reaper *reaper.Reaper
	Log    *slog.Logger
}

type manager struct {
	opts Options
}

// NewManager returns a Manager that runs each container under its own
// shim process.
func NewManager(opts Options) Manager {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &manager{opts: opts}
}

// Warnings returns the limits the host could not apply to the container
// (cgroup v1 hosts, a build without seccomp), as Docker reports them.
func Warnings(c Container) []string {
	if sc, ok := c.(*client); ok {
		return sc.warnings
	}
	return nil
}

func (m *manager) Create(ctx context.Context, spec Spec) (Container, error) {
	if spec.ID == "" || spec.StateDir == "" {
		return nil, errors.New("creating container: spec needs an ID and a state directory")
	}
	if err := os.MkdirAll(spec.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("creating container state dir: %w", err)
	}
	// A container created again after a Delete (docker start of a
	// stopped container) must not show its previous run's end.
	for _, f := range []string{exitFile, stateFile} {
		if err := os.Remove(filepath.Join(spec.StateDir, f)); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("clearing previous run: %w", err)
		}
	}
	if err := writeJSONAtomic(filepath.Join(spec.StateDir, specFile), spec); err != nil {
		return nil, fmt.Errorf("creating container: %w", err)
	}
	exe := m.opts.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("finding the shim executable: %w", err)
		}
	}
	logf, err := os.OpenFile(filepath.Join(spec.StateDir, shimLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening shim log: %w", err)
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("making shim ready pipe: %w", err)
	}
	defer readyR.Close()
	cmd := exec.Command(exe, "shim", "--state-dir", spec.StateDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW}
	// Its own session: killing the engine's process group leaves the
	// shim and its container running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = append(os.Environ(), "BERTH_SHIM_READY_FD=3")
	if m.opts.Reaper != nil {
		err = m.opts.Reaper.Start(cmd)
	} else {
		err = cmd.Start()
	}
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("starting shim: %w", err)
	}
	go func() {
		if m.opts.Reaper != nil {
			m.opts.Reaper.Wait(context.Background(), cmd)
		} else {
			cmd.Wait()
		}
	}()

	stop := context.AfterFunc(ctx, func() { readyR.SetDeadline(time.Now()) })
	var r response
	err = readLine(bufio.NewReader(readyR), &r)
	stop()
	if err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("waiting for shim of %s (see %s): %w", spec.ID, filepath.Join(spec.StateDir, shimLog), err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("creating container %s: %s", spec.ID, r.Error)
	}
	return m.open(ctx, spec)
}

func (m *manager) Restore(ctx context.Context, stateDir string) (Container, error) {
	var spec Spec
	if err := readJSON(filepath.Join(stateDir, specFile), &spec); err != nil {
		return nil, fmt.Errorf("restoring container: %w", err)
	}
	spec.StateDir = stateDir
	return m.open(ctx, spec)
}

func (m *manager) open(ctx context.Context, spec Spec) (*client, error) {
	c := &client{spec: spec, sock: filepath.Join(spec.StateDir, socketFile), log: m.opts.Log}
	var st shimState
	if err := readJSON(filepath.Join(spec.StateDir, stateFile), &st); err == nil {
		c.pid, c.warnings = st.Pid, st.Warnings
	}
	r, err := c.call(ctx, request{Op: opState})
	if err == nil {
		c.pid = r.Pid
		if r.Exit != nil {
			c.setExit(*r.Exit)
		}
		return c, nil
	}
	// The shim is gone: the container ended with it, or before it.
	c.gone = true
	var exit Exit
	if rerr := readJSON(filepath.Join(spec.StateDir, exitFile), &exit); rerr != nil {
		exit = Exit{Code: 255, Error: "the container's shim ended without recording an exit status"}
	}
	c.setExit(exit)
	return c, nil
}

// client is a Container seen through its shim's socket.
type client struct {
	spec     Spec
	sock     string
	log      *slog.Logger
	warnings []string
	gone     bool // the shim is not running (restored after it ended)

	mu     sync.Mutex
	pid    int
	exit   *Exit
	closed bool
}

var _ Container = (*client)(nil)

func (c *client) ID() string { return c.spec.ID }

func (c *client) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exit != nil {
		return 0
	}
	return c.pid
}

func (c *client) setExit(e Exit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.exit = &e
}

func (c *client) dial(ctx context.Context, req request) (*net.UnixConn, *bufio.Reader, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.sock)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the shim of %s: %w", c.spec.ID, err)
	}
	uc := conn.(*net.UnixConn)
	if err := writeLine(uc, req); err != nil {
		uc.Close()
		return nil, nil, fmt.Errorf("calling the shim of %s: %w", c.spec.ID, err)
	}
	return uc, bufio.NewReader(uc), nil
}

// call makes one request and reads its answer; cancelling ctx drops the
// connection, which the shim sees as a client gone.
func (c *client) call(ctx context.Context, req request) (response, error) {
	conn, br, err := c.dial(ctx, req)
	if err != nil {
		return response{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	var r response
	if err := readLine(br, &r); err != nil {
		if ctx.Err() != nil {
			return response{}, ctx.Err()
		}
		return response{}, fmt.Errorf("calling the shim of %s (%s): %w", c.spec.ID, req.Op, err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("%s %s: %s", req.Op, c.spec.ID, r.Error)
	}
	return r, nil
}

func (c *client) simple(ctx context.Context, req request) error {
	_, err := c.call(ctx, req)
	return err
}

func (c *client) Start(ctx context.Context) error { return c.simple(ctx, request{Op: opStart}) }
func (c *client) Pause(ctx context.Context) error { return c.simple(ctx, request{Op: opPause}) }
func (c *client) Resume(ctx context.Context) error {
	return c.simple(ctx, request{Op: opResume})
}

func (c *client) Signal(ctx context.Context, sig int) error {
	return c.simple(ctx, request{Op: opSignal, Signal: sig})
}

func (c *client) Resize(ctx context.Context, w, h uint16) error {
	return c.simple(ctx, request{Op: opResize, Width: w, Height: h})
}

func (c *client) Wait(ctx context.Context) (Exit, error) {
	c.mu.Lock()
	if c.exit != nil {
		e := *c.exit
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()
	r, err := c.call(ctx, request{Op: opWait})
	if err != nil {
		if ctx.Err() != nil {
			return Exit{}, ctx.Err()
		}
		// The shim died under us: its record is all there is.
		var exit Exit
		if rerr := readJSON(filepath.Join(c.spec.StateDir, exitFile), &exit); rerr != nil {
			return Exit{}, err
		}
		c.setExit(exit)
		return exit, nil
	}
	if r.Exit == nil {
		return Exit{}, fmt.Errorf("waiting for %s: the shim sent no exit status", c.spec.ID)
	}
	c.setExit(*r.Exit)
	return *r.Exit, nil
}

func (c *client) Stats(ctx context.Context) (Stats, error) {
	r, err := c.call(ctx, request{Op: opStats})
	if err != nil {
		return Stats{}, err
	}
	if r.Stats == nil {
		return Stats{}, fmt.Errorf("stats of %s: the shim sent none", c.spec.ID)
	}
	return *r.Stats, nil
}

func (c *client) Top(ctx context.Context) ([]int, error) {
	r, err := c.call(ctx, request{Op: opTop})
	if err != nil {
		return nil, err
	}
	return r.Pids, nil
}

func (c *client) Delete(ctx context.Context) error {
	if c.gone {
		return c.cleanupDead()
	}
	err := c.simple(ctx, request{Op: opDelete})
	if err != nil && !isConnErr(err) {
		return err
	}
	if err != nil {
		return c.cleanupDead()
	}
	return nil
}

func isConnErr(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// cleanupDead removes what a shim that died without Delete left behind:
// libcontainer's state and cgroup, and the rootfs mount.
func (c *client) cleanupDead() error {
	var errs []error
	if ctr, err := libcontainer.Load(filepath.Join(c.spec.StateDir, runcRoot), c.spec.ID); err == nil {
		if err := ctr.Destroy(); err != nil {
			errs = append(errs, fmt.Errorf("destroying container %s: %w", c.spec.ID, err))
		}
	}
	if err := unmountRootfs(c.spec); err != nil {
		errs = append(errs, err)
	}
	os.Remove(c.sock)
	return errors.Join(errs...)
}

// stream runs an attach-like connection: stdin goes up, frames come down
// until the shim closes. Only io.EOF from s.Stdin closes the process's
// stdin; any other error is the client detaching: the process's stdin
// stays open, and the stream ends at once with that error. When the
// output ends, s.Stdin is closed, which unblocks its pending read.
func stream(conn *net.UnixConn, br *bufio.Reader, s Streams, framed bool) error {
	if s.Stdin == nil {
		conn.CloseWrite()
		return readFrames(br, s.Stdout, s.Stderr)
	}
	detached := make(chan error, 1)
	go func() {
		if err := sendStdin(conn, conn.CloseWrite, s.Stdin, framed); err != nil {
			detached <- err
		}
	}()
	out := make(chan error, 1)
	go func() { out <- readFrames(br, s.Stdout, s.Stderr) }()
	select {
	case err := <-out:
		s.Stdin.Close()
		return err
	case err := <-detached:
		conn.Close()
		<-out
		return fmt.Errorf("reading stdin: %w", err)
	}
}

func (c *client) Attach(ctx context.Context, s Streams) error {
	req := request{Op: opAttach, Stdin: s.Stdin != nil, Stdout: s.Stdout != nil, Stderr: s.Stderr != nil, StdinFrames: s.Stdin != nil}
	conn, br, err := c.dial(ctx, req)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var r response
	if err := readLine(br, &r); err != nil {
		return fmt.Errorf("attaching to %s: %w", c.spec.ID, err)
	}
	if r.Error != "" {
		return fmt.Errorf("attaching to %s: %s", c.spec.ID, r.Error)
	}
	if s.OnAttached != nil {
		s.OnAttached()
	}
	err = stream(conn, br, s, r.StdinFrames)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("attached to %s: %w", c.spec.ID, err)
	}
	return nil
}

func (c *client) Exec(ctx context.Context, id string, p Process, s Streams) (ExecProcess, error) {
	req := request{Op: opExec, ExecID: id, Process: &p, Stdin: s.Stdin != nil, StdinFrames: s.Stdin != nil}
	conn, br, err := c.dial(ctx, req)
	if err != nil {
		return nil, err
	}
	var r response
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	err = readLine(br, &r)
	stop()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("exec in %s: %w", c.spec.ID, err)
	}
	if r.Error != "" {
		conn.Close()
		return nil, fmt.Errorf("exec in %s: %s", c.spec.ID, r.Error)
	}
	e := &execClient{c: c, id: id, pid: r.Pid, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		defer conn.Close()
		e.streamErr = stream(conn, br, s, r.StdinFrames)
	}()
	return e, nil
}

type execClient struct {
	c         *client
	id        string
	pid       int
	done      chan struct{} // the output has been delivered
	streamErr error
}

func (e *execClient) Pid() int { return e.pid }

func (e *execClient) Resize(ctx context.Context, w, h uint16) error {
	return e.c.simple(ctx, request{Op: opExecRsz, ExecID: e.id, Width: w, Height: h})
}

func (e *execClient) Signal(ctx context.Context, sig int) error {
	return e.c.simple(ctx, request{Op: opExecSig, ExecID: e.id, Signal: sig})
}

func (e *execClient) Wait(ctx context.Context) (Exit, error) {
	r, err := e.c.call(ctx, request{Op: opExecWt, ExecID: e.id})
	if err != nil {
		return Exit{}, err
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
	if r.Exit == nil {
		return Exit{}, fmt.Errorf("waiting for exec %s: the shim sent no exit status", e.id)
	}
	return *r.Exit, nil
}
