// Package transport carries byte streams between the host agent and the
// guest agent. The host dials a numbered guest port and gets a net.Conn; the
// guest listens on numbered ports and gets a net.Listener. Three
// implementations sit behind these two interfaces:
//
//   - serial: yamux over a virtio-serial port (QEMU, every host OS)
//   - vsock: AF_VSOCK in the guest; the host side belongs to the VM backend
//     (vz's VirtioSocketDevice, hvsock)
//   - unix: one unix socket per port in a directory (native mode and tests)
//
// The package owns framing and session recovery. It does not know what runs
// on a port.
package transport

import (
	"context"
	"fmt"
	"net"
)

// Well-known guest ports.
const (
	PortControl uint32 = 1024 // gRPC control service berth.agent.v1
	PortForward uint32 = 1025 // port-forward streams
	PortDocker  uint32 = 2375 // Docker Engine API
)

// Dialer opens a stream to a guest port. It is the host side.
type Dialer interface {
	DialPort(ctx context.Context, port uint32) (net.Conn, error)
}

// Listener hands out the guest side of streams, by port.
type Listener interface {
	ListenPort(port uint32) (net.Listener, error)
}

// EarlyDialer is a Dialer whose streams open with a handshake (the serial
// transport's) and that can carry a stream's first bytes in the same
// message, saving the caller a round trip to the guest. The bytes reach
// the guest port's listener as the first bytes of the stream. They are
// sent before the guest answers, so a dial that fails, or that is retried
// on a new session after the old one died, may still have delivered
// them: first must be safe to repeat (port forwarding's request is).
type EarlyDialer interface {
	Dialer
	DialPortEarly(ctx context.Context, port uint32, first []byte) (net.Conn, error)
}

// DialWith opens a stream to a guest port and sends first on it, with the
// opening itself where d is an EarlyDialer, else right after it.
func DialWith(ctx context.Context, d Dialer, port uint32, first []byte) (net.Conn, error) {
	if ed, ok := d.(EarlyDialer); ok {
		return ed.DialPortEarly(ctx, port, first)
	}
	c, err := d.DialPort(ctx, port)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(first); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial guest port %d: sending the first bytes: %w", port, err)
	}
	return c, nil
}

// DialerFunc adapts a function to a Dialer.
type DialerFunc func(ctx context.Context, port uint32) (net.Conn, error)

// DialPort calls f.
func (f DialerFunc) DialPort(ctx context.Context, port uint32) (net.Conn, error) {
	return f(ctx, port)
}
