package daemon

import (
	"context"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/storage"

	"github.com/berthvm/berth/guestagent/engine"
)

// Inspect returns `docker inspect` data.
func (d *Daemon) Inspect(ctx context.Context, name string, size bool) (container.InspectResponse, error) {
	c, err := d.lookup(name)
	if err != nil {
		return container.InspectResponse{}, err
	}
	rec, hc := c.snapshot()
	st := rec.State
	r := container.InspectResponse{
		ID:      c.id,
		Created: timeString(rec.Created),
		Path:    rec.Path,
		Args:    rec.Args,
		State: &container.State{
			Status:     st.status(),
			Running:    st.Running,
			Paused:     st.Paused,
			Restarting: st.Restarting,
			OOMKilled:  st.OOMKilled,
			Dead:       st.Dead,
			Pid:        st.Pid,
			ExitCode:   st.ExitCode,
			Error:      st.Error,
			StartedAt:  timeString(st.StartedAt),
			FinishedAt: timeString(st.FinishedAt),
		},
		Image:          rec.Image,
		ResolvConfPath: c.path(resolvFile),
		HostnamePath:   c.path(hostnameFile),
		HostsPath:      c.path(hostsFile),
		LogPath:        c.logPath(),
		Name:           rec.Name,
		RestartCount:   rec.RestartCount,
		Driver:         "overlay2",
		Platform:       "linux",
		ExecIDs:        d.runningExecs(c),
		HostConfig:     hc,
		GraphDriver: &storage.DriverData{
			Name: "overlay2",
			Data: map[string]string{
				"LowerDir":  strings.Join(d.lowersAbs(c, &rec), ":"),
				"UpperDir":  c.path(upperDir),
				"WorkDir":   c.path(workDir),
				"MergedDir": c.path(rootfsDir),
			},
		},
		Mounts:          mountPoints(rec.MountPoints),
		Config:          rec.Config,
		NetworkSettings: d.networkSettings(c, &rec, hc),
	}
	if r.Args == nil {
		r.Args = []string{}
	}
	if size {
		rw, _ := dirSize(c.path(upperDir))
		rootfs := rw
		if img, err := d.cfg.Images.Resolve(ctx, rec.Image); err == nil {
			rootfs += img.Size
		}
		r.SizeRw, r.SizeRootFs = &rw, &rootfs
	}
	return r, nil
}

// mountPoints converts the recorded mounts for inspect and ps.
func mountPoints(mps []mountPoint) []container.MountPoint {
	out := []container.MountPoint{}
	for _, mp := range mps {
		m := container.MountPoint{
			Type:        mp.Type,
			Name:        mp.Name,
			Source:      mp.Source,
			Destination: mp.Destination,
			Mode:        mp.Mode,
			RW:          mp.RW,
			Propagation: mp.Propagation,
		}
		if mp.Type == mount.TypeVolume {
			m.Driver = "local"
			if m.Mode == "" {
				m.Mode = "z"
			}
		}
		if mp.Type == mount.TypeTmpfs {
			m.Source = ""
		}
		out = append(out, m)
	}
	return out
}

// networkName is the name of the container's network in inspect and ps.
func networkName(hc *container.HostConfig) string {
	m := string(hc.NetworkMode)
	if m == "" || m == "default" {
		return "bridge"
	}
	return m
}

// networkSettings fills NetworkSettings as dockerd does: the network the
// container is on, with its address while it runs, and the exposed ports
// with their host bindings.
func (d *Daemon) networkSettings(c *ctr, rec *record, hc *container.HostConfig) *container.NetworkSettings {
	ns := &container.NetworkSettings{Ports: network.PortMap{}, Networks: map[string]*network.EndpointSettings{}}
	es := &network.EndpointSettings{}
	if rec.EndpointConfig != nil {
		es = rec.EndpointConfig.Copy()
	}
	netName := networkName(hc)
	es.NetworkID = netName
	if n := rec.Net; n != nil && rec.State.Running {
		ns.SandboxKey = n.NetNS
		if n.NetNS != "" {
			ns.SandboxID = c.id
		}
		es.EndpointID = c.id
		if ip, err := netip.ParseAddr(n.IP); err == nil {
			es.IPAddress, es.IPPrefixLen = ip, n.PrefixLen
		}
		if gw, err := netip.ParseAddr(n.Gateway); err == nil {
			es.Gateway = gw
		}
		if mac, err := net.ParseMAC(n.MAC); err == nil {
			es.MacAddress = network.HardwareAddr(mac)
		}
	}
	ns.Networks[netName] = es
	if netName == "host" || netName == "none" {
		return ns
	}
	for p := range rec.Config.ExposedPorts {
		ns.Ports[p] = nil
	}
	if rec.Net != nil && rec.State.Running {
		for _, pp := range rec.Net.Ports {
			port, ok := network.PortFrom(pp.ContainerPort, network.IPProtocol(pp.Proto))
			if !ok {
				continue
			}
			hip, _ := netip.ParseAddr(pp.HostIP)
			ns.Ports[port] = append(ns.Ports[port], network.PortBinding{HostIP: hip, HostPort: strconv.Itoa(int(pp.HostPort))})
		}
	}
	return ns
}

