package netctl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Manager owns the bridge, the containers' namespaces and the nftables
// table. Its methods are safe for concurrent use.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	subnet netip.Prefix
	gw     netip.Addr
	nsPath string // the managed ("guest") namespace
	nsDir  string // StateDir/netns

	mu     sync.Mutex
	ns     netns.NsHandle
	nl     *netlink.Handle
	st     *state
	closed bool
}

// New sets up (or takes over, after a restart) the guest's container
// network: bridge, sysctls, IPAM state and the nftables table.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("setting up container networking: no state directory: %w", ErrInvalid)
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if len(cfg.Bridge) >= 16 {
		return nil, fmt.Errorf("bridge name %q is too long: %w", cfg.Bridge, ErrInvalid)
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	subnet, err := netip.ParsePrefix(cfg.Subnet)
	if err != nil || !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return nil, fmt.Errorf("container subnet %q: want an IPv4 prefix of /30 or larger: %w", cfg.Subnet, ErrInvalid)
	}
	subnet = subnet.Masked()
	gw := subnet.Addr().Next()
	if cfg.Gateway != "" {
		gw, err = netip.ParseAddr(cfg.Gateway)
		if err != nil || !subnet.Contains(gw) || gw == subnet.Addr() || gw == lastAddr(subnet) {
			return nil, fmt.Errorf("gateway %q is not a host address of %s: %w", cfg.Gateway, subnet, ErrInvalid)
		}
	}
	m := &Manager{
		cfg: cfg, log: cfg.Log, subnet: subnet, gw: gw,
		nsPath: cfg.NetNS, nsDir: filepath.Join(cfg.StateDir, "netns"),
	}
	if m.nsPath == "" {
		m.nsPath = "/proc/self/ns/net"
	}
	if err := os.MkdirAll(m.nsDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating network state directory: %w", err)
	}
	if m.ns, err = netns.GetFromPath(m.nsPath); err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", m.nsPath, err)
	}
	// NETLINK_ROUTE only: by default the handle also opens XFRM, which
	// needs the xfrm_user module the guest does not ship.
	if m.nl, err = netlink.NewHandleAt(m.ns, unix.NETLINK_ROUTE); err != nil {
		m.ns.Close()
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	if err := m.setup(ctx); err != nil {
		m.nl.Close()
		m.ns.Close()
		return nil, err
	}
	return m, nil
}

func (m *Manager) setup(ctx context.Context) error {
	if m.cfg.PortRange[0] == 0 {
		r, err := readSysctl(m.nsPath, "net/ipv4/ip_local_port_range")
		if err != nil {
			return err
		}
		f := strings.Fields(r)
		lo, err1 := strconv.ParseUint(f[0], 10, 16)
		hi, err2 := strconv.ParseUint(f[len(f)-1], 10, 16)
		if len(f) != 2 || err1 != nil || err2 != nil {
			return fmt.Errorf("parsing ip_local_port_range %q: %w", r, ErrInvalid)
		}
		m.cfg.PortRange = [2]uint16{uint16(lo), uint16(hi)}
	}
	if err := m.ensureBridge(); err != nil {
		return err
	}
	for _, kv := range [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/ipv4/conf/" + m.cfg.Bridge + "/route_localnet", "1"},
	} {
		if err := writeSysctl(m.nsPath, kv[0], kv[1]); err != nil {
			return err
		}
	}
	st, err := loadState(m.cfg.StateDir, m.subnet.String())
	if err != nil {
		return err
	}
	m.st = st
	// Endpoints whose namespace is gone (the VM rebooted, or someone
	// unmounted it) hold addresses and ports for nothing: release them.
	for id, ep := range st.Endpoints {
		if ep.Mode == ModeHost || isNetNS(ep.NetNS) {
			continue
		}
		m.log.InfoContext(ctx, "releasing stale network endpoint", "container", id, "ip", ep.IP)
		m.cleanupEndpoint(id, ep)
		delete(st.Endpoints, id)
		st.Ports = slices.DeleteFunc(st.Ports, func(p PublishedPort) bool { return p.ContainerID == id })
	}
	if err := m.st.save(m.cfg.StateDir); err != nil {
		return err
	}
	return m.applyRules()
}

