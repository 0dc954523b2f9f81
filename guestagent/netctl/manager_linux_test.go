package netctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The tests below need root. Each runs a Manager inside a throwaway
// "guest" network namespace that it creates, with a dummy uplink, so the
// machine's own interfaces, routes and nftables ruleset are never touched.

const (
	testSubnet    = "172.30.0.0/24"
	testGuestIP   = "192.168.127.2"
	testOutsideIP = "192.168.127.1"
)

type guest struct {
	t       *testing.T
	dir     string
	ns      string // the guest namespace
	outside string // the uplink's far end
	state   string
	cfg     Config

	mu     sync.Mutex
	events [][2][]PublishedPort
}

func newGuest(t *testing.T) *guest {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	dir := t.TempDir()
	g := &guest{t: t, dir: dir, ns: filepath.Join(dir, "guest"), outside: filepath.Join(dir, "outside"), state: filepath.Join(dir, "state")}
	if err := newNetNS(g.ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Unpin every namespace we made, even if the test failed
		// half-way; the guest namespace takes bridge, veths and
		// nftables table with it.
		ents, _ := os.ReadDir(filepath.Join(g.state, "netns"))
		for _, e := range ents {
			if err := deleteNetNS(filepath.Join(g.state, "netns", e.Name())); err != nil {
				t.Error(err)
			}
		}
		if err := deleteNetNS(g.ns); err != nil {
			t.Error(err)
		}
	})
	h := g.handle(g.ns)
	lo, err := h.LinkByName("lo")
	must(t, err)
	must(t, h.LinkSetUp(lo))
	// A veth pair stands in for the VM's NIC; its peer sits in an
	// "outside" namespace that plays gvisor-tap-vsock's gateway.
	if err := newNetNS(g.outside); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := deleteNetNS(g.outside); err != nil {
			t.Error(err)
		}
	})
	outNS, err := netns.GetFromPath(g.outside)
	must(t, err)
	defer outNS.Close()
	must(t, h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "uplink0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(outNS)}))
	oh := g.handle(g.outside)
	for _, name := range []string{"lo", "eth0"} {
		l, err := oh.LinkByName(name)
		must(t, err)
		must(t, oh.LinkSetUp(l))
		if name == "eth0" {
			must(t, oh.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(testOutsideIP), Mask: net.CIDRMask(24, 32)}}))
		}
	}
	up, err := h.LinkByName("uplink0")
	must(t, err)
	must(t, h.AddrAdd(up, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(testGuestIP), Mask: net.CIDRMask(24, 32)}}))
	must(t, h.LinkSetUp(up))
	must(t, h.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Gw: net.ParseIP(testOutsideIP)}))
	g.cfg = Config{
		Subnet:    testSubnet,
		StateDir:  g.state,
		NetNS:     g.ns,
		PortRange: [2]uint16{40000, 40100},
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnPorts: func(added, removed []PublishedPort) {
			g.mu.Lock()
			g.events = append(g.events, [2][]PublishedPort{added, removed})
			g.mu.Unlock()
		},
	}
	return g
}

func (g *guest) manager() *Manager {
	g.t.Helper()
	m, err := New(context.Background(), g.cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { m.Close() })
	return m
}

