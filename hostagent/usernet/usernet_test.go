//go:build unix

package usernet

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/berthvm/berth/guestagent/boot"
	"github.com/berthvm/berth/vm/netpair"
)

var guestMAC = net.HardwareAddr{0x52, 0x42, 1, 2, 3, 4}

const (
	etherARP  = 0x0806
	etherIPv4 = 0x0800
)

func ether(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:], dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], typ)
	return append(b, payload...)
}

// arp builds an ARP packet (op 1 request, 2 reply).
func arp(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], op)
	copy(b[8:], sha)
	s4, t4 := spa.As4(), tpa.As4()
	copy(b[14:], s4[:])
	copy(b[18:], tha)
	copy(b[24:], t4[:])
	return b
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// udp4 builds an IPv4 UDP packet (UDP checksum 0: optional over IPv4).
func udp4(src, dst netip.AddrPort, payload []byte) []byte {
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8], ip[9] = 64, 17
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	u := make([]byte, 8)
	binary.BigEndian.PutUint16(u[0:], src.Port())
	binary.BigEndian.PutUint16(u[2:], dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	return append(append(ip, u...), payload...)
}

// fakeGuest is the VM end of a NIC: it answers ARP for the guest's
// address and hands every other frame to the test.
type fakeGuest struct {
	t      *testing.T
	conn   net.Conn
	send   func([]byte) error
	frames chan []byte
}

func newFakeGuest(t *testing.T, conn net.Conn, send func([]byte) error) *fakeGuest {
	g := &fakeGuest{t: t, conn: conn, send: send, frames: make(chan []byte, 64)}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			f := append([]byte(nil), buf[:n]...)
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == etherARP &&
				binary.BigEndian.Uint16(f[20:]) == 1 && bytes.Equal(f[38:42], GuestIP.AsSlice()) {
				spa, _ := netip.AddrFromSlice(f[28:32])
				g.send(ether(f[6:12], guestMAC, etherARP, arp(2, guestMAC, GuestIP, f[22:28], spa)))
				continue
			}
			g.frames <- f
		}
	}()
	return g
}

// expect waits for a frame that match accepts.
func (g *fakeGuest) expect(what string, match func([]byte) bool) []byte {
	g.t.Helper()
	f := g.within(10*time.Second, match)
	if f == nil {
		g.t.Fatalf("no %s from the network", what)
	}
	return f
}

// within waits up to d for a frame that match accepts; nil if none came.
func (g *fakeGuest) within(d time.Duration, match func([]byte) bool) []byte {
	deadline := time.After(d)
	for {
		select {
		case f := <-g.frames:
			if match(f) {
				return f
			}
		case <-deadline:
			return nil
		}
	}
}

// checkARP asks who has ip and expects the gateway's MAC.
func checkARP(t *testing.T, g *fakeGuest, ip netip.Addr) {
	t.Helper()
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	req := ether(bcast, guestMAC, etherARP, arp(1, guestMAC, GuestIP, make(net.HardwareAddr, 6), ip))
	var reply []byte
	for try := 0; try < 3 && reply == nil; try++ {
		if err := g.send(req); err != nil {
			t.Fatal(err)
		}
		// ARP may be lost like any frame: ask again.
		reply = g.within(3*time.Second, func(f []byte) bool {
			return len(f) >= 42 && binary.BigEndian.Uint16(f[12:]) == etherARP &&
				binary.BigEndian.Uint16(f[20:]) == 2 && bytes.Equal(f[28:32], ip.AsSlice())
		})
	}
	if reply == nil {
		t.Fatalf("no ARP reply for %s", ip)
	}
	if got := net.HardwareAddr(reply[22:28]).String(); got != gatewayMAC {
		t.Fatalf("%s is at %s, want the gateway %s", ip, got, gatewayMAC)
	}
}

// checkDNS asks the gateway for name and expects want.
func checkDNS(t *testing.T, g *fakeGuest, name string, want netip.Addr) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	payload, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	gwMAC, _ := net.ParseMAC(gatewayMAC)
	src := netip.AddrPortFrom(GuestIP, 40000)
	frame := ether(gwMAC, guestMAC, etherIPv4, udp4(src, netip.AddrPortFrom(Gateway, 53), payload))
	if err := g.send(frame); err != nil {
		t.Fatal(err)
	}
	f := g.expect("DNS answer", func(f []byte) bool {
		return len(f) > 42 && binary.BigEndian.Uint16(f[12:]) == etherIPv4 && f[23] == 17 &&
			binary.BigEndian.Uint16(f[14+20:]) == 53 && binary.BigEndian.Uint16(f[14+22:]) == 40000
	})
	ihl := int(f[14]&0x0f) * 4
	var r dns.Msg
	if err := r.Unpack(f[14+ihl+8:]); err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("DNS %s: %v", name, r.Answer)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok || a.A.String() != want.String() {
		t.Fatalf("DNS %s = %v, want %s", name, r.Answer[0], want)
	}
}