func (m *Manager) ensureBridge() error {
	l, err := m.nl.LinkByName(m.cfg.Bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: m.cfg.Bridge, MTU: m.cfg.MTU}}
		if err := m.nl.LinkAdd(br); err != nil {
			return fmt.Errorf("creating bridge %s: %w", m.cfg.Bridge, err)
		}
		if l, err = m.nl.LinkByName(m.cfg.Bridge); err != nil {
			return fmt.Errorf("finding bridge %s: %w", m.cfg.Bridge, err)
		}
	case err != nil:
		return fmt.Errorf("finding bridge %s: %w", m.cfg.Bridge, err)
	case l.Type() != "bridge":
		return fmt.Errorf("interface %s exists and is a %s, not a bridge: %w", m.cfg.Bridge, l.Type(), ErrInvalid)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: m.gw.AsSlice(), Mask: net.CIDRMask(m.subnet.Bits(), 32)}}
	if err := m.nl.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("addressing bridge %s: %w", m.cfg.Bridge, err)
	}
	if err := m.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing bridge %s up: %w", m.cfg.Bridge, err)
	}
	return nil
}

func (m *Manager) applyRules() error {
	return ruleset{bridge: m.cfg.Bridge, uplink: m.cfg.Uplink, subnet: m.subnet, ports: m.st.Ports}.apply(int(m.ns))
}

// hostVeth names the bridge side of a container's veth pair. The name is
// derived from the ID so Detach finds it even without state.
func hostVeth(id string) string {
	h := sha256.Sum256([]byte(id))
	return "vb" + hex.EncodeToString(h[:])[:11]
}

func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("container ID %q: %w", id, ErrInvalid)
	}
	return nil
}

func (m *Manager) endpoint(id string, ep *epState) *Endpoint {
	out := &Endpoint{ContainerID: id, Mode: ep.Mode, NetNS: ep.NetNS}
	if ep.Mode == ModeBridge {
		out.IP, out.PrefixLen, out.Gateway = ep.IP, m.subnet.Bits(), m.gw
		out.MAC, _ = net.ParseMAC(ep.MAC)
		out.HostVeth, out.Bridge = ep.HostVeth, m.cfg.Bridge
	}
	return out
}

func (m *Manager) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return fmt.Errorf("network manager: %w", net.ErrClosed)
	}
	return nil
}

// Attach gives a container its network. Attaching an attached container
// returns its endpoint unchanged.
func (m *Manager) Attach(ctx context.Context, id string, opts AttachOptions) (*Endpoint, error) {
	if err := validID(id); err != nil {
		return nil, err
	}
	mode := opts.Mode
	if mode == "" || mode == "default" {
		mode = ModeBridge
	}
	if mode != ModeBridge && mode != ModeNone && mode != ModeHost {
		return nil, fmt.Errorf("network mode %q: %w", mode, ErrInvalid)
	}
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	if ep, ok := m.st.Endpoints[id]; ok {
		return m.endpoint(id, ep), nil
	}
	ep := &epState{Mode: mode}
	if mode != ModeHost {
		ep.NetNS = filepath.Join(m.nsDir, id)
		if err := m.createEndpoint(ctx, id, ep, opts); err != nil {
			return nil, errors.Join(err, m.cleanupEndpoint(id, ep))
		}
	}
	m.st.Endpoints[id] = ep
	if ep.IP.IsValid() {
		m.st.Last = ep.IP
	}
	if err := m.st.save(m.cfg.StateDir); err != nil {
		delete(m.st.Endpoints, id)
		return nil, errors.Join(err, m.cleanupEndpoint(id, ep))
	}
	m.log.DebugContext(ctx, "attached container network", "container", id, "mode", mode, "ip", ep.IP)
	return m.endpoint(id, ep), nil
}

