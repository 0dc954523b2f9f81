package engine

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
)

// ErrSlowSubscriber ends a subscription that fell too far behind: the hub
// never blocks publishers on a reader.
var ErrSlowSubscriber = errors.New("events subscriber too slow: events were dropped")

// Events is the hub behind `docker events`: publishers (the API's image
// handlers, the container engine) Publish, readers Subscribe and get the
// retained history since a time plus what follows. Safe for concurrent
// use.
type Events struct {
	mu      sync.Mutex
	ring    []events.Message // oldest first, at most max
	max     int
	subs    map[*Subscription]struct{}
	subBuf  int
	now     func() time.Time
	lastNow int64
	closed  bool
}

// EventsOptions tunes NewEvents.
type EventsOptions struct {
	// History is how many events are kept for `since` (default 1024;
	// dockerd keeps 256).
	History int
	// Buffer is each subscriber's queue length (default 256).
	Buffer int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// NewEvents returns an empty hub.
func NewEvents(opts EventsOptions) *Events {
	if opts.History <= 0 {
		opts.History = 1024
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 256
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Events{max: opts.History, subBuf: opts.Buffer, now: opts.Now, subs: map[*Subscription]struct{}{}}
}

// Publish stamps m with the time (when it has none) and hands it to every
// subscriber. Times are kept strictly increasing so `since` and `until`
// given as a published event's time are exact.
func (e *Events) Publish(m events.Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	if m.TimeNano == 0 {
		n := e.now().UnixNano()
		if n <= e.lastNow {
			n = e.lastNow + 1
		}
		m.TimeNano = n
	}
	if m.TimeNano > e.lastNow {
		e.lastNow = m.TimeNano
	}
	m.Time = m.TimeNano / int64(time.Second)
	if m.Scope == "" {
		m.Scope = "local"
	}
	if len(e.ring) == e.max {
		copy(e.ring, e.ring[1:])
		e.ring = e.ring[:len(e.ring)-1]
	}
	e.ring = append(e.ring, m)
	for s := range e.subs {
		select {
		case s.ch <- m:
		default:
			e.dropLocked(s, ErrSlowSubscriber)
		}
	}
}

// Subscription is a live feed of events. C is closed when the subscription
// ends (Close, the hub's Close, or falling behind: see Err).
type Subscription struct {
	hub *Events
	ch  chan events.Message
	err error
}

// C returns the channel of events published after Subscribe.
func (s *Subscription) C() <-chan events.Message { return s.ch }

// Err tells why C was closed by the hub (nil after Close).
func (s *Subscription) Err() error {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.err
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.dropLocked(s, nil)
}

func (e *Events) dropLocked(s *Subscription, err error) {
	if _, ok := e.subs[s]; !ok {
		return
	}
	delete(e.subs, s)
	s.err = err
	close(s.ch)
}

// Subscribe returns the retained events at or after since (none when since
// is zero), oldest first, and a subscription to those published from now
// on: together they miss and repeat nothing.
func (e *Events) Subscribe(since time.Time) ([]events.Message, *Subscription) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := &Subscription{hub: e, ch: make(chan events.Message, e.subBuf)}
	if e.closed {
		close(s.ch)
	} else {
		e.subs[s] = struct{}{}
	}
	if since.IsZero() {
		return nil, s
	}
	n := since.UnixNano()
	i := sort.Search(len(e.ring), func(i int) bool { return e.ring[i].TimeNano >= n })
	return append([]events.Message(nil), e.ring[i:]...), s
}

// Subscribers is the number of live subscriptions (NEventsListener).
func (e *Events) Subscribers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs)
}

// Close ends every subscription; later Publish calls are dropped.
func (e *Events) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for s := range e.subs {
		e.dropLocked(s, nil)
	}
}

// EventFilter is the `filters` of GET /events: key -> accepted values.
// Within a key any value may match; every key present must match.
type EventFilter map[string][]string

// eventFilterKeys are the filters dockerd accepts for events.
var eventFilterKeys = map[string]bool{
	"config": true, "container": true, "daemon": true, "event": true, "image": true,
	"label": true, "network": true, "node": true, "plugin": true, "scope": true,
	"secret": true, "service": true, "type": true, "volume": true,
}

