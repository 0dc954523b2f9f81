//go:build linux

package control

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/berthvm/berth/guestagent/api"
)

func portsEvent(snapshot bool, added ...*api.Port) *api.Event {
	return &api.Event{Kind: &api.Event_Ports{Ports: &api.PortEvent{Added: added, Snapshot: snapshot}}}
}

func tcpPort(host, guest uint32) *api.Port {
	return &api.Port{Protocol: "tcp", HostIp: "0.0.0.0", HostPort: host, GuestIp: "172.17.0.2", GuestPort: guest}
}

func describe(ev *api.Event) string {
	if n := ev.GetNotice(); n != "" {
		return "notice " + n
	}
	pe := ev.GetPorts()
	s := fmt.Sprintf("ports snapshot=%v", pe.GetSnapshot())
	for _, p := range pe.GetAdded() {
		s += fmt.Sprintf(" +%d", p.GetHostPort())
	}
	for _, p := range pe.GetRemoved() {
		s += fmt.Sprintf(" -%d", p.GetHostPort())
	}
	return s
}

func TestMergeSnapshots(t *testing.T) {
	notice := &api.Event{Kind: &api.Event_Notice{Notice: "hello"}}
	tests := []struct {
		name string
		in   []*api.Event
		want []string
	}{
		{"nothing", nil, []string{"ports snapshot=true"}},
		{"one source", []*api.Event{portsEvent(true, tcpPort(80, 8080))}, []string{"ports snapshot=true +80"}},
		{"two sources merged, duplicates once", []*api.Event{
			portsEvent(true, tcpPort(80, 8080), tcpPort(81, 81)),
			nil,
			portsEvent(true, tcpPort(81, 81), tcpPort(82, 82)),
		}, []string{"ports snapshot=true +80 +81 +82"}},
		{"other events follow in order", []*api.Event{
			notice,
			portsEvent(false, tcpPort(90, 90)),
			portsEvent(true, tcpPort(80, 80)),
		}, []string{"ports snapshot=true +80", "notice hello", "ports snapshot=false +90"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeSnapshots(tt.in)
			var desc []string
			for _, ev := range got {
				desc = append(desc, describe(ev))
			}
			if fmt.Sprint(desc) != fmt.Sprint(tt.want) {
				t.Fatalf("got %q, want %q", desc, tt.want)
			}
			if got[0].TimeUnixNs == 0 {
				t.Fatal("merged snapshot has no time")
			}
		})
	}
}

// TestEventsSnapshotFirst: a subscriber gets the merged snapshot first,
// then what was published while the snapshot was taken, then live
// events.
func TestEventsSnapshotFirst(t *testing.T) {
	var srv *Server
	calls := 0
	env := serve(t, Config{Snapshot: func() []*api.Event {
		calls++
		// Published after the subscription began: it must not be lost.
		srv.Broker().Publish(portsEvent(false, tcpPort(99, 99)))
		return []*api.Event{portsEvent(true, tcpPort(80, 80)), portsEvent(true, tcpPort(81, 81))}
	}})
	srv = env.srv
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := 1; round <= 2; round++ {
		stream, err := env.client.Events(ctx, &api.EventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for range 2 {
			ev, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, describe(ev))
		}
		want := []string{"ports snapshot=true +80 +81", "ports snapshot=false +99"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: got %q, want %q", round, got, want)
		}
		if calls != round {
			t.Fatalf("Snapshot called %d times for %d subscribers", calls, round)
		}
	}
}
