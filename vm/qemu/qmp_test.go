package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQMP is a QMP server on a unix socket. handle answers one command; it
// returns the lines to send back, in order.
type fakeQMP struct {
	path     string
	greeting string
	handle   func(cmd map[string]any) []string
	got      chan string // command names, as received
}

func startFakeQMP(t *testing.T, greeting string, handle func(cmd map[string]any) []string) *fakeQMP {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeQMP{path: filepath.Join(dir, "q.sock"), greeting: greeting, handle: handle, got: make(chan string, 100)}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(conn)
		}
	}()
	return f
}

func (f *fakeQMP) serve(conn net.Conn) {
	defer conn.Close()
	if _, err := conn.Write([]byte(f.greeting + "\n")); err != nil {
		return
	}
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		var cmd map[string]any
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			return
		}
		name, _ := cmd["execute"].(string)
		f.got <- name
		for _, line := range f.handle(cmd) {
			if line == "CLOSE" {
				return
			}
			if _, err := conn.Write([]byte(line + "\n")); err != nil {
				return
			}
		}
	}
}

const greeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`

func reply(cmd map[string]any, body string) string {
	id, _ := json.Marshal(cmd["id"])
	return `{"return": ` + body + `, "id": ` + string(id) + `}`
}

func TestQMPExecute(t *testing.T) {
	type status struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
	}
	tests := []struct {
		name    string
		command string
		handle  func(cmd map[string]any) []string
		want    status
		wantErr string
	}{
		{
			name:    "return value",
			command: "query-status",
			handle: func(cmd map[string]any) []string {
				return []string{reply(cmd, `{"running": true, "status": "running"}`)}
			},
			want: status{Running: true, Status: "running"},
		},
		{
			name:    "event before reply",
			command: "query-status",
			handle: func(cmd map[string]any) []string {
				return []string{
					`{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}`,
					reply(cmd, `{"running": false, "status": "paused"}`),
				}
			},
			want: status{Status: "paused"},
		},
		{
			name:    "stale reply skipped",
			command: "query-status",
			handle: func(cmd map[string]any) []string {
				return []string{
					`{"return": {"running": false, "status": "stale"}, "id": 999}`,
					reply(cmd, `{"running": true, "status": "fresh"}`),
				}
			},
			want: status{Running: true, Status: "fresh"},
		},
		{
			name:    "command error",
			command: "nope",
			handle: func(cmd map[string]any) []string {
				id, _ := json.Marshal(cmd["id"])
				return []string{`{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": ` + string(id) + `}`}
			},
			wantErr: "CommandNotFound",
		},
		{
			name:    "connection closed",
			command: "quit",
			handle:  func(map[string]any) []string { return []string{"CLOSE"} },
			wantErr: errQMPClosed.Error(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeQMP(t, greeting, func(cmd map[string]any) []string {
				if cmd["execute"] == "qmp_capabilities" {
					return []string{`{"return": {}}`}
				}
				return tt.handle(cmd)
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := dialQMP(ctx, f.path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var got status
			err = c.execute(ctx, tt.command, nil, &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if first := <-f.got; first != "qmp_capabilities" {
				t.Errorf("first command %q, want qmp_capabilities", first)
			}
		})
	}
}

func TestQMPHandshake(t *testing.T) {
	tests := []struct {
		name     string
		greeting string
		capsLine string
		wantErr  bool
	}{
		{name: "ok", greeting: greeting, capsLine: `{"return": {}}`},
		{name: "not qmp", greeting: `{"hello": 1}`, capsLine: `{"return": {}}`, wantErr: true},
		{name: "caps refused", greeting: greeting, capsLine: `{"error": {"class": "GenericError", "desc": "no"}}`, wantErr: true},
		{name: "garbage", greeting: `not json`, capsLine: `{"return": {}}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeQMP(t, tt.greeting, func(map[string]any) []string { return []string{tt.capsLine} })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := dialQMP(ctx, f.path)
			if tt.wantErr {
				if err == nil {
					c.Close()
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		})
	}
}

func TestQMPHandshakeTimeout(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			defer conn.Close()
			time.Sleep(5 * time.Second) // never greets
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = dialQMP(ctx, path)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("handshake took %v after its deadline", d)
	}
}

func TestQMPEvents(t *testing.T) {
	f := startFakeQMP(t, greeting, func(cmd map[string]any) []string {
		switch cmd["execute"] {
		case "qmp_capabilities":
			return []string{`{"return": {}}`}
		case "system_powerdown":
			return []string{
				reply(cmd, `{}`),
				`{"event": "POWERDOWN", "timestamp": {"seconds": 1700000000, "microseconds": 5}}`,
				`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, "timestamp": {"seconds": 1700000001, "microseconds": 0}}`,
				"CLOSE",
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialQMP(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.execute(ctx, "system_powerdown", nil, nil); err != nil {
		t.Fatal(err)
	}
	var names []string
	for ev := range c.Events() {
		names = append(names, ev.Name)
		if ev.Name == "SHUTDOWN" {
			var data struct{ Reason string }
			if err := json.Unmarshal(ev.Data, &data); err != nil || data.Reason != "guest-shutdown" {
				t.Errorf("SHUTDOWN data %s: %v", ev.Data, err)
			}
			if ev.Time.Unix() != 1700000001 {
				t.Errorf("SHUTDOWN time %v", ev.Time)
			}
		}
	}
	if got := strings.Join(names, ","); got != "POWERDOWN,SHUTDOWN" {
		t.Errorf("events %s, want POWERDOWN,SHUTDOWN", got)
	}
	select {
	case <-c.Closed():
	default:
		t.Error("events channel closed before Closed")
	}
}

func TestQMPExecuteArguments(t *testing.T) {
	args := make(chan map[string]any, 1)
	f := startFakeQMP(t, greeting, func(cmd map[string]any) []string {
		if cmd["execute"] == "qmp_capabilities" {
			return []string{`{"return": {}}`}
		}
		a, _ := cmd["arguments"].(map[string]any)
		args <- a
		return []string{reply(cmd, `{}`)}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialQMP(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.execute(ctx, "human-monitor-command", map[string]string{"command-line": "info status"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := (<-args)["command-line"]; got != "info status" {
		t.Errorf("arguments %v", got)
	}
}