func (g *guest) handle(nsPath string) *netlink.Handle {
	g.t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	must(g.t, err)
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	must(g.t, err)
	g.t.Cleanup(h.Close)
	return h
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func attach(t *testing.T, m *Manager, id string) *Endpoint {
	t.Helper()
	ep, err := m.Attach(context.Background(), id, AttachOptions{})
	must(t, err)
	return ep
}

// echoTCP serves a TCP echo inside the namespace at nsPath.
func echoTCP(t *testing.T, nsPath, addr string) {
	t.Helper()
	var l net.Listener
	must(t, inNetNS(nsPath, func() (err error) { l, err = net.Listen("tcp4", addr); return err }))
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

// echoUDP serves a UDP echo inside the namespace at nsPath.
func echoUDP(t *testing.T, nsPath, addr string) {
	t.Helper()
	var pc net.PacketConn
	must(t, inNetNS(nsPath, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }))
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// roundTrip dials addr from the namespace at nsPath, sends a message and
// expects it back.
func roundTrip(nsPath, network, addr string) error {
	var c net.Conn
	err := inNetNS(nsPath, func() (err error) { c, err = net.DialTimeout(network, addr, 3*time.Second); return err })
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	msg := []byte(fmt.Sprintf("hello %s %s", network, addr))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("reading echo from %s: %w", addr, err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo from %s = %q, want %q", addr, got, msg)
	}
	return nil
}

func TestBridgeConnectivity(t *testing.T) {
	g := newGuest(t)
	m := g.manager()
	a, b := attach(t, m, "a"), attach(t, m, "b")
	sub := netip.MustParsePrefix(testSubnet)
	if a.IP == b.IP || !sub.Contains(a.IP) || !sub.Contains(b.IP) || a.Gateway.String() != "172.30.0.1" || a.PrefixLen != 24 {
		t.Fatalf("endpoints a=%+v b=%+v", a, b)
	}
	if !isNetNS(a.NetNS) || !isNetNS(b.NetNS) {
		t.Fatal("container namespaces are not pinned")
	}
	// eth0 carries the address and MAC, and the default route is set.
	h := g.handle(a.NetNS)
	eth, err := h.LinkByName("eth0")
	must(t, err)
	if eth.Attrs().HardwareAddr.String() != a.MAC.String() || eth.Attrs().MasterIndex != 0 {
		t.Errorf("eth0 = %+v, want MAC %s", eth.Attrs(), a.MAC)
	}
	routes, err := h.RouteList(eth, netlink.FAMILY_V4)
	must(t, err)
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Gw.Equal(a.Gateway.AsSlice()) }) {
		t.Errorf("no default route via %s in %v", a.Gateway, routes)
	}

	echoTCP(t, b.NetNS, ":7")
	echoTCP(t, g.ns, testGuestIP+":7")
	for _, tc := range []struct{ from, to string }{
		{a.NetNS, net.JoinHostPort(b.IP.String(), "7")}, // container to container
		{g.ns, net.JoinHostPort(b.IP.String(), "7")},    // guest to container
		{a.NetNS, net.JoinHostPort(testGuestIP, "7")},   // container to the guest's uplink address
	} {
		if err := roundTrip(tc.from, "tcp4", tc.to); err != nil {
			t.Errorf("from %s to %s: %v", filepath.Base(tc.from), tc.to, err)
		}
	}
	if _, err := exec.LookPath("nsenter"); err == nil {
		out, err := exec.Command("nsenter", "--net="+a.NetNS, "busybox", "ping", "-c1", "-W3", b.IP.String()).CombinedOutput()
		if err != nil {
			t.Errorf("ping %s from a: %v\n%s", b.IP, err, out)
		}
	}
}

func TestModes(t *testing.T) {
	g := newGuest(t)
	m := g.manager()
	ctx := context.Background()
	none, err := m.Attach(ctx, "n", AttachOptions{Mode: ModeNone})
	must(t, err)
	links, err := g.handle(none.NetNS).LinkList()
	must(t, err)
	if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&net.FlagUp == 0 || none.IP.IsValid() {
		t.Errorf("none mode: links %v, endpoint %+v", links, none)
	}
	host, err := m.Attach(ctx, "h", AttachOptions{Mode: ModeHost})
	must(t, err)
	if host.NetNS != "" || host.IP.IsValid() {
		t.Errorf("host mode endpoint %+v", host)
	}
	if ps, err := m.Publish(ctx, "h", []PortBinding{{HostPort: 80, ContainerPort: 80}}); err != nil || ps != nil {
		t.Errorf("publish in host mode = %v, %v; want nothing", ps, err)
	}
	if _, err := m.Attach(ctx, "x", AttachOptions{Mode: "macvlan"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad mode err = %v", err)
	}
	if _, err := m.Attach(ctx, "../x", AttachOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad id err = %v", err)
	}
	// Attach again returns the same endpoint.
	again, err := m.Attach(ctx, "n", AttachOptions{})
	must(t, err)
	if again.NetNS != none.NetNS || again.Mode != ModeNone {
		t.Errorf("re-attach = %+v, want %+v", again, none)
	}
	must(t, m.Detach(ctx, "n"))
	must(t, m.Detach(ctx, "h"))
	if _, err := os.Stat(none.NetNS); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("none-mode namespace still there: %v", err)
	}
}

