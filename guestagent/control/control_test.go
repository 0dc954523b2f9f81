//go:build linux

package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/guestagent/reaper"
)

// One reaper for the whole test binary, as in the agent: the test process
// is a subreaper, so orphans of Exec'd processes come back to it.
var testReaper *reaper.Reaper

func TestMain(m *testing.M) {
	if err := reaper.SetSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "SetSubreaper:", err)
		os.Exit(1)
	}
	testReaper = reaper.New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	go testReaper.Run(ctx)
	code := m.Run()
	cancel()
	os.Exit(code)
}

type testEnv struct {
	srv    *Server
	client api.AgentClient
}

// serve runs the service on a real gRPC server on a unix socket.
func serve(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	if cfg.Reaper == nil {
		cfg.Reaper = testReaper
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testEnv{srv: srv, client: api.NewAgentClient(conn)}
}

type execResult struct {
	stdout, stderr bytes.Buffer
	exit           *api.ExecExit
	err            error
}

// runExec sends start, then the given messages, then reads to the end.
func runExec(t *testing.T, c api.AgentClient, start *api.ExecStart, msgs ...*api.ExecRequest) *execResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := c.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&api.ExecRequest{Msg: &api.ExecRequest_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	return readExec(stream)
}

func readExec(stream api.Agent_ExecClient) *execResult {
	r := &execResult{}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return r
		}
		if err != nil {
			r.err = err
			return r
		}
		switch m := resp.GetMsg().(type) {
		case *api.ExecResponse_Stdout:
			r.stdout.Write(m.Stdout)
		case *api.ExecResponse_Stderr:
			r.stderr.Write(m.Stderr)
		case *api.ExecResponse_Exit:
			if r.exit != nil {
				r.err = errors.New("two exit messages")
			}
			r.exit = m.Exit
		}
	}
}

func stdin(s string) *api.ExecRequest {
	return &api.ExecRequest{Msg: &api.ExecRequest_Stdin{Stdin: []byte(s)}}
}

var stdinClose = &api.ExecRequest{Msg: &api.ExecRequest_StdinClose{StdinClose: true}}

