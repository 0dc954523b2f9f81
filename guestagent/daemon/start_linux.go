package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/guestagent/netctl"
	"github.com/berthvm/berth/guestagent/shim"
)

// defaultPath is dockerd's PATH for containers whose image sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Start starts a created or stopped container.
func (d *Daemon) Start(ctx context.Context, name string) error {
	c, err := d.lookup(name)
	if err != nil {
		return err
	}
	c.opMu.Lock()
	defer c.opMu.Unlock()
	c.mu.Lock()
	st := c.rec.State
	autoRemove := c.hc.AutoRemove
	switch {
	case st.Removing || st.Dead || c.removed:
		c.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, "container is marked for removal and cannot be started")
	case st.Paused:
		c.mu.Unlock()
		return engine.WithKind(engine.ErrConflict, "cannot start a paused container, try unpause instead")
	case c.shim != nil:
		c.mu.Unlock()
		return engine.WithKind(engine.ErrNotModified, "container already started")
	}
	// A start by the user ends a policy's wait to restart and starts
	// its count and backoff over, as dockerd's.
	c.cancelRestartLocked()
	c.resetRestartsLocked()
	c.mu.Unlock()
	err = d.startLocked(ctx, c)
	if err != nil && autoRemove {
		// As dockerd: an --rm container that cannot start is removed
		// (docker run --rm waits for that).
		c.mu.Lock()
		c.rec.State.Removing = true
		c.saveLocked()
		c.mu.Unlock()
		if rerr := d.destroy(ctx, c, true); rerr != nil {
			d.log.Warn("removing an --rm container that failed to start", "container", c.id, "err", rerr)
		}
	}
	return err
}

// lowersAbs returns the container's lower dirs as absolute paths.
func (d *Daemon) lowersAbs(c *ctr, rec *record) []string {
	if len(rec.Lowers) == 0 {
		return []string{c.path(emptyLowerDir)}
	}
	out := make([]string, len(rec.Lowers))
	for i, l := range rec.Lowers {
		out[i] = filepath.Join(d.cfg.Images.SnapshotRoot(), l)
	}
	return out
}

