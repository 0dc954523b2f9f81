package daemon

import (
	"context"
	"os"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/guestagent/shim"
)

// goTracked runs fn on a goroutine that Close waits for; after Close it
// does nothing.
func (d *Daemon) goTracked(fn func()) {
	d.mu.Lock()
	if d.ctx.Err() != nil {
		d.mu.Unlock()
		return
	}
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		fn()
	}()
}

// monitor waits for a running container's exit and handles it. It ends
// without touching the container when the daemon closes: the container
// keeps running for the next engine.
func (d *Daemon) monitor(c *ctr, sc shim.Container) {
	exit, err := sc.Wait(d.ctx)
	if d.ctx.Err() != nil {
		return
	}
	if err != nil {
		exit = shim.Exit{Code: 255, Error: "waiting for the container: " + err.Error(), FinishedAt: time.Now().UTC()}
	}
	d.handleExit(c, sc, exit)
}

// teardown releases what a run held: the network and the shim (which
// unmounts the root filesystem).
func (d *Daemon) teardown(c *ctr, sc shim.Container) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), 30*time.Second)
	defer cancel()
	if d.cfg.Net != nil {
		if err := d.cfg.Net.Detach(ctx, c.id); err != nil {
			d.log.Warn("detaching a container's network", "container", c.id, "err", err)
		}
	}
	if sc != nil {
		if err := sc.Delete(ctx); err != nil {
			d.log.Warn("deleting a container's shim", "container", c.id, "err", err)
		}
		return
	}
	// No shim to ask: clear what one would have.
	unmountAll(c.path(rootfsDir))
	os.RemoveAll(c.path("runc"))
}

// handleExit records an exit, publishes die, and removes (--rm) or
// restarts (policy) the container.
func (d *Daemon) handleExit(c *ctr, sc shim.Container, exit shim.Exit) {
	d.teardown(c, sc)
	shutting := d.isShuttingDown() || d.ctx.Err() != nil
	if exit.FinishedAt.IsZero() {
		exit.FinishedAt = time.Now().UTC()
	}
	c.mu.Lock()
	st := &c.rec.State
	ran := exit.FinishedAt.Sub(st.StartedAt)
	st.Running, st.Paused, st.Restarting, st.Pid = false, false, false, 0
	st.ExitCode, st.OOMKilled, st.Error, st.FinishedAt = exit.Code, exit.OOMKilled, exit.Error, exit.FinishedAt
	c.rec.Net = nil
	c.shim = nil
	canceled := c.exitOnNext || shutting
	c.exitOnNext = false
	dec := decideRestart(c.hc.RestartPolicy, exit.Code, canceled, c.rec.HasBeenManuallyStopped, ran, c.rec.RestartCount, c.backoff)
	var rctx context.Context
	if dec.Restart {
		st.Restarting, st.Running = true, true
		c.backoff = dec.Delay
		rctx, c.restartCancel = context.WithCancel(d.ctx)
	}
	autoRemove := c.hc.AutoRemove && !shutting
	if err := c.saveLocked(); err != nil {
		d.log.Error("saving container state", "container", c.id, "err", err)
	}
	exited := c.exitCh
	c.exitCh = make(chan struct{})
	c.mu.Unlock()

	d.log.Info("container exited", "container", engine.ShortID(c.id), "code", exit.Code, "oom", exit.OOMKilled, "error", exit.Error)
	if exit.OOMKilled {
		d.publish(c, events.ActionOOM, nil)
	}
	d.publish(c, events.ActionDie, map[string]string{
		"exitCode":     strconv.Itoa(exit.Code),
		"execDuration": strconv.Itoa(int(ran.Seconds())),
	})
	// Whoever waited for this exit (stop, restart) goes on only now, so
	// that its own event (stop) follows die, as with dockerd.
	close(exited)
	switch {
	case autoRemove:
		if err := d.removeStopped(c, true); err != nil {
			d.log.Warn("removing an --rm container", "container", c.id, "err", err)
		}
	case dec.Restart:
		d.goTracked(func() { d.restartLater(c, rctx, dec.Delay) })
	}
}

// restartLater starts the container again after delay, unless the restart
// is cancelled meanwhile (stop, kill, rm, start by the user, Close).
func (d *Daemon) restartLater(c *ctr, rctx context.Context, delay time.Duration) {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-rctx.Done():
		return
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if rctx.Err() != nil {
		return
	}
	c.mu.Lock()
	if !c.rec.State.Restarting {
		c.mu.Unlock()
		return
	}
	if c.restartCancel != nil {
		c.restartCancel()
		c.restartCancel = nil
	}
	c.rec.RestartCount++
	c.mu.Unlock()
	if err := d.startLocked(d.ctx, c); err != nil {
		d.log.Error("restarting a container by its restart policy", "container", c.id, "err", err)
	}
}

// removeStopped removes a container that exited, unless it runs again
// (a restart got there first). It is --rm's removal.
func (d *Daemon) removeStopped(c *ctr, volumes bool) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if c.shim != nil || c.removed || c.rec.State.Removing {
		c.mu.Unlock()
		return nil
	}
	c.rec.State.Removing = true
	c.saveLocked()
	c.mu.Unlock()
	return d.destroy(d.ctx, c, volumes)
}
