package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berthvm/berth/guestagent/engine"
)

// defaultStopTimeout is dockerd's grace period before SIGKILL.
const defaultStopTimeout = 10

// killWait bounds the wait for a SIGKILLed container to be reaped.
const killWait = 30 * time.Second

// Stop stops a running container: its stop signal, then SIGKILL after
// the timeout.
func (d *Daemon) Stop(ctx context.Context, name string, opts engine.StopOptions) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	return d.stopLocked(ctx, c, opts, true)
}

// stopSignal picks the signal and grace period of a stop.
func stopSignal(cfg *container.Config, opts engine.StopOptions) (int, int, error) {
	sig := sigTERM
	switch {
	case opts.Signal != "":
		n, err := parseSignal(opts.Signal)
		if err != nil {
			return 0, 0, err
		}
		sig = n
	case cfg.StopSignal != "":
		if n, err := parseSignal(cfg.StopSignal); err == nil {
			sig = n
		}
	}
	timeout := defaultStopTimeout
	switch {
	case opts.Timeout != nil:
		timeout = *opts.Timeout
	case cfg.StopTimeout != nil:
		timeout = *cfg.StopTimeout
	}
	return sig, timeout, nil
}

// stopLocked stops c; callers hold c.opMu. user marks a stop by the user,
// which keeps unless-stopped containers down. ctx ending cuts the grace
// period short (SIGKILL), as a daemon shutdown does.
func (d *Daemon) stopLocked(ctx context.Context, c *ctr, opts engine.StopOptions, user bool) error {
	c.mu.Lock()
	sig, timeout, err := stopSignal(c.rec.Config, opts)
	if err != nil {
		c.mu.Unlock()
		return err
	}
	sc := c.shim
	if sc == nil {
		if c.rec.State.Restarting {
			c.cancelRestartLocked()
			if user {
				c.rec.HasBeenManuallyStopped = true
			}
			c.saveLocked()
			c.mu.Unlock()
			d.publish(c, events.ActionStop, nil)
			return nil
		}
		c.mu.Unlock()
		return engine.WithKind(engine.ErrNotModified, "container already stopped")
	}
	c.cancelRestartLocked()
	c.exitOnNext = true
	if user {
		c.rec.HasBeenManuallyStopped = true
		c.saveLocked()
	}
	exited := c.exitCh
	paused := c.rec.State.Paused
	c.mu.Unlock()

	sctx := context.WithoutCancel(ctx)
	// The event goes first: the die it causes must come after it.
	d.publish(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(sig)})
	if err := sc.Signal(sctx, sig); err != nil && !isGone(err) {
		d.log.Warn("sending the stop signal", "container", c.id, "signal", sig, "err", err)
	}
	if paused && sig != sigKILL {
		// A frozen process cannot act on its signal.
		if err := sc.Resume(sctx); err == nil {
			d.setPaused(c, false)
		}
	}
	var grace <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(time.Duration(timeout) * time.Second)
		defer t.Stop()
		grace = t.C
	}
	select {
	case <-exited:
	case <-grace:
		err = d.killAndWait(sctx, c, sc, exited)
	case <-ctx.Done():
		err = d.killAndWait(sctx, c, sc, exited)
	}
	if err != nil {
		return err
	}
	d.publish(c, events.ActionStop, nil)
	return nil
}

func (d *Daemon) killAndWait(ctx context.Context, c *ctr, sc interface {
	Signal(context.Context, int) error
}, exited <-chan struct{}) error {
	d.publish(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(sigKILL)})
	if err := sc.Signal(ctx, sigKILL); err != nil && !isGone(err) {
		d.log.Warn("killing a container", "container", c.id, "err", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("container %s did not exit %s after SIGKILL", c.id, killWait)
	}
}

// isGone tells a signal that found no process (it exited meanwhile).
func isGone(err error) bool {
	s := err.Error()
	return strings.Contains(s, "not running") || strings.Contains(s, "no such process") || strings.Contains(s, "connection refused")
}

