package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/guestagent/shim"
)

// execRetention is how long an ended exec stays inspectable.
const execRetention = 5 * time.Minute

// execRecord is one exec; dockerd keeps them in memory only, as here.
type execRecord struct {
	id          string
	containerID string
	cfg         container.ExecCreateRequest
	detachKeys  []byte // parsed cfg.DetachKeys; nil when unset

	mu       sync.Mutex
	started  bool
	running  bool
	pid      int
	exitCode *int
	proc     shim.ExecProcess
	done     chan struct{} // closed when it ended
}

// ExecCreate prepares a process in a running container.
func (d *Daemon) ExecCreate(ctx context.Context, name string, req container.ExecCreateRequest) (string, error) {
	c, err := d.lookup(name)
	if err != nil {
		return "", err
	}
	if len(req.Cmd) == 0 {
		return "", invalidf("No exec command specified")
	}
	var keys []byte
	if req.DetachKeys != "" {
		if keys, err = engine.ParseDetachKeys(req.DetachKeys); err != nil {
			return "", err
		}
	}
	c.mu.Lock()
	if c.shim == nil || c.rec.State.Restarting {
		c.mu.Unlock()
		return "", notRunning(c.id)
	}
	if c.rec.State.Paused {
		c.mu.Unlock()
		return "", engine.WithKind(engine.ErrConflict, fmt.Sprintf("Container %s is paused, unpause the container before exec", c.id))
	}
	id := newID()
	c.execs[id] = true
	c.mu.Unlock()
	e := &execRecord{id: id, containerID: c.id, cfg: req, detachKeys: keys, done: make(chan struct{})}
	e.cfg.Env = slices.Clone(req.Env)
	e.cfg.Cmd = slices.Clone(req.Cmd)
	d.mu.Lock()
	d.execs[id] = e
	d.mu.Unlock()
	d.publish(c, events.Action(string(events.ActionExecCreate)+": "+strings.Join(req.Cmd, " ")), map[string]string{"execID": id})
	return id, nil
}

func (d *Daemon) execByID(id string) (*execRecord, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.execs[id]; ok {
		return e, nil
	}
	return nil, engine.WithKind(engine.ErrNotFound, "No such exec instance: "+id)
}

// ExecStart runs an exec created by ExecCreate.
func (d *Daemon) ExecStart(ctx context.Context, execID string, opts engine.ExecStartOptions) error {
	e, err := d.execByID(execID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		if e.isRunning() {
			return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Error: Exec command %s is already running", execID))
		}
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Error: Exec command %s has already run", execID))
	}
	e.started = true
	e.mu.Unlock()
	c, err := d.lookup(e.containerID)
	if err != nil {
		return err
	}
	c.mu.Lock()
	sc := c.shim
	rec := c.rec
	c.mu.Unlock()
	if sc == nil {
		return notRunning(c.id)
	}
	cfg := e.cfg
	user := cfg.User
	if user == "" {
		user = rec.Config.User
	}
	u, err := resolveUser(user, nil, rootReader(c.path(rootfsDir)))
	if err != nil {
		return d.execFailed(e, engine.WithKind(engine.ErrInvalid, err.Error()), 126)
	}
	hostname := rec.Config.Hostname
	if hostname == "" {
		hostname = engine.ShortID(c.id)
	}
	env := mergeEnv([]string{defaultPath, "HOSTNAME=" + hostname}, rec.Config.Env)
	tty := cfg.Tty || opts.Tty
	if tty {
		env = mergeEnv(env, []string{"TERM=xterm"})
	}
	env = mergeEnv(env, cfg.Env)
	if !slices.ContainsFunc(env, func(kv string) bool { return envKey(kv) == "HOME" }) {
		env = append(env, "HOME="+u.Home)
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = rec.Config.WorkingDir
	}
	p := shim.Process{
		Args: cfg.Cmd, Env: env, Cwd: cwd,
		UID: u.UID, GID: u.GID, AdditionalGIDs: u.Groups, Tty: tty,
	}
	size := opts.ConsoleSize
	if size == nil {
		size = cfg.ConsoleSize
	}
	if size != nil {
		p.Height, p.Width = uint16(size[0]), uint16(size[1])
	}
	var s shim.Streams
	var stdin *stdinWatch
	if !opts.Detach {
		if cfg.AttachStdin && opts.Stdin != nil {
			stdin = newStdinWatch(opts.Stdin)
			s.Stdin = stdin
		}
		if cfg.AttachStdout {
			s.Stdout = opts.Stdout
		}
		if cfg.AttachStderr && !tty {
			s.Stderr = opts.Stderr
		}
	}
	proc, err := sc.Exec(context.WithoutCancel(ctx), execID, p, s)
	if err != nil {
		code := 126
		if strings.Contains(err.Error(), "executable file not found") || strings.Contains(err.Error(), "no such file or directory") {
			code = 127
		}
		if strings.Contains(err.Error(), "is paused") {
			return d.execFailed(e, engine.WithKind(engine.ErrConflict, fmt.Sprintf("Container %s is paused, unpause the container before exec", c.id)), code)
		}
		if strings.Contains(err.Error(), "not running") {
			return d.execFailed(e, notRunning(c.id), code)
		}
		return d.execFailed(e, fmt.Errorf("OCI runtime exec failed: %w", err), code)
	}
	e.mu.Lock()
	e.proc, e.pid, e.running = proc, proc.Pid(), true
	e.mu.Unlock()
	d.publish(c, events.Action(string(events.ActionExecStart)+": "+strings.Join(cfg.Cmd, " ")), map[string]string{"execID": execID})
	if opts.OnStarted != nil {
		opts.OnStarted()
	}
	go d.waitExec(c, e, proc)
	if opts.Detach {
		return nil
	}
	var detached <-chan struct{}
	if stdin != nil {
		detached = stdin.detached
	}
	// A client that detaches (ctx, or a stdin error other than io.EOF)
	// ends the session; the process runs on (it was started without
	// ctx) with its stdin open.
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-detached:
		select {
		case <-e.done: // it ended anyway: report the end, not the detach
			return nil
		default:
			return fmt.Errorf("exec %s: the client detached: %w", execID, stdin.err)
		}
	}
}