// Validate refuses unknown filter keys and event types.
func (f EventFilter) Validate() error {
	for k, vs := range f {
		if !eventFilterKeys[k] {
			return WithKind(ErrInvalid, fmt.Sprintf("invalid filter '%s'", k))
		}
		if k == "type" {
			for _, v := range vs {
				switch events.Type(v) {
				case events.BuilderEventType, events.ConfigEventType, events.ContainerEventType,
					events.DaemonEventType, events.ImageEventType, events.NetworkEventType,
					events.NodeEventType, events.PluginEventType, events.SecretEventType,
					events.ServiceEventType, events.VolumeEventType:
				default:
					return WithKind(ErrInvalid, fmt.Sprintf("invalid filter 'type=%s'", v))
				}
			}
		}
	}
	return nil
}

// Match reports whether m passes the filter.
func (f EventFilter) Match(m events.Message) bool {
	if !f.any("type", string(m.Type)) || !f.any("scope", m.Scope) {
		return false
	}
	if vs, ok := f["event"]; ok && !matchAction(vs, m.Action) {
		return false
	}
	if vs, ok := f["label"]; ok && !matchLabels(m.Actor.Attributes, vs) {
		return false
	}
	// Object filters: an event of the filtered type must name one of the
	// values; events of other types pass unless the filter is on them.
	objects := []struct {
		key string
		typ events.Type
	}{
		{"container", events.ContainerEventType}, {"image", events.ImageEventType},
		{"network", events.NetworkEventType}, {"volume", events.VolumeEventType},
		{"daemon", events.DaemonEventType}, {"plugin", events.PluginEventType},
		{"service", events.ServiceEventType}, {"node", events.NodeEventType},
		{"secret", events.SecretEventType}, {"config", events.ConfigEventType},
	}
	var objectKeys, objectHits int
	for _, o := range objects {
		vs, ok := f[o.key]
		if !ok {
			continue
		}
		objectKeys++
		if matchObject(vs, m, o.typ) {
			objectHits++
		}
	}
	return objectKeys == 0 || objectHits > 0
}

func (f EventFilter) any(key, v string) bool {
	vs, ok := f[key]
	if !ok {
		return true
	}
	for _, w := range vs {
		if w == v {
			return true
		}
	}
	return false
}

func matchAction(want []string, a events.Action) bool {
	for _, w := range want {
		// "health_status" matches "health_status: healthy" as in dockerd.
		if string(a) == w || strings.HasPrefix(string(a), w+":") {
			return true
		}
	}
	return false
}

func matchLabels(attrs map[string]string, want []string) bool {
	for _, w := range want {
		k, v, hasValue := strings.Cut(w, "=")
		got, ok := attrs[k]
		if !ok || (hasValue && got != v) {
			return false
		}
	}
	return true
}

// matchObject matches an object filter against the event's actor: its ID,
// its name, and for container events the image it runs.
func matchObject(want []string, m events.Message, typ events.Type) bool {
	attrs := m.Actor.Attributes
	var cands []string
	switch {
	case m.Type == typ:
		cands = []string{m.Actor.ID, attrs["name"]}
		if typ == events.ImageEventType {
			cands = append(cands, attrs["image"])
		}
	case typ == events.ImageEventType && m.Type == events.ContainerEventType:
		cands = []string{attrs["image"]} // a container matches by the image it runs
	default:
		return false
	}
	for _, w := range want {
		for _, c := range cands {
			if c == "" || w == "" {
				continue
			}
			if c == w || matchImageName(c, w) || (len(w) >= 12 && strings.HasPrefix(strings.TrimPrefix(c, "sha256:"), strings.TrimPrefix(w, "sha256:"))) {
				return true
			}
		}
	}
	return false
}

// matchImageName lets "busybox" match "busybox:latest" and
// "docker.io/library/busybox:latest".
func matchImageName(have, want string) bool {
	h := strings.TrimPrefix(strings.TrimPrefix(have, "docker.io/"), "library/")
	w := strings.TrimPrefix(strings.TrimPrefix(want, "docker.io/"), "library/")
	if h == w {
		return true
	}
	if !strings.ContainsAny(w[strings.LastIndex(w, "/")+1:], ":@") {
		return h == w+":latest"
	}
	return false
}
