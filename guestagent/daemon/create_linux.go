package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/guestagent/shim"
	"github.com/berthvm/berth/images"
)

// Create makes a container from an image in the store.
func (d *Daemon) Create(ctx context.Context, opts engine.CreateOptions) (_ container.CreateResponse, retErr error) {
	if opts.Config == nil {
		return container.CreateResponse{}, invalidf("config cannot be empty in order to create a container")
	}
	hc := &container.HostConfig{}
	if opts.HostConfig != nil {
		hc = cloneHostConfig(opts.HostConfig)
	}
	var name string
	if opts.Name != "" {
		n, err := normalizeName(opts.Name)
		if err != nil {
			return container.CreateResponse{}, err
		}
		name = n
	}
	ref := opts.Config.Image
	if ref == "" {
		return container.CreateResponse{}, invalidf("no image specified")
	}
	img, err := d.cfg.Images.Resolve(ctx, ref)
	if err != nil {
		if errors.Is(err, images.ErrNotFound) {
			return container.CreateResponse{}, engine.WithKind(engine.ErrNotFound, "No such image: "+ref)
		}
		return container.CreateResponse{}, err
	}
	if err := checkPlatform(opts.Platform, img, ref); err != nil {
		return container.CreateResponse{}, err
	}
	icfg, err := d.cfg.Images.Config(ctx, img.ID)
	if err != nil {
		return container.CreateResponse{}, fmt.Errorf("reading the config of image %s: %w", ref, err)
	}
	lowers, err := d.cfg.Images.LowerDirs(ctx, img.ID)
	if err != nil {
		return container.CreateResponse{}, fmt.Errorf("preparing image %s: %w", ref, err)
	}
	snapRoot := d.cfg.Images.SnapshotRoot()
	for i, l := range lowers {
		rel, err := filepath.Rel(snapRoot, l)
		if err != nil || strings.HasPrefix(rel, "..") {
			return container.CreateResponse{}, fmt.Errorf("image layer %s is outside the snapshot root", l)
		}
		lowers[i] = rel
	}

	cfg := mergeConfig(opts.Config, imageToConfig(icfg.Config))
	cfg.Image = ref
	if cfg.WorkingDir, err = cleanWorkdir(cfg.WorkingDir); err != nil {
		return container.CreateResponse{}, err
	}
	path, args, err := commandOf(cfg)
	if err != nil {
		return container.CreateResponse{}, err
	}
	warnings, err := validateHostConfig(hc, cfg, d.cfg.Net != nil)
	if err != nil {
		return container.CreateResponse{}, err
	}
	// Limits this host cannot apply (native mode on cgroup v1): say so
	// now, as dockerd does, rather than only in the engine's log.
	warnings = append(warnings, shim.LimitWarnings(resourcesOf(hc))...)
	mps, err := parseMounts(hc, cfg)
	if err != nil {
		return container.CreateResponse{}, err
	}
	var epConfig *network.EndpointSettings
	if opts.Networking != nil {
		for netName, es := range opts.Networking.EndpointsConfig {
			if _, err := networkMode(container.NetworkMode(netName)); err != nil {
				return container.CreateResponse{}, err
			}
			epConfig = es
		}
	}

	id := newID()
	if cfg.Hostname == "" {
		// As dockerd: the short ID, or the guest's name on its network.
		cfg.Hostname = id[:12]
		if hc.NetworkMode == "host" {
			if hn, err := os.Hostname(); err == nil {
				cfg.Hostname = hn
			}
		}
	}
	d.mu.Lock()
	if name == "" {
		name = randomName(func(n string) bool { _, ok := d.names[n]; return ok })
	}
	if other, taken := d.names[name]; taken {
		d.mu.Unlock()
		return container.CreateResponse{}, nameConflict(name, other)
	}
	d.names[name] = id // reserved while the container is made
	d.mu.Unlock()
	dir := d.dir(id)
	defer func() {
		if retErr == nil {
			return
		}
		if _, err := d.cfg.Volumes.ReleaseAll(id); err != nil {
			d.log.Warn("releasing the volumes of a failed create", "err", err)
		}
		removeContainerDir(dir)
		d.mu.Lock()
		if d.names[name] == id {
			delete(d.names, name)
		}
		d.mu.Unlock()
	}()
	if err := os.Mkdir(dir, 0o711); err != nil {
		return container.CreateResponse{}, fmt.Errorf("creating the container's directory: %w", err)
	}

	rec := record{
		ID: id, Name: name, Created: time.Now().UTC(),
		Path: path, Args: args, Config: cfg, Image: img.ID,
		MountPoints: mps, EndpointConfig: epConfig, Lowers: lowers,
	}
	c := newCtr(dir, rec, hc)
	if err := d.acquireVolumes(ctx, c); err != nil {
		return container.CreateResponse{}, err
	}
	c.mu.Lock()
	err = c.saveHostConfigLocked()
	if err == nil {
		err = c.saveLocked()
	}
	c.mu.Unlock()
	if err != nil {
		return container.CreateResponse{}, fmt.Errorf("creating container: %w", err)
	}
	d.mu.Lock()
	d.byID[id] = c
	d.mu.Unlock()
	d.publish(c, events.ActionCreate, nil)
	if warnings == nil {
		warnings = []string{}
	}
	return container.CreateResponse{ID: id, Warnings: warnings}, nil
}