func TestExec(t *testing.T) {
	env := serve(t, Config{Native: true, Transport: "unix"})
	wd := t.TempDir()
	wd, _ = filepath.EvalSymlinks(wd)
	var want strings.Builder
	for i := 1; i <= 200000; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	tests := []struct {
		name       string
		start      *api.ExecStart
		msgs       []*api.ExecRequest
		stdout     string
		stderr     string
		code       int32
		signal     int32
		stdoutFunc func(string) bool
	}{
		{name: "echo", start: &api.ExecStart{Argv: []string{"echo", "hello"}}, stdout: "hello\n"},
		{name: "exit code", start: &api.ExecStart{Argv: []string{"sh", "-c", "exit 42"}}, code: 42},
		{name: "stderr apart", start: &api.ExecStart{Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, stdout: "out\n", stderr: "err\n", code: 3},
		{name: "stdin", start: &api.ExecStart{Argv: []string{"cat"}}, msgs: []*api.ExecRequest{stdin("abc"), stdin("def\n"), stdinClose}, stdout: "abcdef\n"},
		{name: "killed", start: &api.ExecStart{Argv: []string{"sh", "-c", "kill -KILL $$"}}, code: 137, signal: 9},
		{name: "signal message", start: &api.ExecStart{Argv: []string{"sh", "-c", "echo ready; exec sleep 30"}},
			msgs: []*api.ExecRequest{{Msg: &api.ExecRequest_Signal{Signal: int32(syscall.SIGTERM)}}}, code: 143, signal: 15,
			stdoutFunc: func(string) bool { return true }},
		{name: "env", start: &api.ExecStart{Argv: []string{"sh", "-c", `echo "$PATH|$HOME|$FOO|${TERM-unset}"`}, Env: []string{"FOO=bar baz"}},
			stdout: DefaultPath + "|/root|bar baz|unset\n"},
		{name: "env override", start: &api.ExecStart{Argv: []string{"sh", "-c", `echo "$HOME"`}, Env: []string{"HOME=/tmp", "PATH=/usr/bin:/bin"}}, stdout: "/tmp\n"},
		{name: "workdir", start: &api.ExecStart{Argv: []string{"pwd"}, Workdir: wd}, stdout: wd + "\n"},
		{name: "own session", start: &api.ExecStart{Argv: []string{"sh", "-c", `ps -o sid= -p $$ | tr -d ' '; echo $$`}},
			stdoutFunc: func(s string) bool {
				f := strings.Fields(s)
				return len(f) == 2 && f[0] == f[1]
			}},
		{name: "large output", start: &api.ExecStart{Argv: []string{"seq", "1", "200000"}}, stdout: want.String()},
		{name: "output at exit", start: &api.ExecStart{Argv: []string{"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' y; kill -KILL $$"}},
			code: 137, signal: 9, stdoutFunc: func(s string) bool { return len(s) == 100000 && strings.Trim(s, "y") == "" }},
		{name: "tty", start: &api.ExecStart{Argv: []string{"sh", "-c", `stty size; echo "$TERM"; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty; echo err >&2; exit 5`}, Tty: true, Size: &api.WindowSize{Rows: 40, Cols: 100}},
			stdout: "40 100\r\nxterm\r\nall-tty\r\nerr\r\n", code: 5},
		{name: "tty term override", start: &api.ExecStart{Argv: []string{"sh", "-c", `echo "$TERM"`}, Tty: true, Env: []string{"TERM=vt100"}}, stdout: "vt100\r\n"},
		{name: "tty large output", start: &api.ExecStart{Argv: []string{"seq", "1", "200000"}, Tty: true},
			stdout: strings.ReplaceAll(want.String(), "\n", "\r\n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runExec(t, env.client, tt.start, tt.msgs...)
			if r.err != nil {
				t.Fatalf("stream: %v", r.err)
			}
			if r.exit == nil {
				t.Fatal("no exit message")
			}
			if r.exit.Code != tt.code || r.exit.Signal != tt.signal {
				t.Errorf("exit code %d signal %d, want %d %d (stderr %q)", r.exit.Code, r.exit.Signal, tt.code, tt.signal, r.stderr.String())
			}
			if tt.stdoutFunc != nil {
				if !tt.stdoutFunc(r.stdout.String()) {
					t.Errorf("unexpected stdout %q", trunc(r.stdout.String()))
				}
			} else if r.stdout.String() != tt.stdout {
				t.Errorf("stdout %q (%d bytes), want %q (%d bytes)", trunc(r.stdout.String()), r.stdout.Len(), trunc(tt.stdout), len(tt.stdout))
			}
			if r.stderr.String() != tt.stderr {
				t.Errorf("stderr %q, want %q", r.stderr.String(), tt.stderr)
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:100] + "..." + s[len(s)-100:]
	}
	return s
}

func TestExecErrors(t *testing.T) {
	env := serve(t, Config{Native: true})
	dir := t.TempDir()
	noExec := filepath.Join(dir, "noexec")
	os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644)
	tests := []struct {
		name  string
		first *api.ExecRequest
		code  codes.Code
	}{
		{"not start", stdin("x"), codes.InvalidArgument},
		{"empty argv", &api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{}}}, codes.InvalidArgument},
		{"unknown command", &api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{Argv: []string{"berth-no-such-command"}}}}, codes.NotFound},
		{"missing path", &api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{Argv: []string{"/no/such/bin"}}}}, codes.NotFound},
		{"not executable", &api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{Argv: []string{noExec}}}}, codes.PermissionDenied},
		{"directory", &api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{Argv: []string{dir}}}}, codes.PermissionDenied},
		{"missing workdir", &api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{Argv: []string{"true"}, Workdir: "/no/such/dir"}}}, codes.NotFound},
		{"workdir is a file", &api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{Argv: []string{"true"}, Workdir: noExec}}}, codes.InvalidArgument},
		{"bad env", &api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{Argv: []string{"true"}, Env: []string{"NOEQUALS"}}}}, codes.InvalidArgument},
		{"PATH from the request", &api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{Argv: []string{"sh"}, Env: []string{"PATH=" + dir}}}}, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			stream, err := env.client.Exec(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tt.first); err != nil {
				t.Fatal(err)
			}
			r := readExec(stream)
			if got := status.Code(r.err); got != tt.code {
				t.Errorf("got %v (%v), want %v", got, r.err, tt.code)
			}
			if r.exit != nil {
				t.Errorf("got an exit message %v", r.exit)
			}
		})
	}
}

