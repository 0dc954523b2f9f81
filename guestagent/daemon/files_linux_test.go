package daemon

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

func TestHostsFileContent(t *testing.T) {
	got := string(hostsFileContent("c0ffee", "", netip.MustParseAddr("172.17.0.2"), []string{"db:10.0.0.5", "gw:host-gateway", "bad"}, "192.168.127.254"))
	for _, want := range []string{
		"127.0.0.1\tlocalhost\n",
		"::1\tlocalhost ip6-localhost ip6-loopback\n",
		"10.0.0.5\tdb\n",
		"192.168.127.254\tgw\n",
		"192.168.127.254\thost.docker.internal host.berth.internal\n",
		"172.17.0.2\tc0ffee\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "bad") {
		t.Errorf("an invalid entry was written:\n%s", got)
	}
	none := string(hostsFileContent("h", "example.com", netip.Addr{}, []string{"gw:host-gateway"}, ""))
	if strings.Contains(none, "host.docker.internal") || strings.Contains(none, "gw") || strings.Contains(none, "\th\n") {
		t.Errorf("without a gateway or address:\n%s", none)
	}
	dom := string(hostsFileContent("h", "example.com", netip.MustParseAddr("10.1.1.1"), nil, ""))
	if !strings.Contains(dom, "10.1.1.1\th.example.com h\n") {
		t.Errorf("domain:\n%s", dom)
	}
}

func TestResolvConfContent(t *testing.T) {
	guest := []byte("nameserver 127.0.0.53\nnameserver 192.168.127.1\nsearch lan\n")
	if got := string(resolvConfContent(&container.HostConfig{}, nil, guest)); got != "nameserver 192.168.127.1\nsearch lan\n" {
		t.Errorf("guest servers: %q", got)
	}
	if got := string(resolvConfContent(&container.HostConfig{}, []string{"10.0.0.1"}, guest)); !strings.HasPrefix(got, "nameserver 10.0.0.1\n") {
		t.Errorf("daemon DNS: %q", got)
	}
	hc := &container.HostConfig{DNS: []netip.Addr{netip.MustParseAddr("1.1.1.1")}, DNSSearch: []string{"corp"}, DNSOptions: []string{"ndots:2"}}
	if got := string(resolvConfContent(hc, []string{"10.0.0.1"}, guest)); got != "nameserver 1.1.1.1\nsearch corp\noptions ndots:2\n" {
		t.Errorf("--dns: %q", got)
	}
	if got := string(resolvConfContent(&container.HostConfig{}, nil, []byte("nameserver 127.0.0.1\n"))); got != "nameserver 8.8.8.8\n" {
		t.Errorf("fallback: %q", got)
	}
}

func TestParseStatAndTop(t *testing.T) {
	stat := "1234 (my (odd) cmd) S 1 1234 1234 34816 1234 4194560 100 0 0 0 250 150 0 0 20 0 3 0 1000 10485760 256 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
	p, err := parseStat([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if p.pid != 1234 || p.ppid != 1 || p.session != 1234 || p.state != "S" || p.utime != 250 || p.stime != 150 ||
		p.threads != 3 || p.startTicks != 1000 || p.vsize != 10485760 || p.cmd != "[my (odd) cmd]" || p.ttyNr != 34816 {
		t.Errorf("parseStat = %+v", p)
	}
	if _, err := parseStat([]byte("garbage")); err == nil {
		t.Error("parsed garbage")
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local)
	p.start = now.Add(-40 * time.Second)
	p.uid = 1000
	p.cmd = "sleep 60"
	r, err := topRows([]procInfo{p}, "", now, map[uint32]string{1000: "app"}, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.Titles, " ") != "UID PID PPID C STIME TTY TIME CMD" ||
		strings.Join(r.Processes[0], "|") != "app|1234|1|10|11:59|pts/0|00:00:04|sleep 60" {
		t.Errorf("-ef: %q %q", r.Titles, r.Processes)
	}
	r, err = topRows([]procInfo{p}, "aux", now, nil, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Titles) != 11 || r.Processes[0][0] != "1000" || r.Processes[0][2] != "10.0" || r.Processes[0][7] != "Ssl" || r.Processes[0][9] != "0:04" {
		t.Errorf("aux: %q %q", r.Titles, r.Processes)
	}
	if _, err := topRows(nil, "-o pid", now, nil, 0); err == nil {
		t.Error("unsupported ps options were accepted")
	}
}

func TestTTYNameAndCPUTime(t *testing.T) {
	for nr, want := range map[int]string{0: "?", 34816: "pts/0", 34817: "pts/1", 1024: "tty0", 1088: "ttyS0"} {
		if got := ttyName(nr); got != want {
			t.Errorf("ttyName(%d) = %q, want %q", nr, got, want)
		}
	}
	if got := cpuTime(100 * 90061); got != "1-01:01:01" {
		t.Errorf("cpuTime = %q", got)
	}
}

func TestParseNetDev(t *testing.T) {
	in := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0
`
	got := parseNetDev([]byte(in))
	e, ok := got["eth0"]
	if len(got) != 1 || !ok || e.RxBytes != 5000 || e.RxPackets != 40 || e.RxErrors != 1 || e.RxDropped != 2 ||
		e.TxBytes != 3000 || e.TxPackets != 30 || e.TxErrors != 3 || e.TxDropped != 4 {
		t.Errorf("parseNetDev = %+v", got)
	}
}