// stopForShutdown stops c as the engine shuts down.
func (d *Daemon) stopForShutdown(ctx context.Context, c *ctr) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	err := d.stopLocked(ctx, c, engine.StopOptions{}, false)
	if errors.Is(err, engine.ErrNotModified) {
		return nil
	}
	return err
}

// Kill sends a signal to the container's process.
func (d *Daemon) Kill(ctx context.Context, name, signal string) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	sig := sigKILL
	if signal != "" {
		if sig, err = parseSignal(signal); err != nil {
			return err
		}
	}
	shutting := d.isShuttingDown()
	c.mu.Lock()
	sc := c.shim
	if sc == nil {
		if c.rec.State.Restarting {
			// Telling the restart to stay down is enough.
			c.cancelRestartLocked()
			c.rec.HasBeenManuallyStopped = true
			c.saveLocked()
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Cannot kill container: %s: container %s is not running", name, c.id))
	}
	stopSig, _, _ := stopSignal(c.rec.Config, engine.StopOptions{})
	if sig == sigKILL || sig == stopSig {
		c.exitOnNext = true
	}
	if !shutting {
		c.rec.HasBeenManuallyStopped = true
		c.saveLocked()
	}
	c.mu.Unlock()
	d.publish(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(sig)})
	if err := sc.Signal(ctx, sig); err != nil {
		if isGone(err) {
			return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Cannot kill container: %s: container %s is not running", name, c.id))
		}
		return fmt.Errorf("killing container %s: %w", c.id, err)
	}
	return nil
}

// Restart stops the container if it runs, then starts it.
func (d *Daemon) Restart(ctx context.Context, name string, opts engine.StopOptions) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if c.rec.State.Removing || c.removed {
		c.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, "container is marked for removal and cannot be started")
	}
	c.mu.Unlock()
	if err := d.stopLocked(ctx, c, opts, false); err != nil && !errors.Is(err, engine.ErrNotModified) {
		return fmt.Errorf("Cannot restart container %s: %w", name, err)
	}
	c.mu.Lock()
	c.cancelRestartLocked()
	c.resetRestartsLocked()
	c.mu.Unlock()
	if err := d.startLocked(ctx, c); err != nil {
		return err
	}
	d.publish(c, events.ActionRestart, nil)
	return nil
}

// Pause freezes the container's processes.
func (d *Daemon) Pause(ctx context.Context, name string) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	return d.pauseLocked(ctx, c)
}

func (d *Daemon) pauseLocked(ctx context.Context, c *ctr) error {
	c.mu.Lock()
	sc := c.shim
	switch {
	case sc == nil || c.rec.State.Restarting:
		c.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Container %s is not running", c.id))
	case c.rec.State.Paused:
		c.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Container %s is already paused", c.id))
	}
	c.mu.Unlock()
	if err := sc.Pause(ctx); err != nil {
		return fmt.Errorf("pausing container %s: %w", c.id, err)
	}
	d.setPaused(c, true)
	return nil
}

// Unpause thaws the container's processes.
func (d *Daemon) Unpause(ctx context.Context, name string) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	return d.unpauseLocked(ctx, c)
}

func (d *Daemon) unpauseLocked(ctx context.Context, c *ctr) error {
	c.mu.Lock()
	sc := c.shim
	if sc == nil || !c.rec.State.Paused {
		c.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Container %s is not paused", c.id))
	}
	c.mu.Unlock()
	if err := sc.Resume(ctx); err != nil {
		return fmt.Errorf("unpausing container %s: %w", c.id, err)
	}
	d.setPaused(c, false)
	return nil
}

// setPaused records that the container's processes were just frozen or
// thawed, and says so in the event stream.
func (d *Daemon) setPaused(c *ctr, paused bool) {
	c.mu.Lock()
	c.rec.State.Paused = paused
	c.saveLocked()
	c.mu.Unlock()
	action := events.ActionUnPause
	if paused {
		action = events.ActionPause
	}
	d.publish(c, action, nil)
}

