package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// startGuest starts a SerialListener on f with an echo server on port 1024.
func startGuest(t *testing.T, f *fakePort, tm serialTiming) *SerialListener {
	t.Helper()
	l := newSerialListener(f.open, testLogger(t), tm)
	t.Cleanup(func() { l.Close() })
	pl, err := l.ListenPort(PortControl)
	if err != nil {
		t.Fatal(err)
	}
	go serveEcho(pl)
	return l
}

func startHost(t *testing.T, dial func(context.Context) (net.Conn, error), tm serialTiming) *SerialDialer {
	t.Helper()
	d := newSerialDialer(dial, testLogger(t), tm)
	t.Cleanup(func() { d.Close() })
	return d
}

func dialCtx(t *testing.T, d Dialer, port uint32) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialPort(ctx, port)
	if err != nil {
		t.Fatalf("DialPort(%d): %v", port, err)
	}
	return c
}

// serialStreamPair starts a serial session over a fake port and returns
// the host and the guest end of one stream on it. Both are closed when
// the test ends.
func serialStreamPair(t *testing.T) (host, guest net.Conn) {
	t.Helper()
	f := newFakePort()
	tm := fastTiming()
	l := startGuest(t, f, tm)
	pl, err := l.ListenPort(PortForward)
	if err != nil {
		t.Fatal(err)
	}
	d := startHost(t, f.pipeDialer(false), tm)
	host = dialCtx(t, d, PortForward)
	guest, err = pl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close(); guest.Close() })
	return host, guest
}

// yamuxSessions starts a yamux client session on a and a server session
// on b, closed when the test ends.
func yamuxSessions(t *testing.T, a, b net.Conn) (client, server *yamux.Session) {
	t.Helper()
	client, err := yamux.Client(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err = yamux.Server(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// checkEcho runs streams concurrent echo round trips of size bytes.
func checkEcho(t *testing.T, d Dialer, streams, size int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := d.DialPort(ctx, PortControl)
			if err != nil {
				errs <- fmt.Errorf("stream %d: dial: %w", i, err)
				return
			}
			defer c.Close()
			if err := echoRoundTrip(c, uint64(i+1), size); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSerialConcurrentStreams(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	startGuest(t, f, tm)
	d := startHost(t, f.pipeDialer(false), tm)
	checkEcho(t, d, 16, 200<<10)
}

// TestSerialGuestPushes checks streams where the guest writes first and
// most, alongside echo streams.
func TestSerialGuestPushes(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	l := startGuest(t, f, tm)
	pl, err := l.ListenPort(PortDocker)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var req [12]byte
				if _, err := io.ReadFull(c, req[:]); err != nil {
					return
				}
				seed := binary.BigEndian.Uint64(req[:8])
				n := int(binary.BigEndian.Uint32(req[8:]))
				c.Write(randBytes(seed, n))
			}()
		}
	}()
	d := startHost(t, f.pipeDialer(false), tm)

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialCtx(t, d, PortDocker)
			defer c.Close()
			n := 100<<10 + i
			var req [12]byte
			binary.BigEndian.PutUint64(req[:8], uint64(100+i))
			binary.BigEndian.PutUint32(req[8:], uint32(n))
			if _, err := c.Write(req[:]); err != nil {
				t.Error(err)
				return
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Errorf("stream %d: %v", i, err)
				return
			}
			if string(got) != string(randBytes(uint64(100+i), n)) {
				t.Errorf("stream %d: guest data differs (%d bytes)", i, len(got))
			}
		}()
	}
	checkEcho(t, d, 8, 64<<10)
	wg.Wait()
}

func TestSerialNoListener(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	startGuest(t, f, tm)
	d := startHost(t, f.pipeDialer(false), tm)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.DialPort(ctx, 4321)
	if !errors.Is(err, ErrNotListening) {
		t.Fatalf("DialPort to an unused port: got %v, want ErrNotListening", err)
	}
	// The session survives the refusal.
	checkEcho(t, d, 1, 1000)
}