// stdinWatch passes a client's stdin through and tells when the client
// detached: a read error other than io.EOF (the end of its input, which
// closes the process's stdin) before the engine closed the reader.
type stdinWatch struct {
	io.ReadCloser
	closed   atomic.Bool
	once     sync.Once
	detached chan struct{}
	err      error // set before detached is closed
}

func newStdinWatch(r io.ReadCloser) *stdinWatch {
	return &stdinWatch{ReadCloser: r, detached: make(chan struct{})}
}

func (w *stdinWatch) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && !w.closed.Load() {
		w.once.Do(func() {
			w.err = err
			close(w.detached)
		})
	}
	return n, err
}

// Close is the engine being done with stdin: what the read returns after
// it is no detach.
func (w *stdinWatch) Close() error {
	w.closed.Store(true)
	return w.ReadCloser.Close()
}

// execFailed records an exec that could not start.
func (d *Daemon) execFailed(e *execRecord, err error, code int) error {
	e.mu.Lock()
	e.exitCode = &code
	e.mu.Unlock()
	close(e.done)
	d.expireExec(e)
	return err
}

func (d *Daemon) waitExec(c *ctr, e *execRecord, proc shim.ExecProcess) {
	exit, err := proc.Wait(context.Background())
	code := exit.Code
	if err != nil {
		code = 126
		d.log.Warn("waiting for an exec", "exec", e.id, "err", err)
	}
	e.mu.Lock()
	e.running = false
	e.exitCode = &code
	e.mu.Unlock()
	close(e.done)
	d.publish(c, events.ActionExecDie, map[string]string{"execID": e.id, "exitCode": strconv.Itoa(code)})
	d.expireExec(e)
}

// expireExec forgets an ended exec after a while.
func (d *Daemon) expireExec(e *execRecord) {
	time.AfterFunc(execRetention, func() {
		d.mu.Lock()
		delete(d.execs, e.id)
		c := d.byID[e.containerID]
		d.mu.Unlock()
		if c != nil {
			c.mu.Lock()
			delete(c.execs, e.id)
			c.mu.Unlock()
		}
	})
}

func (d *Daemon) forgetExecs(c *ctr) {
	c.mu.Lock()
	ids := make([]string, 0, len(c.execs))
	for id := range c.execs {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	d.mu.Lock()
	for _, id := range ids {
		delete(d.execs, id)
	}
	d.mu.Unlock()
}

func (e *execRecord) isRunning() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running
}

// ExecResize sets an exec's terminal size.
func (d *Daemon) ExecResize(ctx context.Context, execID string, height, width uint) error {
	e, err := d.execByID(execID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	proc := e.proc
	running := e.running
	e.mu.Unlock()
	if proc == nil || !running {
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Exec %s is not running", execID))
	}
	if err := proc.Resize(ctx, uint16(width), uint16(height)); err != nil {
		return fmt.Errorf("resizing exec %s: %w", execID, err)
	}
	return nil
}

// ExecInspect describes an exec.
func (d *Daemon) ExecInspect(ctx context.Context, execID string) (container.ExecInspectResponse, error) {
	e, err := d.execByID(execID)
	if err != nil {
		return container.ExecInspectResponse{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	pc := &container.ExecProcessConfig{Tty: e.cfg.Tty, User: e.cfg.User}
	if len(e.cfg.Cmd) > 0 {
		pc.Entrypoint, pc.Arguments = e.cfg.Cmd[0], slices.Clone(e.cfg.Cmd[1:])
	}
	if pc.Arguments == nil {
		pc.Arguments = []string{}
	}
	priv := e.cfg.Privileged
	pc.Privileged = &priv
	r := container.ExecInspectResponse{
		ID:            e.id,
		Running:       e.running,
		ProcessConfig: pc,
		OpenStdin:     e.cfg.AttachStdin,
		OpenStdout:    e.cfg.AttachStdout,
		OpenStderr:    e.cfg.AttachStderr,
		ContainerID:   e.containerID,
		Pid:           e.pid,
	}
	// dockerd returns the parsed key bytes, and none when the exec
	// create did not set any.
	if len(e.detachKeys) > 0 {
		r.DetachKeys = slices.Clone(e.detachKeys)
	}
	if e.exitCode != nil {
		code := *e.exitCode
		r.ExitCode = &code
	}
	return r, nil
}

// runningExecs lists the IDs of a container's execs that run.
func (d *Daemon) runningExecs(c *ctr) []string {
	c.mu.Lock()
	ids := make([]string, 0, len(c.execs))
	for id := range c.execs {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	var out []string
	for _, id := range ids {
		if e, err := d.execByID(id); err == nil && e.isRunning() {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
