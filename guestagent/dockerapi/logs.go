package dockerapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/berthvm/berth/guestagent/engine"
)

// timestampFormat is RFC 3339 with nanoseconds padded to a fixed width,
// as dockerd prints `docker logs -t`.
const timestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

// parseTail reads ?tail=: "all", "" or a bad number are everything, as in
// dockerd.
func parseTail(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// containerLogs serves GET /containers/{id}/logs: raw output for a tty
// container, multiplexed frames otherwise. The header waits for the
// first line (or the end), so a refusal is still a status code.
func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts := engine.LogsOptions{Stdout: q.bool("stdout"), Stderr: q.bool("stderr"), Follow: q.bool("follow"), Tail: parseTail(q.get("tail"))}
	if !opts.Stdout && !opts.Stderr {
		s.writeError(w, r, invalidf("Bad parameters: you must choose at least one stream"))
		return
	}
	if opts.Since, err = parseEventTime(q.get("since")); err == nil {
		opts.Until, err = parseEventTime(q.get("until"))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	info, err := containerStreams(r.Context(), c, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	framed := !info.tty
	rc := http.NewResponseController(w)
	out := &sink{w: w, flush: rc.Flush, start: func() error {
		w.Header().Set("Content-Type", streamType(r, framed))
		w.WriteHeader(http.StatusOK)
		return nil
	}}
	stamps := q.bool("timestamps")
	err = c.Logs(r.Context(), id, opts, func(e engine.LogEntry) error {
		line := e.Line
		if stamps {
			line = append([]byte(e.Time.UTC().Format(timestampFormat)+" "), line...)
		}
		stream := streamStdout
		if e.Stream == "stderr" {
			stream = streamStderr
		}
		_, err := out.write(stream, framed, line)
		return err
	})
	switch {
	case err != nil && !out.isStarted():
		s.writeError(w, r, noSuch("container", id, err))
	case err != nil:
		s.log.Debug("docker api logs ended with an error", "container", id, "err", err)
	default:
		_ = out.begin()
	}
}

// containerStats serves GET /containers/{id}/stats. Streamed (the
// default), it sends a sample every statsInterval with PreCPUStats from
// the previous one, so clients compute CPU use from consecutive samples;
// stream=false waits for a second sample unless one-shot.
func (s *Server) containerStats(w http.ResponseWriter, r *http.Request, c engine.Containers) {
	id := r.PathValue("id")
	q, err := parseQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	stream := q.get("stream") == "" || q.bool("stream")
	oneShot := !stream && q.bool("one-shot")
	ctx := r.Context()
	prev, err := c.Stats(ctx, id)
	if err != nil {
		s.writeError(w, r, noSuch("container", id, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	if oneShot {
		_ = enc.Encode(prev)
		return
	}
	if stream {
		if enc.Encode(prev) != nil || rc.Flush() != nil {
			return
		}
	}
	t := time.NewTicker(s.statsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := c.Stats(ctx, id)
		if err != nil {
			s.log.Debug("docker api stats ended", "container", id, "err", err)
			if !stream {
				_ = enc.Encode(prev)
			}
			return
		}
		cur.PreCPUStats, cur.PreRead = prev.CPUStats, prev.Read
		if enc.Encode(cur) != nil || !stream || rc.Flush() != nil {
			return
		}
		prev = cur
	}
}