func TestIPAMPersistence(t *testing.T) {
	g := newGuest(t)
	ctx := context.Background()
	m := g.manager()
	a, b, c := attach(t, m, "a"), attach(t, m, "b"), attach(t, m, "c")
	echoTCP(t, b.NetNS, ":7")
	_, err := m.Publish(ctx, "b", []PortBinding{{HostPort: 8080, ContainerPort: 7}})
	must(t, err)
	must(t, m.Close())
	if _, err := m.Attach(ctx, "z", AttachOptions{}); err == nil {
		t.Fatal("attach on a closed manager worked")
	}
	// Close left the networking alone.
	if !isNetNS(a.NetNS) {
		t.Fatal("Close removed a container namespace")
	}
	// c's namespace disappears while the engine is down (as after a VM
	// reboot): the next manager releases it.
	must(t, deleteNetNS(c.NetNS))

	m2 := g.manager()
	for _, want := range []*Endpoint{a, b} {
		got, err := m2.Endpoint(want.ContainerID)
		must(t, err)
		if got.IP != want.IP || got.MAC.String() != want.MAC.String() || got.NetNS != want.NetNS {
			t.Errorf("after restart %s = %+v, want %+v", want.ContainerID, got, want)
		}
	}
	if _, err := m2.Endpoint("c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("stale endpoint c survived: %v", err)
	}
	if n := len(m2.Endpoints()); n != 2 {
		t.Errorf("%d endpoints after restart, want 2", n)
	}
	// New addresses never repeat a live one, and do not reuse a freed one
	// before the subnet wraps.
	must(t, m2.Detach(ctx, "a"))
	seen := map[netip.Addr]string{b.IP: "b"}
	for _, id := range []string{"d", "e", "f"} {
		ep := attach(t, m2, id)
		if prev, dup := seen[ep.IP]; dup || ep.IP == a.IP || ep.IP == c.IP {
			t.Errorf("%s got %s (held by %q, a=%s c=%s)", id, ep.IP, prev, a.IP, c.IP)
		}
		seen[ep.IP] = id
	}
	// Connectivity and published ports survive the restart.
	if err := roundTrip(g.ns, "tcp4", net.JoinHostPort(b.IP.String(), "7")); err != nil {
		t.Error(err)
	}
	if err := roundTrip(g.ns, "tcp4", testGuestIP+":8080"); err != nil {
		t.Errorf("published port after restart: %v", err)
	}
	if ps := m2.Ports(); len(ps) != 1 || ps[0].ContainerID != "b" || ps[0].HostPort != 8080 {
		t.Errorf("ports after restart = %v", ps)
	}
}

