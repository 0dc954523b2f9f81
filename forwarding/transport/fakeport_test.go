package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// fakePort simulates one virtio-serial port as the Linux guest driver and
// QEMU's socket chardev (server=on, one client at a time) show it:
//
//   - guest read returns buffered host data first; with no host connected and
//     nothing buffered it returns EOF at once; otherwise it blocks.
//   - guest write blocks while no host is connected, then goes to whichever
//     host connects; bytes in flight when a host vanishes are lost.
//   - one guest open at a time; closing the guest file discards unread data
//     (unless keepStale) and unblocks a pending write.
//   - QEMU reads the host socket even while the guest has the port closed;
//     that data waits for the guest's next open, as QEMU would hold it.
type fakePort struct {
	mu   sync.Mutex
	cond *sync.Cond

	toGuest   []byte   // host data the guest has not read
	host      net.Conn // QEMU's end of the current host connection
	guest     *fakeGuestFile
	keepStale bool // keep unread data across guest close (stale bytes)
	opens     int

	writeMu sync.Mutex // one guest write at a time, like the driver
}

const fakeBufLimit = 1 << 20

func newFakePort() *fakePort {
	f := &fakePort{}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// attach makes c, QEMU's end of a host connection, the host once the
// previous one is gone.
func (f *fakePort) attach(c net.Conn) {
	f.mu.Lock()
	for f.host != nil {
		f.cond.Wait()
	}
	f.host = c
	f.cond.Broadcast()
	f.mu.Unlock()
	go f.pump(c)
}

// replaceHost swaps in c without the guest ever seeing the port
// disconnected: the race where a new host agent is back before the guest's
// reader runs.
func (f *fakePort) replaceHost(c net.Conn) {
	f.mu.Lock()
	old := f.host
	f.host = c
	f.cond.Broadcast()
	f.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go f.pump(c)
}

// dropHost disconnects the current host, as if the host agent was killed.
func (f *fakePort) dropHost() {
	f.mu.Lock()
	h := f.host
	f.mu.Unlock()
	if h != nil {
		h.Close()
	}
}

// inject puts bytes in the guest's receive buffer, as leftovers would be.
func (f *fakePort) inject(b []byte) {
	f.mu.Lock()
	f.toGuest = append(f.toGuest, b...)
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (f *fakePort) detach(c net.Conn) {
	f.mu.Lock()
	if f.host == c {
		f.host = nil
		f.cond.Broadcast()
	}
	f.mu.Unlock()
	c.Close()
}

// pump moves host bytes into the guest's receive buffer.
func (f *fakePort) pump(c net.Conn) {
	defer f.detach(c)
	buf := make([]byte, 32<<10)
	for {
		f.mu.Lock()
		for f.host == c && len(f.toGuest) >= fakeBufLimit {
			f.cond.Wait()
		}
		current := f.host == c
		f.mu.Unlock()
		if !current {
			return
		}
		n, err := c.Read(buf)
		f.mu.Lock()
		if n > 0 && f.host == c {
			f.toGuest = append(f.toGuest, buf[:n]...)
			f.cond.Broadcast()
		}
		f.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// pipeDialer returns a host dial function over in-memory pipes. With
// replace, each new connection replaces the previous one without a
// disconnect the guest could see.
func (f *fakePort) pipeDialer(replace bool) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		hostEnd, qemuEnd := net.Pipe()
		if replace {
			f.replaceHost(qemuEnd)
		} else {
			go f.attach(qemuEnd)
		}
		return hostEnd, nil
	}
}

// open is the guest's open of the port device.
func (f *fakePort) open() (io.ReadWriteCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.guest != nil {
		return nil, errors.New("open fake port: device or resource busy")
	}
	g := &fakeGuestFile{f: f}
	f.guest = g
	f.opens++
	return g, nil
}

func (f *fakePort) openCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens
}

type fakeGuestFile struct {
	f      *fakePort
	closed bool // guarded by f.mu
}

func (g *fakeGuestFile) Read(b []byte) (int, error) {
	f := g.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		switch {
		case g.closed:
			return 0, os.ErrClosed
		case len(f.toGuest) > 0:
			n := copy(b, f.toGuest)
			f.toGuest = f.toGuest[n:]
			f.cond.Broadcast()
			return n, nil
		case f.host == nil:
			return 0, io.EOF
		}
		f.cond.Wait()
	}
}

func (g *fakeGuestFile) Write(b []byte) (int, error) {
	f := g.f
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	f.mu.Lock()
	for !g.closed && f.host == nil {
		f.cond.Wait()
	}
	closed, h := g.closed, f.host
	f.mu.Unlock()
	if closed {
		return 0, os.ErrClosed
	}
	n, err := h.Write(b)
	if err != nil {
		f.mu.Lock()
		closed = g.closed
		f.mu.Unlock()
		if closed {
			return n, os.ErrClosed
		}
		// The host went away mid-write: the bytes are lost, not an error.
		return len(b), nil
	}
	return n, nil
}

func (g *fakeGuestFile) Close() error {
	f := g.f
	f.mu.Lock()
	if g.closed {
		f.mu.Unlock()
		return nil
	}
	g.closed = true
	f.guest = nil
	if !f.keepStale {
		f.toGuest = nil
	}
	h := f.host
	f.cond.Broadcast()
	f.mu.Unlock()
	if h != nil {
		// Unblock a write stuck on a host that does not read.
		h.SetWriteDeadline(time.Unix(1, 0))
		f.writeMu.Lock()
		h.SetWriteDeadline(time.Time{})
		f.writeMu.Unlock()
	}
	return nil
}