func TestSerialDialBeforeGuest(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	gate := make(chan struct{})
	l := newSerialListener(func() (io.ReadWriteCloser, error) {
		<-gate
		return f.open()
	}, testLogger(t), tm)
	t.Cleanup(func() { l.Close() })
	pl, err := l.ListenPort(PortControl)
	if err != nil {
		t.Fatal(err)
	}
	go serveEcho(pl)
	d := startHost(t, f.pipeDialer(false), tm)

	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := d.DialPort(ctx, PortControl)
		res <- result{c, err}
	}()
	select {
	case r := <-res:
		t.Fatalf("DialPort returned before the guest was up: %v", r.err)
	case <-time.After(200 * time.Millisecond):
	}
	close(gate)
	r := <-res
	if r.err != nil {
		t.Fatalf("DialPort once the guest is up: %v", r.err)
	}
	defer r.c.Close()
	if err := echoRoundTrip(r.c, 7, 5000); err != nil {
		t.Fatal(err)
	}
}

func TestSerialContext(t *testing.T) {
	f := newFakePort() // no guest ever opens it
	tm := fastTiming()
	d := startHost(t, f.pipeDialer(false), tm)

	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			_, err := d.DialPort(ctx, PortControl)
			if !errors.Is(err, tc.want) {
				t.Errorf("DialPort: got %v, want %v", err, tc.want)
			}
			if e := time.Since(start); e > 5*time.Second {
				t.Errorf("DialPort took %v after its context ended", e)
			}
			ctx2, cancel2 := tc.ctx()
			defer cancel2()
			if err := d.Ready(ctx2); !errors.Is(err, tc.want) {
				t.Errorf("Ready: got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSerialDialContextGuestSilent cancels a dial that has a session but
// whose stream the guest never answers.
func TestSerialDialContextGuestSilent(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	tm.keepaliveInterval = time.Hour
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	go func() {
		p, err := f.open()
		if err != nil {
			return
		}
		defer p.Close()
		guestHandshake(context.Background(), p, tm)
		<-hung // then never reads again
	}()
	d := startHost(t, f.pipeDialer(false), tm)
	if err := d.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := d.DialPort(ctx, PortControl)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DialPort to a silent guest: got %v, want DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = d.DialPort(ctx, PortControl)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("DialPort to a silent guest: got %v, want Canceled", err)
	}
}

// TestSerialHostRestart replaces the host agent in the ways it can go away,
// and checks that a stream of the old session fails with an error on the
// guest while a new host gets a working session.
func TestSerialHostRestart(t *testing.T) {
	tests := []struct {
		name string
		// restart ends the first host and returns the dialer for the second.
		restart func(f *fakePort, old *SerialDialer) func(context.Context) (net.Conn, error)
	}{
		{"clean close", func(f *fakePort, old *SerialDialer) func(context.Context) (net.Conn, error) {
			old.Close()
			return f.pipeDialer(false)
		}},
		{"chardev dropped", func(f *fakePort, old *SerialDialer) func(context.Context) (net.Conn, error) {
			f.dropHost() // the old dialer redials on its own; close it too
			old.Close()
			return f.pipeDialer(false)
		}},
		{"back before the guest saw EOF", func(f *fakePort, old *SerialDialer) func(context.Context) (net.Conn, error) {
			// The new host replaces the old connection with no gap in
			// between; the old dialer is stopped after the swap.
			dial := f.pipeDialer(true)
			c, _ := dial(context.Background())
			old.Close()
			used := false
			return func(ctx context.Context) (net.Conn, error) {
				if !used {
					used = true
					return c, nil
				}
				return dial(ctx)
			}
		}},
		{"back before EOF, old host died mid-frame", func(f *fakePort, old *SerialDialer) func(context.Context) (net.Conn, error) {
			// A data frame for stream 1 whose body never completes.
			hdr := make([]byte, 12)
			hdr[1] = 0 // typeData
			binary.BigEndian.PutUint32(hdr[4:], 1)
			binary.BigEndian.PutUint32(hdr[8:], 60000)
			f.inject(append(hdr, make([]byte, 100)...))
			dial := f.pipeDialer(true)
			c, _ := dial(context.Background())
			old.Close()
			used := false
			return func(ctx context.Context) (net.Conn, error) {
				if !used {
					used = true
					return c, nil
				}
				return dial(ctx)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakePort()
			tm := fastTiming()
			l := newSerialListener(f.open, testLogger(t), tm)
			t.Cleanup(func() { l.Close() })
			pl, err := l.ListenPort(PortControl)
			if err != nil {
				t.Fatal(err)
			}
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := pl.Accept()
				if err != nil {
					return
				}
				accepted <- c
				serveEcho(pl)
			}()

			d1 := newSerialDialer(f.pipeDialer(false), testLogger(t), tm)
			c1 := dialCtx(t, d1, PortControl)
			gc := <-accepted
			// Some traffic, then leave the stream idle and open.
			if _, err := c1.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			var b [5]byte
			if _, err := io.ReadFull(gc, b[:]); err != nil {
				t.Fatal(err)
			}
			guestErr := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, gc)
				guestErr <- err
			}()

			// The second host starts at once, as a restarted agent would:
			// in the missed-EOF cases only its bytes end the old session.
			d2 := startHost(t, tc.restart(f, d1), tm)

			select {
			case err := <-guestErr:
				if err == nil {
					t.Error("guest stream of the dead session ended with EOF; want an error")
				} else if !errors.Is(err, ErrSessionLost) {
					t.Errorf("guest stream error: got %v, want ErrSessionLost", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("guest stream of the dead session never failed")
			}
			if _, err := c1.Read(b[:]); err == nil {
				t.Error("host stream of the old session still reads")
			}

			checkEcho(t, d2, 4, 50<<10)
		})
	}
}

// TestSerialStaleBytes leaves garbage in the guest's receive buffer, some of
// it shaped like handshake and yamux frames, before any session.
func TestSerialStaleBytes(t *testing.T) {
	garbage := [][]byte{
		{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5},            // a yamux header
		[]byte("BERTH"),                                 // bare magic
		[]byte("BERTHS0123"),                            // cut-off SYNC
		encodeFrame(frameGo, "0123456789abcdef"),        // GO for a nonce nobody acked
		encodeFrame(frameSync, "fedcba9876543210"),      // SYNC of a dead host
		[]byte("BERTHSZZZZZZZZZZZZZZZZ"),                // bad nonce
		randBytes(1, 3000),                              // noise
		encodeFrame(frameSync, "0000000000000001")[:10], // ends mid-frame
	}
	for i, g := range garbage {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			f := newFakePort()
			f.keepStale = true
			f.inject(g)
			tm := fastTiming()
			startGuest(t, f, tm)
			d := startHost(t, f.pipeDialer(false), tm)
			checkEcho(t, d, 2, 10<<10)
		})
	}
}

