//go:build unix

package control

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berthvm/berth/guestagent/api"
)

// defaultEventBuffer is how many events a subscriber may fall behind.
const defaultEventBuffer = 256

// ErrSlowSubscriber ends a subscription whose buffer overflowed.
var ErrSlowSubscriber = errors.New("events subscriber fell behind and was dropped")

// ErrBrokerClosed ends subscriptions when the broker closes.
var ErrBrokerClosed = errors.New("events broker closed")

// Broker fans events out to subscribers, in publish order.
//
// Publish never blocks: each subscriber has a bounded buffer, and a
// subscriber whose buffer is full is disconnected (its channel closes and
// Err returns ErrSlowSubscriber) rather than silently missing events. A
// dropped event could leave the host with a wrong set of published ports
// for good, while a disconnect is visible: the host re-subscribes and
// publishers send a snapshot (PortEvent.snapshot) to new subscribers.
type Broker struct {
	buf int

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// NewBroker returns a broker whose subscribers may each fall buf events
// behind.
func NewBroker(buf int) *Broker {
	if buf < 1 {
		buf = 1
	}
	return &Broker{buf: buf, subs: map[*Subscription]struct{}{}}
}

// Subscription receives events from C until it is closed; then Err says
// why.
type Subscription struct {
	C <-chan *api.Event

	b   *Broker
	ch  chan *api.Event
	err error // set under b.mu before ch is closed
}

// Subscribe starts a subscription. On a closed broker it is closed
// already.
func (b *Broker) Subscribe() *Subscription {
	ch := make(chan *api.Event, b.buf)
	sub := &Subscription{C: ch, b: b, ch: ch}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		sub.err = ErrBrokerClosed
		close(ch)
		return sub
	}
	b.subs[sub] = struct{}{}
	return sub
}

// Publish sends ev to every subscriber. It stamps the time when ev has
// none. The broker and its subscribers share ev, so the caller must not
// change it afterwards.
func (b *Broker) Publish(ev *api.Event) {
	if ev.GetTimeUnixNs() == 0 {
		ev.TimeUnixNs = time.Now().UnixNano()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for sub := range b.subs {
		select {
		case sub.ch <- ev:
		default:
			b.drop(sub, ErrSlowSubscriber)
		}
	}
}

// Subscribers reports how many subscriptions are open.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends every subscription; later subscriptions end at once.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for sub := range b.subs {
		b.drop(sub, ErrBrokerClosed)
	}
}

func (b *Broker) drop(sub *Subscription, err error) {
	if _, ok := b.subs[sub]; !ok {
		return
	}
	delete(b.subs, sub)
	sub.err = err
	close(sub.ch)
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.drop(s, nil)
}

// Err is why C was closed: nil after Close, ErrSlowSubscriber or
// ErrBrokerClosed. Call it after C is closed.
func (s *Subscription) Err() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.err
}

// Events streams the broker's events until the client leaves. A client
// that falls behind gets ResourceExhausted and should subscribe again.
func (s *Server) Events(_ *api.EventsRequest, stream api.Agent_EventsServer) error {
	sub := s.broker.Subscribe()
	defer sub.Close()
	if s.cfg.Snapshot != nil {
		for _, ev := range mergeSnapshots(s.cfg.Snapshot()) {
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case ev, ok := <-sub.C:
			if !ok {
				switch err := sub.Err(); {
				case errors.Is(err, ErrSlowSubscriber):
					return status.Error(codes.ResourceExhausted, err.Error())
				case errors.Is(err, ErrBrokerClosed):
					return status.Error(codes.Unavailable, "the agent is shutting down")
				default:
					return nil
				}
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// mergeSnapshots turns the events a Snapshot hook returned into what a
// new subscriber gets: first one PortEvent snapshot holding the ports of
// every port snapshot in evs (each port once), then the other events in
// their order. The hook's events are not changed.
func mergeSnapshots(evs []*api.Event) []*api.Event {
	merged := &api.PortEvent{Snapshot: true}
	seen := make(map[string]bool)
	out := []*api.Event{{TimeUnixNs: time.Now().UnixNano(), Kind: &api.Event_Ports{Ports: merged}}}
	for _, ev := range evs {
		if ev == nil {
			continue
		}
		pe := ev.GetPorts()
		if pe == nil || !pe.GetSnapshot() {
			out = append(out, ev)
			continue
		}
		for _, p := range pe.GetAdded() {
			k := portKey(p)
			if !seen[k] {
				seen[k] = true
				merged.Added = append(merged.Added, p)
			}
		}
	}
	return out
}

func portKey(p *api.Port) string {
	return fmt.Sprintf("%s|%s|%d|%s|%d", p.GetProtocol(), p.GetHostIp(), p.GetHostPort(), p.GetGuestIp(), p.GetGuestPort())
}