// TestExecResize changes the window size while the process runs and
// checks that the process sees it.
func TestExecResize(t *testing.T) {
	env := serve(t, Config{Native: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := env.client.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := &api.ExecStart{Argv: []string{"sh", "-c", "stty -echo; stty size; echo ready; read x; stty size"}, Tty: true, Size: &api.WindowSize{Rows: 24, Cols: 80}}
	stream.Send(&api.ExecRequest{Msg: &api.ExecRequest_Start{Start: start}})
	var out bytes.Buffer
	for !strings.Contains(out.String(), "ready") {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("before resize: %v (output %q)", err, out.String())
		}
		out.Write(resp.GetStdout())
	}
	stream.Send(&api.ExecRequest{Msg: &api.ExecRequest_Resize{Resize: &api.WindowSize{Rows: 50, Cols: 132}}})
	stream.Send(stdin("go\n"))
	r := readExec(stream)
	if r.err != nil || r.exit == nil || r.exit.Code != 0 {
		t.Fatalf("err %v exit %v", r.err, r.exit)
	}
	got := out.String() + r.stdout.String()
	if want := "24 80\r\nready\r\n50 132\r\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
}

// TestExecClientCancel checks that a client that goes away takes the
// whole process group with it, background children included.
func TestExecClientCancel(t *testing.T) {
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			env := serve(t, Config{Native: true})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := env.client.Exec(ctx)
			if err != nil {
				t.Fatal(err)
			}
			start := &api.ExecStart{Argv: []string{"sh", "-c", "sleep 100 & echo pgid $$; sleep 100"}, Tty: tty}
			stream.Send(&api.ExecRequest{Msg: &api.ExecRequest_Start{Start: start}})
			var out bytes.Buffer
			var pgid int
			for pgid == 0 {
				resp, err := stream.Recv()
				if err != nil {
					t.Fatalf("reading: %v (output %q)", err, out.String())
				}
				out.Write(resp.GetStdout())
				if f := strings.Fields(out.String()); len(f) >= 2 && strings.Contains(out.String(), "\n") {
					pgid, _ = strconv.Atoi(f[1])
				}
			}
			if err := syscall.Kill(-pgid, 0); err != nil {
				t.Fatalf("process group %d is not there: %v", pgid, err)
			}
			cancel()
			deadline := time.Now().Add(10 * time.Second)
			for syscall.Kill(-pgid, 0) == nil {
				if time.Now().After(deadline) {
					t.Fatalf("process group %d survived the client", pgid)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	dir := t.TempDir()
	env := serve(t, Config{Native: true, Transport: "unix", StateDir: dir})
	resp, err := env.client.Info(context.Background(), &api.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"version", resp.AgentVersion == Version},
		{"kernel", resp.Kernel != "" && strings.Contains(resp.Kernel, ".")},
		{"arch", resp.Arch == "x86_64" || resp.Arch == "aarch64"},
		{"uptime", resp.UptimeNs > 0},
		{"boot time", resp.BootTimeUnixNs > 0 && resp.BootTimeUnixNs < time.Now().UnixNano()},
		{"cpus", resp.Cpus > 0},
		{"memory", resp.MemoryTotalBytes > 0 && resp.MemoryUsedBytes > 0 && resp.MemoryUsedBytes < resp.MemoryTotalBytes},
		{"disk", resp.DiskTotalBytes == st.Blocks*uint64(st.Bsize) && resp.DiskUsedBytes <= resp.DiskTotalBytes},
		{"transport", resp.Transport == "unix"},
		{"native", resp.Native},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s is wrong in %v", c.name, resp)
		}
	}
}

// TestReady: with Config.Ready, calls are read at once but answered only
// once it is closed, and a call whose context ends first says so.
func TestReady(t *testing.T) {
	ready := make(chan struct{})
	env := serve(t, Config{Native: true, Transport: "unix", Ready: ready, Snapshot: func() []*api.Event {
		return []*api.Event{{Kind: &api.Event_Ports{Ports: &api.PortEvent{Snapshot: true}}}}
	}})

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := env.client.Info(ctx, &api.InfoRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Info before Ready: %v, want DeadlineExceeded", err)
	}
	sub, err := env.client.Events(context.Background(), &api.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		_, err := env.client.Info(context.Background(), &api.InfoRequest{})
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("Info answered before Ready: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(ready)
	if err := <-answered; err != nil {
		t.Fatalf("Info after Ready: %v", err)
	}
	if ev, err := sub.Recv(); err != nil || !ev.GetPorts().GetSnapshot() {
		t.Fatalf("Events after Ready: %v %v, want the snapshot", ev, err)
	}
}

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		total, avail uint64
		ok           bool
	}{
		{"modern", "MemTotal:        1000 kB\nMemFree:  100 kB\nMemAvailable:     600 kB\nCached: 1 kB\n", 1024000, 614400, true},
		{"old kernel", "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n", 1024000, 409600, true},
		{"no total", "MemFree: 100 kB\n", 0, 0, false},
		{"garbage", "what\n:\nMemTotal: x kB\n", 0, 0, false},
	}
	for _, tt := range tests {
		total, avail, ok := parseMeminfo(strings.NewReader(tt.in))
		if total != tt.total || avail != tt.avail || ok != tt.ok {
			t.Errorf("%s: got %d %d %v", tt.name, total, avail, ok)
		}
	}
}

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	setTo  time.Time
	setErr error
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.setErr != nil {
		return c.setErr
	}
	c.setTo, c.now = t, t
	return nil
}

