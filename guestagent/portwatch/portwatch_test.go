package portwatch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthvm/berth/guestagent/api"
)

func l(proto, addr string) Listener {
	return Listener{Proto: proto, Addr: netip.MustParseAddrPort(addr)}
}

func describe(ps []*api.Port) string {
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprintf("%s %s:%d->%s:%d", p.Protocol, p.HostIp, p.HostPort, p.GuestIp, p.GuestPort))
	}
	return strings.Join(s, ", ")
}

func TestPorts(t *testing.T) {
	eth0 := []netip.Addr{netip.MustParseAddr("192.168.127.2")}
	tests := []struct {
		name string
		ls   []Listener
		want string
	}{
		{"nothing", nil, ""},
		{"v4 wildcard", []Listener{l("tcp", "0.0.0.0:8080")}, "tcp 0.0.0.0:8080->127.0.0.1:8080"},
		{"v6 wildcard", []Listener{l("tcp", "[::]:8080")}, "tcp 0.0.0.0:8080->::1:8080"},
		{"both wildcards: one forward, over IPv4", []Listener{l("tcp", "[::]:80"), l("tcp", "0.0.0.0:80")}, "tcp 0.0.0.0:80->127.0.0.1:80"},
		{"eth0 address", []Listener{l("tcp", "192.168.127.2:9000")}, "tcp 0.0.0.0:9000->192.168.127.2:9000"},
		{"loopback stays loopback", []Listener{l("tcp", "127.0.0.1:5000"), l("tcp", "[::1]:5000")}, "tcp 127.0.0.1:5000->127.0.0.1:5000, tcp ::1:5000->::1:5000"},
		{"wildcard covers loopback", []Listener{l("tcp", "127.0.0.1:5000"), l("tcp", "[::]:5000")}, "tcp 0.0.0.0:5000->::1:5000"},
		{"v4-mapped", []Listener{l("tcp", "[::ffff:127.0.0.1]:7000")}, "tcp 127.0.0.1:7000->127.0.0.1:7000"},
		{"bridge address ignored", []Listener{l("udp", "172.17.0.1:53"), l("tcp", "10.88.0.1:2375")}, ""},
		{"other loopback ignored", []Listener{l("udp", "127.0.0.53:53")}, ""},
		{"udp service", []Listener{l("udp", "0.0.0.0:5353")}, "udp 0.0.0.0:5353->127.0.0.1:5353"},
		{"udp ephemeral client ignored", []Listener{l("udp", "0.0.0.0:40000")}, ""},
		{"tcp above the ephemeral start kept", []Listener{l("tcp", "0.0.0.0:40000")}, "tcp 0.0.0.0:40000->127.0.0.1:40000"},
		{"tcp and udp apart", []Listener{l("udp", "0.0.0.0:53"), l("tcp", "0.0.0.0:53")}, "tcp 0.0.0.0:53->127.0.0.1:53, udp 0.0.0.0:53->127.0.0.1:53"},
		{"unknown protocol", []Listener{l("sctp", "0.0.0.0:1")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describe(Ports(tt.ls, eth0, 32768)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

type fakeScan struct {
	mu  sync.Mutex
	ls  []Listener
	err error
}

func (f *fakeScan) set(err error, ls ...Listener) {
	f.mu.Lock()
	f.ls, f.err = ls, err
	f.mu.Unlock()
}

func (f *fakeScan) scan() ([]Listener, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Listener(nil), f.ls...), f.err
}

func newFake(fs *fakeScan, ignore func(Listener) bool) *Watcher {
	return New(Config{
		scan:       fs.scan,
		ifaceAddrs: func(string) ([]netip.Addr, error) { return nil, errors.New("no eth0") },
		ephemeral:  func() uint16 { return 32768 },
		Ignore:     ignore,
		sightings:  1,
	})
}

func TestPollEvents(t *testing.T) {
	fs := &fakeScan{}
	w := newFake(fs, func(l Listener) bool { return l.Addr.Port() == 1024 })
	var evs []*api.Event
	publish := func(ev *api.Event) { evs = append(evs, ev) }
	steps := []struct {
		ls      []Listener
		err     error
		want    string // "+added / -removed", or "" for no event
		snapNow string
	}{
		{nil, nil, "", ""},
		{[]Listener{l("tcp", "0.0.0.0:80")}, nil, "+tcp 0.0.0.0:80->127.0.0.1:80 / -", "tcp 0.0.0.0:80->127.0.0.1:80"},
		{[]Listener{l("tcp", "0.0.0.0:80"), l("tcp", "0.0.0.0:1024")}, nil, "", "tcp 0.0.0.0:80->127.0.0.1:80"},
		{nil, errors.New("netlink gone"), "", "tcp 0.0.0.0:80->127.0.0.1:80"},
		{[]Listener{l("tcp", "127.0.0.1:81")}, nil, "+tcp 127.0.0.1:81->127.0.0.1:81 / -tcp 0.0.0.0:80->127.0.0.1:80", "tcp 127.0.0.1:81->127.0.0.1:81"},
		{nil, nil, "+ / -tcp 127.0.0.1:81->127.0.0.1:81", ""},
	}
	for i, st := range steps {
		fs.set(st.err, st.ls...)
		evs = nil
		err := w.Poll(publish)
		if (err != nil) != (st.err != nil) {
			t.Fatalf("step %d: Poll error %v", i, err)
		}
		got := ""
		if len(evs) > 1 {
			t.Fatalf("step %d: %d events", i, len(evs))
		}
		if len(evs) == 1 {
			pe := evs[0].GetPorts()
			if pe.GetSnapshot() || evs[0].TimeUnixNs == 0 {
				t.Fatalf("step %d: event %v", i, evs[0])
			}
			got = "+" + describe(pe.GetAdded()) + " / -" + describe(pe.GetRemoved())
		}
		if got != st.want {
			t.Fatalf("step %d: event %q, want %q", i, got, st.want)
		}
		snap := w.Snapshot().GetPorts()
		if !snap.GetSnapshot() || describe(snap.GetAdded()) != st.snapNow {
			t.Fatalf("step %d: snapshot %v, want %q", i, snap, st.snapNow)
		}
	}
}

func TestRunEndsWithContext(t *testing.T) {
	fs := &fakeScan{}
	fs.set(nil, l("tcp", "0.0.0.0:80"))
	w := newFake(fs, nil)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan *api.Event, 10)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(ev *api.Event) { got <- ev }) }()
	select {
	case ev := <-got:
		if describe(ev.GetPorts().GetAdded()) != "tcp 0.0.0.0:80->127.0.0.1:80" {
			t.Fatalf("first event %v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event from the first poll")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end with its context")
	}
}

// TestPollNeedsTwoSightings: a port bound for a moment between two polls
// (netctl checking that a port is free) is never published.
func TestPollNeedsTwoSightings(t *testing.T) {
	fs := &fakeScan{}
	w := newFake(fs, nil)
	w.cfg.sightings = 2
	var got []string
	publish := func(ev *api.Event) {
		got = append(got, "+"+describe(ev.GetPorts().GetAdded())+" -"+describe(ev.GetPorts().GetRemoved()))
	}
	blip, stay := l("tcp", "0.0.0.0:80"), l("tcp", "0.0.0.0:81")
	for _, ls := range [][]Listener{{blip}, {stay}, {stay}, {stay}, {}, {}} {
		fs.set(nil, ls...)
		w.Poll(publish)
	}
	want := []string{"+tcp 0.0.0.0:81->127.0.0.1:81 -", "+ -tcp 0.0.0.0:81->127.0.0.1:81"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestIntervalCapped(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{0: DefaultInterval, -1: DefaultInterval, time.Minute: MaxInterval} {
		if got := New(Config{Interval: in}).cfg.Interval; got != want {
			t.Errorf("Interval %v became %v, want %v", in, got, want)
		}
	}
	if got := New(Config{Interval: 100 * time.Millisecond}).cfg.Interval; got != 100*time.Millisecond {
		t.Errorf("Interval 100ms became %v", got)
	}
}
