package netctl

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthvm/berth/guestagent/api"
)

func TestAllocateIP(t *testing.T) {
	sub := netip.MustParsePrefix("10.0.0.0/29") // hosts .1-.6, gateway .1
	gw := netip.MustParseAddr("10.0.0.1")
	a := netip.MustParseAddr
	tests := []struct {
		name string
		last netip.Addr
		used []string
		want string
		err  error
	}{
		{name: "first", want: "10.0.0.2"},
		{name: "after last", last: a("10.0.0.3"), want: "10.0.0.4"},
		{name: "skips used", last: a("10.0.0.3"), used: []string{"10.0.0.4", "10.0.0.5"}, want: "10.0.0.6"},
		{name: "wraps past broadcast and gateway", last: a("10.0.0.6"), want: "10.0.0.2"},
		{name: "wraps to freed", last: a("10.0.0.5"), used: []string{"10.0.0.6", "10.0.0.3", "10.0.0.4", "10.0.0.5"}, want: "10.0.0.2"},
		{name: "full", used: []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}, err: ErrExhausted},
		{name: "last outside subnet", last: a("192.168.0.9"), want: "10.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used := map[netip.Addr]bool{}
			for _, u := range tt.used {
				used[a(u)] = true
			}
			got, err := allocateIP(sub, gw, tt.last, used)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("allocateIP = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"172.17.0.0/16": "172.17.255.255",
		"10.1.2.0/24":   "10.1.2.255",
		"10.1.2.8/29":   "10.1.2.15",
		"10.0.0.0/9":    "10.127.255.255",
	} {
		if got := lastAddr(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestAllocatePorts(t *testing.T) {
	cip := netip.MustParseAddr("172.17.0.5")
	existing := []PublishedPort{
		{ContainerID: "a", Proto: "tcp", HostIP: "0.0.0.0", HostPort: 8080, ContainerPort: 80},
		{ContainerID: "a", Proto: "udp", HostIP: "127.0.0.1", HostPort: 5353, ContainerPort: 53},
		{ContainerID: "a", Proto: "tcp", HostIP: "0.0.0.0", HostPort: 40000, ContainerPort: 81},
	}
	rng := [2]uint16{40000, 40002}
	busy := func(proto, ip string, port uint16) bool { return port != 40001 && port != 9000 }
	tests := []struct {
		name  string
		in    []PortBinding
		free  func(string, string, uint16) bool
		want  []uint16
		wantP []string
		err   error
	}{
		{name: "explicit free", in: []PortBinding{{HostPort: 9000, ContainerPort: 90}}, want: []uint16{9000}, wantP: []string{"tcp"}},
		{name: "tcp conflict on any", in: []PortBinding{{HostPort: 8080, ContainerPort: 80}}, err: ErrPortAllocated},
		{name: "specific ip vs any", in: []PortBinding{{HostIP: "127.0.0.1", HostPort: 8080, ContainerPort: 80}}, err: ErrPortAllocated},
		{name: "udp same port ok", in: []PortBinding{{Proto: "udp", HostPort: 8080, ContainerPort: 80}}, want: []uint16{8080}, wantP: []string{"udp"}},
		{name: "udp other ip ok", in: []PortBinding{{Proto: "udp", HostIP: "10.0.0.1", HostPort: 5353, ContainerPort: 53}}, want: []uint16{5353}, wantP: []string{"udp"}},
		{name: "udp any vs specific", in: []PortBinding{{Proto: "udp", HostPort: 5353, ContainerPort: 53}}, err: ErrPortAllocated},
		{name: "duplicate within call", in: []PortBinding{{HostPort: 9000, ContainerPort: 1}, {HostPort: 9000, ContainerPort: 2}}, err: ErrPortAllocated},
		{name: "ephemeral skips taken", in: []PortBinding{{ContainerPort: 1}, {ContainerPort: 2}}, want: []uint16{40001, 40002}, wantP: []string{"tcp", "tcp"}},
		{name: "ephemeral exhausted", in: []PortBinding{{ContainerPort: 1}, {ContainerPort: 2}, {ContainerPort: 3}}, err: ErrExhausted},
		{name: "guest socket busy", in: []PortBinding{{HostPort: 9000, ContainerPort: 1}}, free: busy, err: ErrPortAllocated},
		{name: "ephemeral avoids busy", in: []PortBinding{{ContainerPort: 1}}, free: busy, want: []uint16{40002}, wantP: []string{"tcp"}},
		{name: "bad proto", in: []PortBinding{{Proto: "sctp", HostPort: 1, ContainerPort: 1}}, err: ErrInvalid},
		{name: "no container port", in: []PortBinding{{HostPort: 1}}, err: ErrInvalid},
		{name: "ipv6", in: []PortBinding{{HostIP: "::", HostPort: 1, ContainerPort: 1}}, err: ErrInvalid},
		{name: "bad ip", in: []PortBinding{{HostIP: "nope", HostPort: 1, ContainerPort: 1}}, err: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := allocatePorts("b", cip, tt.in, existing, rng, tt.free)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want ports %v", got, tt.want)
			}
			for i, p := range got {
				if p.HostPort != tt.want[i] || p.Proto != tt.wantP[i] || p.ContainerIP != cip || p.ContainerID != "b" || p.ContainerPort != tt.in[i].ContainerPort {
					t.Errorf("port %d = %+v, want host port %d/%s", i, p, tt.want[i], tt.wantP[i])
				}
			}
		})
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	st := newState("10.0.0.0/24")
	st.Last = netip.MustParseAddr("10.0.0.7")
	st.Endpoints["c1"] = &epState{Mode: ModeBridge, NetNS: "/x/c1", IP: netip.MustParseAddr("10.0.0.7"), MAC: "02:42:0a:00:00:07", HostVeth: "vbx"}
	st.Endpoints["c2"] = &epState{Mode: ModeHost}
	st.Ports = []PublishedPort{{ContainerID: "c1", Proto: "udp", HostIP: "0.0.0.0", HostPort: 53, ContainerIP: netip.MustParseAddr("10.0.0.7"), ContainerPort: 53}}
	if err := st.save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir, "10.0.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if got.Last != st.Last || len(got.Endpoints) != 2 || *got.Endpoints["c1"] != *st.Endpoints["c1"] || got.Endpoints["c2"].Mode != ModeHost || len(got.Ports) != 1 || got.Ports[0] != st.Ports[0] {
		t.Fatalf("loaded %+v, want %+v", got, st)
	}
	// Another subnet invalidates addresses and ports but keeps endpoints.
	other, err := loadState(dir, "10.9.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if other.Endpoints["c1"].IP.IsValid() || len(other.Ports) != 0 || other.Last.IsValid() || other.Endpoints["c1"].NetNS != "/x/c1" {
		t.Fatalf("state after subnet change = %+v", other)
	}
	// Missing file: empty state. Corrupt file: error.
	empty, err := loadState(t.TempDir(), "10.0.0.0/24")
	if err != nil || len(empty.Endpoints) != 0 {
		t.Fatalf("empty state = %+v, %v", empty, err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir, "10.0.0.0/24"); err == nil {
		t.Fatal("corrupt state loaded without error")
	}
}

func TestPortEvents(t *testing.T) {
	p := PublishedPort{ContainerID: "c", Proto: "tcp", HostIP: "0.0.0.0", HostPort: 8080, ContainerIP: netip.MustParseAddr("172.17.0.2"), ContainerPort: 80}
	var got []*api.Event
	BrokerSink(func(ev *api.Event) { got = append(got, ev) })([]PublishedPort{p}, nil)
	if len(got) != 1 {
		t.Fatalf("sink published %d events, want 1", len(got))
	}
	ev := got[0]
	pe := ev.GetPorts()
	if pe == nil || len(pe.Added) != 1 || len(pe.Removed) != 0 || pe.Snapshot {
		t.Fatalf("event = %v", ev)
	}
	a := pe.Added[0]
	if a.Protocol != "tcp" || a.HostIp != "0.0.0.0" || a.HostPort != 8080 || a.GuestIp != "172.17.0.2" || a.GuestPort != 80 {
		t.Fatalf("port = %v", a)
	}
	if s := SnapshotEvent([]PublishedPort{p, p}).GetPorts(); !s.Snapshot || len(s.Added) != 2 {
		t.Fatalf("snapshot = %v", s)
	}
}

func TestMACFor(t *testing.T) {
	if got := macFor(netip.MustParseAddr("172.17.0.2")); string(got) != string([]byte{2, 0x42, 172, 17, 0, 2}) {
		t.Fatalf("macFor = %x", got)
	}
}

func TestResolvConf(t *testing.T) {
	guest := "# generated\nnameserver 127.0.0.53\nnameserver 192.168.127.1\nsearch corp.example\noptions edns0\n"
	tests := []struct {
		name                 string
		conf                 string
		dns, search, options []string
		want                 string
	}{
		{name: "inherit without loopback", conf: guest,
			want: "nameserver 192.168.127.1\nsearch corp.example\noptions edns0\n"},
		{name: "only loopback falls back", conf: "nameserver 127.0.0.1\nnameserver ::1\n",
			want: "nameserver 10.0.0.1\n"},
		{name: "explicit wins", conf: guest, dns: []string{"1.1.1.1"}, search: []string{"a.test", "b.test"}, options: []string{"ndots:2"},
			want: "nameserver 1.1.1.1\nsearch a.test b.test\noptions ndots:2\n"},
		{name: "dns-search dot clears", conf: guest, search: []string{"."},
			want: "nameserver 192.168.127.1\noptions edns0\n"},
		{name: "empty guest", conf: "", want: "nameserver 10.0.0.1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(ResolvConf([]byte(tt.conf), tt.dns, tt.search, tt.options, "10.0.0.1"))
			if got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func FuzzResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch a b\noptions ndots:1\n"))
	f.Add([]byte("nameserver\n#x\n;y\ndomain d\n"))
	f.Fuzz(func(t *testing.T, conf []byte) {
		out := string(ResolvConf(conf, nil, nil, nil, "10.0.0.1"))
		if !strings.HasPrefix(out, "nameserver ") {
			t.Fatalf("no nameserver in %q", out)
		}
		if strings.Contains(out, "nameserver 127.") {
			t.Fatalf("loopback nameserver kept: %q", out)
		}
	})
}