func TestPublish(t *testing.T) {
	g := newGuest(t)
	ctx := context.Background()
	m := g.manager()
	web, other := attach(t, m, "web"), attach(t, m, "other")
	echoTCP(t, web.NetNS, ":80")
	echoUDP(t, web.NetNS, ":53")
	ps, err := m.Publish(ctx, "web", []PortBinding{
		{Proto: "tcp", ContainerPort: 80},                 // -P: ephemeral
		{Proto: "tcp", HostPort: 8080, ContainerPort: 80}, // -p 8080:80
		{Proto: "udp", HostPort: 5300, ContainerPort: 53}, // -p 5300:53/udp
		{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 9090, ContainerPort: 80},
	})
	must(t, err)
	if len(ps) != 4 || ps[0].HostPort < 40000 || ps[0].HostPort > 40100 || ps[1].HostPort != 8080 || ps[0].HostIP != "0.0.0.0" || ps[3].HostIP != "127.0.0.1" || ps[0].ContainerIP != web.IP {
		t.Fatalf("published %v", ps)
	}
	eph := fmt.Sprint(ps[0].HostPort)
	for _, tc := range []struct{ name, from, network, to string }{
		{"guest address", g.ns, "tcp4", testGuestIP + ":8080"},
		{"guest ephemeral", g.ns, "tcp4", testGuestIP + ":" + eph},
		{"guest localhost", g.ns, "tcp4", "127.0.0.1:8080"},
		{"localhost-only binding", g.ns, "tcp4", "127.0.0.1:9090"},
		{"hairpin from a container", other.NetNS, "tcp4", testGuestIP + ":8080"},
		{"hairpin to itself", web.NetNS, "tcp4", testGuestIP + ":8080"},
		{"via the gateway", other.NetNS, "tcp4", "172.30.0.1:8080"},
		{"udp on guest address", g.ns, "udp4", testGuestIP + ":5300"},
		{"udp on localhost", g.ns, "udp4", "127.0.0.1:5300"},
	} {
		if err := roundTrip(tc.from, tc.network, tc.to); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// The localhost-only binding is not on the guest's other addresses.
	if err := roundTrip(g.ns, "tcp4", testGuestIP+":9090"); err == nil {
		t.Error("127.0.0.1-only binding answered on the guest address")
	}
	if got := m.Ports(); len(got) != 4 {
		t.Errorf("Ports() = %v", got)
	}
	g.mu.Lock()
	if len(g.events) != 1 || len(g.events[0][0]) != 4 || len(g.events[0][1]) != 0 {
		t.Errorf("events = %v, want one with 4 added", g.events)
	}
	g.mu.Unlock()

	must(t, m.Unpublish(ctx, "web"))
	if err := roundTrip(g.ns, "tcp4", testGuestIP+":8080"); err == nil {
		t.Error("port 8080 still reachable after Unpublish")
	}
	if n := len(publishRules(t, g)); n != 0 {
		t.Errorf("%d publish rules left after Unpublish", n)
	}
	g.mu.Lock()
	if len(g.events) != 2 || len(g.events[1][1]) != 4 {
		t.Errorf("events = %v, want a second with 4 removed", g.events)
	}
	g.mu.Unlock()
}

func publishRules(t *testing.T, g *guest) []*nftables.Rule {
	t.Helper()
	ns, err := netns.GetFromPath(g.ns)
	must(t, err)
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	must(t, err)
	tbl := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	rules, err := c.GetRules(tbl, &nftables.Chain{Name: chainPublish, Table: tbl})
	must(t, err)
	return rules
}

func TestPortConflicts(t *testing.T) {
	g := newGuest(t)
	ctx := context.Background()
	m := g.manager()
	attach(t, m, "one")
	attach(t, m, "two")
	_, err := m.Publish(ctx, "one", []PortBinding{{HostPort: 8080, ContainerPort: 80}})
	must(t, err)
	for _, b := range []PortBinding{
		{HostPort: 8080, ContainerPort: 80},
		{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 81},
	} {
		if _, err := m.Publish(ctx, "two", []PortBinding{b}); !errors.Is(err, ErrPortAllocated) {
			t.Errorf("publish %+v err = %v, want ErrPortAllocated", b, err)
		}
	}
	// Same number, other protocol: fine. A failed call publishes nothing.
	if _, err := m.Publish(ctx, "two", []PortBinding{{Proto: "udp", HostPort: 8080, ContainerPort: 80}}); err != nil {
		t.Errorf("udp 8080: %v", err)
	}
	if _, err := m.Publish(ctx, "two", []PortBinding{{HostPort: 8181, ContainerPort: 1}, {HostPort: 8080, ContainerPort: 2}}); !errors.Is(err, ErrPortAllocated) {
		t.Errorf("partial conflict err = %v", err)
	}
	for _, p := range m.Ports() {
		if p.HostPort == 8181 {
			t.Error("a failed Publish left port 8181 published")
		}
	}
	// A guest process already listening on the port.
	var l net.Listener
	must(t, inNetNS(g.ns, func() (err error) { l, err = net.Listen("tcp4", ":8282"); return err }))
	defer l.Close()
	if _, err := m.Publish(ctx, "two", []PortBinding{{HostPort: 8282, ContainerPort: 80}}); !errors.Is(err, ErrPortAllocated) {
		t.Errorf("port held by a guest socket: err = %v", err)
	}
	// Unknown container.
	if _, err := m.Publish(ctx, "nobody", []PortBinding{{HostPort: 1, ContainerPort: 1}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown container err = %v", err)
	}
	// Detach frees the port for others.
	must(t, m.Detach(ctx, "one"))
	if _, err := m.Publish(ctx, "two", []PortBinding{{HostPort: 8080, ContainerPort: 80}}); err != nil {
		t.Errorf("8080 after detaching its owner: %v", err)
	}
}

func TestDetachIdempotent(t *testing.T) {
	g := newGuest(t)
	ctx := context.Background()
	m := g.manager()
	ep := attach(t, m, "c")
	_, err := m.Publish(ctx, "c", []PortBinding{{HostPort: 8080, ContainerPort: 80}})
	must(t, err)
	for i := range 2 {
		if err := m.Detach(ctx, "c"); err != nil {
			t.Fatalf("detach %d: %v", i, err)
		}
	}
	must(t, m.Detach(ctx, "never-attached"))
	if _, err := g.handle(g.ns).LinkByName(ep.HostVeth); err == nil {
		t.Error("host veth survived Detach")
	}
	if _, err := os.Stat(ep.NetNS); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace file survived Detach: %v", err)
	}
	if len(m.Ports()) != 0 || len(publishRules(t, g)) != 0 {
		t.Error("ports survived Detach")
	}
	if _, err := m.Endpoint("c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("endpoint after Detach: %v", err)
	}
}

func TestRuleset(t *testing.T) {
	g := newGuest(t)
	m := g.manager()
	_ = m
	ns, err := netns.GetFromPath(g.ns)
	must(t, err)
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	must(t, err)
	tbl := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	rules, err := c.GetRules(tbl, &nftables.Chain{Name: chainPostrouting, Table: tbl})
	must(t, err)
	subnet := netip.MustParsePrefix(testSubnet).Addr().As4()
	found := false
	for _, r := range rules {
		var masq, saddr, notBridge bool
		for _, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Masq:
				masq = true
			case *expr.Cmp:
				if bytes.Equal(e.Data, subnet[:]) {
					saddr = true
				}
				if e.Op == expr.CmpOpNeq && bytes.HasPrefix(e.Data, []byte(DefaultBridge+"\x00")) {
					notBridge = true
				}
			}
		}
		found = found || (masq && saddr && notBridge)
	}
	if !found {
		t.Errorf("no masquerade rule for %s out of non-bridge interfaces in %d rules", testSubnet, len(rules))
	}
	// ip_forward and route_localnet are on in the guest namespace only.
	for key, want := range map[string]string{
		"net/ipv4/ip_forward":                                "1",
		"net/ipv4/conf/" + DefaultBridge + "/route_localnet": "1",
	} {
		got, err := readSysctl(g.ns, key)
		must(t, err)
		if got[:1] != want {
			t.Errorf("%s = %q, want %s", key, got, want)
		}
	}
	// New is idempotent: a second manager over the same setup works and
	// leaves one table.
	m2 := g.manager()
	_ = m2
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	must(t, err)
	n := 0
	for _, tb := range tables {
		if tb.Name == TableName {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d %q tables", n, TableName)
	}
}

