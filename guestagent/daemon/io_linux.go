package daemon

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/guestagent/jsonlog"
	"github.com/berthvm/berth/guestagent/shim"
)

// pendingAttach is an attach to a container that is not running yet: it
// is connected to the shim by the next start, before the process runs.
type pendingAttach struct {
	ctx     context.Context
	streams shim.Streams
	done    chan error // the attach's result
}

// connectPending connects the waiting attaches to a created shim and
// waits (briefly) until each is registered, so no output is lost.
func (d *Daemon) connectPending(ctx context.Context, c *ctr, sc shim.Container) {
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pending {
		if p.ctx.Err() != nil {
			p.done <- p.ctx.Err()
			continue
		}
		ready := make(chan struct{})
		var once sync.Once
		s := p.streams
		s.OnAttached = func() { once.Do(func() { close(ready) }) }
		wg.Add(1)
		go func() {
			p.done <- sc.Attach(p.ctx, s)
		}()
		go func() {
			defer wg.Done()
			select {
			case <-ready:
			case <-time.After(5 * time.Second):
				d.log.Warn("an attach did not register in time", "container", engine.ShortID(c.id))
			case <-ctx.Done():
			}
		}()
	}
	wg.Wait()
}

// Attach connects streams to the container's process (or to its next
// start, when it is not running), after replaying the log with Logs.
func (d *Daemon) Attach(ctx context.Context, name string, opts engine.AttachOptions) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	var once sync.Once
	attached := func() {
		once.Do(func() {
			if opts.OnAttached != nil {
				opts.OnAttached()
			}
		})
	}
	_, hc := c.snapshot()
	if opts.Logs {
		attached()
		if hc.LogConfig.Type != "none" {
			err := jsonlog.Read(ctx, c.logPath(), jsonlog.ReadOptions{Stdout: opts.Stdout != nil, Stderr: opts.Stderr != nil, Tail: -1}, nil,
				func(e jsonlog.Entry) error {
					w := opts.Stdout
					if e.Stream == "stderr" {
						w = opts.Stderr
					}
					if w == nil {
						return nil
					}
					_, err := w.Write(e.Line)
					return err
				})
			if err != nil {
				return err
			}
		}
	}
	if !opts.Stream {
		attached()
		return nil
	}
	streams := shim.Streams{Stdout: opts.Stdout, Stderr: opts.Stderr, OnAttached: attached}
	if opts.Stdin != nil {
		streams.Stdin = opts.Stdin
	}
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return engine.WithKind(engine.ErrNotFound, "No such container: "+name)
	}
	if c.rec.State.Paused {
		c.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("container %s is paused, unpause the container before attach", c.id))
	}
	sc := c.shim
	var p *pendingAttach
	if sc == nil {
		p = &pendingAttach{ctx: ctx, streams: streams, done: make(chan error, 1)}
		c.pending = append(c.pending, p)
	}
	removed := c.removedCh
	c.mu.Unlock()
	d.publish(c, events.ActionAttach, nil)
	if sc != nil {
		return sc.Attach(ctx, streams)
	}
	attached()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
	case <-removed:
	}
	c.mu.Lock()
	c.pending = slices.DeleteFunc(c.pending, func(x *pendingAttach) bool { return x == p })
	c.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// Resize sets the terminal size of the container's process.
func (d *Daemon) Resize(ctx context.Context, name string, height, width uint) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	sc := c.shim
	c.mu.Unlock()
	if sc == nil {
		return notRunning(c.id)
	}
	if err := sc.Resize(ctx, uint16(width), uint16(height)); err != nil {
		return fmt.Errorf("resizing the container's terminal: %w", err)
	}
	d.publish(c, events.ActionResize, map[string]string{"height": fmt.Sprint(height), "width": fmt.Sprint(width)})
	return nil
}

// closedChan is a channel that is already closed.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Logs reads the container's log.
func (d *Daemon) Logs(ctx context.Context, name string, opts engine.LogsOptions, fn func(engine.LogEntry) error) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.hc.LogConfig.Type == "none" {
		c.mu.Unlock()
		return engine.WithKind(engine.ErrInvalid, `configured logging driver does not support reading`)
	}
	stopped := closedChan
	if c.shim != nil || c.rec.State.Restarting {
		stopped = c.exitCh
	}
	c.mu.Unlock()
	ro := jsonlog.ReadOptions{Stdout: opts.Stdout, Stderr: opts.Stderr, Since: opts.Since, Until: opts.Until, Tail: opts.Tail, Follow: opts.Follow}
	return jsonlog.Read(ctx, c.logPath(), ro, stopped, func(e jsonlog.Entry) error {
		return fn(engine.LogEntry{Stream: e.Stream, Time: e.Time, Line: e.Line})
	})
}
