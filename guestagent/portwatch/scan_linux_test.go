package portwatch

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthvm/berth/guestagent/api"
)

func has(ls []Listener, proto string, ap netip.AddrPort) bool {
	return slices.Contains(ls, Listener{Proto: proto, Addr: ap})
}

// TestScanFindsListeners runs sock_diag against real sockets of this
// process (it needs no privilege).
func TestScanFindsListeners(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	tap := tl.Addr().(*net.TCPAddr).AddrPort()
	uc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uap := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	// A connected client and its accepted peer are not listeners.
	client, err := net.Dial("tcp", tap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	peer, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	cap := client.LocalAddr().(*net.TCPAddr).AddrPort()

	var v6 netip.AddrPort
	if l6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		defer l6.Close()
		v6 = l6.Addr().(*net.TCPAddr).AddrPort()
	}

	ls, err := scanListeners()
	if err != nil {
		t.Fatal(err)
	}
	if !has(ls, "tcp", tap) {
		t.Errorf("tcp listener %v not found in %v", tap, ls)
	}
	if !has(ls, "udp", uap) {
		t.Errorf("udp socket %v not found in %v", uap, ls)
	}
	if v6.IsValid() && !has(ls, "tcp", v6) {
		t.Errorf("tcp6 listener %v not found", v6)
	}
	for _, l := range ls {
		if l.Addr.Port() == cap.Port() && l.Proto == "tcp" {
			t.Errorf("the connected client %v was listed as %v", cap, l)
		}
	}
	tl.Close()
	ls, err = scanListeners()
	if err != nil {
		t.Fatal(err)
	}
	if has(ls, "tcp", tap) {
		t.Errorf("closed listener %v still listed", tap)
	}
}

// TestRunSeesNewListener: a listener opened while Run polls is published
// within a poll or two, and its closing too.
func TestRunSeesNewListener(t *testing.T) {
	w := New(Config{Interval: 50 * time.Millisecond})
	evs := make(chan *api.Event, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx, func(ev *api.Event) { evs <- ev })
	time.Sleep(100 * time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	wait := func(added bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ev := <-evs:
				list := ev.GetPorts().GetRemoved()
				if added {
					list = ev.GetPorts().GetAdded()
				}
				for _, p := range list {
					if p.HostPort == port && p.HostIp == "127.0.0.1" && p.GuestIp == "127.0.0.1" {
						return
					}
				}
			case <-deadline:
				t.Fatalf("no event for port %d (added=%v)", port, added)
			}
		}
	}
	wait(true)
	ln.Close()
	wait(false)
}

func TestParseDumpErrors(t *testing.T) {
	var out []netip.AddrPort
	if _, err := parseDump([]byte{200, 0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 2, &out); err == nil {
		t.Error("a message longer than the datagram was accepted")
	}
	if _, ok := parseDiagMsg(make([]byte, 10), 2); ok {
		t.Error("a short inet_diag_msg was parsed")
	}
}

// TestProcNetMatchesSockDiag: the /proc/net fallback finds what sock_diag
// finds.
func TestProcNetMatchesSockDiag(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	uc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	var l6 net.Listener
	if l6, err = net.Listen("tcp6", "[::1]:0"); err == nil {
		defer l6.Close()
	}
	diag, err := scanSockDiag()
	if err != nil {
		t.Skip("no sock_diag here:", err)
	}
	proc, err := scanProcNet("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []Listener{
		{"tcp", tl.Addr().(*net.TCPAddr).AddrPort()},
		{"udp", uc.LocalAddr().(*net.UDPAddr).AddrPort()},
	} {
		if !slices.Contains(proc, want) || !slices.Contains(diag, want) {
			t.Errorf("%v: in /proc/net %v, in sock_diag %v", want, slices.Contains(proc, want), slices.Contains(diag, want))
		}
	}
	if l6 != nil {
		want := Listener{"tcp", l6.Addr().(*net.TCPAddr).AddrPort()}
		if !slices.Contains(proc, want) {
			t.Errorf("%v not in /proc/net", want)
		}
	}
	// Other processes' sockets may come and go in between: compare the
	// sets loosely, both ways, for this process's sockets only (above)
	// and by size.
	if len(proc) == 0 || len(diag) == 0 {
		t.Fatalf("empty scans: %d %d", len(proc), len(diag))
	}
}

func TestParseProcNet(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
`
	got, err := parseProcNet(strings.NewReader(table), tcpListen)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8080"), netip.MustParseAddrPort("0.0.0.0:80")}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	v6 := "  sl  local_address                         remote_address                        st\n" +
		"   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A\n" +
		"   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A\n"
	got, err = parseProcNet(strings.NewReader(v6), tcpListen)
	if err != nil {
		t.Fatal(err)
	}
	want = []netip.AddrPort{netip.MustParseAddrPort("[::1]:8080"), netip.MustParseAddrPort("[::]:22")}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("v6: got %v, want %v", got, want)
	}
	if _, err := parseProcNet(strings.NewReader("hdr\n 0: zz:1 00:0 0A\n"), tcpListen); err == nil {
		t.Fatal("a malformed address was accepted")
	}
}
