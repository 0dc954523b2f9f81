package portfwd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
)

// Protocols a stream carries.
const (
	TCP = "tcp"
	UDP = "udp"
)

const (
	protoVersion = 1
	protoTCP     = 1
	protoUDP     = 2

	statusOK     = 0
	statusFailed = 1

	// maxDatagram is the largest UDP payload a frame carries: the length
	// prefix is 16 bits, and no IPv4 or IPv6 datagram is larger.
	maxDatagram = 65535
)

// errBadRequest marks a stream header this package did not write.
var errBadRequest = errors.New("malformed port-forward request")

// request is the header that opens a stream: what to dial in the guest.
type request struct {
	Proto string         // TCP or UDP
	Addr  netip.AddrPort // guest or container address
}

func (r request) encode() ([]byte, error) {
	var p byte
	switch r.Proto {
	case TCP:
		p = protoTCP
	case UDP:
		p = protoUDP
	default:
		return nil, fmt.Errorf("encoding a port-forward request: unknown protocol %q", r.Proto)
	}
	if !r.Addr.IsValid() || r.Addr.Port() == 0 {
		return nil, fmt.Errorf("encoding a port-forward request: invalid address %v", r.Addr)
	}
	addr := r.Addr.String()
	b := make([]byte, 0, 3+len(addr))
	b = append(b, protoVersion, p, byte(len(addr)))
	return append(b, addr...), nil
}

// readRequest reads a stream header.
func readRequest(r io.Reader) (request, error) {
	var h [3]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return request{}, fmt.Errorf("reading a port-forward request: %w", err)
	}
	if h[0] != protoVersion {
		return request{}, fmt.Errorf("%w: version %d", errBadRequest, h[0])
	}
	var req request
	switch h[1] {
	case protoTCP:
		req.Proto = TCP
	case protoUDP:
		req.Proto = UDP
	default:
		return request{}, fmt.Errorf("%w: protocol %d", errBadRequest, h[1])
	}
	addr := make([]byte, h[2])
	if _, err := io.ReadFull(r, addr); err != nil {
		return request{}, fmt.Errorf("reading a port-forward request: %w", err)
	}
	ap, err := netip.ParseAddrPort(string(addr))
	if err != nil || ap.Port() == 0 {
		return request{}, fmt.Errorf("%w: address %q", errBadRequest, addr)
	}
	req.Addr = ap
	return req, nil
}

// writeStatus answers a request: nil is success, anything else a failure
// whose text the host logs.
func writeStatus(w io.Writer, failure error) error {
	if failure == nil {
		_, err := w.Write([]byte{statusOK})
		return err
	}
	msg := failure.Error()
	if len(msg) > 255 {
		msg = msg[:255]
	}
	b := append([]byte{statusFailed, byte(len(msg))}, msg...)
	_, err := w.Write(b)
	return err
}

// GuestDialError is the guest's account of why it could not reach the
// address a stream named.
type GuestDialError struct{ Msg string }

func (e *GuestDialError) Error() string { return "the guest could not connect: " + e.Msg }

// readStatus reads the guest's answer; a failure comes back as a
// *GuestDialError.
func readStatus(r io.Reader) error {
	var s [1]byte
	if _, err := io.ReadFull(r, s[:]); err != nil {
		return fmt.Errorf("reading the guest's answer: %w", err)
	}
	switch s[0] {
	case statusOK:
		return nil
	case statusFailed:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return fmt.Errorf("reading the guest's answer: %w", err)
		}
		msg := make([]byte, n[0])
		if _, err := io.ReadFull(r, msg); err != nil {
			return fmt.Errorf("reading the guest's answer: %w", err)
		}
		return &GuestDialError{Msg: string(msg)}
	}
	return fmt.Errorf("reading the guest's answer: unknown status %d", s[0])
}

// writeFrame sends one datagram as a length-prefixed frame, in one write
// so that concurrent writers never interleave.
func writeFrame(w io.Writer, buf []byte, payload []byte) ([]byte, error) {
	if len(payload) > maxDatagram {
		return buf, fmt.Errorf("datagram of %d bytes is too large", len(payload))
	}
	buf = append(buf[:0], 0, 0)
	binary.BigEndian.PutUint16(buf, uint16(len(payload)))
	buf = append(buf, payload...)
	_, err := w.Write(buf)
	return buf, err
}

// readFrame reads one frame into buf (at least maxDatagram long) and
// returns the datagram.
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf[:n], nil
}

// udpAddrPort converts a UDP address, with IPv4-mapped addresses unmapped.
func udpAddrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
