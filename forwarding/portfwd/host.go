package portfwd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/berthvm/berth/forwarding/transport"
)

// Options tune a Forwarder. Zero values take the defaults.
type Options struct {
	// BindAll makes wildcard publish addresses listen on every host
	// interface instead of loopback only (see HostAddrs).
	BindAll bool
	// UDPIdleTimeout ends a UDP client's stream after this long without a
	// datagram either way. Default 90s, as Docker's userland proxy.
	UDPIdleTimeout time.Duration
	// RetryInterval is how often a port that could not be opened is
	// tried again (its holder may have gone). Default 5s.
	RetryInterval time.Duration
	// DialTimeout bounds opening a stream to the guest. Default 10s.
	DialTimeout time.Duration
	// OnChange is called, never concurrently and without locks held,
	// after the forwards or their state changed. List tells what is now.
	OnChange func()
	// Log receives the forwarder's log; nil discards it.
	Log *slog.Logger
}

// Forward is the state of one Port.
type Forward struct {
	Port
	// Listen holds the host addresses it listens on; empty while it
	// cannot listen.
	Listen []string `json:"listen,omitempty"`
	// Error says why it cannot listen.
	Error string `json:"error,omitempty"`
}

// Forwarder is the host side: it listens on the host for each Port it is
// given and carries each connection to the guest over guest port 1025.
// It is safe for concurrent use.
type Forwarder struct {
	d   transport.Dialer
	opt Options
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	fwds   map[Port]*forward
	closed bool

	changed chan struct{} // a pending OnChange; buffered 1
}

// forward is one Port's listeners.
type forward struct {
	port   Port
	target netip.AddrPort
	ctx    context.Context // ends when the forward is removed
	cancel context.CancelFunc

	// Under Forwarder.mu:
	closers []io.Closer // open listeners
	listen  []string
	err     error
}

// NewForwarder returns a forwarder that reaches the guest through d.
func NewForwarder(d transport.Dialer, opt Options) *Forwarder {
	if opt.UDPIdleTimeout <= 0 {
		opt.UDPIdleTimeout = 90 * time.Second
	}
	if opt.RetryInterval <= 0 {
		opt.RetryInterval = 5 * time.Second
	}
	if opt.DialTimeout <= 0 {
		opt.DialTimeout = 10 * time.Second
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forwarder{
		d: d, opt: opt, log: log,
		ctx: ctx, cancel: cancel,
		fwds:    make(map[Port]*forward),
		changed: make(chan struct{}, 1),
	}
	f.wg.Add(2)
	go f.retryLoop()
	go f.notifyLoop()
	return f
}

// notify schedules an OnChange call.
func (f *Forwarder) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// notifyLoop calls OnChange on its own goroutine, so callers of Add and
// Remove never wait for it and calls never overlap.
func (f *Forwarder) notifyLoop() {
	defer f.wg.Done()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.changed:
			if f.opt.OnChange != nil {
				f.opt.OnChange()
			}
		}
	}
}

// Add starts forwarding p. Adding a port that is already forwarded does
// nothing. A host port that cannot be opened is not fatal: the forward is
// kept, reported by List with its error, and tried again every
// RetryInterval; Add returns that error for the caller to log.
func (f *Forwarder) Add(p Port) error {
	if p.HostIP == "" {
		p.HostIP = "0.0.0.0"
	}
	if err := p.Validate(); err != nil {
		return err
	}
	target, _ := p.target()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("forwarding %s: %w", p, net.ErrClosed)
	}
	if fw := f.fwds[p]; fw != nil {
		return fw.err
	}
	ctx, cancel := context.WithCancel(f.ctx)
	fw := &forward{port: p, target: target, ctx: ctx, cancel: cancel}
	f.fwds[p] = fw
	f.open(fw)
	f.notify()
	if fw.err != nil {
		f.log.Warn("cannot forward a port yet", "port", p.String(), "err", fw.err)
	} else {
		f.log.Info("forwarding", "port", p.String(), "listen", fw.listen)
	}
	return fw.err
}

