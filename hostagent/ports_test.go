package hostagent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berthvm/berth/forwarding/portfwd"
	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/hostagent/events"
	"github.com/berthvm/berth/hostagent/instance"
)

// fakeEvents is the guest's side of the Events stream: each subscriber
// gets the snapshot of the current ports, then the events pushed.
type fakeEvents struct {
	mu          sync.Mutex
	ports       map[string]*api.Port
	subs        map[chan *api.Event]bool
	subscribed  int
	breakStream chan struct{}
}

func newFakeEvents() *fakeEvents {
	return &fakeEvents{ports: map[string]*api.Port{}, subs: map[chan *api.Event]bool{}, breakStream: make(chan struct{}, 1)}
}

func (e *fakeEvents) publish(added, removed []*api.Port) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range removed {
		delete(e.ports, p.String())
	}
	for _, p := range added {
		e.ports[p.String()] = p
	}
	ev := &api.Event{Kind: &api.Event_Ports{Ports: &api.PortEvent{Added: added, Removed: removed}}}
	for ch := range e.subs {
		ch <- ev
	}
}

// forget changes the guest's set without telling subscribers, as a
// missed event would; a new subscription's snapshot makes it good.
func (e *fakeEvents) forget(p *api.Port) {
	e.mu.Lock()
	delete(e.ports, p.String())
	e.mu.Unlock()
}

func (e *fakeEvents) subscriptions() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.subscribed
}

func (g *fakeGuest) Events(_ *api.EventsRequest, s grpc.ServerStreamingServer[api.Event]) error {
	e := g.evs
	if e == nil {
		return status.Error(codes.Unimplemented, "no events here")
	}
	ch := make(chan *api.Event, 64)
	e.mu.Lock()
	snap := &api.PortEvent{Snapshot: true}
	for _, p := range e.ports {
		snap.Added = append(snap.Added, p)
	}
	e.subs[ch] = true
	e.subscribed++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.subs, ch)
		e.mu.Unlock()
	}()
	if err := s.Send(&api.Event{Kind: &api.Event_Ports{Ports: snap}}); err != nil {
		return err
	}
	for {
		select {
		case <-s.Context().Done():
			return nil
		case <-e.breakStream:
			return status.Error(codes.ResourceExhausted, "dropped")
		case ev := <-ch:
			if err := s.Send(ev); err != nil {
				return err
			}
		}
	}
}

