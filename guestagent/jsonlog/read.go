// Package jsonlog reads the container logs that guestagent/shim writes in
// Docker's json-file format: one JSON object a line,
// {"log":"text\n","stream":"stdout","time":"RFC 3339 nano, UTC"}.
//
// It owns reading: stream, since/until and tail filters (tail scans the
// file backwards, so it never reads a big log from the start) and follow
// (inotify, or a poll where inotify is missing). It does not write logs
// (the shim does), rotate them, or frame them for the Docker API.
package jsonlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Entry is one logged line.
type Entry struct {
	Stream string // "stdout" or "stderr"
	Time   time.Time
	Line   []byte // the text, with its newline if it had one
}

// ReadOptions selects entries.
type ReadOptions struct {
	Stdout, Stderr bool
	// Since and Until bound the entries' times (zero: unbounded). As in
	// dockerd, entries before Since and after Until are skipped; with
	// Follow, reading ends once the clock or an entry passes Until.
	Since, Until time.Time
	// Tail is how many of the last matching entries to emit: <0 all, 0
	// none (with Follow, only new ones).
	Tail   int
	Follow bool
}

const (
	// maxLine bounds one encoded line. The shim splits output at 16 KiB,
	// which JSON escaping can grow six times; anything longer is not a
	// line the shim wrote and is skipped as corrupt.
	maxLine   = 1 << 20
	blockSize = 64 << 10
	pollEvery = 200 * time.Millisecond
)

// Read calls fn for each entry of the log file at path that matches opts,
// in order. With Follow it then waits for appended lines until ctx ends
// (it returns ctx.Err()), the clock passes opts.Until, or stopped is
// closed (the container exited: it reads what is left and returns nil).
// A missing file is an empty log; with Follow, Read waits for it to
// appear. A partial last line is not emitted until it is complete, and
// corrupt lines are skipped. An error from fn stops Read and is returned.
func Read(ctx context.Context, path string, opts ReadOptions, stopped <-chan struct{}, fn func(Entry) error) error {
	if !opts.Stdout && !opts.Stderr {
		return nil
	}
	r := &reader{path: path, opts: opts, fn: fn}
	var w *watcher
	if opts.Follow {
		// Watch before the first read, so that no write between the
		// last read and the first wait goes unnoticed.
		w = newWatcher(path)
		defer w.close()
	}
	defer r.closeFile()

	if err := r.open(); err != nil {
		return err
	}
	if r.f != nil {
		start, err := r.tailStart()
		if err != nil {
			return err
		}
		r.off = start
		if err := r.readAvailable(ctx); err != nil {
			return err
		}
	}
	if !opts.Follow {
		return nil
	}
	if !opts.Until.IsZero() && time.Now().After(opts.Until) {
		return nil
	}
	// Only new entries from here on: a file that appears later is read
	// from its start whatever Tail was.
	r.opts.Tail = -1

	var untilC <-chan time.Time
	if !opts.Until.IsZero() {
		t := time.NewTimer(time.Until(opts.Until))
		defer t.Stop()
		untilC = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stopped:
			return r.refresh(ctx)
		case <-untilC:
			return r.refresh(ctx)
		case <-w.c:
		}
		if err := r.refresh(ctx); err != nil {
			return err
		}
		if r.pastUntil {
			return nil
		}
	}
}

// reader holds the state of one Read.
type reader struct {
	path string
	opts ReadOptions
	fn   func(Entry) error

	f       *os.File
	off     int64  // where the next read starts
	pending []byte // the start of an incomplete line, ending at off
	skip    bool   // inside an over-long line: drop bytes to its newline

	pastUntil bool // an entry after Until was seen while following
}

// open opens the log file; a missing one leaves r.f nil.
func (r *reader) open() error {
	f, err := os.Open(r.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening the log: %w", err)
	}
	r.f, r.off, r.pending, r.skip = f, 0, nil, false
	return nil
}

func (r *reader) closeFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// refresh catches up with the file while following: it opens it once
// it exists, starts over when it was truncated or replaced, and reads
// whatever was appended.
func (r *reader) refresh(ctx context.Context) error {
	if r.f == nil {
		if err := r.open(); err != nil || r.f == nil {
			return err
		}
	} else {
		cur, err := r.f.Stat()
		if err != nil {
			return fmt.Errorf("checking the log: %w", err)
		}
		if now, err := os.Stat(r.path); err == nil && !os.SameFile(cur, now) {
			// Replaced: finish the old file, then read the new one.
			if err := r.readAvailable(ctx); err != nil {
				return err
			}
			r.closeFile()
			if err := r.open(); err != nil || r.f == nil {
				return err
			}
		} else if cur.Size() < r.off {
			r.off, r.pending, r.skip = 0, nil, false
		}
	}
	return r.readAvailable(ctx)
}

// readAvailable emits the complete lines between r.off and the end of
// the file, keeping a trailing partial line for later.
func (r *reader) readAvailable(ctx context.Context) error {
	buf := make([]byte, blockSize)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.f.ReadAt(buf, r.off)
		if n > 0 {
			r.off += int64(n)
			if ferr := r.feed(buf[:n]); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the log: %w", err)
		}
	}
}