// Remove stops forwarding p and reports whether it was forwarded.
// Connections already made are left to finish; UDP clients are cut.
func (f *Forwarder) Remove(p Port) bool {
	if p.HostIP == "" {
		p.HostIP = "0.0.0.0"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fw := f.fwds[p]
	if fw == nil {
		return false
	}
	delete(f.fwds, p)
	fw.close()
	fw.cancel()
	f.notify()
	f.log.Info("stopped forwarding", "port", p.String())
	return true
}

// Sync makes the forwarded set exactly ps: ports not in ps are removed,
// new ones added, and ports in both keep their listeners. It returns the
// errors of the ports that could not be opened.
func (f *Forwarder) Sync(ps []Port) error {
	want := make(map[Port]bool, len(ps))
	for _, p := range ps {
		if p.HostIP == "" {
			p.HostIP = "0.0.0.0"
		}
		want[p] = true
	}
	f.mu.Lock()
	var stale []Port
	for p := range f.fwds {
		if !want[p] {
			stale = append(stale, p)
		}
	}
	f.mu.Unlock()
	for _, p := range stale {
		f.Remove(p)
	}
	var errs []error
	for p := range want {
		if err := f.Add(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// List returns every forward, sorted by protocol and host port.
func (f *Forwarder) List() []Forward {
	f.mu.Lock()
	out := make([]Forward, 0, len(f.fwds))
	for _, fw := range f.fwds {
		fo := Forward{Port: fw.port, Listen: slices.Clone(fw.listen)}
		if fw.err != nil {
			fo.Error = fw.err.Error()
		}
		out = append(out, fo)
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b Forward) int {
		return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.HostPort, b.HostPort),
			cmp.Compare(a.HostIP, b.HostIP), cmp.Compare(a.GuestIP, b.GuestIP), cmp.Compare(a.GuestPort, b.GuestPort))
	})
	return out
}

// Close stops every forward and cuts every connection.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	for p, fw := range f.fwds {
		fw.close()
		delete(f.fwds, p)
	}
	f.mu.Unlock()
	f.cancel()
	f.wg.Wait()
	return nil
}

// retryLoop reopens forwards whose host ports could not be opened.
func (f *Forwarder) retryLoop() {
	defer f.wg.Done()
	tick := time.NewTicker(f.opt.RetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-tick.C:
		}
		f.mu.Lock()
		changed := false
		for _, fw := range f.fwds {
			if fw.err == nil {
				continue
			}
			old := fw.err.Error()
			f.open(fw)
			switch {
			case fw.err == nil:
				f.log.Info("forwarding", "port", fw.port.String(), "listen", fw.listen)
				changed = true
			case fw.err.Error() != old:
				changed = true
			}
		}
		f.mu.Unlock()
		if changed {
			f.notify()
		}
	}
}

// open listens on every host address of fw, all or none. f.mu is held.
func (f *Forwarder) open(fw *forward) {
	fw.err = nil
	var lc net.ListenConfig
	var closers []io.Closer
	var listen []string
	fail := func(err error) {
		for _, c := range closers {
			c.Close()
		}
		fw.err = err
	}
	for _, ha := range HostAddrs(fw.port, f.opt.BindAll) {
		switch fw.port.Proto {
		case TCP:
			ln, err := lc.Listen(f.ctx, "tcp", ha.Addr)
			if err != nil {
				if ha.Optional && isAddrAbsent(err) {
					continue
				}
				fail(&ListenError{Proto: TCP, Addr: ha.Addr, Err: err})
				return
			}
			closers = append(closers, ln)
			listen = append(listen, ln.Addr().String())
		case UDP:
			pc, err := lc.ListenPacket(f.ctx, "udp", ha.Addr)
			if err != nil {
				if ha.Optional && isAddrAbsent(err) {
					continue
				}
				fail(&ListenError{Proto: UDP, Addr: ha.Addr, Err: err})
				return
			}
			closers = append(closers, pc)
			listen = append(listen, pc.LocalAddr().String())
		}
	}
	fw.closers, fw.listen = closers, listen
	for _, c := range closers {
		f.wg.Add(1)
		switch c := c.(type) {
		case net.Listener:
			go f.acceptTCP(fw, c)
		case net.PacketConn:
			go f.serveUDP(fw, c)
		}
	}
}

// close closes fw's listeners. Forwarder.mu is held.
func (fw *forward) close() {
	for _, c := range fw.closers {
		c.Close()
	}
	fw.closers, fw.listen = nil, nil
}

// openStream opens a stream to the guest for req and waits for the
// guest's answer.
func (f *Forwarder) openStream(ctx context.Context, req request) (net.Conn, error) {
	hdr, err := req.encode()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.opt.DialTimeout)
	defer cancel()
	// The request rides with the stream's opening: one round trip to the
	// guest for both handshakes where the transport has one.
	g, err := transport.DialWith(ctx, f.d, transport.PortForward, hdr)
	if err != nil {
		return nil, fmt.Errorf("opening a stream to the guest: %w", err)
	}
	// The answer may take up to the dial timeout; the forward or the
	// forwarder going away ends the wait sooner.
	if dl, ok := ctx.Deadline(); ok {
		g.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { g.SetDeadline(time.Unix(1, 0)) })
	err = readStatus(g)
	if !stop() {
		g.Close()
		return nil, fmt.Errorf("waiting for the guest's answer: %w", context.Cause(ctx))
	}
	if err != nil {
		g.Close()
		return nil, err
	}
	g.SetDeadline(time.Time{})
	return g, nil
}

