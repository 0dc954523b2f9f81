package portfwd

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Port is one published port: listen on HostIP:HostPort on the host, and
// carry what arrives to GuestIP:GuestPort in the guest.
type Port struct {
	Proto string `json:"proto"` // TCP or UDP
	// HostIP is the address the publisher asked for: a wildcard
	// ("0.0.0.0", "::" or empty) or one address (see HostAddrs).
	HostIP    string `json:"hostIP"`
	HostPort  uint16 `json:"hostPort"`
	GuestIP   string `json:"guestIP"`
	GuestPort uint16 `json:"guestPort"`
}

// String reads like "tcp 0.0.0.0:8080 -> 172.17.0.2:80".
func (p Port) String() string {
	hip := p.HostIP
	if hip == "" {
		hip = "0.0.0.0"
	}
	return fmt.Sprintf("%s %s -> %s", p.Proto,
		net.JoinHostPort(hip, strconv.Itoa(int(p.HostPort))),
		net.JoinHostPort(p.GuestIP, strconv.Itoa(int(p.GuestPort))))
}

// target is where the guest dials.
func (p Port) target() (netip.AddrPort, error) {
	ip, err := netip.ParseAddr(p.GuestIP)
	if err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("port %s: invalid guest address %q", p, p.GuestIP)
	}
	return netip.AddrPortFrom(ip.Unmap(), p.GuestPort), nil
}

// Validate reports what makes p unusable.
func (p Port) Validate() error {
	switch p.Proto {
	case TCP, UDP:
	default:
		return fmt.Errorf("port %s: unknown protocol %q", p, p.Proto)
	}
	if p.HostPort == 0 || p.GuestPort == 0 {
		return fmt.Errorf("port %s: port 0", p)
	}
	if _, err := p.target(); err != nil {
		return err
	}
	if !isWildcard(p.HostIP) {
		if ip, err := netip.ParseAddr(p.HostIP); err != nil || ip.Zone() != "" {
			return fmt.Errorf("port %s: invalid host address %q", p, p.HostIP)
		}
	}
	return nil
}

func isWildcard(ip string) bool {
	switch ip {
	case "", "0.0.0.0", "::":
		return true
	}
	return false
}

// HostAddr is one host address a Port listens on.
type HostAddr struct {
	Addr string // host:port for net.Listen
	// Optional addresses are skipped when the host lacks them (no IPv6
	// loopback); a port taken there is still an error.
	Optional bool
}

// HostAddrs is where p listens on the host. A wildcard publish address
// (0.0.0.0, ::) means the host's loopback, 127.0.0.1 and ::1, so that
// nothing is exposed to the network by default; with bindAll it means
// every host interface. A specific address, loopback or not, is used as
// is: the user asked for it.
func HostAddrs(p Port, bindAll bool) []HostAddr {
	port := strconv.Itoa(int(p.HostPort))
	if !isWildcard(p.HostIP) {
		ip, err := netip.ParseAddr(p.HostIP)
		if err != nil {
			return []HostAddr{{Addr: net.JoinHostPort(p.HostIP, port)}}
		}
		return []HostAddr{{Addr: net.JoinHostPort(ip.Unmap().String(), port)}}
	}
	if bindAll {
		// Go listens dual-stack on an empty host.
		return []HostAddr{{Addr: net.JoinHostPort("", port)}}
	}
	return []HostAddr{
		{Addr: net.JoinHostPort("127.0.0.1", port)},
		{Addr: net.JoinHostPort("::1", port), Optional: true},
	}
}

// ListenError is a host port that could not be opened, explained.
type ListenError struct {
	Proto string
	Addr  string // host:port
	Err   error
}

func (e *ListenError) Unwrap() error { return e.Err }

func (e *ListenError) Error() string {
	what := fmt.Sprintf("host port %s/%s", e.Addr, e.Proto)
	_, portStr, _ := net.SplitHostPort(e.Addr)
	port, _ := strconv.Atoi(portStr)
	switch {
	case isAddrInUse(e.Err):
		return what + " is already in use by another program: stop that program or publish another host port"
	case isAccessDenied(e.Err):
		if port > 0 && port < 1024 {
			return what + ": " + privilegedPortHint(port)
		}
		return fmt.Sprintf("%s: permission denied: %v", what, e.Err)
	case isAddrNotAvail(e.Err):
		return what + ": this host has no such address; publish on 0.0.0.0 or on one of the host's addresses"
	}
	return fmt.Sprintf("%s: %v", what, e.Err)
}
