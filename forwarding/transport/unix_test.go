package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestUnixTransport(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ports")
	u, err := NewUnixListener(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("dir mode %v, want 0700", fi.Mode().Perm())
		}
	}
	l, err := u.ListenPort(PortControl)
	if err != nil {
		t.Fatal(err)
	}
	go serveEcho(l)
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(filepath.Join(dir, "1024.sock"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
		}
	}
	if _, err := u.ListenPort(PortControl); err == nil {
		t.Error("second ListenPort on one port succeeded")
	}

	d := NewUnixDialer(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialPort(ctx, PortControl)
	if err != nil {
		t.Fatal(err)
	}
	if err := echoRoundTrip(c, 1, 100<<10); err != nil {
		t.Error(err)
	}
	c.Close()

	_, err = d.DialPort(ctx, PortDocker)
	if !errors.Is(err, ErrNotListening) {
		t.Fatalf("dial an unused port: got %v, want ErrNotListening", err)
	}
	want := "guest port 2375 is not listening at " + filepath.Join(dir, "2375.sock")
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start with %q", err, want)
	}

	// Closing a port listener frees the port for another listen.
	l.Close()
	if _, err := d.DialPort(ctx, PortControl); !errors.Is(err, ErrNotListening) {
		t.Errorf("dial a closed port: got %v", err)
	}
	l2, err := u.ListenPort(PortControl)
	if err != nil {
		t.Fatalf("listen again after close: %v", err)
	}
	u.Close()
	if _, err := l2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after UnixListener.Close: %v", err)
	}
	if _, err := u.ListenPort(PortDocker); err == nil {
		t.Error("ListenPort after Close succeeded")
	}
}

func TestUnixStaleSocket(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr bool
	}{
		{"no file", func(t *testing.T, path string) {}, false},
		{"stale socket", func(t *testing.T, path string) {
			// A listener whose process died leaves its file behind.
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		}, false},
		{"live socket", func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, true},
		{"regular file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.prepare(t, filepath.Join(dir, "1025.sock"))
			u, err := NewUnixListener(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			l, err := u.ListenPort(PortForward)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("ListenPort: err %v, want error: %v", err, tc.wantErr)
			}
			if l != nil {
				l.Close()
			}
		})
	}
}

// TestDialWithPlainDialer: a transport without a handshake gets the first
// bytes written right after the dial.
func TestDialWithPlainDialer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ports")
	u, err := NewUnixListener(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	l, err := u.ListenPort(PortForward)
	if err != nil {
		t.Fatal(err)
	}
	go serveEcho(l)
	d := NewUnixDialer(dir)
	if _, ok := d.(EarlyDialer); ok {
		t.Fatal("the unix dialer claims a handshake it does not have")
	}
	c, err := DialWith(context.Background(), d, PortForward, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(halfCloser).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo %q, %v; want %q", got, err, "hello")
	}
	if _, err := DialWith(context.Background(), d, 4321, []byte("x")); !errors.Is(err, ErrNotListening) {
		t.Fatalf("DialWith to an unused port: %v, want ErrNotListening", err)
	}
}
