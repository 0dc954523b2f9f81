package daemon

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"

	"github.com/berthvm/berth/guestagent/ctrfs"
	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/images"
)

// Changes lists the container's filesystem changes against its image.
func (d *Daemon) Changes(ctx context.Context, name string) ([]container.FilesystemChange, error) {
	c, err := d.lookup(name)
	if err != nil {
		return nil, err
	}
	rec, _ := c.snapshot()
	changes, err := images.Changes(c.path(upperDir), d.lowersAbs(c, &rec))
	if err != nil {
		return nil, fmt.Errorf("listing the changes of %s: %w", c.id, err)
	}
	if changes == nil {
		changes = []container.FilesystemChange{}
	}
	return changes, nil
}

// withFS gives fn the container's filesystem as ctrfs sees it: the live
// root of a running container, or a temporary mount of a stopped one's
// layers (read-write only when write is set), held against a concurrent
// start.
func (d *Daemon) withFS(c *ctr, write bool, fn func(ctrfs.FS) error) error {
	c.opMu.Lock()
	locked := true
	defer func() {
		if locked {
			c.opMu.Unlock()
		}
	}()
	rec, hc := c.snapshot()
	c.mu.Lock()
	running := c.shim != nil
	c.mu.Unlock()
	f := ctrfs.FS{ReadOnlyRoot: hc.ReadonlyRootfs}
	for _, mp := range rec.MountPoints {
		if mp.Type == mount.TypeTmpfs {
			continue // in the container's mount namespace only
		}
		src := mp.Source
		if mp.Type == mount.TypeVolume && mp.Subpath != "" {
			src += "/" + mp.Subpath
		}
		f.Mounts = append(f.Mounts, ctrfs.Mount{Source: src, Destination: mp.Destination, ReadOnly: !mp.RW})
	}
	if running {
		for _, m := range []struct{ file, dst string }{{hostsFile, "/etc/hosts"}, {resolvFile, "/etc/resolv.conf"}, {hostnameFile, "/etc/hostname"}} {
			f.Mounts = append(f.Mounts, ctrfs.Mount{Source: c.path(m.file), Destination: m.dst})
		}
		f.Root = c.path(rootfsDir)
		// The live root needs no lock: stop and start may go on.
		c.opMu.Unlock()
		locked = false
		return fn(f)
	}
	o := overlay{Base: d.cfg.Images.SnapshotRoot(), Lowers: rec.Lowers}
	if len(o.Lowers) == 0 {
		o.Lowers = []string{c.path(emptyLowerDir)}
	}
	if write {
		o.Upper, o.Work = c.path(upperDir), c.path(workDir)
	} else {
		o.Lowers = append([]string{c.path(upperDir)}, o.Lowers...)
	}
	root, cleanup, err := d.tempMount(o, !write)
	if err != nil {
		return fmt.Errorf("mounting the filesystem of %s: %w", c.id, err)
	}
	defer cleanup()
	f.Root = root
	return fn(f)
}

// Export writes the container's filesystem as a tar.
func (d *Daemon) Export(ctx context.Context, name string, w io.Writer) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	err = d.withFS(c, false, func(f ctrfs.FS) error { return f.Export(ctx, w) })
	if err == nil {
		d.publish(c, events.ActionExport, nil)
	}
	return err
}

// StatPath describes a path in the container.
func (d *Daemon) StatPath(ctx context.Context, name, path string) (container.PathStat, error) {
	c, err := d.lookup(name)
	if err != nil {
		return container.PathStat{}, err
	}
	var st container.PathStat
	err = d.withFS(c, false, func(f ctrfs.FS) error {
		var err error
		st, err = f.Stat(path)
		return err
	})
	return st, err
}

// CopyFrom writes a tar of a path in the container.
func (d *Daemon) CopyFrom(ctx context.Context, name, path string, stat func(container.PathStat), w io.Writer) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	err = d.withFS(c, false, func(f ctrfs.FS) error { return f.CopyFrom(ctx, path, stat, w) })
	if err == nil {
		d.publish(c, events.ActionArchivePath, map[string]string{"path": path})
	}
	return err
}

// CopyTo extracts a tar into a directory of the container.
func (d *Daemon) CopyTo(ctx context.Context, name, path string, r io.Reader, opts engine.CopyToOptions) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	err = d.withFS(c, true, func(f ctrfs.FS) error { return f.CopyTo(ctx, path, r, opts) })
	if err == nil {
		d.publish(c, events.ActionExtractToDir, map[string]string{"path": path})
	}
	return err
}

// Commit makes an image of the container's changes and config.
func (d *Daemon) Commit(ctx context.Context, name string, opts engine.CommitOptions) (string, error) {
	c, err := d.lookup(name)
	if err != nil {
		return "", err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	rec, _ := c.snapshot()
	user := &container.Config{}
	if opts.Config != nil {
		user = cloneConfig(opts.Config)
	}
	if err := applyChanges(user, opts.Changes); err != nil {
		return "", err
	}
	merged := mergeConfig(user, rec.Config)
	c.mu.Lock()
	pause := opts.Pause && c.shim != nil && !c.rec.State.Paused
	c.mu.Unlock()
	if pause {
		if err := d.pauseLocked(ctx, c); err != nil {
			return "", err
		}
		defer func() {
			if err := d.unpauseLocked(context.WithoutCancel(ctx), c); err != nil {
				d.log.Warn("unpausing a container after commit", "container", c.id, "err", err)
			}
		}()
	}
	ic := configToImage(merged)
	img, err := d.cfg.Images.Commit(ctx, images.CommitOptions{
		Parent:    rec.Image,
		UpperDir:  c.path(upperDir),
		Config:    &ic,
		Author:    opts.Author,
		Comment:   opts.Comment,
		CreatedBy: strings.Join(append([]string{rec.Path}, rec.Args...), " "),
		Reference: opts.Reference,
	})
	if err != nil {
		return "", err
	}
	d.publish(c, events.ActionCommit, map[string]string{"comment": opts.Comment, "imageID": img.ID, "imageRef": opts.Reference})
	return img.ID, nil
}

func cloneConfig(c *container.Config) *container.Config {
	rec := cloneRecord(record{Config: c})
	return rec.Config
}