// summary is one `docker ps` row.
func (d *Daemon) summary(ctx context.Context, c *ctr, rec *record, hc *container.HostConfig, size bool, now time.Time) container.Summary {
	s := container.Summary{
		ID:      c.id,
		Names:   []string{rec.Name},
		Image:   rec.Config.Image,
		ImageID: rec.Image,
		Command: strings.Join(append([]string{rec.Path}, rec.Args...), " "),
		Created: rec.Created.Unix(),
		Labels:  rec.Config.Labels,
		State:   rec.State.status(),
		Status:  rec.State.text(now),
		Mounts:  mountPoints(rec.MountPoints),
		Ports:   []container.PortSummary{},
	}
	if img, err := d.cfg.Images.Resolve(ctx, rec.Config.Image); err != nil || img.ID != rec.Image {
		// The name now means another image (or none): show the ID.
		s.Image = rec.Image
	}
	s.HostConfig.NetworkMode = networkName(hc)
	ns := d.networkSettings(c, rec, hc)
	s.NetworkSettings = &container.NetworkSettingsSummary{Networks: ns.Networks}
	for p, bs := range ns.Ports {
		if len(bs) == 0 {
			s.Ports = append(s.Ports, container.PortSummary{PrivatePort: p.Num(), Type: string(p.Proto())})
			continue
		}
		for _, b := range bs {
			hp, _ := strconv.ParseUint(b.HostPort, 10, 16)
			s.Ports = append(s.Ports, container.PortSummary{IP: b.HostIP, PrivatePort: p.Num(), PublicPort: uint16(hp), Type: string(p.Proto())})
		}
	}
	slices.SortFunc(s.Ports, func(a, b container.PortSummary) int {
		if a.PrivatePort != b.PrivatePort {
			return int(a.PrivatePort) - int(b.PrivatePort)
		}
		return strings.Compare(a.Type, b.Type)
	})
	if size {
		rw, _ := dirSize(c.path(upperDir))
		s.SizeRw = rw
		s.SizeRootFs = rw
		if img, err := d.cfg.Images.Resolve(ctx, rec.Image); err == nil {
			s.SizeRootFs += img.Size
		}
	}
	return s
}

// psFilterKeys are the filters `docker ps` accepts.
var psFilterKeys = map[string]bool{
	"ancestor": true, "before": true, "expose": true, "exited": true, "health": true,
	"id": true, "isolation": true, "is-task": true, "label": true, "name": true,
	"network": true, "publish": true, "since": true, "status": true, "volume": true,
}

var validStatuses = map[string]bool{"created": true, "restarting": true, "running": true, "removing": true, "paused": true, "exited": true, "dead": true}

// psFilter is a parsed `docker ps --filter` set.
type psFilter struct {
	f         map[string][]string
	exited    []int
	before    time.Time
	since     time.Time
	ancestors map[string]bool // image IDs
	publish   []portFilter
	expose    []portFilter
}

type portFilter struct {
	lo, hi uint16
	proto  string // "" any
}

func (p portFilter) match(port uint16, proto string) bool {
	return port >= p.lo && port <= p.hi && (p.proto == "" || p.proto == proto)
}

func parsePortFilter(v string) (portFilter, error) {
	ports, proto, _ := strings.Cut(v, "/")
	lo, hi, err := parsePortRange(ports)
	if err != nil || lo == 0 {
		return portFilter{}, invalidf("invalid port filter %q", v)
	}
	return portFilter{lo: lo, hi: hi, proto: proto}, nil
}

// parsePsFilter checks the filters and resolves what names other objects.
func (d *Daemon) parsePsFilter(ctx context.Context, f map[string][]string) (*psFilter, error) {
	pf := &psFilter{f: f}
	for k, vs := range f {
		if !psFilterKeys[k] {
			return nil, invalidf("invalid filter '%s'", k)
		}
		for _, v := range vs {
			switch k {
			case "status":
				if !validStatuses[v] {
					return nil, invalidf("invalid filter 'status=%s'", v)
				}
			case "exited":
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, invalidf("invalid filter 'exited=%s'", v)
				}
				pf.exited = append(pf.exited, n)
			case "before", "since":
				c, err := d.lookup(v)
				if err != nil {
					return nil, err
				}
				if k == "before" {
					pf.before = c.created()
				} else {
					pf.since = c.created()
				}
			case "ancestor":
				if pf.ancestors == nil {
					pf.ancestors = map[string]bool{}
				}
				if img, err := d.cfg.Images.Resolve(ctx, v); err == nil {
					pf.ancestors[img.ID] = true
				}
			case "publish", "expose":
				p, err := parsePortFilter(v)
				if err != nil {
					return nil, err
				}
				if k == "publish" {
					pf.publish = append(pf.publish, p)
				} else {
					pf.expose = append(pf.expose, p)
				}
			case "is-task":
				if _, err := strconv.ParseBool(v); err != nil {
					return nil, invalidf("invalid filter 'is-task=%s'", v)
				}
			case "health":
				switch v {
				case "starting", "healthy", "unhealthy", "none":
				default:
					return nil, invalidf("Unrecognised filter value for health: %s", v)
				}
			}
		}
	}
	return pf, nil
}

