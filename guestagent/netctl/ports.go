package netctl

import (
	"fmt"
	"net/netip"
)

// anyIP is how a binding on every guest address is recorded and reported.
const anyIP = "0.0.0.0"

// normalize checks a binding and fills its defaults.
func normalize(b PortBinding) (PortBinding, error) {
	switch b.Proto {
	case "":
		b.Proto = "tcp"
	case "tcp", "udp":
	default:
		return b, fmt.Errorf("publishing protocol %q: %w", b.Proto, ErrInvalid)
	}
	if b.ContainerPort == 0 {
		return b, fmt.Errorf("publishing container port 0: %w", ErrInvalid)
	}
	switch b.HostIP {
	case "", anyIP:
		b.HostIP = anyIP
	default:
		ip, err := netip.ParseAddr(b.HostIP)
		if err != nil {
			return b, fmt.Errorf("publishing on host IP %q: %w", b.HostIP, ErrInvalid)
		}
		if !ip.Unmap().Is4() {
			return b, fmt.Errorf("publishing on %s: only IPv4 is supported: %w", ip, ErrInvalid)
		}
		b.HostIP = ip.Unmap().String()
	}
	return b, nil
}

// overlaps reports whether two bindings would catch the same packets.
func overlaps(proto, ip string, port uint16, p PublishedPort) bool {
	return p.Proto == proto && p.HostPort == port &&
		(p.HostIP == ip || p.HostIP == anyIP || ip == anyIP)
}

// allocatePorts resolves bindings against the ports already published.
// Explicit host ports that overlap one in use fail with ErrPortAllocated;
// port 0 takes the next port in rng after the ones already taken. free,
// when not nil, says whether a port is also free in the guest (no socket
// bound to it) and is consulted for both cases.
func allocatePorts(id string, cip netip.Addr, bs []PortBinding, existing []PublishedPort, rng [2]uint16, free func(proto, ip string, port uint16) bool) ([]PublishedPort, error) {
	taken := append([]PublishedPort(nil), existing...)
	var out []PublishedPort
	inUse := func(proto, ip string, port uint16) bool {
		for _, p := range taken {
			if overlaps(proto, ip, port, p) {
				return true
			}
		}
		return false
	}
	for _, b := range bs {
		b, err := normalize(b)
		if err != nil {
			return nil, err
		}
		port := b.HostPort
		if port != 0 {
			if inUse(b.Proto, b.HostIP, port) || (free != nil && !free(b.Proto, b.HostIP, port)) {
				return nil, fmt.Errorf("bind for %s:%d failed: %w", b.HostIP, port, ErrPortAllocated)
			}
		} else {
			lo, hi := rng[0], rng[1]
			if lo == 0 || hi < lo {
				return nil, fmt.Errorf("picking a host port: bad range %d-%d: %w", lo, hi, ErrInvalid)
			}
			for p := int(lo); p <= int(hi); p++ {
				if !inUse(b.Proto, b.HostIP, uint16(p)) && (free == nil || free(b.Proto, b.HostIP, uint16(p))) {
					port = uint16(p)
					break
				}
			}
			if port == 0 {
				return nil, fmt.Errorf("picking a host port for %d/%s: %w", b.ContainerPort, b.Proto, ErrExhausted)
			}
		}
		pp := PublishedPort{ContainerID: id, Proto: b.Proto, HostIP: b.HostIP, HostPort: port, ContainerIP: cip, ContainerPort: b.ContainerPort}
		taken = append(taken, pp)
		out = append(out, pp)
	}
	return out, nil
}