func echoServer(t *testing.T) uint32 {
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
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

func freeTCPPort(t *testing.T) uint32 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

func roundTrip(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != "ping" {
		return fmt.Errorf("echo %q", b)
	}
	return nil
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPortEvents: the agent follows the guest's port events, forwards
// over guest port 1025, reports a taken host port as an error of a
// Degraded instance, and resyncs from the snapshot of a new subscription.
func TestPortEvents(t *testing.T) {
	inst, f := setup(t)
	f.guest.evs = newFakeEvents()
	// The guest side of port forwarding, on the fake VM's transport.
	fl, err := net.Listen("unix", filepath.Join(f.dir, strconv.Itoa(int(transport.PortForward))))
	if err != nil {
		t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(context.Background())
	defer gcancel()
	go portfwd.ServeGuest(gctx, fl, nil)

	echo := echoServer(t)
	// Published before the agent starts: comes with the first snapshot.
	early := &api.Port{Protocol: "tcp", HostIp: "127.0.0.1", HostPort: freeTCPPort(t), GuestIp: "127.0.0.1", GuestPort: echo}
	f.guest.evs.publish([]*api.Port{early}, nil)

	cancel, result := startAgent(t, inst, f)
	defer func() { cancel(); <-result }()
	waitPhase(t, inst, events.Running)
	c := NewClient(inst.Path(instance.ControlSocket))
	listed := func(p *api.Port, wantErr string) func() bool {
		return func() bool {
			ps, err := c.Ports(context.Background())
			if err != nil {
				return false
			}
			for _, fw := range ps {
				if uint32(fw.HostPort) == p.HostPort && (wantErr == "" && fw.Error == "" && len(fw.Listen) > 0 || wantErr != "" && strings.Contains(fw.Error, wantErr)) {
					return true
				}
			}
			return false
		}
	}
	waitCond(t, "the early port", listed(early, ""))
	if err := roundTrip(fmt.Sprintf("127.0.0.1:%d", early.HostPort)); err != nil {
		t.Fatal(err)
	}

	// A port published while running.
	live := &api.Port{Protocol: "tcp", HostIp: "0.0.0.0", HostPort: freeTCPPort(t), GuestIp: "127.0.0.1", GuestPort: echo}
	f.guest.evs.publish([]*api.Port{live}, nil)
	waitCond(t, "the live port", listed(live, ""))
	if err := roundTrip(fmt.Sprintf("127.0.0.1:%d", live.HostPort)); err != nil {
		t.Fatal(err)
	}

	// A host port someone else holds: an error in the status, Degraded,
	// in the event log too; the rest keeps working.
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	taken := &api.Port{Protocol: "tcp", HostIp: "127.0.0.1", HostPort: uint32(holder.Addr().(*net.TCPAddr).Port), GuestIp: "127.0.0.1", GuestPort: echo}
	f.guest.evs.publish([]*api.Port{taken}, nil)
	waitCond(t, "the taken port's error", listed(taken, "already in use"))
	st, err := c.Status(context.Background())
	if err != nil || st.Phase != events.Running || !st.Degraded || !strings.Contains(strings.Join(st.Errors, "\n"), "already in use") {
		t.Fatalf("status with a taken port: %+v %v", st, err)
	}
	last, _ := events.Last(inst.Path(instance.EventsFile))
	if last == nil || !last.Status.Degraded || len(last.Status.Ports) != 3 {
		t.Fatalf("last event with a taken port: %+v", last)
	}
	if err := roundTrip(fmt.Sprintf("127.0.0.1:%d", early.HostPort)); err != nil {
		t.Fatal(err)
	}

	// Unpublished: the error and Degraded go.
	f.guest.evs.publish(nil, []*api.Port{taken})
	waitCond(t, "the instance to be healthy again", func() bool {
		st, err := c.Status(context.Background())
		return err == nil && st.Phase == events.Running && !st.Degraded && len(st.Errors) == 0
	})

	// The stream breaks after the guest forgot a port without saying so:
	// the new subscription's snapshot removes it, and keeps the others.
	f.guest.evs.forget(live)
	subs := f.guest.evs.subscriptions()
	f.guest.evs.breakStream <- struct{}{}
	waitCond(t, "a new subscription", func() bool { return f.guest.evs.subscriptions() > subs })
	waitCond(t, "the forgotten port to go", func() bool { return !listed(live, "")() })
	if err := roundTrip(fmt.Sprintf("127.0.0.1:%d", live.HostPort)); err == nil {
		t.Fatal("a port the guest no longer publishes still forwards")
	}
	if err := roundTrip(fmt.Sprintf("127.0.0.1:%d", early.HostPort)); err != nil {
		t.Fatalf("the port kept across the resync: %v", err)
	}

	// The event log tells the story. Its lines are written as the
	// forwarder reports, a moment after the list above changes.
	eventLog := func() string {
		b, err := os.ReadFile(inst.Path(instance.EventsFile))
		if err != nil {
			t.Fatal(err)
		}
		var msgs []string
		for _, line := range strings.Split(string(b), "\n") {
			var ev events.Event
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Status.Message != "" {
				msgs = append(msgs, ev.Status.Message)
			}
		}
		return strings.Join(msgs, "\n")
	}
	wants := []string{
		fmt.Sprintf("forwarding tcp 127.0.0.1:%d -> 127.0.0.1:%d (listening on 127.0.0.1:%d)", early.HostPort, echo, early.HostPort),
		fmt.Sprintf("cannot forward tcp 127.0.0.1:%d -> 127.0.0.1:%d: host port 127.0.0.1:%d/tcp is already in use", taken.HostPort, echo, taken.HostPort),
		fmt.Sprintf("stopped forwarding tcp 0.0.0.0:%d", live.HostPort),
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		log := eventLog()
		var missing []string
		for _, want := range wants {
			if !strings.Contains(log, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event log lacks %q:\n%s", missing, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