// matchRegexpOrEqual is dockerd's Args.Match.
func matchRegexpOrEqual(want []string, s string) bool {
	for _, w := range want {
		if w == s {
			return true
		}
		if re, err := regexp.Compile(w); err == nil && re.MatchString(s) {
			return true
		}
	}
	return false
}

// match applies the filters to one container. imageChain are the IDs of
// its image and the image's parents.
func (pf *psFilter) match(c *ctr, rec *record, hc *container.HostConfig, imageChain []string) bool {
	f := pf.f
	if vs, ok := f["status"]; ok && !slices.Contains(vs, string(rec.State.status())) {
		return false
	}
	if vs, ok := f["id"]; ok {
		hit := false
		for _, v := range vs {
			hit = hit || strings.HasPrefix(c.id, v)
		}
		if !hit {
			return false
		}
	}
	if vs, ok := f["name"]; ok && !matchRegexpOrEqual(vs, rec.Name) && !matchRegexpOrEqual(vs, strings.TrimPrefix(rec.Name, "/")) {
		return false
	}
	if vs, ok := f["label"]; ok && !matchLabelFilter(rec.Config.Labels, vs, true) {
		return false
	}
	if len(pf.exited) > 0 {
		if rec.State.status() != container.StateExited || !slices.Contains(pf.exited, rec.State.ExitCode) {
			return false
		}
	}
	if !pf.before.IsZero() && !rec.Created.Before(pf.before) {
		return false
	}
	if !pf.since.IsZero() && !rec.Created.After(pf.since) {
		return false
	}
	if _, ok := f["ancestor"]; ok {
		hit := false
		for _, id := range imageChain {
			hit = hit || pf.ancestors[id]
		}
		for _, v := range f["ancestor"] {
			hit = hit || v == rec.Config.Image
		}
		if !hit {
			return false
		}
	}
	if vs, ok := f["volume"]; ok {
		hit := false
		for _, mp := range rec.MountPoints {
			hit = hit || slices.Contains(vs, mp.Name) || slices.Contains(vs, mp.Destination) || (mp.Type == mount.TypeBind && slices.Contains(vs, mp.Source))
		}
		if !hit {
			return false
		}
	}
	if vs, ok := f["network"]; ok && !slices.Contains(vs, networkName(hc)) {
		return false
	}
	if len(pf.expose) > 0 {
		hit := false
		for p := range rec.Config.ExposedPorts {
			for _, pf := range pf.expose {
				hit = hit || pf.match(p.Num(), string(p.Proto()))
			}
		}
		if !hit {
			return false
		}
	}
	if len(pf.publish) > 0 {
		hit := false
		if rec.Net != nil && rec.State.Running {
			for _, pp := range rec.Net.Ports {
				for _, pf := range pf.publish {
					hit = hit || pf.match(pp.ContainerPort, pp.Proto)
				}
			}
		}
		if !hit {
			return false
		}
	}
	if vs, ok := f["health"]; ok && !slices.Contains(vs, "none") {
		return false // berth runs no health checks
	}
	if vs, ok := f["is-task"]; ok && slices.Contains(vs, "true") {
		return false
	}
	return true
}

// List returns `docker ps` rows, newest first.
func (d *Daemon) List(ctx context.Context, opts engine.ListOptions) ([]container.Summary, error) {
	pf, err := d.parsePsFilter(ctx, opts.Filters)
	if err != nil {
		return nil, err
	}
	all := opts.All || opts.Limit > 0
	if _, ok := opts.Filters["status"]; ok {
		all = true
	}
	if _, ok := opts.Filters["exited"]; ok {
		all = true
	}
	now := time.Now()
	out := []container.Summary{}
	parents := map[string][]string{}
	for _, c := range d.containers() {
		rec, hc := c.view()
		if !all && !rec.State.Running {
			continue
		}
		var chain []string
		if _, ok := opts.Filters["ancestor"]; ok {
			if ch, ok := parents[rec.Image]; ok {
				chain = ch
			} else {
				chain = d.imageChain(ctx, rec.Image)
				parents[rec.Image] = chain
			}
		}
		if !pf.match(c, &rec, hc, chain) {
			continue
		}
		out = append(out, d.summary(ctx, c, &rec, hc, opts.Size, now))
		if opts.Limit > 0 && len(out) >= opts.Limit {
			break
		}
	}
	return out, nil
}

// imageChain is an image's ID and its parents' IDs.
func (d *Daemon) imageChain(ctx context.Context, id string) []string {
	var out []string
	for i := 0; id != "" && i < 128; i++ {
		out = append(out, id)
		img, err := d.cfg.Images.Resolve(ctx, id)
		if err != nil {
			break
		}
		id = img.Parent
	}
	return out
}
