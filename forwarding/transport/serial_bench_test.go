package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// benchConnPair returns two connected ends: "pipe" is net.Pipe, "unix" a
// unix socket pair (as QEMU's chardev would be on the host side).
func benchConnPair(b *testing.B, kind string) (net.Conn, net.Conn) {
	b.Helper()
	if kind == "pipe" {
		return net.Pipe()
	}
	l, err := net.Listen("unix", filepath.Join(b.TempDir(), "s"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		ch <- c
	}()
	a, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	return a, <-ch
}

// BenchmarkSerialThroughput measures host→guest bytes per second through
// the serial transport, for 1 and 8 parallel streams, at several yamux
// window sizes, next to the raw link as the floor.
//
//	go test -run XXX -bench SerialThroughput ./forwarding/transport/
func BenchmarkSerialThroughput(b *testing.B) {
	for _, kind := range []string{"pipe", "unix"} {
		b.Run(kind+"/raw", func(b *testing.B) {
			host, guest := benchConnPair(b, kind)
			defer host.Close()
			go io.Copy(io.Discard, guest)
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			b.ResetTimer()
			for range b.N {
				if _, err := host.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, window := range []uint32{256 << 10, 1 << 20, 4 << 20} {
			for _, streams := range []int{1, 8} {
				name := fmt.Sprintf("%s/window=%dK/streams=%d", kind, window>>10, streams)
				b.Run(name, func(b *testing.B) { benchSerial(b, kind, window, streams) })
			}
		}
	}
}

func benchSerial(b *testing.B, kind string, window uint32, streams int) {
	hostEnd, guestEnd := benchConnPair(b, kind)
	tm := defaultSerialTiming()
	tm.windowSize = window
	log := slog.New(slog.DiscardHandler)

	var opened atomic.Bool
	l := newSerialListener(func() (io.ReadWriteCloser, error) {
		if opened.Swap(true) {
			return nil, errors.New("benchmark link is single-use")
		}
		return guestEnd, nil
	}, log, tm)
	defer l.Close()
	pl, err := l.ListenPort(PortForward)
	if err != nil {
		b.Fatal(err)
	}
	var sinks sync.WaitGroup
	go func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer sinks.Done()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	var dialed atomic.Bool
	d := newSerialDialer(func(ctx context.Context) (net.Conn, error) {
		if dialed.Swap(true) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return hostEnd, nil
	}, log, tm)
	defer d.Close()

	conns := make([]net.Conn, streams)
	for i := range conns {
		sinks.Add(1)
		c, err := d.DialPort(context.Background(), PortForward)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	var next atomic.Int64
	var writers sync.WaitGroup
	for _, c := range conns {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := c.Write(buf); err != nil {
					b.Error(err)
					return
				}
			}
			c.(halfCloser).CloseWrite()
		}()
	}
	writers.Wait()
	sinks.Wait() // every byte has reached the guest's reader
	b.StopTimer()
	for _, c := range conns {
		c.Close()
	}
}