// feed splits data into lines, with the pending partial line in front.
func (r *reader) feed(data []byte) error {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if !r.skip {
				r.pending = append(r.pending, data...)
				if len(r.pending) > maxLine {
					r.pending, r.skip = nil, true
				}
			}
			return nil
		}
		chunk := data[:i]
		data = data[i+1:]
		if r.skip {
			r.skip = false
			continue
		}
		line := chunk
		if len(r.pending) > 0 {
			line = append(r.pending, chunk...)
			r.pending = nil
		}
		if len(line) > maxLine {
			continue
		}
		if err := r.emit(line); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) emit(line []byte) error {
	e, ok := decode(line)
	if !ok || !r.wanted(e) {
		return nil
	}
	if !r.opts.Until.IsZero() && e.Time.After(r.opts.Until) {
		if r.opts.Follow {
			r.pastUntil = true
		}
		return nil
	}
	return r.fn(e)
}

// wanted reports whether e passes the stream and Since filters (Until is
// checked by the caller, which may stop on it).
func (r *reader) wanted(e Entry) bool {
	switch e.Stream {
	case "stdout":
		if !r.opts.Stdout {
			return false
		}
	case "stderr":
		if !r.opts.Stderr {
			return false
		}
	default:
		return false
	}
	return r.opts.Since.IsZero() || !e.Time.Before(r.opts.Since)
}

func (r *reader) matches(e Entry) bool {
	return r.wanted(e) && (r.opts.Until.IsZero() || !e.Time.After(r.opts.Until))
}

type rawEntry struct {
	Log    *string `json:"log"`
	Stream string  `json:"stream"`
	Time   string  `json:"time"`
}

// decode parses one line of the log; ok is false for a corrupt one.
func decode(line []byte) (Entry, bool) {
	var raw rawEntry
	if err := json.Unmarshal(line, &raw); err != nil || raw.Log == nil {
		return Entry{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, raw.Time)
	if err != nil {
		return Entry{}, false
	}
	return Entry{Stream: raw.Stream, Time: t, Line: []byte(*raw.Log)}, true
}

// tailStart returns the offset of the first line to read: 0 for all, the
// start of the Tail-th last matching complete line, or the end of the
// complete lines for Tail 0.
func (r *reader) tailStart() (int64, error) {
	if r.opts.Tail < 0 {
		return 0, nil
	}
	fi, err := r.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("checking the log: %w", err)
	}
	return tailOffset(r.f, fi.Size(), r.opts.Tail, r.matches)
}

// tailOffset finds where the last n lines matching match start in the
// first size bytes of ra, reading backwards in blocks.
func tailOffset(ra io.ReaderAt, size int64, n int, match func(Entry) bool) (int64, error) {
	b := backScanner{ra: ra, base: size}
	// Leave out a trailing partial line: reading forward keeps it
	// pending until its newline arrives.
	end, err := b.lastNewline()
	if err != nil || end < 0 {
		return 0, err
	}
	if n == 0 {
		return end, nil
	}
	count := 0
	for {
		line, start, err := b.prevLine()
		if err != nil {
			return 0, err
		}
		if start < 0 {
			return 0, nil
		}
		if line == nil { // over-long: corrupt
			continue
		}
		if e, ok := decode(line); ok && match(e) {
			count++
			if count == n {
				return start, nil
			}
		}
	}
}

// backScanner yields the lines of a file from its end. data holds the
// bytes [base, base+len(data)) not yet returned.
type backScanner struct {
	ra   io.ReaderAt
	base int64
	data []byte
}

// more prepends the block before base to data; false at the start.
func (b *backScanner) more() (bool, error) {
	if b.base == 0 {
		return false, nil
	}
	n := int64(blockSize)
	if n > b.base {
		n = b.base
	}
	buf := make([]byte, n, int(n)+len(b.data))
	if _, err := b.ra.ReadAt(buf, b.base-n); err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading the log: %w", err)
	}
	b.base -= n
	b.data = append(buf, b.data...)
	return true, nil
}

// lastNewline drops the bytes after the file's last newline and returns
// the offset just past it, or -1 when the file has no newline.
func (b *backScanner) lastNewline() (int64, error) {
	for {
		if i := bytes.LastIndexByte(b.data, '\n'); i >= 0 {
			b.data = b.data[:i+1]
			return b.base + int64(i) + 1, nil
		}
		b.data = nil // all of it is the partial line: forget it
		ok, err := b.more()
		if err != nil || !ok {
			return -1, err
		}
	}
}

// prevLine returns the line before the ones already returned (without
// its newline) and its offset; start is -1 when there is none. A line
// longer than maxLine comes back nil.
func (b *backScanner) prevLine() (line []byte, start int64, err error) {
	if len(b.data) == 0 && b.base == 0 {
		return nil, -1, nil
	}
	// data ends with the newline of the line wanted.
	long := false
	for {
		i := bytes.LastIndexByte(b.data[:len(b.data)-1], '\n')
		if i >= 0 || b.base == 0 {
			start := b.base + int64(i) + 1
			line := b.data[i+1 : len(b.data)-1]
			b.data = b.data[:i+1]
			if long || len(line) > maxLine {
				line = nil
			}
			return line, start, nil
		}
		if len(b.data) > maxLine {
			// Keep only the newline: the line is corrupt anyway.
			long = true
			b.data = b.data[len(b.data)-1:]
		}
		if _, err := b.more(); err != nil {
			return nil, 0, err
		}
	}
}
