package events

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestWriteLastFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	if ev, err := Last(path); ev != nil || err != nil {
		t.Fatalf("Last of a missing file = %v, %v", ev, err)
	}
	w, err := OpenWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(Status{Phase: Starting, Step: "one"})
	offset := Size(path)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, path, offset, func(ev Event) bool {
			got = append(got, ev.Status.Step)
			return ev.Status.Phase != Running
		})
	}()
	// Concurrent writers must not interleave lines.
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w.Write(Status{Phase: Starting, Step: fmt.Sprintf("step %d", i)})
		}(i)
	}
	wg.Wait()
	// A line written in two pieces is read once it is whole.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"time":"2026-01-01T00:00:00Z","status":{"phase":"starting","st`)
	time.Sleep(120 * time.Millisecond)
	f.WriteString(`ep":"split"}}` + "\n")
	f.Close()
	w.Write(Status{Phase: Running, Step: "up"})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got) != 22 || got[20] != "split" || got[21] != "up" {
		t.Fatalf("followed %d events %q", len(got), got)
	}
	last, err := Last(path)
	if err != nil || last == nil || last.Status.Step != "up" {
		t.Fatalf("Last = %+v, %v", last, err)
	}
}

func TestFollowWaitsForFileAndStopsOnCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, path, 0, func(Event) bool { return true }) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Follow returned nil after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after cancel")
	}
}
