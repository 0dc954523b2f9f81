package dockerapi

import (
	"net/http"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/berthvm/berth/guestagent/engine"
)

// wireEvent adds the fields API < 1.52 still sent (status, id, from).
type wireEvent struct {
	Status string `json:"status,omitempty"`
	ID     string `json:"id,omitempty"`
	From   string `json:"from,omitempty"`
	events.Message
}

func toWire(r *http.Request, m events.Message) any {
	if !before(r, "1.52") {
		return m
	}
	e := wireEvent{Message: m}
	if m.Type == events.ContainerEventType || m.Type == events.ImageEventType {
		e.Status, e.ID = string(m.Action), m.Actor.ID
		if m.Type == events.ContainerEventType {
			e.From = m.Actor.Attributes["image"]
		}
	}
	return e
}

// eventsStream serves GET /events: retained events since `since`, then
// live ones until `until` (or the client leaves).
func (s *Server) eventsStream(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	since, err := parseEventTime(q.get("since"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	until, err := parseEventTime(q.get("until"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := q.filters()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	filter := engine.EventFilter(f)
	if err := filter.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	past, sub := s.events.Subscribe(since)
	defer sub.Close()

	ctype := "application/json"
	if accept := r.Header.Get("Accept"); accept == "application/x-ndjson" || accept == "application/jsonl" {
		ctype = accept
	}
	st := s.newStream(w, r, ctype)
	st.begin()
	afterUntil := func(m events.Message) bool {
		return !until.IsZero() && m.TimeNano > until.UnixNano()
	}
	send := func(m events.Message) bool {
		if afterUntil(m) {
			return false
		}
		if filter.Match(m) {
			if err := st.enc.Encode(toWire(r, m)); err != nil {
				return false
			}
		}
		return true
	}
	for _, m := range past {
		if !send(m) {
			return
		}
	}
	var stop <-chan time.Time
	if !until.IsZero() {
		d := time.Until(until)
		if d <= 0 {
			return
		}
		t := time.NewTimer(d)
		defer t.Stop()
		stop = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-stop:
			return
		case m, ok := <-sub.C():
			if !ok {
				if err := sub.Err(); err != nil {
					s.log.Warn("events stream ended", "err", err)
				}
				return
			}
			if !send(m) {
				return
			}
		}
	}
}