// startLocked runs the container; callers hold c.opMu. The request's ctx
// bounds nothing that outlives the call: the container does not die with
// the client.
func (d *Daemon) startLocked(reqCtx context.Context, c *ctr) (retErr error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(reqCtx), 2*time.Minute)
	defer cancel()
	rec, hc := c.snapshot()
	defer func() {
		if retErr == nil {
			return
		}
		c.mu.Lock()
		c.rec.State.Error = retErr.Error()
		c.rec.State.ExitCode = startErrorExitCode(retErr)
		c.rec.State.Restarting, c.rec.State.Running = false, false
		c.saveLocked()
		// Whoever waits for this run or is attached to it: it is over.
		close(c.exitCh)
		c.exitCh = make(chan struct{})
		pending := c.pending
		c.pending = nil
		c.mu.Unlock()
		for _, p := range pending {
			p.done <- nil
		}
	}()

	for _, dir := range []string{upperDir, workDir, rootfsDir} {
		if err := os.MkdirAll(c.path(dir), 0o755); err != nil {
			return fmt.Errorf("preparing the container's filesystem: %w", err)
		}
	}
	if len(rec.Lowers) == 0 {
		if err := os.MkdirAll(c.path(emptyLowerDir), 0o755); err != nil {
			return fmt.Errorf("preparing the container's filesystem: %w", err)
		}
	}
	layers := append([]string{c.path(upperDir)}, d.lowersAbs(c, &rec)...)
	cfg := rec.Config

	user, err := resolveUser(cfg.User, hc.GroupAdd, layeredReader(layers))
	if err != nil {
		return engine.WithKind(engine.ErrInvalid, err.Error())
	}
	if cfg.WorkingDir != "" {
		if err := ensureDir(layers, cfg.WorkingDir, user); err != nil {
			return fmt.Errorf("creating the working directory %s: %w", cfg.WorkingDir, err)
		}
	}
	mounts, err := d.shimMounts(rec.MountPoints)
	if err != nil {
		return err
	}

	hostname := cfg.Hostname
	if hostname == "" {
		hostname = engine.ShortID(c.id)
	}
	mode, err := networkMode(hc.NetworkMode)
	if err != nil {
		return err
	}
	if mode == "bridge" && d.cfg.Net == nil {
		return engine.WithKind(engine.ErrNotFound, "network bridge not found")
	}
	nr := &netRecord{Mode: mode}
	netns := ""
	switch {
	case mode == "host":
		netns = "host"
	case d.cfg.Net != nil:
		opts := netctl.AttachOptions{Mode: netctl.Mode(mode)}
		if es := endpointConfig(&rec, hc); es != nil && len(es.MacAddress) > 0 {
			opts.MAC = net.HardwareAddr(es.MacAddress)
		}
		ep, err := d.cfg.Net.Attach(ctx, c.id, opts)
		if err != nil {
			return fmt.Errorf("attaching the container's network: %w", err)
		}
		netns = ep.NetNS
		nr.NetNS = ep.NetNS
		if ep.IP.IsValid() {
			nr.IP, nr.PrefixLen, nr.Gateway = ep.IP.String(), ep.PrefixLen, ep.Gateway.String()
			nr.MAC = ep.MAC.String()
		}
	}
	detach := func() {
		if d.cfg.Net != nil {
			if err := d.cfg.Net.Detach(context.WithoutCancel(ctx), c.id); err != nil {
				d.log.Warn("detaching a container's network", "container", c.id, "err", err)
			}
		}
	}
	ip, _ := netip.ParseAddr(nr.IP)
	if err := d.writeRunFiles(c, &rec, hc, hostname, ip); err != nil {
		detach()
		return err
	}

	env := mergeEnv([]string{defaultPath, "HOSTNAME=" + hostname}, nil)
	if cfg.Tty {
		env = append(env, "TERM=xterm")
	}
	env = mergeEnv(env, cfg.Env)
	if !slices.ContainsFunc(env, func(kv string) bool { return envKey(kv) == "HOME" }) {
		env = append(env, "HOME="+user.Home)
	}
	sec := securityOf(hc)
	snapRoot := d.cfg.Images.SnapshotRoot()
	lowers := rec.Lowers
	if len(lowers) == 0 {
		lowers = []string{c.path(emptyLowerDir)}
	}
	spec := shim.Spec{
		ID:        c.id,
		StateDir:  c.dir,
		Rootfs:    c.path(rootfsDir),
		LowerBase: snapRoot,
		Lowers:    lowers,
		Upper:     c.path(upperDir),
		Work:      c.path(workDir),
		Readonly:  hc.ReadonlyRootfs,
		Process: shim.Process{
			Args:           append([]string{rec.Path}, rec.Args...),
			Env:            env,
			Cwd:            cfg.WorkingDir,
			UID:            user.UID,
			GID:            user.GID,
			AdditionalGIDs: user.Groups,
			Tty:            cfg.Tty,
			Height:         uint16(hc.ConsoleSize[0]),
			Width:          uint16(hc.ConsoleSize[1]),
		},
		Hostname:          hostname,
		Mounts:            mounts,
		Privileged:        hc.Privileged,
		CapAdd:            hc.CapAdd,
		CapDrop:           hc.CapDrop,
		NoNewPrivileges:   sec.NoNewPrivileges,
		SeccompUnconfined: sec.SeccompUnconfined,
		UserNS:            d.userNS(hc),
		Resources:         resourcesOf(hc),
		NetNS:             netns,
		Hosts:             c.path(hostsFile),
		ResolvConf:        c.path(resolvFile),
		HostnameFile:      c.path(hostnameFile),
		LogPath:           c.logPath(),
		OpenStdin:         cfg.OpenStdin,
		StdinOnce:         cfg.StdinOnce,
	}
	sc, err := d.cfg.Shims.Create(ctx, spec)
	if err != nil {
		detach()
		return startError(err)
	}
	for _, w := range shim.Warnings(sc) {
		d.log.Warn("container limit not applied", "container", engine.ShortID(c.id), "warning", w)
	}
	abort := func(err error) error {
		if derr := sc.Delete(context.WithoutCancel(ctx)); derr != nil {
			d.log.Warn("deleting a container that failed to start", "container", c.id, "err", derr)
		}
		detach()
		return err
	}

	// Clients attached before the start (docker run) get all output.
	d.connectPending(ctx, c, sc)

	if mode == "bridge" && d.cfg.Net != nil {
		ports, err := d.publishPorts(ctx, c.id, &rec, hc)
		if err != nil {
			return abort(err)
		}
		nr.Ports = ports
	}
	if err := sc.Start(ctx); err != nil {
		return abort(startError(err))
	}

	c.mu.Lock()
	st := &c.rec.State
	st.Running, st.Paused, st.Restarting, st.OOMKilled = true, false, false, false
	st.Pid = sc.Pid()
	st.ExitCode, st.Error = 0, ""
	st.StartedAt = time.Now().UTC()
	c.rec.Net = nr
	c.rec.HasBeenStartedBefore = true
	c.rec.HasBeenManuallyStopped = false
	c.exitOnNext = false
	c.shim = sc
	err = c.saveLocked()
	c.mu.Unlock()
	if err != nil {
		d.log.Error("saving container state", "container", c.id, "err", err)
	}
	d.publish(c, events.ActionStart, nil)
	d.goTracked(func() { d.monitor(c, sc) })
	return nil
}

