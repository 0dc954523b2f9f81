package portwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sock_diag wire sizes (linux/inet_diag.h).
const (
	sizeofNlMsghdr    = 16
	sizeofInetDiagReq = 56 // inet_diag_req_v2
	sizeofInetDiagMsg = 72 // inet_diag_msg
	sockDiagByFamily  = 20 // SOCK_DIAG_BY_FAMILY
	tcpListen         = 10 // TCP_LISTEN
	tcpClose          = 7  // TCP_CLOSE: an unconnected UDP socket
	recvBufferSize    = 64 << 10
	maxDumpBytes      = 64 << 20 // a listener dump this large is a kernel bug
)

// scanListeners lists TCP listeners and unconnected UDP sockets, IPv4 and
// IPv6, in the caller's network namespace, with sock_diag, or from
// /proc/net when the kernel lacks the sock_diag modules.
func scanListeners() ([]Listener, error) {
	ls, err := scanSockDiag()
	if errors.Is(err, errNoSockDiag) {
		return scanProcNet("/proc")
	}
	return ls, err
}

// errNoSockDiag means the kernel has no inet_diag handler for a protocol
// (the tcp_diag or udp_diag module is not loaded).
var errNoSockDiag = errors.New("sock_diag is not available for this protocol")

// scanSockDiag is scanListeners with sock_diag. The kernel filters by
// state, so established connections, however many, are never dumped.
func scanSockDiag() ([]Listener, error) {
	var out []Listener
	for _, q := range []struct {
		proto  string
		ipProt uint8
		family uint8
		states uint32
	}{
		{"tcp", unix.IPPROTO_TCP, unix.AF_INET, 1 << tcpListen},
		{"tcp", unix.IPPROTO_TCP, unix.AF_INET6, 1 << tcpListen},
		{"udp", unix.IPPROTO_UDP, unix.AF_INET, 1 << tcpClose},
		{"udp", unix.IPPROTO_UDP, unix.AF_INET6, 1 << tcpClose},
	} {
		ls, err := dump(q.family, q.ipProt, q.states)
		if err != nil {
			if q.family == unix.AF_INET && errors.Is(err, unix.ENOENT) {
				return nil, fmt.Errorf("sock_diag %s: %w", q.proto, errNoSockDiag)
			}
			// A kernel without IPv6 has no AF_INET6 sockets to report.
			if q.family == unix.AF_INET6 && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EAFNOSUPPORT)) {
				continue
			}
			return nil, fmt.Errorf("sock_diag %s/%d: %w", q.proto, q.family, err)
		}
		for _, l := range ls {
			out = append(out, Listener{Proto: q.proto, Addr: l})
		}
	}
	return out, nil
}

// dump asks sock_diag for the sockets of one family, protocol and state
// set, and returns the local addresses of those not connected to a peer.
func dump(family, proto uint8, states uint32) ([]netip.AddrPort, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("bind", err)
	}
	req := make([]byte, sizeofNlMsghdr+sizeofInetDiagReq)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], sockDiagByFamily)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1) // sequence
	r := req[sizeofNlMsghdr:]
	r[0], r[1] = family, proto
	ne.PutUint32(r[4:], states)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("sendto", err)
	}
	var out []netip.AddrPort
	buf := make([]byte, recvBufferSize)
	total := 0
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, os.NewSyscallError("recvfrom", err)
		}
		if total += n; total > maxDumpBytes {
			return nil, errors.New("sock_diag dump does not end")
		}
		done, err := parseDump(buf[:n], family, &out)
		if err != nil || done {
			return out, err
		}
	}
}

// parseDump reads one datagram of netlink messages, appending the local
// addresses of unconnected sockets to out. It reports whether the dump
// ended.
func parseDump(b []byte, family uint8, out *[]netip.AddrPort) (bool, error) {
	ne := binary.NativeEndian
	for len(b) >= sizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		typ := ne.Uint16(b[4:])
		if l < sizeofNlMsghdr || l > len(b) {
			return false, fmt.Errorf("malformed netlink message (length %d of %d)", l, len(b))
		}
		body := b[sizeofNlMsghdr:l]
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return false, errors.New("short netlink error")
			}
			if code := int32(ne.Uint32(body)); code != 0 {
				return false, unix.Errno(-code)
			}
		case sockDiagByFamily:
			if ap, ok := parseDiagMsg(body, family); ok {
				*out = append(*out, ap)
			}
		}
		b = b[min(len(b), (l+3)&^3):]
	}
	return false, nil
}

// parseDiagMsg reads an inet_diag_msg and returns its local address when
// it has no peer (a listener, or an unconnected UDP socket).
func parseDiagMsg(m []byte, family uint8) (netip.AddrPort, bool) {
	if len(m) < sizeofInetDiagMsg {
		return netip.AddrPort{}, false
	}
	sport := binary.BigEndian.Uint16(m[4:])
	dport := binary.BigEndian.Uint16(m[6:])
	if dport != 0 {
		return netip.AddrPort{}, false
	}
	var ip netip.Addr
	switch m[0] {
	case unix.AF_INET:
		ip = netip.AddrFrom4([4]byte(m[8:12]))
	case unix.AF_INET6:
		ip = netip.AddrFrom16([16]byte(m[8:24]))
	default:
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, sport), true
}

// interfaceAddrs returns the IP addresses of a network interface.
func interfaceAddrs(name string) ([]netip.Addr, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out, nil
}

// ephemeralStart is the first port of net.ipv4.ip_local_port_range, from
// which the kernel picks client ports; 32768 when it cannot be read.
func ephemeralStart() uint16 {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	p, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil || p == 0 {
		return 32768
	}
	return uint16(p)
}