// checkPlatform refuses an image of another platform than the one asked
// ("linux", "linux/arm64"), as dockerd does, so the client pulls it.
func checkPlatform(want string, img images.Image, ref string) error {
	if want == "" {
		return nil
	}
	parts := strings.Split(want, "/")
	if parts[0] != "linux" {
		return invalidf("unsupported platform %q: berth runs linux containers", want)
	}
	if len(parts) > 1 && parts[1] != img.Platform.Architecture ||
		len(parts) > 2 && img.Platform.Variant != "" && parts[2] != img.Platform.Variant {
		have := img.Platform.OS + "/" + img.Platform.Architecture
		if img.Platform.Variant != "" {
			have += "/" + img.Platform.Variant
		}
		return engine.WithKind(engine.ErrNotFound, fmt.Sprintf("image with reference %s was found but does not match the specified platform: wanted %s, actual: %s", ref, want, have))
	}
	return nil
}

// acquireVolumes creates (or references) the container's volumes and
// fills new ones from the image's content at their mount points.
func (d *Daemon) acquireVolumes(ctx context.Context, c *ctr) error {
	var toFill []int
	for i := range c.rec.MountPoints {
		mp := &c.rec.MountPoints[i]
		if mp.Type != mount.TypeVolume {
			continue
		}
		m, err := d.cfg.Volumes.Acquire(ctx, mp.Name, c.id, mp.Anonymous)
		if err != nil {
			return err
		}
		mp.Name, mp.Source = m.Name, m.Path
		if !mp.NoCopy {
			toFill = append(toFill, i)
		}
	}
	if len(toFill) == 0 {
		return nil
	}
	lowers := d.lowersAbs(c, &c.rec)
	var view string
	if len(lowers) == 1 {
		view = lowers[0]
	} else {
		dir, cleanup, err := d.tempMount(overlay{Base: d.cfg.Images.SnapshotRoot(), Lowers: c.rec.Lowers}, true)
		if err != nil {
			return fmt.Errorf("reading the image's volume content: %w", err)
		}
		defer cleanup()
		view = dir
	}
	for _, i := range toFill {
		mp := &c.rec.MountPoints[i]
		// Resolved inside the image: a symlink on the way must not lead
		// to the guest's own files.
		src, err := securejoin.SecureJoin(view, mp.Destination)
		if err != nil {
			return fmt.Errorf("finding %s in the image: %w", mp.Destination, err)
		}
		if err := d.cfg.Volumes.CopyUp(ctx, mp.Name, src); err != nil {
			return err
		}
	}
	return nil
}