func TestConcurrentAttach(t *testing.T) {
	g := newGuest(t)
	ctx := context.Background()
	m := g.manager()
	const n = 8
	eps := make([]*Endpoint, n)
	ports := make([][]PublishedPort, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("c%d", i)
			if eps[i], errs[i] = m.Attach(ctx, id, AttachOptions{}); errs[i] != nil {
				return
			}
			ports[i], errs[i] = m.Publish(ctx, id, []PortBinding{{ContainerPort: 80}})
		})
	}
	wg.Wait()
	ips, hostPorts := map[netip.Addr]bool{}, map[uint16]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("c%d: %v", i, errs[i])
		}
		if ips[eps[i].IP] || hostPorts[ports[i][0].HostPort] {
			t.Errorf("c%d got a duplicate: %s port %d", i, eps[i].IP, ports[i][0].HostPort)
		}
		ips[eps[i].IP], hostPorts[ports[i][0].HostPort] = true, true
	}
	if got := len(publishRules(t, g)); got != n {
		t.Errorf("%d publish rules, want %d", got, n)
	}
	for i := range n {
		wg.Go(func() { errs[i] = m.Detach(ctx, fmt.Sprintf("c%d", i)) })
	}
	wg.Wait()
	must(t, errors.Join(errs...))
	if len(m.Endpoints()) != 0 || len(publishRules(t, g)) != 0 {
		t.Error("endpoints or rules left after detaching all")
	}
}

// TestMasquerade checks that containers reach the outside through the
// guest's address, as the VM's user-mode network requires.
func TestMasquerade(t *testing.T) {
	for _, tc := range []struct {
		uplink string
		works  bool
	}{
		{uplink: "", works: true},        // any interface but the bridge
		{uplink: "uplink0", works: true}, // the real uplink
		{uplink: "other0", works: false}, // no masquerade out of uplink0
	} {
		t.Run("uplink="+tc.uplink, func(t *testing.T) {
			g := newGuest(t)
			g.cfg.Uplink = tc.uplink
			m := g.manager()
			c := attach(t, m, "c")
			// The outside has no route back to the container subnet, so
			// only a masqueraded connection works; it echoes the source.
			var l net.Listener
			must(t, inNetNS(g.outside, func() (err error) { l, err = net.Listen("tcp4", ":7"); return err }))
			defer l.Close()
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
					io.WriteString(conn, host+"\n")
					conn.Close()
				}
			}()
			var got []byte
			err := inNetNS(c.NetNS, func() error {
				conn, err := net.DialTimeout("tcp4", testOutsideIP+":7", time.Second)
				if err != nil {
					return err
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(3 * time.Second))
				got, err = io.ReadAll(conn)
				return err
			})
			if !tc.works {
				if err == nil {
					t.Fatalf("reached the outside without masquerade (as %q)", got)
				}
				return
			}
			must(t, err)
			if string(got) != testGuestIP+"\n" {
				t.Fatalf("outside saw the container as %q, want %s", got, testGuestIP)
			}
		})
	}
}