func TestSyncTime(t *testing.T) {
	host := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		guest   time.Time
		native  bool
		setErr  error
		host    int64
		drift   time.Duration
		stepped bool
		code    codes.Code
	}{
		{name: "in sync", guest: host, drift: 0},
		{name: "small ahead", guest: host.Add(99 * time.Millisecond), drift: 99 * time.Millisecond},
		{name: "small behind", guest: host.Add(-100 * time.Millisecond), drift: -100 * time.Millisecond},
		{name: "ahead", guest: host.Add(500 * time.Millisecond), drift: 500 * time.Millisecond, stepped: true},
		{name: "behind after sleep", guest: host.Add(-3 * time.Hour), drift: -3 * time.Hour, stepped: true},
		{name: "native never sets", guest: host.Add(time.Minute), native: true, drift: time.Minute},
		{name: "set fails", guest: host.Add(time.Second), setErr: errors.New("EPERM"), code: codes.Internal},
		{name: "no host time", guest: host, host: -1, code: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{now: tt.guest, setErr: tt.setErr}
			env := serve(t, Config{Native: tt.native, Clock: clk})
			hostNs := host.UnixNano()
			if tt.host != 0 {
				hostNs = 0
			}
			resp, err := env.client.SyncTime(context.Background(), &api.SyncTimeRequest{HostUnixNs: hostNs})
			if status.Code(err) != tt.code {
				t.Fatalf("error %v, want code %v", err, tt.code)
			}
			if err != nil {
				return
			}
			if time.Duration(resp.DriftNs) != tt.drift || resp.Stepped != tt.stepped {
				t.Errorf("drift %v stepped %v, want %v %v", time.Duration(resp.DriftNs), resp.Stepped, tt.drift, tt.stepped)
			}
			if tt.stepped && !clk.setTo.Equal(host) {
				t.Errorf("clock set to %v, want %v", clk.setTo, host)
			}
			if !tt.stepped && !clk.setTo.IsZero() {
				t.Errorf("clock was set to %v", clk.setTo)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	got := make(chan bool, 1)
	env := serve(t, Config{Shutdown: func(reboot bool) { got <- reboot }})
	for _, reboot := range []bool{true, false} {
		if _, err := env.client.Shutdown(context.Background(), &api.ShutdownRequest{Reboot: reboot}); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-got:
			if r != reboot {
				t.Errorf("reboot %v, want %v", r, reboot)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("shutdown callback not called")
		}
	}

	none := serve(t, Config{})
	if _, err := none.client.Shutdown(context.Background(), &api.ShutdownRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("without a callback: %v, want Unimplemented", err)
	}
}

// TestEventsFanOut publishes from several goroutines to several gRPC
// subscribers; each must get every event, and each publisher's events in
// order.
func TestEventsFanOut(t *testing.T) {
	env := serve(t, Config{})
	const subs, pubs, perPub = 3, 4, 50
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	streams := make([]api.Agent_EventsClient, subs)
	for i := range streams {
		s, err := env.client.Events(ctx, &api.EventsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	for env.srv.Broker().Subscribers() < subs {
		time.Sleep(5 * time.Millisecond)
	}

	var wg sync.WaitGroup
	for p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPub {
				env.srv.Broker().Publish(&api.Event{Kind: &api.Event_Notice{Notice: fmt.Sprintf("%d %d", p, i)}})
			}
		}()
	}

	errs := make(chan error, subs)
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := make([]int, pubs)
			for n := 0; n < pubs*perPub; n++ {
				ev, err := s.Recv()
				if err != nil {
					errs <- fmt.Errorf("after %d events: %w", n, err)
					return
				}
				var p, i int
				fmt.Sscanf(ev.GetNotice(), "%d %d", &p, &i)
				if ev.TimeUnixNs == 0 {
					errs <- errors.New("event without a time")
					return
				}
				if i != next[p] {
					errs <- fmt.Errorf("publisher %d: got event %d, want %d", p, i, next[p])
					return
				}
				next[p]++
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// Stopping the service ends the streams with Unavailable.
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	go env.srv.Stop(sctx)
	if _, err := streams[0].Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("after Stop: %v, want Unavailable", err)
	}
}

func TestBrokerSlowSubscriber(t *testing.T) {
	b := NewBroker(2)
	slow, fast := b.Subscribe(), b.Subscribe()
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range fast.C {
			got = append(got, ev.GetNotice())
		}
	}()
	for i := range 5 {
		b.Publish(&api.Event{Kind: &api.Event_Notice{Notice: strconv.Itoa(i)}})
		time.Sleep(5 * time.Millisecond) // let the fast one keep up
	}
	var slowGot []string
	for ev := range slow.C {
		slowGot = append(slowGot, ev.GetNotice())
	}
	if !errors.Is(slow.Err(), ErrSlowSubscriber) {
		t.Errorf("slow subscriber ended with %v", slow.Err())
	}
	if strings.Join(slowGot, ",") != "0,1" {
		t.Errorf("slow subscriber got %v before the drop", slowGot)
	}
	if b.Subscribers() != 1 {
		t.Errorf("%d subscribers left, want 1", b.Subscribers())
	}
	fast.Close()
	<-done
	if fast.Err() != nil {
		t.Errorf("closed subscriber: %v", fast.Err())
	}
	if strings.Join(got, ",") != "0,1,2,3,4" {
		t.Errorf("fast subscriber got %v", got)
	}
	b.Close()
	late := b.Subscribe()
	if _, ok := <-late.C; ok || !errors.Is(late.Err(), ErrBrokerClosed) {
		t.Errorf("subscribe after Close: %v", late.Err())
	}
}

func TestExecEnv(t *testing.T) {
	tests := []struct {
		req  []string
		tty  bool
		want string
		err  bool
	}{
		{nil, false, "PATH=" + DefaultPath + " HOME=/root", false},
		{nil, true, "PATH=" + DefaultPath + " HOME=/root TERM=xterm", false},
		{[]string{"A=1", "HOME=/x", "A=2", "E="}, false, "PATH=" + DefaultPath + " HOME=/x A=2 E=", false},
		{[]string{"TERM=dumb"}, true, "PATH=" + DefaultPath + " HOME=/root TERM=dumb", false},
		{[]string{"=x"}, false, "", true},
		{[]string{"A=\x00"}, false, "", true},
	}
	for _, tt := range tests {
		got, err := execEnv(tt.req, tt.tty)
		if (err != nil) != tt.err {
			t.Errorf("execEnv(%q): error %v", tt.req, err)
			continue
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("execEnv(%q, %v) = %q, want %q", tt.req, tt.tty, got, tt.want)
		}
	}
}

// TestStopCutsLongExec checks that a running Exec does not hold Stop (and
// so a power-off) for longer than stopGrace, and that its process dies.
func TestStopCutsLongExec(t *testing.T) {
	env := serve(t, Config{})
	stream, err := env.client.Exec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&api.ExecRequest{Msg: &api.ExecRequest_Start{Start: &api.ExecStart{Argv: []string{"sh", "-c", "echo $$; exec sleep 100"}}}})
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(resp.GetStdout())))
	start := time.Now()
	if err := env.srv.Stop(context.Background()); err == nil {
		t.Error("Stop reported a graceful stop while an Exec ran")
	}
	if took := time.Since(start); took > stopGrace+2*time.Second {
		t.Errorf("Stop took %v", took)
	}
	if r := readExec(stream); r.err == nil {
		t.Error("the Exec stream ended without an error")
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process %d survived Stop", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
