// Package events is the host agent's event log: JSON lines in the
// instance's events.jsonl, each carrying the instance's whole Status at
// that moment. The host agent appends; the CLI tails the file to show
// progress, so it never needs to understand the agent's internals.
package events

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/berthvm/berth/forwarding/portfwd"
)

// Phase is where an instance is in its life.
type Phase string

const (
	Starting Phase = "starting"
	Running  Phase = "running"
	Stopping Phase = "stopping"
	Stopped  Phase = "stopped"
)

// Status is the state of an instance as its host agent sees it.
type Status struct {
	Phase Phase `json:"phase"`
	// Degraded means the VM runs but a part of berth does not work (a port
	// that cannot be forwarded, a lost guest connection). It is not dead.
	Degraded bool     `json:"degraded,omitempty"`
	Errors   []string `json:"errors,omitempty"`
	// Step names the step of a start or stop that just finished, for
	// progress output.
	Step     string        `json:"step,omitempty"`
	Duration time.Duration `json:"durationNs,omitempty"`
	Message  string        `json:"message,omitempty"`
	Guest    *GuestInfo    `json:"guest,omitempty"`
	PID      int           `json:"hostagentPid,omitempty"`
	// Ports are the forwarded ports, with why one cannot be forwarded.
	Ports []portfwd.Forward `json:"ports,omitempty"`
}

// GuestInfo is what the guest agent reported when it answered.
type GuestInfo struct {
	AgentVersion string `json:"agentVersion"`
	Kernel       string `json:"kernel"`
	Arch         string `json:"arch"`
	Transport    string `json:"transport"`
}

// Event is one line of events.jsonl.
type Event struct {
	Time   time.Time `json:"time"`
	Status Status    `json:"status"`
}

// Writer appends events to a file. It is safe for concurrent use.
type Writer struct {
	mu sync.Mutex
	f  *os.File
}

// OpenWriter opens path for appending, creating it 0600.
func OpenWriter(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening event log: %w", err)
	}
	return &Writer{f: f}, nil
}

// Write appends one event stamped now. Each event is one write(2) of a
// whole line, so a reader never sees half of one unless the disk fills.
func (w *Writer) Write(s Status) error {
	b, err := json.Marshal(Event{Time: time.Now(), Status: s})
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.f.Write(append(b, '\n'))
	return err
}

// Close closes the file.
func (w *Writer) Close() error { return w.f.Close() }

// Size returns the current size of the log, so a reader can start at the
// events that come after now.
func Size(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// Last returns the last complete event in the file, or nil if there is none.
func Last(path string) (*Event, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Events are small; read the tail only.
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	const tail = 64 << 10
	off := st.Size() - tail
	if off < 0 {
		off = 0
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	var last *Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var ev Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Status.Phase != "" {
			e := ev
			last = &e
		}
	}
	return last, sc.Err()
}

// followPoll is how often Follow looks for new events. A read of a small
// file costs next to nothing, and the wait shows in every "berth start".
const followPoll = 10 * time.Millisecond

// Follow reads events appended to path from offset on and calls fn for
// each, until fn returns false, ctx ends, or an error occurs. It polls, so
// it works on every OS and on any filesystem.
func Follow(ctx context.Context, path string, offset int64, fn func(Event) bool) error {
	var f *os.File
	for f == nil {
		var err error
		f, err = os.Open(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if f == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(followPoll):
			}
		}
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReader(f)
	var partial []byte
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			line = append(partial, line...)
			partial = nil
			var ev Event
			if json.Unmarshal(line, &ev) == nil {
				if !fn(ev) {
					return nil
				}
			}
			continue
		}
		partial = append(partial, line...)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(followPoll):
		}
	}
}
