package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berthvm/berth/guestagent/shim"
)

// ctr is one container in memory.
type ctr struct {
	id  string
	dir string

	// opMu serializes the lifecycle operations that change what runs
	// (start, stop, restart, pause, remove, commit); it is held across
	// their slow parts. Kill, exec and reads do not take it.
	opMu sync.Mutex

	mu  sync.Mutex
	rec record
	hc  *container.HostConfig
	// shim is the running container; nil when no process runs.
	shim shim.Container
	// exitCh is closed at the container's next exit (then replaced).
	exitCh chan struct{}
	// removedCh is closed once the container is removed.
	removedCh chan struct{}
	removed   bool
	// exitOnNext cancels the restart policy for the current run: the
	// user stopped, restarted or killed it (dockerd's ExitOnNext).
	exitOnNext bool
	// restartCancel stops a pending policy restart; backoff is the last
	// restart delay.
	restartCancel context.CancelFunc
	backoff       time.Duration
	// pending attaches wait for the next start.
	pending []*pendingAttach
	execs   map[string]bool
}

func newCtr(dir string, rec record, hc *container.HostConfig) *ctr {
	return &ctr{
		id: rec.ID, dir: dir, rec: rec, hc: hc,
		exitCh: make(chan struct{}), removedCh: make(chan struct{}),
		execs: map[string]bool{},
	}
}

func (c *ctr) created() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.Created
}

func (c *ctr) path(name string) string { return filepath.Join(c.dir, name) }

func (c *ctr) logPath() string {
	if c.hc.LogConfig.Type == "none" {
		return ""
	}
	return c.path(c.id + "-json.log")
}

// saveLocked writes the record; callers hold c.mu.
func (c *ctr) saveLocked() error {
	if c.removed {
		return nil
	}
	return writeJSONAtomic(c.path(configFile), &c.rec)
}

func (c *ctr) saveHostConfigLocked() error {
	return writeJSONAtomic(c.path(hostConfigFile), c.hc)
}

// cancelRestartLocked stops a pending policy restart and marks the
// container stopped. Callers hold c.mu.
func (c *ctr) cancelRestartLocked() {
	if c.restartCancel != nil {
		c.restartCancel()
		c.restartCancel = nil
	}
	if c.rec.State.Restarting {
		c.rec.State.Restarting = false
		c.rec.State.Running = false
	}
}

// resetRestartsLocked starts the restart policy's count and backoff
// over (a start by the user or by the engine's start). Callers hold c.mu.
func (c *ctr) resetRestartsLocked() {
	c.rec.RestartCount = 0
	c.backoff = 0
}

// snapshot returns copies of the record and host config.
func (c *ctr) snapshot() (record, *container.HostConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cloneRecord(c.rec), cloneHostConfig(c.hc)
}

// view is a shallow copy of the record and the host config, for callers
// that only read them (ps, which lists every container on each call and
// must not pay for deep copies). Once a container exists its nested
// values (Config, Args, mounts, Net, the host config) are replaced, never
// changed in place, so sharing them with a reader is safe.
func (c *ctr) view() (record, *container.HostConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec, c.hc
}

func cloneRecord(r record) record {
	b, _ := json.Marshal(r)
	var out record
	_ = json.Unmarshal(b, &out)
	return out
}

func cloneHostConfig(hc *container.HostConfig) *container.HostConfig {
	b, _ := json.Marshal(hc)
	out := &container.HostConfig{}
	_ = json.Unmarshal(b, out)
	return out
}