// TestSerialGuestRestart restarts the guest side (a VM reboot) while the
// host stays connected; the host must notice and resync.
func TestSerialGuestRestart(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	tm.keepaliveInterval = time.Hour // the guest's RESET must be enough
	l1 := newSerialListener(f.open, testLogger(t), tm)
	pl, err := l1.ListenPort(PortControl)
	if err != nil {
		t.Fatal(err)
	}
	go serveEcho(pl)
	d := startHost(t, f.pipeDialer(false), tm)
	checkEcho(t, d, 2, 10<<10)
	c := dialCtx(t, d, PortControl)
	defer c.Close()
	l1.Close()

	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("host stream survived the guest restart")
	}
	startGuest(t, f, tm)
	checkEcho(t, d, 2, 10<<10)
}

func TestSerialKeepalive(t *testing.T) {
	t.Run("idle healthy session survives", func(t *testing.T) {
		f := newFakePort()
		tm := fastTiming()
		tm.keepaliveInterval = 10 * time.Millisecond
		tm.keepaliveTimeout = 300 * time.Millisecond
		startGuest(t, f, tm)
		d := startHost(t, f.pipeDialer(false), tm)
		c := dialCtx(t, d, PortControl)
		defer c.Close()
		time.Sleep(time.Second)
		d.mu.Lock()
		n := d.sessions
		d.mu.Unlock()
		if n != 1 {
			t.Errorf("host set up %d sessions while idle; want 1", n)
		}
		if err := echoRoundTrip(c, 3, 1000); err != nil {
			t.Errorf("idle stream: %v", err)
		}
	})
	t.Run("silent guest is dropped", func(t *testing.T) {
		f := newFakePort()
		tm := fastTiming()
		tm.keepaliveInterval = 20 * time.Millisecond
		tm.keepaliveTimeout = 100 * time.Millisecond
		// A guest that completes the handshake and then hangs.
		frozen := make(chan struct{})
		go func() {
			p, err := f.open()
			if err != nil {
				return
			}
			if _, err := guestHandshake(context.Background(), p, tm); err == nil {
				close(frozen)
			}
			time.Sleep(10 * time.Second)
			p.Close()
		}()
		d := startHost(t, f.pipeDialer(false), tm)
		if err := d.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		<-frozen
		waitFor(t, 5*time.Second, "the host to drop the silent session", func() bool {
			ms, _, _ := d.current()
			return ms == nil
		})
	})
}

