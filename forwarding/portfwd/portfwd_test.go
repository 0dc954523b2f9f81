//go:build unix

package portfwd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berthvm/berth/forwarding/transport"
)

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// countingListener counts the streams the guest side accepted and has
// open.
type countingListener struct {
	net.Listener
	accepted, open atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

func (c *countedConn) CloseWrite() error { return c.Conn.(*net.UnixConn).CloseWrite() }

// fakeGuest is the guest side over the unix transport: ServeGuest on
// guest port 1025 of a socket directory, in this process.
type fakeGuest struct {
	dir    string
	lis    *countingListener
	cancel context.CancelFunc
	done   chan struct{}
}

func startGuest(t *testing.T, dir string) *fakeGuest {
	t.Helper()
	tl, err := transport.NewUnixListener(dir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tl.ListenPort(transport.PortForward)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &fakeGuest{dir: dir, lis: &countingListener{Listener: l}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		if err := ServeGuest(ctx, g.lis, testLog(t)); err != nil {
			t.Errorf("ServeGuest: %v", err)
		}
	}()
	t.Cleanup(g.stop)
	return g
}

func (g *fakeGuest) stop() {
	g.cancel()
	<-g.done
}

// shortDir is a temporary directory with a short path, for sockets.
func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "pf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newForwarder(t *testing.T, dir string, opt Options) *Forwarder {
	t.Helper()
	if opt.Log == nil {
		opt.Log = testLog(t)
	}
	f := NewForwarder(transport.NewUnixDialer(dir), opt)
	t.Cleanup(func() { f.Close() })
	return f
}

// freePort returns a port that was free on 127.0.0.1 for proto a moment
// ago.
func freePort(t *testing.T, proto string) uint16 {
	t.Helper()
	switch proto {
	case TCP:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return uint16(l.Addr().(*net.TCPAddr).Port)
	default:
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port)
	}
}

// tcpEcho serves an echo on 127.0.0.1 that passes half-closes on.
func tcpEcho(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// udpEcho answers each datagram with "echo:" and the datagram.
func udpEcho(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 70000)
		for {
			n, addr, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(append([]byte("echo:"), buf[:n]...), addr)
		}
	}()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func hostPortAddr(ip string, port uint16) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echoTCP sends n random bytes through addr, half-closes, and checks that
// the same bytes come back.
func echoTCP(t *testing.T, addr string, n int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, n)
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echo of %d bytes came back as %d different bytes", n, len(got))
	}
}

func TestTCPForward(t *testing.T) {
	dir := shortDir(t)
	g := startGuest(t, dir)
	f := newForwarder(t, dir, Options{})
	echo := tcpEcho(t)
	hp := freePort(t, TCP)
	p := Port{Proto: TCP, HostIP: "127.0.0.1", HostPort: hp, GuestIP: "127.0.0.1", GuestPort: echo}
	if err := f.Add(p); err != nil {
		t.Fatal(err)
	}
	addr := hostPortAddr("127.0.0.1", hp)
	for _, n := range []int{0, 1, 100 << 10, 8 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { echoTCP(t, addr, n) })
	}
	// Concurrent connections each get their own stream.
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoTCP(t, addr, 64<<10+i)
		}()
	}
	wg.Wait()
	waitFor(t, 5*time.Second, "guest streams to close", func() bool { return g.lis.open.Load() == 0 })

	// Removed: the host port closes.
	if !f.Remove(p) {
		t.Fatal("Remove: not forwarded")
	}
	if f.Remove(p) {
		t.Fatal("second Remove found it again")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("host port still open after Remove")
	}
}

