// Package portwatch finds the services that listen directly in the guest,
// outside containers, and reports them as port events (api.PortEvent), so
// that the host agent forwards them to the host like published ports.
//
// It polls the kernel's socket table (netlink sock_diag) at most a second
// apart. What is forwarded, and where:
//
//   - TCP listeners and bound, unconnected UDP sockets;
//   - on a wildcard address (0.0.0.0, ::) or on an address of the guest's
//     external interface (eth0): forwarded as a wildcard publish, so the
//     host listens on its loopback (every interface with ports.bindAll);
//   - on 127.0.0.1 or ::1 only: forwarded to the same loopback address on
//     the host, so a service that keeps to the VM's loopback stays on the
//     host's;
//   - not forwarded: other addresses (the container bridge, where the
//     engine's own services such as container DNS listen; 127.0.0.53 and
//     the like), and UDP sockets on ephemeral ports (ip_local_port_range),
//     which are clients waiting for answers, not services.
//
// Published container ports never show up here: they are DNAT rules, not
// sockets. The guest agent's own ports are on the transport (vsock,
// virtio-serial), not TCP, so they do not either.
//
// It does not forward anything itself (forwarding/portfwd does) nor own
// the event stream (the control service's broker does).
package portwatch

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/berthvm/berth/guestagent/api"
)

// MaxInterval is the longest time between two polls.
const MaxInterval = time.Second

// DefaultInterval is the time between two polls when none is set. A new
// listener is published once two polls in a row have seen it, so within
// a second; one bound only for a moment (a program checking that a port
// is free) is not.
const DefaultInterval = MaxInterval / 2

// Listener is a socket that accepts traffic in the guest.
type Listener struct {
	Proto string // "tcp" or "udp"
	Addr  netip.AddrPort
}

// Config tunes a Watcher. Zero values take the defaults.
type Config struct {
	// Interval between polls; DefaultInterval by default, at most
	// MaxInterval.
	Interval time.Duration
	// Interface is the guest's external interface; listeners on its
	// addresses are forwarded. Default "eth0".
	Interface string
	// Ignore, when set, drops listeners that must not be forwarded.
	Ignore func(Listener) bool
	// Log receives the watcher's log; nil discards it.
	Log *slog.Logger

	// Sources of the poll; tests replace them.
	scan       func() ([]Listener, error)
	ifaceAddrs func(name string) ([]netip.Addr, error)
	ephemeral  func() uint16 // first port of ip_local_port_range
	sightings  int           // polls in a row that must see a port; default 2
}

// Watcher polls the guest's listeners.
type Watcher struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	ports   map[string]*api.Port // published, by portKey
	pending map[string]int       // seen but not yet published: polls in a row
}