func TestSerialHalfClose(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	l := startGuest(t, f, tm)
	pl, err := l.ListenPort(PortForward)
	if err != nil {
		t.Fatal(err)
	}
	// The guest reads the whole request up to EOF, then answers.
	go func() {
		c, err := pl.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := io.ReadAll(c)
		if err != nil {
			return
		}
		fmt.Fprintf(c, "got %d bytes", len(req))
	}()
	d := startHost(t, f.pipeDialer(false), tm)
	c := dialCtx(t, d, PortForward)
	defer c.Close()
	if _, err := c.Write(make([]byte, 300<<10)); err != nil {
		t.Fatal(err)
	}
	if err := c.(halfCloser).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write after CloseWrite: got %v, want EPIPE", err)
	}
	resp, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("got %d bytes", 300<<10); string(resp) != want {
		t.Errorf("response %q, want %q", resp, want)
	}
}

// TestSerialReset checks that closing a stream while the peer still writes
// fails the peer's writes with ECONNRESET, in both directions.
func TestSerialReset(t *testing.T) {
	for _, closer := range []string{"host", "guest"} {
		t.Run(closer+" closes", func(t *testing.T) {
			f := newFakePort()
			tm := fastTiming()
			l := startGuest(t, f, tm)
			pl, err := l.ListenPort(PortForward)
			if err != nil {
				t.Fatal(err)
			}
			d := startHost(t, f.pipeDialer(false), tm)
			hc := dialCtx(t, d, PortForward)
			defer hc.Close()
			gc, err := pl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer gc.Close()
			writer, closing := hc, gc
			if closer == "host" {
				writer, closing = gc, hc
			}
			werr := make(chan error, 1)
			go func() {
				buf := make([]byte, 16<<10)
				for {
					if _, err := writer.Write(buf); err != nil {
						werr <- err
						return
					}
				}
			}()
			if _, err := io.ReadFull(closing, make([]byte, 100<<10)); err != nil {
				t.Fatal(err)
			}
			closing.Close()
			select {
			case err := <-werr:
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("writer got %v, want ECONNRESET", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("writer never noticed the close")
			}
			if _, err := writer.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("read after reset: got %v, want ECONNRESET", err)
			}
			// The session is fine.
			checkEcho(t, d, 1, 1000)
		})
	}
}

// TestSerialCloseNoReset: a peer that reads its response after our close
// must get it in full, with EOF, not a reset.
func TestSerialCloseNoReset(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	l := startGuest(t, f, tm)
	pl, err := l.ListenPort(PortForward)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := pl.Accept()
		if err != nil {
			return
		}
		var b [4]byte
		io.ReadFull(c, b[:])
		c.Write(randBytes(9, 500<<10))
		c.Close() // before the host read anything, and without reading its EOF
	}()
	d := startHost(t, f.pipeDialer(false), tm)
	c := dialCtx(t, d, PortForward)
	defer c.Close()
	c.Write([]byte("ping"))
	c.(halfCloser).CloseWrite()
	time.Sleep(100 * time.Millisecond)
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	if string(got) != string(randBytes(9, 500<<10)) {
		t.Errorf("response differs (%d bytes)", len(got))
	}
}