func TestTCPGuestRefuses(t *testing.T) {
	dir := shortDir(t)
	startGuest(t, dir)
	f := newForwarder(t, dir, Options{})
	closed := freePort(t, TCP) // nothing listens there in the "guest"
	hp := freePort(t, TCP)
	if err := f.Add(Port{Proto: TCP, HostIP: "127.0.0.1", HostPort: hp, GuestIP: "127.0.0.1", GuestPort: closed}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", hostPortAddr("127.0.0.1", hp))
	if err == nil {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	// A reset, as from a closed port (it may come before the dial even
	// returns); never a hang.
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("a refused forward: %v, want a reset", err)
	}
}

// TestCloseWhileGuestSilent: a connection waiting for the guest's answer
// ends when the forwarder closes, not when the dial timeout runs out.
func TestCloseWhileGuestSilent(t *testing.T) {
	dir := shortDir(t)
	tl, err := transport.NewUnixListener(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	gl, err := tl.ListenPort(transport.PortForward)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() { // takes the stream, reads the request, never answers
		c, err := gl.Accept()
		if err != nil {
			return
		}
		t.Cleanup(func() { c.Close() })
		accepted <- c
		io.Copy(io.Discard, c)
	}()
	f := newForwarder(t, dir, Options{DialTimeout: time.Minute})
	hp := freePort(t, TCP)
	if err := f.Add(Port{Proto: TCP, HostIP: "127.0.0.1", HostPort: hp, GuestIP: "127.0.0.1", GuestPort: 80}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", hostPortAddr("127.0.0.1", hp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the guest got no stream")
	}
	f.Close()
	// Well within the dial timeout (a minute).
	c.SetDeadline(time.Now().Add(20 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("client read after the forwarder closed: %v, want the connection ended", err)
	}
}

func TestUDPForward(t *testing.T) {
	dir := shortDir(t)
	g := startGuest(t, dir)
	f := newForwarder(t, dir, Options{UDPIdleTimeout: 300 * time.Millisecond})
	echo := udpEcho(t)
	hp := freePort(t, UDP)
	if err := f.Add(Port{Proto: UDP, HostIP: "127.0.0.1", HostPort: hp, GuestIP: "127.0.0.1", GuestPort: echo}); err != nil {
		t.Fatal(err)
	}
	raddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(hp)}
	// Two clients: each gets its own replies, over its own stream.
	var clients []*net.UDPConn
	for range 2 {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	buf := make([]byte, 70000)
	for round := range 3 {
		for i, c := range clients {
			for _, size := range []int{1, 1400, 60000} {
				msg := bytes.Repeat([]byte{byte('a' + i)}, size)
				copy(msg, fmt.Sprintf("c%d r%d ", i, round))
				// UDP may drop: retry a few times.
				var got []byte
				for try := 0; try < 5 && got == nil; try++ {
					if _, err := c.Write(msg); err != nil {
						t.Fatal(err)
					}
					c.SetReadDeadline(time.Now().Add(time.Second))
					n, err := c.Read(buf)
					if err == nil {
						got = buf[:n]
					}
				}
				if !bytes.Equal(got, append([]byte("echo:"), msg...)) {
					t.Fatalf("client %d, %d bytes: got %d bytes back", i, size, len(got))
				}
			}
		}
	}
	if n := g.lis.accepted.Load(); n != 2 {
		t.Fatalf("%d guest streams for 2 clients", n)
	}
	// Idle flows end, and a client that comes back gets a new stream.
	waitFor(t, 5*time.Second, "idle UDP streams to end", func() bool { return g.lis.open.Load() == 0 })
	clients[0].Write([]byte("again"))
	clients[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := clients[0].Read(buf)
	if err != nil || string(buf[:n]) != "echo:again" {
		t.Fatalf("after idle: %q %v", buf[:n], err)
	}
	if n := g.lis.accepted.Load(); n != 3 {
		t.Fatalf("%d guest streams, want 3", n)
	}
}

func TestPortTakenThenFreed(t *testing.T) {
	dir := shortDir(t)
	startGuest(t, dir)
	changes := make(chan struct{}, 16)
	f := newForwarder(t, dir, Options{RetryInterval: 50 * time.Millisecond, OnChange: func() { changes <- struct{}{} }})
	echo := tcpEcho(t)
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hp := uint16(holder.Addr().(*net.TCPAddr).Port)
	p := Port{Proto: TCP, HostIP: "0.0.0.0", HostPort: hp, GuestIP: "127.0.0.1", GuestPort: echo}
	err = f.Add(p)
	var le *ListenError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("Add on a taken port: %v, want a ListenError saying it is in use", err)
	}
	list := f.List()
	if len(list) != 1 || !strings.Contains(list[0].Error, "already in use") || len(list[0].Listen) != 0 {
		t.Fatalf("List with a taken port: %+v", list)
	}
	// All or nothing: ::1 is not left open while 127.0.0.1 is taken.
	if c, err := net.DialTimeout("tcp", hostPortAddr("::1", hp), 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("a half-opened forward listens on ::1")
	}
	<-changes
	holder.Close()
	waitFor(t, 5*time.Second, "the forward to come up", func() bool {
		l := f.List()
		return len(l) == 1 && l[0].Error == "" && len(l[0].Listen) > 0
	})
	echoTCP(t, hostPortAddr("127.0.0.1", hp), 1000)
	select {
	case <-changes:
	case <-time.After(5 * time.Second):
		t.Fatal("no OnChange after the forward came up")
	}
}

func TestListenErrors(t *testing.T) {
	tests := []struct {
		name string
		err  *ListenError
		want string
	}{
		{"in use", &ListenError{Proto: TCP, Addr: "127.0.0.1:8080", Err: syscall.EADDRINUSE}, "127.0.0.1:8080/tcp is already in use"},
		{"privileged", &ListenError{Proto: TCP, Addr: "127.0.0.1:80", Err: syscall.EACCES}, "below 1024"},
		{"denied high port", &ListenError{Proto: UDP, Addr: "127.0.0.1:8053", Err: syscall.EACCES}, "permission denied"},
		{"no such address", &ListenError{Proto: TCP, Addr: "10.9.8.7:80", Err: syscall.EADDRNOTAVAIL}, "no such address"},
		{"other", &ListenError{Proto: TCP, Addr: "127.0.0.1:1", Err: errors.New("boom")}, "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); !strings.Contains(got, tt.want) {
				t.Fatalf("%q lacks %q", got, tt.want)
			}
			if !errors.Is(tt.err, tt.err.Err) {
				t.Fatal("does not unwrap")
			}
		})
	}
	if msg := (&ListenError{Proto: TCP, Addr: "127.0.0.1:80", Err: syscall.EACCES}).Error(); !strings.Contains(msg, privilegedPortHint(80)) {
		t.Fatalf("privileged port error %q lacks the OS hint", msg)
	}
}