// load reads every container under the root, then reconnects to the
// running ones and applies restart policies, in the background for the
// restarts.
func (d *Daemon) load(ctx context.Context) error {
	ents, err := os.ReadDir(d.root)
	if err != nil {
		return fmt.Errorf("loading containers: %w", err)
	}
	var all []*ctr
	for _, e := range ents {
		if !e.IsDir() || len(e.Name()) != 64 || !isHexPrefix(e.Name()) {
			continue
		}
		dir := filepath.Join(d.root, e.Name())
		var rec record
		err := readJSON(filepath.Join(dir, configFile), &rec)
		if errors.Is(err, os.ErrNotExist) {
			// A create that crashed before its record was written.
			d.log.Warn("removing an incomplete container directory", "dir", dir)
			if err := removeContainerDir(dir); err != nil {
				d.log.Warn("removing an incomplete container directory", "dir", dir, "err", err)
			}
			continue
		}
		hc := &container.HostConfig{}
		if err == nil {
			err = readJSON(filepath.Join(dir, hostConfigFile), hc)
		}
		if err != nil || rec.ID != e.Name() || rec.Config == nil {
			d.log.Warn("skipping a container whose record cannot be read", "dir", dir, "err", err)
			continue
		}
		if other, dup := d.names[rec.Name]; dup {
			d.log.Warn("two containers have one name; renaming the second", "name", rec.Name, "first", other, "second", rec.ID)
			rec.Name = "/" + rec.ID
		}
		c := newCtr(dir, rec, hc)
		d.byID[rec.ID] = c
		d.names[rec.Name] = rec.ID
		all = append(all, c)
	}
	var later []func()
	for _, c := range all {
		if f := d.restore(ctx, c); f != nil {
			later = append(later, f)
		}
	}
	// Endpoints of containers that no longer run (or exist) hold
	// addresses and ports for nothing.
	if d.cfg.Net != nil {
		for _, ep := range d.cfg.Net.Endpoints() {
			c := d.byID[ep.ContainerID]
			running := false
			if c != nil {
				c.mu.Lock()
				running = c.shim != nil
				c.mu.Unlock()
			}
			if !running {
				if err := d.cfg.Net.Detach(ctx, ep.ContainerID); err != nil {
					d.log.Warn("releasing a stale network endpoint", "container", ep.ContainerID, "err", err)
				}
			}
		}
	}
	// Exits to handle and restarts run once the stale endpoints are gone,
	// so that none of them is mistaken for one.
	for _, f := range later {
		d.goTracked(f)
	}
	return nil
}

// restore brings one loaded container up to date with reality: it
// reconnects to a running one and returns what remains to do in the
// background (an exit to handle, a restart, a removal), if anything.
func (d *Daemon) restore(ctx context.Context, c *ctr) func() {
	c.mu.Lock()
	st := c.rec.State
	c.mu.Unlock()
	if st.Removing || st.Dead {
		// A removal that did not finish: finish it.
		return func() {
			if err := d.destroy(d.ctx, c, false); err != nil {
				d.log.Warn("finishing the removal of a container", "container", c.id, "err", err)
			}
		}
	}
	if st.Running && !st.Restarting {
		sc, err := d.cfg.Shims.Restore(ctx, c.dir)
		if err != nil {
			d.log.Warn("container's shim cannot be restored; marking it exited", "container", c.id, "err", err)
			return func() {
				d.handleExit(c, nil, shim.Exit{Code: 255, Error: err.Error(), FinishedAt: time.Now().UTC()})
			}
		}
		if sc.Pid() != 0 {
			c.mu.Lock()
			c.shim = sc
			c.mu.Unlock()
			d.log.Info("reconnected to a running container", "container", c.id, "pid", sc.Pid())
			d.goTracked(func() { d.monitor(c, sc) })
			return nil
		}
		// It exited while the engine was away: an exit like any other,
		// restart policy included.
		exit, err := sc.Wait(ctx)
		if err != nil {
			exit = shim.Exit{Code: 255, Error: err.Error(), FinishedAt: time.Now().UTC()}
		}
		return func() { d.handleExit(c, sc, exit) }
	}
	// A shim whose start the record does not know (the engine died in
	// the middle of a start) runs nothing anyone asked for: end it.
	if _, err := os.Stat(c.path("shim.sock")); err == nil {
		if sc, err := d.cfg.Shims.Restore(ctx, c.dir); err == nil {
			if sc.Pid() != 0 {
				d.log.Warn("ending a container whose start was not recorded", "container", c.id)
				sc.Signal(ctx, sigKILL)
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				sc.Wait(wctx)
				cancel()
			}
			if err := sc.Delete(ctx); err != nil {
				d.log.Warn("deleting an unrecorded container run", "container", c.id, "err", err)
			}
		}
	}
	if st.Restarting {
		c.mu.Lock()
		c.rec.State.Restarting, c.rec.State.Running = false, false
		if err := c.saveLocked(); err != nil {
			d.log.Warn("saving container state", "container", c.id, "err", err)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	rec, hc := c.rec, c.hc
	c.mu.Unlock()
	switch {
	case restartAtBoot(hc.RestartPolicy, rec.HasBeenStartedBefore, rec.HasBeenManuallyStopped, rec.State.ExitCode, rec.RestartCount):
		return func() {
			c.opMu.Lock()
			defer c.opMu.Unlock()
			if d.ctx.Err() != nil {
				return
			}
			c.mu.Lock()
			c.resetRestartsLocked()
			c.mu.Unlock()
			if err := d.startLocked(d.ctx, c); err != nil {
				d.log.Error("restarting a container at engine start", "container", c.id, "err", err)
			}
		}
	case hc.AutoRemove:
		return func() {
			if err := d.removeStopped(c, true); err != nil {
				d.log.Warn("removing an --rm container left stopped", "container", c.id, "err", err)
			}
		}
	}
	return nil
}
