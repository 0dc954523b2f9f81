package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berthvm/berth/guestagent/engine"
)

// Daemon implements engine.Containers. Make one with New.
type Daemon struct {
	cfg    Config
	log    *slog.Logger
	events *engine.Events
	root   string

	// ctx ends at Close: monitors and restart timers stop with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu           sync.Mutex
	byID         map[string]*ctr
	names        map[string]string // "/name" -> ID
	execs        map[string]*execRecord
	shuttingDown bool
}

var _ engine.Containers = (*Daemon)(nil)

// New loads the containers under cfg.Root, reconnects to those whose
// shims survived, records the exits of the others, and starts the
// containers whose restart policy says so, as dockerd does at start.
func New(ctx context.Context, cfg Config) (*Daemon, error) {
	if cfg.Root == "" || cfg.Images == nil || cfg.Volumes == nil || cfg.Shims == nil {
		return nil, errors.New("starting the container engine: Root, Images, Volumes and Shims are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Events == nil {
		cfg.Events = engine.NewEvents(engine.EventsOptions{})
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("starting the container engine: %w", err)
	}
	// The shim's socket is ROOT/ID/shim.sock: it must fit sun_path.
	if n := len(root) + 1 + 64 + len("/shim.sock"); n > 107 {
		return nil, fmt.Errorf("starting the container engine: state directory %s is too long for the containers' sockets (%d bytes, at most 107); use a shorter --root", root, n)
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("starting the container engine: %w", err)
	}
	cleanTmp(filepath.Join(root, tmpDir))
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d := &Daemon{
		cfg: cfg, log: cfg.Log, events: cfg.Events, root: root,
		ctx: dctx, cancel: cancel,
		byID: map[string]*ctr{}, names: map[string]string{}, execs: map[string]*execRecord{},
	}
	if err := d.load(ctx); err != nil {
		cancel()
		return nil, err
	}
	return d, nil
}

// Close stops monitoring the containers and leaves them running: the next
// New reconnects to them.
func (d *Daemon) Close() error {
	d.mu.Lock()
	d.cancel()
	d.mu.Unlock()
	d.wg.Wait()
	return nil
}

// Shutdown stops every running container as dockerd does when it shuts
// down: each gets its stop signal and, when ctx (or its stop timeout)
// ends first, SIGKILL. It does not count as a user's stop, so restart
// policies bring the containers back at the next start. Call Close after.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.mu.Lock()
	d.shuttingDown = true
	var running []*ctr
	for _, c := range d.byID {
		running = append(running, c)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(running))
	for i, c := range running {
		c.mu.Lock()
		up := c.shim != nil
		c.mu.Unlock()
		if !up {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.stopForShutdown(ctx, c)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// The stops SIGKILL now; a process stuck in the kernel must not
		// hold the shutdown for long.
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			return fmt.Errorf("stopping containers: %w", ctx.Err())
		}
	}
	return errors.Join(errs...)
}

func (d *Daemon) isShuttingDown() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.shuttingDown
}

// dir is a container's directory.
func (d *Daemon) dir(id string) string { return filepath.Join(d.root, id) }

// lookup finds a container by full ID, name (with or without "/") or
// unique ID prefix, in dockerd's order.
func (d *Daemon) lookup(name string) (*ctr, error) {
	if name == "" {
		return nil, engine.WithKind(engine.ErrInvalid, "No container name or ID supplied")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.byID[name]; ok {
		return c, nil
	}
	if id, ok := d.names["/"+strings.TrimPrefix(name, "/")]; ok {
		return d.byID[id], nil
	}
	var found *ctr
	if isHexPrefix(name) {
		for id, c := range d.byID {
			if strings.HasPrefix(id, name) {
				if found != nil {
					return nil, engine.WithKind(engine.ErrInvalid, fmt.Sprintf("multiple IDs found with provided prefix: %s", name))
				}
				found = c
			}
		}
	}
	if found == nil {
		return nil, engine.WithKind(engine.ErrNotFound, "No such container: "+name)
	}
	return found, nil
}

// containers returns every container, newest first.
func (d *Daemon) containers() []*ctr {
	d.mu.Lock()
	out := make([]*ctr, 0, len(d.byID))
	for _, c := range d.byID {
		out = append(out, c)
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		ci, cj := out[i].created(), out[j].created()
		if ci.Equal(cj) {
			return out[i].id > out[j].id
		}
		return ci.After(cj)
	})
	return out
}

// publish sends a container event with the container's name, image and
// labels as attributes, plus extra.
func (d *Daemon) publish(c *ctr, action events.Action, extra map[string]string) {
	c.mu.Lock()
	attrs := map[string]string{}
	for k, v := range c.rec.Config.Labels {
		attrs[k] = v
	}
	attrs["name"] = strings.TrimPrefix(c.rec.Name, "/")
	attrs["image"] = c.rec.Config.Image
	c.mu.Unlock()
	for k, v := range extra {
		attrs[k] = v
	}
	d.events.Publish(events.Message{
		Type:   events.ContainerEventType,
		Action: action,
		Actor:  events.Actor{ID: c.id, Attributes: attrs},
	})
}

// ImageInUse reports whether any container was created from the image.
func (d *Daemon) ImageInUse(imageID string) bool {
	for _, c := range d.containers() {
		c.mu.Lock()
		img := c.rec.Image
		c.mu.Unlock()
		if img == imageID {
			return true
		}
	}
	return false
}

// Counts returns the containers by state.
func (d *Daemon) Counts(ctx context.Context) engine.Counts {
	var n engine.Counts
	for _, c := range d.containers() {
		c.mu.Lock()
		st := c.rec.State
		c.mu.Unlock()
		n.Total++
		switch {
		case st.Running && st.Paused:
			n.Paused++
		case st.Running:
			n.Running++
		default:
			n.Stopped++
		}
	}
	return n
}

// timeString formats a time as dockerd's inspect does (zero included).
func timeString(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func notRunning(id string) error {
	return engine.WithKind(engine.ErrConflict, fmt.Sprintf("container %s is not running", id))
}

// waitExitCode turns an exit into a wait answer.
func waitResponse(st state) container.WaitResponse {
	r := container.WaitResponse{StatusCode: int64(st.ExitCode)}
	if st.Error != "" {
		r.Error = &container.WaitExitError{Message: st.Error}
	}
	return r
}