func TestPrivilegedPort(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may listen on any port")
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil || strings.TrimSpace(string(b)) == "0" {
		t.Skip("this host lets anyone listen on low ports")
	}
	dir := shortDir(t)
	startGuest(t, dir)
	f := newForwarder(t, dir, Options{})
	err = f.Add(Port{Proto: TCP, HostIP: "127.0.0.1", HostPort: 81, GuestIP: "127.0.0.1", GuestPort: 80})
	if err == nil || !strings.Contains(err.Error(), "ip_unprivileged_port_start") {
		t.Fatalf("port 81 as a user: %v", err)
	}
}

func TestHostAddrs(t *testing.T) {
	tests := []struct {
		hostIP  string
		bindAll bool
		want    []HostAddr
	}{
		{"0.0.0.0", false, []HostAddr{{Addr: "127.0.0.1:80"}, {Addr: "[::1]:80", Optional: true}}},
		{"", false, []HostAddr{{Addr: "127.0.0.1:80"}, {Addr: "[::1]:80", Optional: true}}},
		{"::", false, []HostAddr{{Addr: "127.0.0.1:80"}, {Addr: "[::1]:80", Optional: true}}},
		{"0.0.0.0", true, []HostAddr{{Addr: ":80"}}},
		{"::", true, []HostAddr{{Addr: ":80"}}},
		{"127.0.0.1", true, []HostAddr{{Addr: "127.0.0.1:80"}}},
		{"127.0.0.1", false, []HostAddr{{Addr: "127.0.0.1:80"}}},
		{"::1", false, []HostAddr{{Addr: "[::1]:80"}}},
		{"192.168.1.20", false, []HostAddr{{Addr: "192.168.1.20:80"}}},
		{"::ffff:10.0.0.1", false, []HostAddr{{Addr: "10.0.0.1:80"}}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s bindAll=%v", tt.hostIP, tt.bindAll), func(t *testing.T) {
			got := HostAddrs(Port{Proto: TCP, HostIP: tt.hostIP, HostPort: 80, GuestIP: "172.17.0.2", GuestPort: 80}, tt.bindAll)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// nonLoopbackIP is an address of this host outside loopback, if any.
func nonLoopbackIP(t *testing.T) net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP
		}
	}
	return nil
}

func TestWildcardBindsLoopbackOnly(t *testing.T) {
	dir := shortDir(t)
	startGuest(t, dir)
	echo := tcpEcho(t)
	tests := []struct {
		bindAll     bool
		wantOutside bool
	}{{false, false}, {true, true}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("bindAll=%v", tt.bindAll), func(t *testing.T) {
			f := newForwarder(t, dir, Options{BindAll: tt.bindAll})
			hp := freePort(t, TCP)
			if err := f.Add(Port{Proto: TCP, HostIP: "0.0.0.0", HostPort: hp, GuestIP: "127.0.0.1", GuestPort: echo}); err != nil {
				t.Fatal(err)
			}
			echoTCP(t, hostPortAddr("127.0.0.1", hp), 1000)
			l := f.List()
			if len(l) != 1 || len(l[0].Listen) == 0 {
				t.Fatalf("List: %+v", l)
			}
			for _, a := range l[0].Listen {
				ap, err := net.ResolveTCPAddr("tcp", a)
				if err != nil {
					t.Fatal(err)
				}
				if loop := ap.IP.IsLoopback(); loop == tt.bindAll {
					t.Fatalf("listens on %s with bindAll=%v", a, tt.bindAll)
				}
			}
			ip := nonLoopbackIP(t)
			if ip == nil {
				return
			}
			c, err := net.DialTimeout("tcp", hostPortAddr(ip.String(), hp), time.Second)
			if c != nil {
				c.Close()
			}
			if (err == nil) != tt.wantOutside {
				t.Fatalf("dial %s: %v, want reachable=%v", ip, err, tt.wantOutside)
			}
		})
	}
}