func (f *Forwarder) acceptTCP(fw *forward, ln net.Listener) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || fw.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: wait, do not spin.
			f.log.Warn("accepting a forwarded connection", "port", fw.port.String(), "err", err)
			select {
			case <-fw.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		go f.serveTCP(fw, c)
	}
}

func (f *Forwarder) serveTCP(fw *forward, c net.Conn) {
	g, err := f.openStream(f.ctx, request{Proto: TCP, Addr: fw.target})
	if err != nil {
		f.log.Debug("forwarded connection refused", "port", fw.port.String(), "client", c.RemoteAddr().String(), "err", err)
		// A reset, as the client would get from a closed port.
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
		return
	}
	transport.Proxy(f.ctx, c, g)
}

// serveUDP reads datagrams from one host socket and hands each to its
// client's flow, making flows as clients appear.
func (f *Forwarder) serveUDP(fw *forward, pc net.PacketConn) {
	defer f.wg.Done()
	var mu sync.Mutex
	flows := make(map[string]*udpFlow)
	defer func() {
		mu.Lock()
		for _, fl := range flows {
			fl.stop()
		}
		mu.Unlock()
	}()
	buf := make([]byte, maxDatagram)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || fw.ctx.Err() != nil {
				return
			}
			if isPortUnreachable(err) {
				continue // an ICMP error about an earlier reply
			}
			f.log.Warn("reading forwarded datagrams", "port", fw.port.String(), "err", err)
			select {
			case <-fw.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		key := addr.String()
		mu.Lock()
		fl := flows[key]
		if fl == nil || fl.ctx.Err() != nil { // new client, or its flow just ended
			fl = newUDPFlow(fw.ctx, addr)
			flows[key] = fl
			go func() {
				f.runUDPFlow(fw, pc, fl)
				mu.Lock()
				if flows[key] == fl {
					delete(flows, key)
				}
				mu.Unlock()
			}()
		}
		mu.Unlock()
		fl.enqueue(append([]byte(nil), buf[:n]...))
	}
}

// udpFlow is one UDP client's stream to the guest.
type udpFlow struct {
	client net.Addr
	queue  chan []byte
	ctx    context.Context
	stop   context.CancelFunc
	last   time.Time // last datagram either way; under mu
	mu     sync.Mutex
}

// udpQueue is how many datagrams a flow holds while its stream opens or
// stalls; more are dropped, as a full socket buffer would.
const udpQueue = 256

func newUDPFlow(parent context.Context, client net.Addr) *udpFlow {
	ctx, cancel := context.WithCancel(parent)
	return &udpFlow{client: client, queue: make(chan []byte, udpQueue), ctx: ctx, stop: cancel, last: time.Now()}
}

func (fl *udpFlow) enqueue(p []byte) {
	select {
	case fl.queue <- p:
	default:
	}
}

func (fl *udpFlow) touch() {
	fl.mu.Lock()
	fl.last = time.Now()
	fl.mu.Unlock()
}

func (fl *udpFlow) idleFor() time.Duration {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return time.Since(fl.last)
}

func (f *Forwarder) runUDPFlow(fw *forward, pc net.PacketConn, fl *udpFlow) {
	defer fl.stop()
	g, err := f.openStream(fl.ctx, request{Proto: UDP, Addr: fw.target})
	if err != nil {
		f.log.Debug("forwarded datagrams refused", "port", fw.port.String(), "client", fl.client.String(), "err", err)
		return
	}
	defer g.Close()
	stop := context.AfterFunc(fl.ctx, func() { g.Close() })
	defer stop()

	go func() {
		defer fl.stop()
		buf := make([]byte, maxDatagram)
		for {
			p, err := readFrame(g, buf)
			if err != nil {
				return
			}
			fl.touch()
			if _, err := pc.WriteTo(p, fl.client); err != nil && !isPortUnreachable(err) {
				return
			}
		}
	}()

	idle := f.opt.UDPIdleTimeout
	check := time.NewTicker(max(idle/4, 10*time.Millisecond))
	defer check.Stop()
	var out []byte
	for {
		select {
		case <-fl.ctx.Done():
			return
		case p := <-fl.queue:
			fl.touch()
			if out, err = writeFrame(g, out, p); err != nil {
				return
			}
		case <-check.C:
			if fl.idleFor() >= idle {
				return
			}
		}
	}
}