func (m *Manager) createEndpoint(ctx context.Context, id string, ep *epState, opts AttachOptions) error {
	if err := newNetNS(ep.NetNS); err != nil {
		return err
	}
	cns, err := netns.GetFromPath(ep.NetNS)
	if err != nil {
		return fmt.Errorf("opening container network namespace: %w", err)
	}
	defer cns.Close()
	cnl, err := netlink.NewHandleAt(cns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("opening netlink in container namespace: %w", err)
	}
	defer cnl.Close()
	lo, err := cnl.LinkByName("lo")
	if err == nil {
		err = cnl.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bringing container loopback up: %w", err)
	}
	if ep.Mode != ModeBridge {
		return nil
	}

	used := map[netip.Addr]bool{}
	for _, o := range m.st.Endpoints {
		if o.IP.IsValid() {
			used[o.IP] = true
		}
	}
	ip, err := allocateIP(m.subnet, m.gw, m.st.Last, used)
	if err != nil {
		return err
	}
	ep.IP = ip
	mac := net.HardwareAddr(macFor(ip))
	if opts.MAC != nil {
		mac = opts.MAC
	}
	ep.MAC = mac.String()
	ep.HostVeth = hostVeth(id)

	br, err := m.nl.LinkByName(m.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("finding bridge %s: %w", m.cfg.Bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: ep.HostVeth, MTU: m.cfg.MTU, MasterIndex: br.Attrs().Index},
		PeerName:         "eth0",
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(cns),
		PeerMTU:          uint32(m.cfg.MTU),
	}
	if err := m.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating veth pair %s: %w", ep.HostVeth, err)
	}
	hl, err := m.nl.LinkByName(ep.HostVeth)
	if err == nil {
		// With br_netfilter, DNAT happens while bridging, and a container
		// reaching itself through a published port is bridged back out
		// of the port it came in on, which only hairpin mode allows.
		err = m.nl.LinkSetHairpin(hl, true)
	}
	if err == nil {
		err = m.nl.LinkSetUp(hl)
	}
	if err != nil {
		return fmt.Errorf("bringing %s up: %w", ep.HostVeth, err)
	}
	eth, err := cnl.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("finding container eth0: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(m.subnet.Bits(), 32)}}
	if err := cnl.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("addressing container eth0: %w", err)
	}
	if err := cnl.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bringing container eth0 up: %w", err)
	}
	if err := cnl.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: m.gw.AsSlice()}); err != nil {
		return fmt.Errorf("adding the container's default route: %w", err)
	}
	return nil
}

// cleanupEndpoint removes what an endpoint may have created; missing
// pieces are fine.
func (m *Manager) cleanupEndpoint(id string, ep *epState) error {
	var errs []error
	name := ep.HostVeth
	if name == "" {
		name = hostVeth(id)
	}
	if l, err := m.nl.LinkByName(name); err == nil {
		if err := m.nl.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("deleting veth %s: %w", name, err))
		}
	}
	if ep.NetNS != "" {
		errs = append(errs, deleteNetNS(ep.NetNS))
	}
	return errors.Join(errs...)
}

// Endpoint returns an attached container's endpoint.
func (m *Manager) Endpoint(id string) (*Endpoint, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	ep, ok := m.st.Endpoints[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, ErrNotFound)
	}
	return m.endpoint(id, ep), nil
}

// Endpoints lists every attached container's endpoint, so the engine can
// detach those of containers it no longer knows.
func (m *Manager) Endpoints() []*Endpoint {
	if m.lock() != nil {
		return nil
	}
	defer m.mu.Unlock()
	var out []*Endpoint
	for id, ep := range m.st.Endpoints {
		out = append(out, m.endpoint(id, ep))
	}
	slices.SortFunc(out, func(a, b *Endpoint) int { return strings.Compare(a.ContainerID, b.ContainerID) })
	return out
}

// Detach removes a container's network, its published ports and its
// address. Detaching an unknown container cleans up whatever its ID would
// have left behind and succeeds.
func (m *Manager) Detach(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	removed, err := m.unpublishLocked(id)
	if err != nil {
		return err
	}
	ep, ok := m.st.Endpoints[id]
	if !ok {
		ep = &epState{NetNS: filepath.Join(m.nsDir, id)}
	}
	if err := m.cleanupEndpoint(id, ep); err != nil {
		return fmt.Errorf("detaching container %s: %w", id, err)
	}
	if ok {
		delete(m.st.Endpoints, id)
		if err := m.st.save(m.cfg.StateDir); err != nil {
			return err
		}
	}
	m.notify(nil, removed)
	m.log.DebugContext(ctx, "detached container network", "container", id)
	return nil
}