func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "un")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestDatagramNIC is QEMU's dgram netdev: the VM end is a unixgram socket
// bound at its own path that sends to the host agent's socket by path.
// A second network (a restarted host agent) takes over the same VM end.
func TestDatagramNIC(t *testing.T) {
	dir := shortDir(t)
	hostSock, vmSock := filepath.Join(dir, "net.sock"), filepath.Join(dir, "qnet.sock")
	vmEnd, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: vmSock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer vmEnd.Close()
	send := func(b []byte) error {
		_, err := vmEnd.WriteToUnix(b, &net.UnixAddr{Name: hostSock, Net: "unixgram"})
		return err
	}
	g := newFakeGuest(t, vmEnd, send)

	for round := 1; round <= 2; round++ {
		n, err := New(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.ServeDatagram(context.Background(), hostSock, vmSock); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(hostSock); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("round %d: socket %v %v, want mode 0600", round, fi, err)
		}
		checkARP(t, g, Gateway)
		checkARP(t, g, HostIP)
		for _, name := range HostNames {
			checkDNS(t, g, name, HostIP)
		}
		checkDNS(t, g, "gateway.berth.internal", Gateway)
		// The host agent dies without cleaning up: its socket file stays.
		if round == 1 {
			n.Close()
		} else {
			defer n.Close()
		}
	}
}

// TestDatagramNICIgnoresStrangers: only QEMU's end may inject frames.
func TestDatagramNICIgnoresStrangers(t *testing.T) {
	dir := shortDir(t)
	hostSock := filepath.Join(dir, "net.sock")
	n, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.ServeDatagram(context.Background(), hostSock, filepath.Join(dir, "qnet.sock")); err != nil {
		t.Fatal(err)
	}
	other, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "x.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	req := ether(bcast, guestMAC, etherARP, arp(1, guestMAC, GuestIP, make(net.HardwareAddr, 6), Gateway))
	other.WriteToUnix(req, &net.UnixAddr{Name: hostSock, Net: "unixgram"})
	other.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, _, err := other.ReadFromUnix(make([]byte, 100)); err == nil {
		t.Fatal("the network answered a socket that is not the VM's")
	}
}

// TestSocketPairNIC is vz's attachment: one end of a netpair pair.
func TestSocketPairNIC(t *testing.T) {
	vmFile, hostFile, err := netpair.New()
	if err != nil {
		t.Fatal(err)
	}
	hostConn, err := net.FileConn(hostFile)
	hostFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	vmConn, err := net.FileConn(vmFile)
	vmFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer vmConn.Close()
	n, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.ServeConn(context.Background(), hostConn); err != nil {
		t.Fatal(err)
	}
	g := newFakeGuest(t, vmConn, func(b []byte) error { _, err := vmConn.Write(b); return err })
	checkARP(t, g, Gateway)
	checkDNS(t, g, "host.docker.internal", HostIP)
}

// TestKernelArgs: what the host agent passes is what the guest agent
// reads.
func TestKernelArgs(t *testing.T) {
	c, err := boot.ParseCmdline(strings.Join(KernelArgs(), " "))
	if err != nil {
		t.Fatal(err)
	}
	if c.IP != netip.PrefixFrom(GuestIP, 24) || c.Gateway != Gateway || len(c.DNS) != 1 || c.DNS[0] != Gateway {
		t.Fatalf("the guest reads %+v", c)
	}
}

func TestGuestMAC(t *testing.T) {
	a, b := GuestMAC("default"), GuestMAC("other")
	if a == b || a != GuestMAC("default") {
		t.Fatalf("MACs %s, %s: want stable and distinct", a, b)
	}
	hw, err := net.ParseMAC(a)
	if err != nil {
		t.Fatal(err)
	}
	if hw[0]&0x02 == 0 || hw[0]&0x01 != 0 {
		t.Fatalf("%s is not a locally administered unicast address", a)
	}
	if a == gatewayMAC {
		t.Fatal("guest and gateway MACs collide")
	}
}

// streamConn is QEMU's stream netdev as the VM end sees it: each frame
// is preceded by its length, 32 bits big-endian.
type streamConn struct{ net.Conn }

func (c streamConn) Read(b []byte) (int, error) {
	var h [4]byte
	if _, err := io.ReadFull(c.Conn, h[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint32(h[:]))
	if n > len(b) {
		return 0, fmt.Errorf("frame of %d bytes", n)
	}
	return io.ReadFull(c.Conn, b[:n])
}

func (c streamConn) send(b []byte) error {
	h := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	_, err := c.Conn.Write(append(h, b...))
	return err
}

// TestStreamNIC is the Windows attachment: QEMU connects to a stream
// socket; a reconnecting QEMU is served again.
func TestStreamNIC(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "net.sock")
	n, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.ServeStream(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		sc := streamConn{c}
		g := newFakeGuest(t, sc, sc.send)
		checkARP(t, g, Gateway)
		checkDNS(t, g, "host.docker.internal", HostIP)
		c.Close()
	}
}
