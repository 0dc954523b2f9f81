package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// connPair returns the two ends of a connection of the given kind.
func connPair(t *testing.T, kind string) (net.Conn, net.Conn) {
	t.Helper()
	if kind == "pipe" {
		return net.Pipe()
	}
	addr := "127.0.0.1:0"
	if kind == "unix" {
		addr = filepath.Join(t.TempDir(), "p.sock")
	}
	l, err := net.Listen(kind, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	a, err := net.Dial(kind, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

// TestProxyHalfClose: client → [a Proxy b] → server. The server answers only
// after reading the client's EOF, which must pass through the proxy.
func TestProxyHalfClose(t *testing.T) {
	for _, kind := range []string{"tcp", "unix"} {
		t.Run(kind, func(t *testing.T) {
			client, a := connPair(t, kind)
			b, server := connPair(t, kind)
			done := make(chan error, 1)
			go func() { done <- Proxy(context.Background(), a, b) }()

			go func() {
				req, err := io.ReadAll(server)
				if err != nil {
					return
				}
				fmt.Fprintf(server, "got %d", len(req))
				server.Close()
			}()
			payload := randBytes(5, 1<<20)
			if _, err := client.Write(payload); err != nil {
				t.Fatal(err)
			}
			client.(halfCloser).CloseWrite()
			resp, err := io.ReadAll(client)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("got %d", len(payload)); string(resp) != want {
				t.Errorf("response %q, want %q", resp, want)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Proxy: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Proxy did not return after both directions ended")
			}
			// Proxy closed its conns.
			if _, err := a.Write([]byte("x")); err == nil {
				t.Error("conn a still open after Proxy returned")
			}
		})
	}
}

func TestProxyEnds(t *testing.T) {
	tests := []struct {
		name string
		// act ends the proxied connection from outside; it returns the
		// cancel function of Proxy's context, if it made one.
		act     func(client, server net.Conn, cancel context.CancelFunc)
		wantErr error
	}{
		{"both sides close", func(client, server net.Conn, _ context.CancelFunc) {
			client.Close()
			server.Close()
		}, nil},
		{"context cancel", func(_, _ net.Conn, cancel context.CancelFunc) {
			cancel()
		}, context.Canceled},
		// An error one way ends the other way too, though its peer
		// neither writes nor closes.
		{"client resets, server idle", func(client, _ net.Conn, _ context.CancelFunc) {
			client.(*net.TCPConn).SetLinger(0)
			client.Close()
		}, syscall.ECONNRESET},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, a := connPair(t, "tcp")
			b, server := connPair(t, "tcp")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- Proxy(ctx, a, b) }()
			// Traffic flows first.
			client.Write([]byte("hi"))
			var buf [2]byte
			if _, err := io.ReadFull(server, buf[:]); err != nil {
				t.Fatal(err)
			}
			tc.act(client, server, cancel)
			select {
			case err := <-done:
				if !errors.Is(err, tc.wantErr) && err != tc.wantErr {
					t.Errorf("Proxy: got %v, want %v", err, tc.wantErr)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Proxy did not return")
			}
		})
	}
}

// TestProxyNoHalfClose: with a conn that cannot half-close, Proxy still
// ends once one direction is done instead of hanging.
func TestProxyNoHalfClose(t *testing.T) {
	client, a := net.Pipe()
	b, server := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Proxy(context.Background(), a, b) }()
	go io.Copy(io.Discard, server)
	client.Write([]byte("data"))
	client.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Proxy: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Proxy hung on a conn without CloseWrite")
	}
}

// TestProxySerialStreams proxies between two serial streams, which
// half-close through CloseWrite.
func TestProxySerialStreams(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	l := startGuest(t, f, tm)
	pl, err := l.ListenPort(PortForward)
	if err != nil {
		t.Fatal(err)
	}
	d := startHost(t, f.pipeDialer(false), tm)
	// Guest side: proxy each stream to an echo server over TCP.
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	go serveEcho(echo)
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			go func() {
				up, err := net.Dial("tcp", echo.Addr().String())
				if err != nil {
					c.Close()
					return
				}
				Proxy(context.Background(), c, up)
			}()
		}
	}()
	for i := range 4 {
		c := dialCtx(t, d, PortForward)
		if err := echoRoundTrip(c, uint64(i), 200<<10); err != nil {
			t.Errorf("stream %d: %v", i, err)
		}
		c.Close()
	}
}

// TestProxyStreamThenPause: a connection that streams, pauses for longer
// than the large buffer is kept, and goes on, stays open through Proxy.
func TestProxyStreamThenPause(t *testing.T) {
	setLargeIdle(t, 50*time.Millisecond)
	client, a := connPair(t, "tcp")
	b, server := connPair(t, "tcp")
	go Proxy(context.Background(), a, b)
	var got lockedBuffer
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(&got, server)
		done <- err
	}()
	bulk := randBytes(7, 1<<20)
	if _, err := client.Write(bulk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the bulk bytes", func() bool { return got.Len() == len(bulk) })
	time.Sleep(4 * largeIdle)
	if _, err := client.Write([]byte("after the pause")); err != nil {
		t.Fatalf("writing after the pause: %v", err)
	}
	client.(halfCloser).CloseWrite()
	if err := <-done; err != nil {
		t.Fatalf("the server's read: %v", err)
	}
	if want := append(bulk, "after the pause"...); !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("the server got %d bytes, want %d", got.Len(), len(want))
	}
}