// Wait delivers the container's exit status once cond holds.
func (d *Daemon) Wait(ctx context.Context, name string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	switch cond {
	case "", container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		return nil, invalidf("invalid condition: %q", cond)
	}
	c, err := d.lookup(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	running := c.rec.State.Running
	exited, removed := c.exitCh, c.removedCh
	c.mu.Unlock()
	out := make(chan container.WaitResponse, 1)
	current := func() container.WaitResponse {
		c.mu.Lock()
		defer c.mu.Unlock()
		return waitResponse(c.rec.State)
	}
	if (cond == "" || cond == container.WaitConditionNotRunning) && !running {
		out <- current()
		return out, nil
	}
	go func() {
		var done <-chan struct{} = exited
		if cond == container.WaitConditionRemoved {
			done = removed
		}
		select {
		case <-done:
			out <- current()
		case <-ctx.Done():
		}
		close(out)
	}()
	return out, nil
}

// Rename gives a container a new name.
func (d *Daemon) Rename(ctx context.Context, name, newName string) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	nn, err := normalizeName(newName)
	if err != nil {
		return err
	}
	d.mu.Lock()
	c.mu.Lock()
	old := c.rec.Name
	if nn == old {
		c.mu.Unlock()
		d.mu.Unlock()
		return invalidf("Renaming a container with the same name as its current name")
	}
	if id, taken := d.names[nn]; taken {
		c.mu.Unlock()
		d.mu.Unlock()
		return nameConflict(nn, id)
	}
	c.rec.Name = nn
	if err := c.saveLocked(); err != nil {
		c.rec.Name = old
		c.mu.Unlock()
		d.mu.Unlock()
		return fmt.Errorf("renaming container %s: %w", c.id, err)
	}
	delete(d.names, old)
	d.names[nn] = c.id
	c.mu.Unlock()
	d.mu.Unlock()
	d.publish(c, events.ActionRename, map[string]string{"oldName": old})
	return nil
}

func nameConflict(name, id string) error {
	return engine.WithKind(engine.ErrConflict, fmt.Sprintf("Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", name, id))
}

// Remove deletes a container (killing it first with Force).
func (d *Daemon) Remove(ctx context.Context, name string, opts engine.RemoveOptions) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return engine.WithKind(engine.ErrNotFound, "No such container: "+name)
	}
	if c.rec.State.Removing {
		c.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("removal of container %s is already in progress", name))
	}
	sc := c.shim
	if (sc != nil || c.rec.State.Restarting) && !opts.Force {
		paused := c.rec.State.Paused
		c.mu.Unlock()
		if paused {
			return engine.WithKind(engine.ErrConflict, fmt.Sprintf("cannot remove container %q: container is paused and must be unpaused first", c.rec.Name))
		}
		return engine.WithKind(engine.ErrConflict, fmt.Sprintf("cannot remove container %q: container is running: stop the container before removing or force remove", c.rec.Name))
	}
	c.cancelRestartLocked()
	exited := c.exitCh
	if sc != nil {
		c.exitOnNext = true
	}
	c.mu.Unlock()
	if sc != nil {
		if err := d.killAndWait(context.WithoutCancel(ctx), c, sc, exited); err != nil {
			return fmt.Errorf("could not kill container %s: %w", c.id, err)
		}
	}
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return nil // --rm got there first
	}
	c.rec.State.Removing = true
	c.saveLocked()
	c.mu.Unlock()
	return d.destroy(ctx, c, opts.Volumes)
}

