// Package usernet is an instance's user-mode network: gvisor-tap-vsock's
// network stack (pkg/virtualnetwork), embedded in the host agent and set
// up with berth's addresses, and the attachment of the VM's NIC to it.
//
// The guest is 192.168.127.2/24, set statically from the kernel command
// line (KernelArgs). The gateway, 192.168.127.1, answers DNS from the
// host's resolver and NATs the guest's TCP and UDP through host sockets,
// so the guest's traffic leaves as the host's own (VPN-friendly).
// 192.168.127.254 is the host's loopback: host.docker.internal and
// host.berth.internal resolve to it.
//
// NIC attachments, one per hypervisor:
//
//   - ServeDatagram: a unixgram socket in the instance dir that QEMU's
//     dgram netdev sends frames to, one frame per datagram. No connection
//     means nothing to re-establish: a restarted host agent binds the
//     same path and the running VM's frames reach it.
//   - ServeConn: one end of a connected datagram socket pair (vz's
//     file-handle attachment; see vm/netpair).
//   - ServeStream: a stream socket QEMU connects to, each frame prefixed
//     with its length (Windows, which lacks unix datagram sockets).
//
// It does not forward published ports (forwarding/portfwd does that over
// the transport) nor configure the guest (the guest agent does).
package usernet

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"
)

// Addresses of the virtual network: gvisor-tap-vsock's defaults.
var (
	Subnet  = netip.MustParsePrefix("192.168.127.0/24")
	Gateway = netip.MustParseAddr("192.168.127.1")
	GuestIP = netip.MustParseAddr("192.168.127.2")
	HostIP  = netip.MustParseAddr("192.168.127.254")
)

// HostNames resolve to HostIP in the guest and in containers.
var HostNames = []string{"host.docker.internal", "host.berth.internal"}

const (
	gatewayMAC = "5a:94:ef:e4:0c:dd"
	// MTU of the guest's NIC. 1500 is what the guest's virtio-net uses
	// unless told otherwise.
	MTU = 1500
)

// KernelArgs are the guest kernel's network parameters, which the guest
// agent reads to configure eth0, its route and its resolver.
func KernelArgs() []string {
	return []string{
		fmt.Sprintf("berth.ip=%s/%d", GuestIP, Subnet.Bits()),
		"berth.gw=" + Gateway.String(),
		"berth.dns=" + Gateway.String(),
	}
}

// GuestMAC is the NIC's MAC address for an instance: stable across boots,
// locally administered, and different between instances.
func GuestMAC(instance string) string {
	h := sha256.Sum256([]byte("berth-nic:" + instance))
	return net.HardwareAddr{0x52, 0x42, h[0], h[1], h[2], h[3]}.String()
}

// Network is one instance's virtual network.
type Network struct {
	vn  *virtualnetwork.VirtualNetwork
	log *slog.Logger

	mu      sync.Mutex
	closers []io.Closer
	closed  bool
	wg      sync.WaitGroup
}

// New starts the network stack and its services (DNS, NAT).
func New(log *slog.Logger) (*Network, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	zone := func(domain string) types.Zone {
		return types.Zone{Name: domain + ".", Records: []types.Record{
			{Name: "host", IP: net.IP(HostIP.AsSlice())},
			{Name: "gateway", IP: net.IP(Gateway.AsSlice())},
		}}
	}
	cfg := &types.Configuration{
		MTU:               MTU,
		Subnet:            Subnet.String(),
		GatewayIP:         Gateway.String(),
		GatewayMacAddress: gatewayMAC,
		// host.docker.internal, host.berth.internal; gateway.* too.
		DNS: []types.Zone{zone("docker.internal"), zone("berth.internal")},
		// Traffic to .254 goes to the host's loopback.
		NAT:               map[string]string{HostIP.String(): "127.0.0.1"},
		GatewayVirtualIPs: []string{HostIP.String()},
	}
	vn, err := virtualnetwork.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the user-mode network: %w", err)
	}
	return &Network{vn: vn, log: log.With("component", "usernet")}, nil
}

func (n *Network) track(c io.Closer) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		c.Close()
		return fmt.Errorf("user-mode network: %w", net.ErrClosed)
	}
	n.closers = append(n.closers, c)
	return nil
}

// serve runs the switch on one NIC connection until it ends.
func (n *Network) serve(ctx context.Context, what string, c net.Conn, accept func(context.Context, net.Conn) error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		err := accept(ctx, c)
		n.mu.Lock()
		closed := n.closed
		n.mu.Unlock()
		if err != nil && !closed && ctx.Err() == nil {
			n.log.Warn("the NIC connection ended", "attachment", what, "err", err)
		}
	}()
}

// ServeConn attaches a NIC on c, a connected datagram socket carrying one
// Ethernet frame per datagram (the host end of a vm/netpair pair), and
// serves it in the background until c closes.
func (n *Network) ServeConn(ctx context.Context, c net.Conn) error {
	fc := &frameConn{Conn: c, peer: pairAddr{}, log: n.log}
	if err := n.track(fc); err != nil {
		return err
	}
	n.serve(ctx, "socket pair", fc, n.vn.AcceptVfkit)
	return nil
}

// Close detaches every NIC. The stack itself lives as long as the
// process: gvisor-tap-vsock gives it no way to stop.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	cs := n.closers
	n.closers = nil
	n.mu.Unlock()
	var errs []error
	for _, c := range cs {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	n.wg.Wait()
	return errors.Join(errs...)
}

// pairAddr names the unnamed peer of a socket pair.
type pairAddr struct{}

func (pairAddr) Network() string { return "unixgram" }
func (pairAddr) String() string  { return "vm" }

// frameConn is a NIC's datagram socket as the switch wants it: Read
// returns one frame, Write sends one, and a frame that cannot be
// delivered is dropped as on a wire with nobody at the other end. An
// error from Write would detach the NIC from the switch for good.
type frameConn struct {
	net.Conn
	peer net.Addr
	log  *slog.Logger
	// to, when set, sends each frame to this address (an unconnected
	// socket, whose peer may come and go).
	to *net.UnixAddr
	// from, when set, is the only address frames are taken from.
	from string

	mu        sync.Mutex
	closed    bool
	lastDrop  time.Time
	dropCount int
}

func (c *frameConn) RemoteAddr() net.Addr { return c.peer }

func (c *frameConn) Read(b []byte) (int, error) {
	uc, ok := c.Conn.(*net.UnixConn)
	if !ok || c.from == "" {
		return c.Conn.Read(b)
	}
	for {
		n, addr, err := uc.ReadFromUnix(b)
		if err != nil {
			return n, err
		}
		if addr != nil && addr.Name == c.from {
			return n, nil
		}
	}
}

func (c *frameConn) Write(b []byte) (int, error) {
	var err error
	if c.to != nil {
		_, err = c.Conn.(*net.UnixConn).WriteToUnix(b, c.to)
	} else {
		_, err = c.Conn.Write(b)
	}
	if err == nil {
		return len(b), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || errors.Is(err, net.ErrClosed) {
		return 0, err
	}
	// The VM is not there (not started yet, restarting) or its queue is
	// full: drop the frame, as a wire would, and say so now and then.
	c.dropCount++
	if time.Since(c.lastDrop) > time.Minute {
		c.log.Debug("dropping frames the VM cannot take", "count", c.dropCount, "err", err)
		c.lastDrop, c.dropCount = time.Now(), 0
	}
	return len(b), nil
}

func (c *frameConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}

// removeStale removes a socket file left by an earlier host agent.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	return os.Remove(path)
}
