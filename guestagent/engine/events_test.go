package engine

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
)

func msg(typ events.Type, action events.Action, id string, attrs map[string]string) events.Message {
	return events.Message{Type: typ, Action: action, Actor: events.Actor{ID: id, Attributes: attrs}}
}

// fakeClock returns the same instant every call, so the hub's strictly
// increasing stamping is what orders events.
func fakeClock(t0 time.Time) func() time.Time { return func() time.Time { return t0 } }

func TestEventsHistoryAndLive(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	hub := NewEvents(EventsOptions{History: 3, Now: fakeClock(t0)})
	for i := range 5 {
		hub.Publish(msg(events.ImageEventType, events.ActionPull, fmt.Sprint(i), nil))
	}
	past, sub := hub.Subscribe(t0)
	defer sub.Close()
	if len(past) != 3 || past[0].Actor.ID != "2" || past[2].Actor.ID != "4" {
		t.Fatalf("history = %+v, want the last 3", past)
	}
	for i := 1; i < len(past); i++ {
		if past[i].TimeNano <= past[i-1].TimeNano {
			t.Errorf("times not increasing: %d then %d", past[i-1].TimeNano, past[i].TimeNano)
		}
	}
	if past[0].Scope != "local" || past[0].Time != t0.Unix() {
		t.Errorf("stamping: %+v", past[0])
	}
	// since = an event's own time includes it, later excludes it.
	if p, s := hub.Subscribe(time.Unix(0, past[1].TimeNano)); len(p) != 2 {
		t.Errorf("since the middle event: %d events", len(p))
	} else {
		s.Close()
	}
	if p, s := hub.Subscribe(time.Time{}); len(p) != 0 {
		t.Errorf("zero since gave history: %d", len(p))
	} else {
		s.Close()
	}
	hub.Publish(msg(events.ImageEventType, events.ActionTag, "live", nil))
	select {
	case m := <-sub.C():
		if m.Actor.ID != "live" {
			t.Errorf("live event %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no live event")
	}
	if n := hub.Subscribers(); n != 1 {
		t.Errorf("Subscribers = %d", n)
	}
	sub.Close()
	sub.Close() // idempotent
	if _, ok := <-sub.C(); ok {
		t.Error("channel open after Close")
	}
	if err := sub.Err(); err != nil {
		t.Errorf("Err after Close = %v", err)
	}
}

func TestEventsSlowSubscriberIsDropped(t *testing.T) {
	hub := NewEvents(EventsOptions{Buffer: 2})
	_, sub := hub.Subscribe(time.Time{})
	for range 3 {
		hub.Publish(msg(events.ImageEventType, events.ActionPull, "x", nil))
	}
	n := 0
	for range sub.C() {
		n++
	}
	if n != 2 || !errors.Is(sub.Err(), ErrSlowSubscriber) {
		t.Errorf("got %d events, err %v", n, sub.Err())
	}
	if hub.Subscribers() != 0 {
		t.Error("dropped subscriber still counted")
	}
}

func TestEventsConcurrent(t *testing.T) {
	hub := NewEvents(EventsOptions{Buffer: 10000})
	_, sub := hub.Subscribe(time.Time{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				hub.Publish(msg(events.ContainerEventType, events.ActionStart, fmt.Sprint(g, i), nil))
			}
		}()
	}
	wg.Wait()
	hub.Close()
	var last int64
	n := 0
	for m := range sub.C() {
		if m.TimeNano <= last {
			t.Fatalf("event times not increasing")
		}
		last = m.TimeNano
		n++
	}
	if n != 400 {
		t.Errorf("got %d events, want 400", n)
	}
	hub.Publish(msg(events.ContainerEventType, events.ActionStart, "late", nil)) // dropped, no panic
	if _, s := hub.Subscribe(time.Time{}); s != nil {
		if _, ok := <-s.C(); ok {
			t.Error("subscription on a closed hub is open")
		}
	}
}

func TestEventFilter(t *testing.T) {
	pull := msg(events.ImageEventType, events.ActionPull, "127.0.0.1:5000/a/b:1", map[string]string{"name": "127.0.0.1:5000/a/b:1"})
	tag := msg(events.ImageEventType, events.ActionTag, "sha256:0123456789abcdef0123", map[string]string{"name": "busybox:latest", "maintainer": "me"})
	start := msg(events.ContainerEventType, events.ActionStart, "c0ffee0000000000", map[string]string{"name": "web", "image": "busybox"})
	health := msg(events.ContainerEventType, events.ActionHealthStatusHealthy, "c0ffee0000000000", map[string]string{"name": "web"})
	tests := []struct {
		name   string
		filter EventFilter
		m      events.Message
		want   bool
	}{
		{"empty", EventFilter{}, pull, true},
		{"type match", EventFilter{"type": {"image"}}, pull, true},
		{"type miss", EventFilter{"type": {"container"}}, pull, false},
		{"event match", EventFilter{"event": {"tag", "pull"}}, pull, true},
		{"event miss", EventFilter{"event": {"delete"}}, pull, false},
		{"event prefix", EventFilter{"event": {"health_status"}}, health, true},
		{"image by ref", EventFilter{"image": {"127.0.0.1:5000/a/b:1"}}, pull, true},
		{"image by familiar name", EventFilter{"image": {"busybox"}}, tag, true},
		{"image by short ID", EventFilter{"image": {"0123456789ab"}}, tag, true},
		{"image too short prefix", EventFilter{"image": {"0123"}}, tag, false},
		{"image miss", EventFilter{"image": {"alpine"}}, tag, false},
		{"image filter on container by its image", EventFilter{"image": {"busybox"}}, start, true},
		{"container by name", EventFilter{"container": {"web"}}, start, true},
		{"container filter excludes images", EventFilter{"container": {"web"}}, pull, false},
		{"container or image", EventFilter{"container": {"web"}, "image": {"busybox"}}, tag, true},
		{"label key", EventFilter{"label": {"maintainer"}}, tag, true},
		{"label value", EventFilter{"label": {"maintainer=me"}}, tag, true},
		{"label wrong value", EventFilter{"label": {"maintainer=you"}}, tag, false},
		{"scope", EventFilter{"scope": {"swarm"}}, events.Message{Type: "image", Scope: "local"}, false},
	}
	for _, tt := range tests {
		if got := tt.filter.Match(tt.m); got != tt.want {
			t.Errorf("%s: Match = %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, tt := range []struct {
		f  EventFilter
		ok bool
	}{
		{EventFilter{"type": {"image", "container"}}, true},
		{EventFilter{"type": {"bogus"}}, false},
		{EventFilter{"colour": {"red"}}, false},
		{EventFilter{"label": {"a=b"}, "event": {"x"}}, true},
	} {
		err := tt.f.Validate()
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("Validate(%v) = %v", tt.f, err)
		}
	}
}