// TestRestoreAfterRestart is a host agent that dies and a new one that
// syncs the guest's snapshot: the same ports work again, and Sync keeps
// the listeners of ports that stay.
func TestRestoreAfterRestart(t *testing.T) {
	dir := shortDir(t)
	startGuest(t, dir)
	echo, uecho := tcpEcho(t), udpEcho(t)
	ports := []Port{
		{Proto: TCP, HostIP: "127.0.0.1", HostPort: freePort(t, TCP), GuestIP: "127.0.0.1", GuestPort: echo},
		{Proto: UDP, HostIP: "127.0.0.1", HostPort: freePort(t, UDP), GuestIP: "127.0.0.1", GuestPort: uecho},
	}
	f1 := NewForwarder(transport.NewUnixDialer(dir), Options{Log: testLog(t)})
	if err := f1.Sync(ports); err != nil {
		t.Fatal(err)
	}
	echoTCP(t, hostPortAddr("127.0.0.1", ports[0].HostPort), 1000)
	f1.Close()
	if c, err := net.DialTimeout("tcp", hostPortAddr("127.0.0.1", ports[0].HostPort), time.Second); err == nil {
		c.Close()
		t.Fatal("the port outlived its forwarder")
	}

	f2 := newForwarder(t, dir, Options{})
	if err := f2.Sync(ports); err != nil {
		t.Fatal(err)
	}
	echoTCP(t, hostPortAddr("127.0.0.1", ports[0].HostPort), 1000)
	c, err := net.Dial("udp", hostPortAddr("127.0.0.1", ports[1].HostPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "echo:x" {
		t.Fatalf("udp after restore: %q %v", buf[:n], err)
	}

	// A connection open across a Sync of the same set survives it.
	tc, err := net.Dial("tcp", hostPortAddr("127.0.0.1", ports[0].HostPort))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	before := f2.List()
	if err := f2.Sync(ports); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f2.List()) != fmt.Sprint(before) {
		t.Fatalf("Sync of the same set changed the forwards: %v -> %v", before, f2.List())
	}
	tc.Write([]byte("still"))
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadAtLeast(tc, buf, 5); err != nil || string(buf[:n]) != "still" {
		t.Fatalf("connection across Sync: %q %v", buf[:n], err)
	}

	// Sync to a smaller set removes the rest.
	if err := f2.Sync(ports[:1]); err != nil {
		t.Fatal(err)
	}
	if l := f2.List(); len(l) != 1 || l[0].Proto != TCP {
		t.Fatalf("after Sync to one port: %+v", l)
	}
}

func TestAddValidates(t *testing.T) {
	f := NewForwarder(transport.NewUnixDialer(shortDir(t)), Options{})
	defer f.Close()
	bad := []Port{
		{Proto: "sctp", HostPort: 1, GuestIP: "1.2.3.4", GuestPort: 1},
		{Proto: TCP, HostPort: 0, GuestIP: "1.2.3.4", GuestPort: 1},
		{Proto: TCP, HostPort: 1, GuestIP: "1.2.3.4", GuestPort: 0},
		{Proto: TCP, HostPort: 1, GuestIP: "container", GuestPort: 1},
		{Proto: TCP, HostIP: "localhost", HostPort: 1, GuestIP: "1.2.3.4", GuestPort: 1},
	}
	for _, p := range bad {
		if err := f.Add(p); err == nil {
			t.Errorf("Add(%+v) accepted", p)
		}
	}
	if len(f.List()) != 0 {
		t.Fatalf("invalid ports were kept: %+v", f.List())
	}
	f.Close()
	if err := f.Add(Port{Proto: TCP, HostIP: "127.0.0.1", HostPort: 1, GuestIP: "1.2.3.4", GuestPort: 1}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
}

// TestServeGuestRejectsGarbage: a stream that does not start with a
// request is closed without dialing anything.
func TestServeGuestRejectsGarbage(t *testing.T) {
	dir := shortDir(t)
	g := startGuest(t, dir)
	c, err := transport.NewUnixDialer(dir).DialPort(context.Background(), transport.PortForward)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 10)); err == nil {
		t.Fatalf("the guest answered garbage with %d bytes", n)
	}
	waitFor(t, 5*time.Second, "the stream to close", func() bool { return g.lis.open.Load() == 0 })
}