func TestSerialCloseUnblocks(t *testing.T) {
	c, gc := serialStreamPair(t)
	rerr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		rerr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-rerr:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked Read after Close: got %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
	// The guest sees EOF: the host closed without unread data.
	gc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := gc.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("guest read after host close: got %v, want EOF", err)
	}
}

// TestSerialCloseDuringSetReadDeadline: Proxy may close a stream while the
// other copy sets a read deadline on it. A deadline that lands after
// Close would replace Close's wait for the peer's FIN (2 minutes) with its
// own, and the host would reset a peer that simply had not closed yet.
func TestSerialCloseDuringSetReadDeadline(t *testing.T) {
	c, gc := serialStreamPair(t)

	// Hold a SetReadDeadline between its check and its set while Close runs.
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookSetReadDeadline = func() { once.Do(func() { close(held); <-release }) }
	t.Cleanup(func() { testHookSetReadDeadline = nil })
	setDone := make(chan struct{})
	go func() {
		defer close(setDone)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}()
	<-held
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.Close()
	}()
	time.Sleep(50 * time.Millisecond) // Close runs, if it can
	close(release)
	<-setDone
	<-closed

	gc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := gc.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("guest read after host close: got %v, want EOF", err)
	}
	// The host waits for the guest's FIN now; it must not reset the
	// guest once the 100 ms deadline has passed.
	time.Sleep(400 * time.Millisecond)
	if _, err := gc.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("guest read 400 ms after host close: got %v, want EOF (no reset)", err)
	}
}

func TestSerialListenerPorts(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	l := startGuest(t, f, tm)
	if _, err := l.ListenPort(PortControl); err == nil {
		t.Error("second ListenPort on the same port succeeded")
	}
	if _, err := l.ListenPort(0); err == nil {
		t.Error("ListenPort(0) succeeded")
	}
	pl, err := l.ListenPort(PortDocker)
	if err != nil {
		t.Fatal(err)
	}
	if got := pl.Addr().String(); got != "guest:2375" {
		t.Errorf("Addr() = %q", got)
	}
	d := startHost(t, f.pipeDialer(false), tm)
	if _, err := d.DialPort(context.Background(), 0); err == nil {
		t.Error("DialPort(0) succeeded")
	}
	pl.Close()
	if _, err := pl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	if _, err := d.DialPort(context.Background(), PortDocker); !errors.Is(err, ErrNotListening) {
		t.Errorf("DialPort to a closed port: got %v", err)
	}
	// The port can be listened on again.
	pl, err = l.ListenPort(PortDocker)
	if err != nil {
		t.Fatal(err)
	}
	go serveEcho(pl)
	c := dialCtx(t, d, PortDocker)
	defer c.Close()
	if err := echoRoundTrip(c, 1, 100); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := l.ListenPort(4000); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ListenPort after Close: %v", err)
	}
}

func TestSerialDialerClose(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	startGuest(t, f, tm)
	d := newSerialDialer(f.pipeDialer(false), testLogger(t), tm)
	c := dialCtx(t, d, PortControl)
	d.Close()
	if _, err := d.DialPort(context.Background(), PortControl); !errors.Is(err, net.ErrClosed) {
		t.Errorf("DialPort after Close: got %v, want net.ErrClosed", err)
	}
	if err := d.Ready(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Ready after Close: got %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrSessionLost) {
		t.Errorf("stream read after dialer Close: got %v, want ErrSessionLost", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, ErrSessionLost) {
		t.Errorf("stream write after dialer Close: got %v, want ErrSessionLost", err)
	}
}

// TestSerialOverUnixSocket runs the host side over a real unix socket, as
// QEMU's socket chardev provides it.
func TestSerialOverUnixSocket(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	sock := filepath.Join(t.TempDir(), "serial.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.attach(c)
		}
	}()
	startGuest(t, f, tm)
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	d := startHost(t, dial, tm)
	checkEcho(t, d, 8, 100<<10)

	// Drop the chardev connection from QEMU's side; the dialer redials.
	f.dropHost()
	checkEcho(t, d, 2, 10<<10)
}

