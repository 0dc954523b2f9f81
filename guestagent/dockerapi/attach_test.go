package dockerapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"

	"github.com/berthvm/berth/guestagent/engine"
)

// TestDetachKeysStatus: the detach key table lives with the parser
// (engine.TestParseDetachKeys); here, that its errors answer 400.
func TestDetachKeysStatus(t *testing.T) {
	for _, in := range []string{",", "ctrl-1", "ctrl-", "ab", "a,,b", "ctrl-pp"} {
		if _, err := engine.ParseDetachKeys(in); err == nil || statusOf(err) != 400 {
			t.Errorf("ParseDetachKeys(%q): %v, status %d", in, err, statusOf(err))
		}
	}
}

func TestExecDetachKeys(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want []byte
	}{
		{nil, []byte{16, 17}},
		{[]byte{24}, []byte{24}},              // parsed by the engine
		{[]byte{16, 17}, []byte{16, 17}},      // parsed by the engine
		{[]byte("ab"), []byte("ab")},          // parsed: keys a, b
		{[]byte("ctrl-x,y"), []byte{24, 'y'}}, // the request's text
		{[]byte("ctrl-p,ctrl-q"), []byte{16, 17}},
	} {
		if got := execDetachKeys(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("execDetachKeys(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestStdinReader checks detach-key matching across reads of any size
// and what each end of input turns into.
func TestStdinReader(t *testing.T) {
	keys := []byte{16, 17}
	for _, tt := range []struct {
		name     string
		in       string
		keys     []byte
		passEOF  bool
		want     string
		wantErr  error
		detached bool
	}{
		{"plain, EOF passed", "hello", keys, true, "hello", io.EOF, false},
		{"plain, EOF detaches", "hello", keys, false, "hello", errDetached, true},
		{"keys", "ab\x10\x11cd", keys, true, "ab", errDetached, true},
		{"partial match flushed", "a\x10b\x10\x10\x11", keys, true, "a\x10b\x10", errDetached, true},
		{"partial at EOF", "a\x10", keys, true, "a\x10", io.EOF, false},
		{"no keys: bytes pass", "a\x10\x11b", nil, true, "a\x10\x11b", io.EOF, false},
		{"overlapping keys", "aab", []byte("ab"), true, "a", errDetached, true},
	} {
		for _, one := range []bool{false, true} {
			var src io.Reader = strings.NewReader(tt.in)
			if one {
				src = iotest.OneByteReader(src)
			}
			ended := false
			r := newStdinReader(nil, src, tt.keys, tt.passEOF, func() { ended = true })
			got, err := io.ReadAll(r)
			if tt.wantErr == io.EOF && err == nil {
				err = io.EOF // ReadAll swallows EOF
			}
			if string(got) != tt.want || !errors.Is(err, tt.wantErr) || ended != tt.detached {
				t.Errorf("%s (one byte reads %v): got %q, %v, ended %v", tt.name, one, got, err, ended)
			}
		}
	}
}

// TestSinkFrames checks the multiplexed framing, also under concurrent
// writers (run with -race): frames must never interleave.
func TestSinkFrames(t *testing.T) {
	var buf bytes.Buffer
	started := 0
	s := &sink{w: &buf, start: func() error { started++; return nil }}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := streamStdout
			if g%2 == 1 {
				stream = streamStderr
			}
			w := streamWriter{s: s, stream: stream, framed: true}
			for i := range 50 {
				fmt.Fprintf(w, "g%d-%d;", g, i)
			}
		}()
	}
	wg.Wait()
	if started != 1 {
		t.Errorf("header sent %d times", started)
	}
	out, errs := demux(t, buf.Bytes())
	if n := strings.Count(out, ";") + strings.Count(errs, ";"); n != 400 {
		t.Errorf("%d messages, want 400", n)
	}
	for g := range 8 {
		in := out
		if g%2 == 1 {
			in = errs
		}
		if strings.Count(in, fmt.Sprintf("g%d-", g)) != 50 {
			t.Errorf("writer %d lost messages", g)
		}
	}
	// A large write is split into frames of at most maxFrame bytes.
	buf.Reset()
	big := bytes.Repeat([]byte("x"), maxFrame+10)
	if n, err := (streamWriter{s: s, stream: streamStdout, framed: true}).Write(big); n != len(big) || err != nil {
		t.Fatal(n, err)
	}
	if size := binary.BigEndian.Uint32(buf.Bytes()[4:8]); size != maxFrame {
		t.Errorf("first frame %d bytes", size)
	}
	if out, _ := demux(t, buf.Bytes()); out != string(big) {
		t.Error("big write corrupted")
	}
}

// jsonError reads a JSON error response from a hijacked request.
func jsonError(t *testing.T, h *hijacked) string {
	t.Helper()
	var er common.ErrorResponse
	if err := json.NewDecoder(h.resp.Body).Decode(&er); err != nil {
		t.Fatalf("error body: %v", err)
	}
	return er.Message
}

func TestAttach(t *testing.T) {
	e, _, _ := startFake(t)

	t.Run("stdin with half-close, multiplexed", func(t *testing.T) {
		e.mustJSON(t, "POST", "/containers/create?name=cat1", `{"Image":"busybox","Cmd":["cat"],"OpenStdin":true,"StdinOnce":true}`, 201, nil)
		h := e.hijack(t, "/v1.50/containers/cat1/attach?stream=1&stdin=1&stdout=1&stderr=1", "", true)
		if h.resp.StatusCode != 101 || h.resp.Header.Get("Upgrade") != "tcp" || h.resp.Header.Get("Content-Type") != "application/vnd.docker.multiplexed-stream" {
			t.Fatalf("attach answer: %d %v", h.resp.StatusCode, h.resp.Header)
		}
		e.mustJSON(t, "POST", "/containers/cat1/start", "", 204, nil)
		// No tty: the default detach keys are data.
		if _, err := h.conn.Write([]byte("hello\n\x10\x11")); err != nil {
			t.Fatal(err)
		}
		if err := h.conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		out, errs := demux(t, h.rest(t))
		if out != "hello\n\x10\x11" || errs != "" {
			t.Errorf("attach output %q %q", out, errs)
		}
		var w waitBody
		e.mustJSON(t, "POST", "/containers/cat1/wait", "", 200, &w)
		if w.StatusCode != 0 {
			t.Errorf("cat exited %d after stdin closed", w.StatusCode)
		}
	})

	t.Run("no upgrade, old API, logs only", func(t *testing.T) {
		e.mustJSON(t, "POST", "/containers/create?name=echo1", `{"Image":"busybox","Cmd":["fail","2"]}`, 201, nil)
		e.mustJSON(t, "POST", "/containers/echo1/start", "", 204, nil)
		e.mustJSON(t, "POST", "/containers/echo1/wait", "", 200, nil)
		h := e.hijack(t, "/v1.41/containers/echo1/attach?logs=1&stdout=1&stderr=1", "", false)
		if h.resp.StatusCode != 200 || h.resp.Header.Get("Content-Type") != "application/vnd.docker.raw-stream" {
			t.Fatalf("attach answer: %d %v", h.resp.StatusCode, h.resp.Header)
		}
		if out, errs := demux(t, h.rest(t)); out != "" || errs != "failing with 2\n" {
			t.Errorf("replayed logs %q %q", out, errs)
		}
	})

	t.Run("tty and detach keys", func(t *testing.T) {
		e.mustJSON(t, "POST", "/containers/create?name=tty1", `{"Image":"busybox","Cmd":["cat"],"Tty":true,"OpenStdin":true,"StdinOnce":true}`, 201, nil)
		h := e.hijack(t, "/containers/tty1/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-a,x", "", true)
		if h.resp.StatusCode != 101 || h.resp.Header.Get("Content-Type") != "application/vnd.docker.raw-stream" {
			t.Fatalf("attach answer: %d %v", h.resp.StatusCode, h.resp.Header)
		}
		e.mustJSON(t, "POST", "/containers/tty1/start", "", 204, nil)
		_, _ = h.conn.Write([]byte("ab\x01c"))
		got := make([]byte, 4)
		if _, err := io.ReadFull(h.br, got); err != nil || string(got) != "ab\x01c" {
			t.Fatalf("tty output %q %v", got, err)
		}
		_, _ = h.conn.Write([]byte("\x01x"))
		if rest := h.rest(t); len(rest) != 0 {
			t.Errorf("output after detach: %q", rest)
		}
		var insp container.InspectResponse
		e.mustJSON(t, "GET", "/containers/tty1/json", "", 200, &insp)
		if !insp.State.Running {
			t.Fatal("detaching stopped the container")
		}
		// The container's stdin is still open; with a tty the client's
		// end of input only ends the session.
		h = e.hijack(t, "/containers/tty1/attach?stream=1&stdin=1&stdout=1", "", true)
		_, _ = h.conn.Write([]byte("more"))
		if _, err := io.ReadFull(h.br, got); err != nil || string(got) != "more" {
			t.Fatalf("second attach output %q %v", got, err)
		}
		_ = h.conn.CloseWrite()
		if rest := h.rest(t); len(rest) != 0 {
			t.Errorf("output after the end of input: %q", rest)
		}
		e.mustJSON(t, "GET", "/containers/tty1/json", "", 200, &insp)
		if !insp.State.Running {
			t.Error("end of input on a tty closed the container's stdin")
		}
	})

	t.Run("end of input without StdinOnce only detaches", func(t *testing.T) {
		e.mustJSON(t, "POST", "/containers/create?name=cat2", `{"Image":"busybox","Cmd":["cat"],"OpenStdin":true}`, 201, nil)
		e.mustJSON(t, "POST", "/containers/cat2/start", "", 204, nil)
		h := e.hijack(t, "/containers/cat2/attach?stream=1&stdin=1&stdout=1", "", true)
		_, _ = h.conn.Write([]byte("x"))
		_ = h.conn.CloseWrite()
		if out, _ := demux(t, h.rest(t)); out != "x" && out != "" {
			t.Errorf("output %q", out)
		}
		var insp container.InspectResponse
		e.mustJSON(t, "GET", "/containers/cat2/json", "", 200, &insp)
		if !insp.State.Running {
			t.Error("the container's stdin was closed without StdinOnce")
		}
	})

	t.Run("errors before the upgrade", func(t *testing.T) {
		h := e.hijack(t, "/containers/nope/attach?stream=1&stdout=1", "", true)
		if h.resp.StatusCode != 404 || !strings.Contains(jsonError(t, h), "No such container: nope") {
			t.Errorf("attach to a missing container: %d", h.resp.StatusCode)
		}
		h = e.hijack(t, "/containers/cat2/attach?stream=1&stdout=1&detachKeys=ctrl-1", "", true)
		if h.resp.StatusCode != 400 || !strings.Contains(jsonError(t, h), "Invalid detach keys") {
			t.Errorf("bad detach keys: %d", h.resp.StatusCode)
		}
		// The engine refuses a paused container after the hijack but
		// before any output: still a status code.
		e.mustJSON(t, "POST", "/containers/cat2/pause", "", 204, nil)
		h = e.hijack(t, "/containers/cat2/attach?stream=1&stdout=1", "", true)
		if h.resp.StatusCode != 409 || !strings.Contains(jsonError(t, h), "paused") {
			t.Errorf("attach to a paused container: %d", h.resp.StatusCode)
		}
	})
}

func TestExec(t *testing.T) {
	e, fe, _ := startFake(t)
	e.mustJSON(t, "POST", "/containers/create?name=box", `{"Image":"busybox","Cmd":["sleep"]}`, 201, nil)
	e.run(t, []step{{"exec in a stopped container", "POST", "/containers/box/exec", `{"Cmd":["echo"]}`, 409, "not running"}})
	e.mustJSON(t, "POST", "/containers/box/start", "", 204, nil)
	e.run(t, []step{
		{"no command", "POST", "/containers/box/exec", `{"AttachStdout":true}`, 400, "No exec command specified"},
		{"malformed", "POST", "/containers/box/exec", `{"Cmd":"ls"}`, 400, "Cmd"},
		{"bad detach keys", "POST", "/containers/box/exec", `{"Cmd":["ls"],"DetachKeys":"ctrl-"}`, 400, "Invalid detach keys"},
		{"console size without tty", "POST", "/containers/box/exec", `{"Cmd":["ls"],"ConsoleSize":[24,80]}`, 400, "TTY"},
		{"missing container", "POST", "/containers/nope/exec", `{"Cmd":["ls"]}`, 404, "No such container: nope"},
		{"inspect missing", "GET", "/exec/nope/json", "", 404, "No such exec instance: nope"},
		{"resize missing", "POST", "/exec/nope/resize?h=1&w=1", "", 404, "No such exec instance"},
		{"start missing", "POST", "/exec/nope/start", `{}`, 404, "No such exec instance: nope"},
	})
	create := func(body string) string {
		var r container.ExecCreateResponse
		e.mustJSON(t, "POST", "/containers/box/exec", body, 201, &r)
		return r.ID
	}
	inspect := func(id string) container.ExecInspectResponse {
		var r container.ExecInspectResponse
		e.mustJSON(t, "GET", "/exec/"+id+"/json", "", 200, &r)
		return r
	}

	t.Run("stdin and half-close", func(t *testing.T) {
		id := create(`{"Cmd":["cat"],"AttachStdin":true,"AttachStdout":true,"AttachStderr":true}`)
		h := e.hijack(t, "/v1.50/exec/"+id+"/start", `{"Detach":false,"Tty":false}`, true)
		if h.resp.StatusCode != 101 || h.resp.Header.Get("Content-Type") != "application/vnd.docker.multiplexed-stream" {
			t.Fatalf("exec start answer: %d %v", h.resp.StatusCode, h.resp.Header)
		}
		_, _ = h.conn.Write([]byte("ping\n"))
		_ = h.conn.CloseWrite()
		if out, errs := demux(t, h.rest(t)); out != "ping\n" || errs != "" {
			t.Errorf("exec output %q %q", out, errs)
		}
		if x := inspect(id); x.Running || x.ExitCode == nil || *x.ExitCode != 0 || !x.OpenStdin {
			t.Errorf("exec inspect: %+v", x)
		}
		h = e.hijack(t, "/exec/"+id+"/start", `{}`, true)
		if h.resp.StatusCode != 409 {
			t.Errorf("second start: %d", h.resp.StatusCode)
		}
	})
	t.Run("stderr and exit code", func(t *testing.T) {
		id := create(`{"Cmd":["fail","4"],"AttachStdout":true,"AttachStderr":true}`)
		h := e.hijack(t, "/exec/"+id+"/start", `{}`, true)
		if out, errs := demux(t, h.rest(t)); out != "" || errs != "failing with 4\n" {
			t.Errorf("exec output %q %q", out, errs)
		}
		if x := inspect(id); x.ExitCode == nil || *x.ExitCode != 4 {
			t.Errorf("exit code: %+v", x.ExitCode)
		}
	})
	t.Run("missing executable", func(t *testing.T) {
		id := create(`{"Cmd":["nosuch"],"AttachStdout":true,"AttachStderr":true}`)
		h := e.hijack(t, "/exec/"+id+"/start", `{}`, true)
		out, _ := demux(t, h.rest(t))
		if h.resp.StatusCode != 101 || !strings.Contains(out, `exec: "nosuch": executable file not found`) {
			t.Errorf("exec of a missing executable: %d %q", h.resp.StatusCode, out)
		}
		if x := inspect(id); x.ExitCode == nil || *x.ExitCode != 127 {
			t.Errorf("exit code: %+v", x.ExitCode)
		}
	})
	t.Run("detached", func(t *testing.T) {
		id := create(`{"Cmd":["echo","hi"]}`)
		resp, body := e.do(t, "POST", "/exec/"+id+"/start", strings.NewReader(`{"Detach":true}`), map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != 200 || body != "" {
			t.Fatalf("detached start: %d %q", resp.StatusCode, body)
		}
		deadline := time.Now().Add(10 * time.Second)
		for x := inspect(id); x.ExitCode == nil; x = inspect(id) {
			if time.Now().After(deadline) {
				t.Fatal("detached exec never ended")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("tty, own detach keys, resize", func(t *testing.T) {
		id := create(`{"Cmd":["cat"],"Tty":true,"AttachStdin":true,"AttachStdout":true,"DetachKeys":"ctrl-x","ConsoleSize":[30,100]}`)
		e.run(t, []step{
			{"resize without w", "POST", "/exec/" + id + "/resize?h=3", "", 400, "invalid value for w"},
			{"resize", "POST", "/exec/" + id + "/resize?h=40&w=120", "", 200, ""},
		})
		h := e.hijack(t, "/exec/"+id+"/start", `{"Tty":true,"ConsoleSize":[30,100]}`, true)
		if h.resp.Header.Get("Content-Type") != "application/vnd.docker.raw-stream" {
			t.Errorf("tty exec Content-Type %q", h.resp.Header.Get("Content-Type"))
		}
		_, _ = h.conn.Write([]byte("k\x10\x11"))
		got := make([]byte, 3)
		if _, err := io.ReadFull(h.br, got); err != nil || string(got) != "k\x10\x11" {
			t.Fatalf("tty exec output %q %v", got, err)
		}
		_, _ = h.conn.Write([]byte("\x18"))
		if rest := h.rest(t); len(rest) != 0 {
			t.Errorf("output after detach %q", rest)
		}
		if x := inspect(id); !x.Running || x.ExitCode != nil {
			t.Errorf("detaching ended the exec: %+v", x)
		}
		if r := fe.calls().resizes; r[len(r)-1] != "exec 40x120" {
			t.Errorf("resizes %v", r)
		}
	})
}