// New returns a watcher. It polls once Run runs.
func New(cfg Config) *Watcher {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	cfg.Interval = min(cfg.Interval, MaxInterval)
	if cfg.sightings < 1 {
		cfg.sightings = 2
	}
	if cfg.Interface == "" {
		cfg.Interface = "eth0"
	}
	if cfg.scan == nil {
		cfg.scan = scanListeners
	}
	if cfg.ifaceAddrs == nil {
		cfg.ifaceAddrs = interfaceAddrs
	}
	if cfg.ephemeral == nil {
		cfg.ephemeral = ephemeralStart
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{cfg: cfg, log: log, ports: make(map[string]*api.Port), pending: make(map[string]int)}
}

// Run polls until ctx ends, and publishes a PortEvent for each change.
// A poll that fails is logged and tried again at the next tick.
func (w *Watcher) Run(ctx context.Context, publish func(*api.Event)) error {
	tick := time.NewTicker(w.cfg.Interval)
	defer tick.Stop()
	failing := false
	for {
		if err := w.Poll(publish); err != nil {
			if !failing {
				w.log.Warn("listing the guest's listening sockets failed; retrying", "err", err)
			}
			failing = true
		} else if failing {
			w.log.Info("listing the guest's listening sockets works again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Poll scans once and publishes what changed since the last scan.
func (w *Watcher) Poll(publish func(*api.Event)) error {
	ls, err := w.cfg.scan()
	if err != nil {
		return fmt.Errorf("scanning listening sockets: %w", err)
	}
	if w.cfg.Ignore != nil {
		ls = slices.DeleteFunc(ls, w.cfg.Ignore)
	}
	ext, err := w.cfg.ifaceAddrs(w.cfg.Interface)
	if err != nil {
		ext = nil // no eth0 (native mode, early boot): only wildcard and loopback
	}
	now := Ports(ls, ext, w.cfg.ephemeral())
	w.mu.Lock()
	defer w.mu.Unlock()
	next := make(map[string]*api.Port, len(now))
	pending := make(map[string]int)
	var added, removed []*api.Port
	for _, p := range now {
		k := portKey(p)
		switch {
		case w.ports[k] != nil:
			next[k] = p
		case w.pending[k]+1 >= w.cfg.sightings:
			next[k] = p
			added = append(added, p)
		default:
			pending[k] = w.pending[k] + 1
		}
	}
	w.pending = pending
	for k, p := range w.ports {
		if next[k] == nil {
			removed = append(removed, p)
		}
	}
	w.ports = next
	if len(added)+len(removed) == 0 {
		return nil
	}
	sortPorts(added)
	sortPorts(removed)
	for _, p := range added {
		w.log.Info("guest service listening", "proto", p.Protocol, "port", p.GuestPort, "guest", p.GuestIp)
	}
	// Published under the lock, after the state changed: a Snapshot taken
	// meanwhile already has the change, and the event repeats it.
	publish(&api.Event{
		TimeUnixNs: time.Now().UnixNano(),
		Kind:       &api.Event_Ports{Ports: &api.PortEvent{Added: added, Removed: removed}},
	})
	return nil
}

// Snapshot is the full current set as a PortEvent snapshot, for
// control.Config.Snapshot.
func (w *Watcher) Snapshot() *api.Event {
	w.mu.Lock()
	ps := make([]*api.Port, 0, len(w.ports))
	for _, p := range w.ports {
		ps = append(ps, p)
	}
	w.mu.Unlock()
	sortPorts(ps)
	return &api.Event{
		TimeUnixNs: time.Now().UnixNano(),
		Kind:       &api.Event_Ports{Ports: &api.PortEvent{Added: ps, Snapshot: true}},
	}
}

func portKey(p *api.Port) string {
	return fmt.Sprintf("%s|%s|%d|%s|%d", p.Protocol, p.HostIp, p.HostPort, p.GuestIp, p.GuestPort)
}

func sortPorts(ps []*api.Port) {
	slices.SortFunc(ps, func(a, b *api.Port) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.HostPort, b.HostPort), cmp.Compare(a.HostIp, b.HostIp))
	})
}

// Ports maps listeners to the ports to forward (see the package doc).
// ext holds the external interface's addresses; UDP ports from
// ephemeral on are ignored. Each port number of a protocol yields either
// one wildcard forward or its loopback forwards.
func Ports(ls []Listener, ext []netip.Addr, ephemeral uint16) []*api.Port {
	type group struct {
		v4Any, v6Any bool
		extAddr      netip.Addr
		loop4, loop6 bool
	}
	type key struct {
		proto string
		port  uint16
	}
	groups := make(map[key]*group)
	for _, l := range ls {
		if l.Proto != "tcp" && l.Proto != "udp" || l.Addr.Port() == 0 {
			continue
		}
		if l.Proto == "udp" && ephemeral > 0 && l.Addr.Port() >= ephemeral {
			continue
		}
		ip := l.Addr.Addr().Unmap()
		k := key{l.Proto, l.Addr.Port()}
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
		}
		switch {
		case ip.IsUnspecified() && ip.Is4():
			g.v4Any = true
		case ip.IsUnspecified():
			g.v6Any = true
		case slices.Contains(ext, ip):
			g.extAddr = ip
		case ip == netip.AddrFrom4([4]byte{127, 0, 0, 1}):
			g.loop4 = true
		case ip == netip.IPv6Loopback():
			g.loop6 = true
		}
	}
	var out []*api.Port
	for k, g := range groups {
		mk := func(hostIP, guestIP string) *api.Port {
			return &api.Port{Protocol: k.proto, HostIp: hostIP, HostPort: uint32(k.port), GuestIp: guestIP, GuestPort: uint32(k.port)}
		}
		switch {
		case g.v4Any:
			out = append(out, mk("0.0.0.0", "127.0.0.1"))
		case g.v6Any:
			out = append(out, mk("0.0.0.0", "::1"))
		case g.extAddr.IsValid():
			out = append(out, mk("0.0.0.0", g.extAddr.String()))
		default:
			if g.loop4 {
				out = append(out, mk("127.0.0.1", "127.0.0.1"))
			}
			if g.loop6 {
				out = append(out, mk("::1", "::1"))
			}
		}
	}
	sortPorts(out)
	return out
}