// TestSerialNoGoroutineLeak closes everything after some traffic, resets
// and a resync, and checks that the goroutines are gone.
func TestSerialNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		f := newFakePort()
		tm := fastTiming()
		l := newSerialListener(f.open, testLogger(t), tm)
		defer l.Close()
		pl, err := l.ListenPort(PortControl)
		if err != nil {
			t.Fatal(err)
		}
		go serveEcho(pl)
		d := newSerialDialer(f.pipeDialer(false), testLogger(t), tm)
		defer d.Close()
		checkEcho(t, d, 4, 20<<10)
		c := dialCtx(t, d, PortControl)
		c.Write(make([]byte, 1000))
		time.Sleep(20 * time.Millisecond)
		c.Close() // unread echo: a reset
		f.dropHost()
		checkEcho(t, d, 2, 1000)
		if _, err := d.DialPort(context.Background(), 999); !errors.Is(err, ErrNotListening) {
			t.Errorf("dial unused port: %v", err)
		}
	}()
	waitFor(t, 5*time.Second, "goroutines to exit", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// TestSerialDialEarly: bytes sent with the opening reach the listener as
// the stream's first bytes, ahead of what is written later; a refused
// dial drops them and leaves the session sound.
func TestSerialDialEarly(t *testing.T) {
	f := newFakePort()
	tm := fastTiming()
	startGuest(t, f, tm) // echoes on PortControl
	d := startHost(t, f.pipeDialer(false), tm)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := DialWith(ctx, d, 4321, []byte("lost")); !errors.Is(err, ErrNotListening) {
		t.Fatalf("early dial to an unused port: got %v, want ErrNotListening", err)
	}
	c, err := DialWith(ctx, d, PortControl, []byte("first,"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("then")); err != nil {
		t.Fatal(err)
	}
	c.(halfCloser).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "first,then" {
		t.Fatalf("echo %q, want %q", got, "first,then")
	}
	// First bytes larger than a frame go out in several.
	big := randBytes(4, 2*maxFrameBody+7)
	c2, err := DialWith(ctx, d, PortControl, big)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.(halfCloser).CloseWrite()
	if got, err := io.ReadAll(c2); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("echo of %d early bytes: %d bytes, %v", len(big), len(got), err)
	}
	checkEcho(t, d, 2, 1000)
}

// writeSizes records the size of each write to a conn.
type writeSizes struct {
	net.Conn
	mu    sync.Mutex
	sizes []int
}

func (w *writeSizes) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.sizes = append(w.sizes, len(b))
	w.mu.Unlock()
	return w.Conn.Write(b)
}

// TestWriteFramesBound: a stream's writes, the first bytes of an early
// dial among them, go out in yamux data frames no larger than
// maxFrameBody, which the resync's flush is sized for.
func TestWriteFramesBound(t *testing.T) {
	a, b := net.Pipe()
	rec := &writeSizes{Conn: a}
	cs, ss := yamuxSessions(t, rec, b)
	st, err := cs.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	want := randBytes(3, 3*maxFrameBody+100)
	got := make(chan []byte, 1)
	go func() {
		s, err := ss.AcceptStream()
		if err != nil {
			got <- nil
			return
		}
		p, _ := io.ReadAll(s)
		got <- p
	}()
	if n, err := writeFrames(st, want); err != nil || n != len(want) {
		t.Fatalf("writeFrames: %d, %v", n, err)
	}
	st.Close()
	if p := <-got; !bytes.Equal(p, want) {
		t.Fatalf("the peer read %d bytes, want the %d written", len(p), len(want))
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, n := range rec.sizes {
		if n > maxFrameBody {
			t.Fatalf("a write of %d bytes went out, over maxFrameBody (%d)", n, maxFrameBody)
		}
	}
}
