package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berthvm/berth/guestagent/engine"
)

func TestExecDetachKeys(t *testing.T) {
	s := newTestStores(t)
	d := s.daemon(t)
	ctx := context.Background()
	create(t, d, "ex", nil, "sleep", "60")
	if err := d.Start(ctx, "ex"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		keys string
		want []byte // nil: none, as dockerd when the create set none
		ok   bool
	}{
		{"", nil, true},
		{"ctrl-x,y", []byte{24, 'y'}, true},
		{"ctrl-p,ctrl-q", []byte{16, 17}, true},
		{"ctrl-1", nil, false},
	} {
		id, err := d.ExecCreate(ctx, "ex", container.ExecCreateRequest{Cmd: []string{"true"}, DetachKeys: tt.keys})
		if !tt.ok {
			if !errors.Is(err, engine.ErrInvalid) {
				t.Errorf("create with detach keys %q: %v, want ErrInvalid", tt.keys, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		insp, err := d.ExecInspect(ctx, id)
		if err != nil || !bytes.Equal(insp.DetachKeys, tt.want) || (tt.want == nil) != (insp.DetachKeys == nil) {
			t.Errorf("detach keys %q: inspect gives %v (%v), want %v", tt.keys, insp.DetachKeys, err, tt.want)
		}
	}
}

// TestExecStdinEnds checks what the end of an exec's stdin does: io.EOF
// is passed on and the session goes on until the process ends; any other
// error is a detach, which ends the session and leaves the process
// running, unsignalled.
func TestExecStdinEnds(t *testing.T) {
	s := newTestStores(t)
	d := s.daemon(t)
	ctx := context.Background()
	id := create(t, d, "ex", nil, "sleep", "60")
	if err := d.Start(ctx, "ex"); err != nil {
		t.Fatal(err)
	}
	fc := s.shims.get(d.dir(id))
	start := func(stdin io.ReadCloser) (string, chan error, *blockingExec) {
		t.Helper()
		eid, err := d.ExecCreate(ctx, "ex", container.ExecCreateRequest{Cmd: []string{"block"}, AttachStdin: true})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- d.ExecStart(ctx, eid, engine.ExecStartOptions{Stdin: stdin}) }()
		var e *blockingExec
		eventually(t, "the exec", func() bool {
			fc.mu.Lock()
			defer fc.mu.Unlock()
			if len(fc.blocking) > 0 {
				e = fc.blocking[len(fc.blocking)-1]
				fc.blocking = nil
			}
			return e != nil
		})
		return eid, errc, e
	}

	// The client detaches: ExecStart returns, the process runs on.
	pr, pw := io.Pipe()
	eid, errc, e := start(pr)
	pw.Write([]byte("some input"))
	pw.CloseWithError(errors.New("client went away"))
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "client went away") {
			t.Errorf("ExecStart after a detach: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ExecStart did not return when its client detached")
	}
	if insp, err := d.ExecInspect(ctx, eid); err != nil || !insp.Running {
		t.Errorf("the exec after its client detached: running %v (%v)", insp.Running, err)
	}
	if n := e.signals.Load(); n != 0 {
		t.Errorf("the detached exec got %d signals", n)
	}
	e.Signal(ctx, sigKILL)

	// The end of input: the session lasts until the process ends.
	_, errc, e = start(io.NopCloser(strings.NewReader("all of it")))
	if err := <-e.stdinEnd; err != nil {
		t.Errorf("stdin copy ended with %v, want io.EOF", err)
	}
	select {
	case err := <-errc:
		t.Fatalf("ExecStart returned at the end of input: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	e.Signal(ctx, sigKILL)
	if err := <-errc; err != nil {
		t.Errorf("ExecStart: %v", err)
	}
}
