package images

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
)

// ProgressFunc receives the progress of pulls, pushes and loads as the
// messages of Docker's JSON stream, ready to be encoded one per line to the
// docker CLI. The store never calls it concurrently.
type ProgressFunc func(jsonstream.Message)

// JSONProgress returns a ProgressFunc that writes each message as a JSON
// line to w (write errors are dropped: the client went away).
func JSONProgress(w io.Writer) ProgressFunc {
	enc := json.NewEncoder(w)
	return func(m jsonstream.Message) { _ = enc.Encode(m) }
}

// progressInterval throttles byte-count updates per layer.
const progressInterval = 100 * time.Millisecond

type progress struct {
	mu   sync.Mutex
	fn   ProgressFunc
	last map[string]time.Time
}

func newProgress(fn ProgressFunc) *progress {
	return &progress{fn: fn, last: map[string]time.Time{}}
}

func (p *progress) send(m jsonstream.Message) {
	if p == nil || p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fn(m)
}

// message sends a line without an id ("Digest: ...", "Status: ...").
func (p *progress) message(status string) { p.send(jsonstream.Message{Status: status}) }

// status sends a per-layer status with an empty progressDetail, which the
// CLI needs to draw the layer's line.
func (p *progress) status(id, status string) {
	p.send(jsonstream.Message{Status: status, ID: id, Progress: &jsonstream.Progress{}})
}

// idStatus sends a status for an id without progressDetail
// ("Pulling from library/busybox" with the tag as id).
func (p *progress) idStatus(id, status string) { p.send(jsonstream.Message{Status: status, ID: id}) }

// bytes sends a throttled byte-count update.
func (p *progress) bytes(id, status string, current, total int64) {
	if p == nil || p.fn == nil {
		return
	}
	p.mu.Lock()
	now := time.Now()
	if current != total && now.Sub(p.last[id+status]) < progressInterval {
		p.mu.Unlock()
		return
	}
	p.last[id+status] = now
	p.mu.Unlock()
	p.send(jsonstream.Message{Status: status, ID: id, Progress: &jsonstream.Progress{Current: current, Total: total}})
}

// stream sends a line of text, as `docker load` prints its results.
func (p *progress) stream(s string) { p.send(jsonstream.Message{Stream: s}) }

func (p *progress) aux(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	raw := json.RawMessage(b)
	p.send(jsonstream.Message{Aux: &raw})
}

// countingReader reports bytes read so far.
type countingReader struct {
	r    io.Reader
	n    int64
	tick func(n int64)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.tick != nil && n > 0 {
		c.tick(c.n)
	}
	return n, err
}