// startError gives the runtime's start failures dockerd's kinds: a
// missing or non-executable command is the user's error.
func startError(err error) error {
	msg := err.Error()
	for _, s := range []string{"executable file not found", "no such file or directory", "permission denied", "not a directory"} {
		if strings.Contains(msg, s) {
			return engine.WithKind(engine.ErrInvalid, "failed to create task for container: "+msg)
		}
	}
	return fmt.Errorf("failed to create task for container: %w", err)
}

// startErrorExitCode is the exit code dockerd records for a start that
// failed (126: cannot execute, 127: not found).
func startErrorExitCode(err error) int {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return 127
	case strings.Contains(msg, "permission denied"):
		return 126
	}
	return 128
}

// resourcesOf converts HostConfig's limits for the shim.
func resourcesOf(hc *container.HostConfig) shim.Resources {
	r := hc.Resources
	out := shim.Resources{
		MemoryBytes: r.Memory,
		MemorySwap:  r.MemorySwap,
		CPUShares:   uint64(max(r.CPUShares, 0)),
	}
	if r.PidsLimit != nil && *r.PidsLimit > 0 {
		out.PidsLimit = *r.PidsLimit
	}
	switch {
	case r.NanoCPUs > 0:
		out.CPUPeriod = 100000
		out.CPUQuota = r.NanoCPUs * 100000 / 1e9
	case r.CPUQuota > 0:
		out.CPUQuota = r.CPUQuota
		out.CPUPeriod = uint64(max(r.CPUPeriod, 0))
	}
	return out
}

// ensureDir creates dir ("/app/data") in the upper layer when the
// image does not have it, owned by the container's user as dockerd does
// for WORKDIR. Parents that only lower layers have are made in the upper
// layer with their mode and owner, as overlayfs would copy them up.
func ensureDir(layers []string, dir string, u execUser) error {
	dir = path.Clean(dir)
	if p, ok := layeredPath(layers, dir); ok {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			return nil
		}
	}
	upper := layers[0]
	cur := ""
	for _, comp := range strings.Split(strings.TrimPrefix(dir, "/"), "/") {
		cur = path.Join(cur, comp)
		target := filepath.Join(upper, cur)
		if fi, err := os.Lstat(target); err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", "/"+cur)
			}
			continue
		}
		if lower, ok := layeredPath(layers[1:], cur); ok {
			fi, err := os.Stat(lower)
			if err != nil || !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", "/"+cur)
			}
			if err := os.Mkdir(target, fi.Mode().Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				os.Lchown(target, int(st.Uid), int(st.Gid))
			}
			os.Chmod(target, fi.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetgid|fs.ModeSetuid))
			continue
		}
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		os.Lchown(target, int(u.UID), int(u.GID))
	}
	return nil
}