// Publish makes a bridge-mode container's ports reachable on the guest's
// addresses and returns the bindings in effect, with chosen host ports.
// All bindings are published or none. Containers in host or none mode
// have nothing to publish (Docker discards their port bindings): Publish
// returns nil.
func (m *Manager) Publish(ctx context.Context, id string, bindings []PortBinding) ([]PublishedPort, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	ep, ok := m.st.Endpoints[id]
	if !ok {
		return nil, fmt.Errorf("publishing ports of container %s: %w", id, ErrNotFound)
	}
	if ep.Mode != ModeBridge || len(bindings) == 0 {
		return nil, nil
	}
	added, err := allocatePorts(id, ep.IP, bindings, m.st.Ports, m.cfg.PortRange, m.portFree)
	if err != nil {
		return nil, fmt.Errorf("publishing ports of container %s: %w", id, err)
	}
	old := m.st.Ports
	m.st.Ports = append(slices.Clip(old), added...)
	if err := m.applyRules(); err != nil {
		m.st.Ports = old
		return nil, errors.Join(err, m.applyRules())
	}
	if err := m.st.save(m.cfg.StateDir); err != nil {
		m.st.Ports = old
		return nil, errors.Join(err, m.applyRules())
	}
	m.notify(added, nil)
	m.log.DebugContext(ctx, "published ports", "container", id, "ports", added)
	return slices.Clone(added), nil
}

// Unpublish removes every published port of a container.
func (m *Manager) Unpublish(ctx context.Context, id string) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	removed, err := m.unpublishLocked(id)
	if err != nil {
		return err
	}
	m.notify(nil, removed)
	return nil
}

func (m *Manager) unpublishLocked(id string) ([]PublishedPort, error) {
	var keep, removed []PublishedPort
	for _, p := range m.st.Ports {
		if p.ContainerID == id {
			removed = append(removed, p)
		} else {
			keep = append(keep, p)
		}
	}
	if len(removed) == 0 {
		return nil, nil
	}
	old := m.st.Ports
	m.st.Ports = keep
	if err := m.applyRules(); err != nil {
		m.st.Ports = old
		return nil, fmt.Errorf("unpublishing ports of %s: %w", id, err)
	}
	if err := m.st.save(m.cfg.StateDir); err != nil {
		return nil, err
	}
	return removed, nil
}

// Ports returns every published port (the snapshot for new event
// subscribers and for NetworkSettings.Ports after a restart).
func (m *Manager) Ports() []PublishedPort {
	if m.lock() != nil {
		return nil
	}
	defer m.mu.Unlock()
	return slices.Clone(m.st.Ports)
}

func (m *Manager) notify(added, removed []PublishedPort) {
	if m.cfg.OnPorts != nil && (len(added) > 0 || len(removed) > 0) {
		m.cfg.OnPorts(slices.Clone(added), slices.Clone(removed))
	}
}

// portFree reports whether nothing in the guest is bound to the port: a
// DNAT rule would silently steal its traffic.
func (m *Manager) portFree(proto, ip string, port uint16) bool {
	addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
	err := inNetNS(m.nsPath, func() error {
		if proto == "udp" {
			c, err := net.ListenPacket("udp4", addr)
			if err != nil {
				return err
			}
			return c.Close()
		}
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			return err
		}
		return l.Close()
	})
	// Only a socket in use blocks publishing; an address that is not the
	// guest's (EADDRNOTAVAIL) just never receives traffic, as in Docker.
	return !errors.Is(err, syscall.EADDRINUSE)
}

// Close releases the manager's handles. Containers keep their network:
// the bridge, veths, namespaces and rules stay, for the next Manager.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.nl.Close()
	return m.ns.Close()
}