// destroy deletes a stopped container: its network leftovers, volume
// references (and anonymous volumes with removeVolumes), execs, files
// and name. Callers hold c.opMu (or run before the daemon serves).
func (d *Daemon) destroy(ctx context.Context, c *ctr, removeVolumes bool) error {
	ctx = context.WithoutCancel(ctx)
	if d.cfg.Net != nil {
		if err := d.cfg.Net.Detach(ctx, c.id); err != nil {
			d.log.Warn("detaching a removed container's network", "container", c.id, "err", err)
		}
	}
	anon, err := d.cfg.Volumes.ReleaseAll(c.id)
	if err != nil {
		d.log.Warn("releasing a removed container's volumes", "container", c.id, "err", err)
	}
	if removeVolumes {
		for _, v := range anon {
			if err := d.cfg.Volumes.Remove(ctx, v, false); err != nil {
				d.log.Warn("removing an anonymous volume", "volume", v, "err", err)
			}
		}
	}
	d.forgetExecs(c)
	if err := removeContainerDir(c.dir); err != nil {
		c.mu.Lock()
		c.rec.State.Removing, c.rec.State.Dead = false, true
		c.saveLocked()
		c.mu.Unlock()
		return fmt.Errorf("removing container %s: %w", c.id, err)
	}
	d.mu.Lock()
	c.mu.Lock()
	delete(d.byID, c.id)
	if d.names[c.rec.Name] == c.id {
		delete(d.names, c.rec.Name)
	}
	c.removed = true
	close(c.removedCh)
	c.mu.Unlock()
	d.mu.Unlock()
	d.publish(c, events.ActionDestroy, nil)
	return nil
}

// Prune removes the stopped containers matching the filters.
func (d *Daemon) Prune(ctx context.Context, filters map[string][]string) (container.PruneReport, error) {
	for k := range filters {
		switch k {
		case "until", "label", "label!":
		default:
			return container.PruneReport{}, invalidf("invalid filter '%s'", k)
		}
	}
	var until time.Time
	if vs := filters["until"]; len(vs) > 0 {
		if len(vs) > 1 {
			return container.PruneReport{}, invalidf("more than one until filter specified")
		}
		t, err := parseTimestamp(vs[0], time.Now())
		if err != nil {
			return container.PruneReport{}, invalidf("invalid filter 'until=%s': %v", vs[0], err)
		}
		until = t
	}
	rep := container.PruneReport{ContainersDeleted: []string{}}
	for _, c := range d.containers() {
		rec, _ := c.snapshot()
		if rec.State.Running || rec.State.Removing {
			continue
		}
		if !until.IsZero() && !rec.Created.Before(until) {
			continue
		}
		if !matchLabelFilter(rec.Config.Labels, filters["label"], true) || !matchLabelFilter(rec.Config.Labels, filters["label!"], false) {
			continue
		}
		size, _ := dirSize(c.path(upperDir))
		if err := d.Remove(ctx, c.id, engine.RemoveOptions{}); err != nil {
			if errors.Is(err, engine.ErrConflict) || errors.Is(err, engine.ErrNotFound) {
				continue // started or removed meanwhile
			}
			d.log.Warn("pruning a container", "container", c.id, "err", err)
			continue
		}
		rep.ContainersDeleted = append(rep.ContainersDeleted, c.id)
		rep.SpaceReclaimed += uint64(size)
	}
	return rep, nil
}

// matchLabelFilter: with want, every "key" or "key=value" must match;
// without (label!), none may.
func matchLabelFilter(labels map[string]string, filters []string, want bool) bool {
	for _, f := range filters {
		k, v, hasValue := strings.Cut(f, "=")
		got, ok := labels[k]
		match := ok && (!hasValue || got == v)
		if match != want {
			return false
		}
	}
	return true
}

// parseTimestamp reads a filter time as dockerd: RFC 3339 (with or
// without zone), a date, Unix seconds (with fractions), or a Go duration
// before now.
func parseTimestamp(v string, now time.Time) (time.Time, error) {
	if dur, err := time.ParseDuration(v); err == nil {
		return now.Add(-dur), nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.RFC3339, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	sec, frac, _ := strings.Cut(v, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot parse %q as a time", v)
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, fmt.Errorf("cannot parse %q as a time", v)
		}
	}
	return time.Unix(s, ns), nil
}

// dirSize sums the sizes of the regular files under dir (hard links
// once).
func dirSize(dir string) (int64, error) {
	var total int64
	seen := map[[2]uint64]bool{}
	err := walkFiles(dir, func(size int64, dev, ino uint64) {
		k := [2]uint64{dev, ino}
		if !seen[k] {
			seen[k] = true
			total += size
		}
	})
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	return total, err
}