// shimMounts turns the recorded mounts into the shim's, creating missing
// bind sources where -v does.
func (d *Daemon) shimMounts(mps []mountPoint) ([]shim.Mount, error) {
	var out []shim.Mount
	for _, mp := range mps {
		switch mp.Type {
		case mount.TypeBind, mount.TypeVolume:
			src := mp.Source
			if mp.Type == mount.TypeVolume && mp.Subpath != "" {
				src = filepath.Join(src, mp.Subpath)
				if _, err := os.Stat(src); err != nil {
					return nil, engine.WithKind(engine.ErrInvalid, fmt.Sprintf("cannot access path %s: %v", src, err))
				}
			}
			if mp.Type == mount.TypeBind {
				if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
					if !mp.CreateSource {
						return nil, engine.WithKind(engine.ErrInvalid, "invalid mount config for type \"bind\": bind source path does not exist: "+src)
					}
					if err := os.MkdirAll(src, 0o755); err != nil {
						return nil, fmt.Errorf("creating bind source %s: %w", src, err)
					}
				}
			}
			opts := []string{"rbind"}
			if mp.NonRecursive {
				opts[0] = "bind"
			}
			prop := string(mp.Propagation)
			if prop == "" {
				prop = string(mount.PropagationRPrivate)
			}
			opts = append(opts, prop)
			if !mp.RW {
				opts = append(opts, "ro")
			}
			out = append(out, shim.Mount{Source: src, Destination: mp.Destination, Type: "bind", Options: opts})
		case mount.TypeTmpfs:
			out = append(out, shim.Mount{Source: "tmpfs", Destination: mp.Destination, Type: "tmpfs", Options: mp.TmpfsOptions})
		}
	}
	return out, nil
}

// endpointConfig is the container's endpoint settings for its network
// mode, as given at create.
func endpointConfig(rec *record, _ *container.HostConfig) *network.EndpointSettings {
	return rec.EndpointConfig
}

// publishPorts publishes PortBindings (and every exposed port with -P)
// and returns what was published.
func (d *Daemon) publishPorts(ctx context.Context, id string, rec *record, hc *container.HostConfig) ([]publishedPort, error) {
	bs, err := portBindings(hc.PortBindings)
	if err != nil {
		return nil, err
	}
	if hc.PublishAllPorts {
		for p := range rec.Config.ExposedPorts {
			if _, ok := hc.PortBindings[p]; ok {
				continue
			}
			proto := string(p.Proto())
			if proto != "tcp" && proto != "udp" {
				continue
			}
			bs = append(bs, hostBinding{Proto: proto, ContainerPort: p.Num()})
		}
		slices.SortFunc(bs, func(a, b hostBinding) int { return int(a.ContainerPort) - int(b.ContainerPort) })
	}
	var fixed []netctl.PortBinding
	var ranges []hostBinding
	for _, b := range bs {
		if b.HostPortEnd != 0 {
			ranges = append(ranges, b)
			continue
		}
		fixed = append(fixed, netctl.PortBinding{Proto: b.Proto, HostIP: b.HostIP, HostPort: b.HostPort, ContainerPort: b.ContainerPort})
	}
	var out []publishedPort
	add := func(pps []netctl.PublishedPort) {
		for _, p := range pps {
			out = append(out, publishedPort{Proto: p.Proto, HostIP: p.HostIP, HostPort: p.HostPort, ContainerPort: p.ContainerPort})
		}
	}
	if len(fixed) > 0 {
		pps, err := d.cfg.Net.Publish(ctx, id, fixed)
		if err != nil {
			return nil, portError(err)
		}
		add(pps)
	}
	for _, b := range ranges {
		var lastErr error
		published := false
		for p := int(b.HostPort); p <= int(b.HostPortEnd); p++ {
			pps, err := d.cfg.Net.Publish(ctx, id, []netctl.PortBinding{{Proto: b.Proto, HostIP: b.HostIP, HostPort: uint16(p), ContainerPort: b.ContainerPort}})
			if err == nil {
				add(pps)
				published = true
				break
			}
			lastErr = err
			if !errors.Is(err, netctl.ErrPortAllocated) {
				break
			}
		}
		if !published {
			return nil, portError(lastErr)
		}
	}
	return out, nil
}

// portError gives netctl's errors the API's kinds: a taken port is a
// conflict-free server error in dockerd ("port is already allocated").
func portError(err error) error {
	switch {
	case errors.Is(err, netctl.ErrInvalid):
		return engine.WithKind(engine.ErrInvalid, err.Error())
	}
	return fmt.Errorf("driver failed programming external connectivity on endpoint: %w", err)
}

// userNS reports whether the container gets a private user namespace:
// when it asks for one, or by the engine's default unless it opts out
// with --userns=host or is privileged.
func (d *Daemon) userNS(hc *container.HostConfig) bool {
	switch {
	case hc.UsernsMode == "private":
		return true
	case hc.UsernsMode == "host" || hc.Privileged:
		return false
	}
	return d.cfg.UsernsRemap
}
