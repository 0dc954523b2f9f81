package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berthvm/berth/guestagent/shim"
)

// fakeShims is a shim.Manager whose containers are simulated: they start
// on Start and exit when signalled with KILL or TERM, or when the test
// calls exit. Restore finds them by state directory, as a real engine
// restart finds surviving shims.
type fakeShims struct {
	mu       sync.Mutex
	byDir    map[string]*fakeCtr
	creates  int
	nextPid  atomic.Int32
	failNext error // the next Create fails with it
}

func newFakeShims() *fakeShims {
	f := &fakeShims{byDir: map[string]*fakeCtr{}}
	f.nextPid.Store(1000)
	return f
}

func (f *fakeShims) Create(ctx context.Context, spec shim.Spec) (shim.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		return nil, err
	}
	f.creates++
	c := &fakeCtr{spec: spec, pid: int(f.nextPid.Add(1)), exited: make(chan struct{})}
	f.byDir[spec.StateDir] = c
	return c, nil
}

func (f *fakeShims) Restore(ctx context.Context, dir string) (shim.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.byDir[dir]
	if !ok {
		return nil, fmt.Errorf("restoring %s: no spec.json", dir)
	}
	return c, nil
}

// get returns the live container of a state directory.
func (f *fakeShims) get(dir string) *fakeCtr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byDir[dir]
}

type fakeCtr struct {
	spec shim.Spec
	pid  int

	mu      sync.Mutex
	started bool
	paused  bool
	deleted bool
	signals []int
	exit    shim.Exit
	exited  chan struct{}
	once    sync.Once

	blocking []*blockingExec // execs of "block"
}

// exitWith ends the simulated process.
func (c *fakeCtr) exitWith(code int) {
	c.once.Do(func() {
		c.mu.Lock()
		c.exit = shim.Exit{Code: code, FinishedAt: time.Now().UTC()}
		c.mu.Unlock()
		close(c.exited)
	})
}

func (c *fakeCtr) isExited() bool {
	select {
	case <-c.exited:
		return true
	default:
		return false
	}
}

func (c *fakeCtr) ID() string { return c.spec.ID }

func (c *fakeCtr) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = true
	return nil
}

func (c *fakeCtr) Pid() int {
	if c.isExited() {
		return 0
	}
	return c.pid
}

func (c *fakeCtr) Signal(ctx context.Context, sig int) error {
	if c.isExited() {
		return errors.New("signal: container is not running")
	}
	c.mu.Lock()
	c.signals = append(c.signals, sig)
	c.mu.Unlock()
	if sig == sigKILL || sig == sigTERM {
		go c.exitWith(128 + sig)
	}
	return nil
}

func (c *fakeCtr) Wait(ctx context.Context) (shim.Exit, error) {
	select {
	case <-c.exited:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.exit, nil
	case <-ctx.Done():
		return shim.Exit{}, ctx.Err()
	}
}

func (c *fakeCtr) Pause(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = true
	return nil
}

func (c *fakeCtr) Resume(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = false
	return nil
}

func (c *fakeCtr) Attach(ctx context.Context, s shim.Streams) error {
	if s.OnAttached != nil {
		s.OnAttached()
	}
	if s.Stdout != nil {
		io.WriteString(s.Stdout, "attached output\n")
	}
	select {
	case <-c.exited:
	case <-ctx.Done():
	}
	return nil
}

func (c *fakeCtr) Resize(ctx context.Context, w, h uint16) error { return nil }

func (c *fakeCtr) Exec(ctx context.Context, id string, p shim.Process, s shim.Streams) (shim.ExecProcess, error) {
	if c.isExited() {
		return nil, errors.New("exec: container is not running")
	}
	if p.Args[0] == "block" {
		// Runs until signalled, reading its stdin: what ended it is
		// recorded.
		e := &blockingExec{pid: c.pid + 1, done: make(chan struct{}), stdinEnd: make(chan error, 1)}
		if s.Stdin != nil {
			go func() {
				_, err := io.Copy(io.Discard, s.Stdin)
				e.stdinEnd <- err
			}()
		}
		c.mu.Lock()
		c.blocking = append(c.blocking, e)
		c.mu.Unlock()
		return e, nil
	}
	if s.Stdout != nil {
		fmt.Fprintf(s.Stdout, "%v\n", p.Args)
	}
	return fakeExec{pid: c.pid + 1}, nil
}

func (c *fakeCtr) Stats(ctx context.Context) (shim.Stats, error) {
	return shim.Stats{Read: time.Now(), MemoryUsage: 1 << 20, PidsCurrent: 1}, nil
}

func (c *fakeCtr) Top(ctx context.Context) ([]int, error) { return []int{c.pid}, nil }

func (c *fakeCtr) Delete(ctx context.Context) error {
	if !c.isExited() && c.started {
		return errors.New("container is running")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleted = true
	return nil
}

type fakeExec struct{ pid int }

func (e fakeExec) Pid() int                                      { return e.pid }
func (e fakeExec) Resize(ctx context.Context, w, h uint16) error { return nil }
func (e fakeExec) Signal(ctx context.Context, sig int) error     { return nil }
func (e fakeExec) Wait(ctx context.Context) (shim.Exit, error)   { return shim.Exit{Code: 3}, nil }

// blockingExec is an exec that runs until a signal.
type blockingExec struct {
	pid      int
	done     chan struct{}
	once     sync.Once
	signals  atomic.Int32
	stdinEnd chan error // how its stdin copy ended (nil: io.EOF)
}

func (e *blockingExec) Pid() int                                      { return e.pid }
func (e *blockingExec) Resize(ctx context.Context, w, h uint16) error { return nil }

func (e *blockingExec) Signal(ctx context.Context, sig int) error {
	e.signals.Add(1)
	e.once.Do(func() { close(e.done) })
	return nil
}

func (e *blockingExec) Wait(ctx context.Context) (shim.Exit, error) {
	select {
	case <-e.done:
		return shim.Exit{Code: 137, Signal: sigKILL}, nil
	case <-ctx.Done():
		return shim.Exit{}, ctx.Err()
	}
}
