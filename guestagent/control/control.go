//go:build unix

// Package control serves the guest agent's gRPC control service,
// berth.agent.v1.Agent (guest port 1024): Info, Exec, Shutdown, SyncTime
// and Events. It runs the same as PID 1 in the VM and as a process in
// native mode; Config says which.
//
// It does not pick or create the listener (the transport does), power the
// machine off (the callback in Config does) or produce events (the engine
// and the port watcher Publish them on the Broker).
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/guestagent/reaper"
)

// Version is the agent's version, set at link time with
// -ldflags "-X github.com/berthvm/berth/guestagent/control.Version=v1.2.3".
var Version = "dev"

// Config is what the service needs from its surroundings.
type Config struct {
	// Reaper starts and waits for every process Exec runs. Required.
	Reaper *reaper.Reaper
	// StateDir is the directory whose filesystem Info reports as the data
	// disk: /var/lib/berth in the VM, --root in native mode.
	StateDir string
	// Transport names the transport for Info: serial, vsock or unix.
	Transport string
	// Native is set when the agent runs as a process on a host. The
	// clock is then never set.
	Native bool
	// BootTime overrides the boot time Info reports; zero means ask the
	// kernel.
	BootTime time.Time
	// Clock is the guest clock SyncTime compares and sets; nil means the
	// system clock.
	Clock Clock
	// Shutdown is called, on its own goroutine, once a Shutdown RPC has
	// been answered. PID 1 powers off there; native mode stops serving.
	// Nil makes Shutdown fail with Unimplemented.
	Shutdown func(reboot bool)
	// Snapshot returns the current state for each new Events subscriber,
	// typically one PortEvent snapshot per source of ports (the engine's
	// published ports, the port watcher's listeners). The service merges
	// every port snapshot it returns into one, which it sends first, so
	// the host replaces its whole set of forwards at once; other events
	// follow as they are. It is called once per subscriber, after the
	// subscription starts, so nothing published meanwhile is lost (it may
	// arrive twice; port events are idempotent). Nil sends no snapshot.
	Snapshot func() []*api.Event
	// Ready, when set, holds every call until it is closed or the call's
	// context ends. PID 1 serves before its boot is done, so that the
	// host's connection and its first request are read while the disk
	// and network come up; the answers wait for them (Info reports the
	// data disk). Nil serves at once.
	Ready <-chan struct{}
	// Log receives the service's log; nil discards it.
	Log *slog.Logger
}

// Server is the control service.
type Server struct {
	api.UnimplementedAgentServer

	cfg    Config
	log    *slog.Logger
	grpc   *grpc.Server
	broker *Broker

	stopOnce sync.Once
}

var _ api.AgentServer = (*Server)(nil)

// New returns the service with its own gRPC server.
func New(cfg Config) (*Server, error) {
	if cfg.Reaper == nil {
		return nil, errors.New("control: Config.Reaper is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	s := &Server{cfg: cfg, log: cfg.Log, broker: NewBroker(defaultEventBuffer)}
	opts := []grpc.ServerOption{grpc.StatsHandler(&shutdownTrigger{s: s})}
	if cfg.Ready != nil {
		opts = append(opts, grpc.UnaryInterceptor(s.waitReadyUnary), grpc.StreamInterceptor(s.waitReadyStream))
	}
	s.grpc = grpc.NewServer(opts...)
	api.RegisterAgentServer(s.grpc, s)
	return s, nil
}

// waitReady blocks until Config.Ready is closed or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	select {
	case <-s.cfg.Ready:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (s *Server) waitReadyUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) waitReadyStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.waitReady(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// Broker is where events for the Events stream are published.
func (s *Server) Broker() *Broker { return s.broker }

// Serve answers on lis until Stop. Several listeners may be served at once.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving control: %w", err)
	}
	return nil
}

// stopGrace caps how long Stop waits for running RPCs: long Exec streams
// (an interactive shell) must not hold up a power-off.
const stopGrace = 3 * time.Second

// Stop ends the Events streams, lets running RPCs finish while ctx (and at
// most stopGrace) allows, then cuts what is left: Exec streams whose
// client is cut off kill their processes.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, stopGrace)
		defer cancel()
		s.broker.Close()
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.grpc.Stop()
			<-done
			err = fmt.Errorf("stopping control service: %w", ctx.Err())
		}
	})
	return err
}

// Shutdown answers, then asks for the power-off through Config.Shutdown
// once the answer is on its way (see shutdownTrigger).
func (s *Server) Shutdown(ctx context.Context, req *api.ShutdownRequest) (*api.ShutdownResponse, error) {
	if s.cfg.Shutdown == nil {
		return nil, status.Error(codes.Unimplemented, "shutdown is not available here")
	}
	tag, ok := ctx.Value(shutdownKey{}).(*shutdownTag)
	if !ok {
		return nil, status.Error(codes.Internal, "shutdown: the RPC was not tagged")
	}
	tag.mu.Lock()
	tag.requested, tag.reboot = true, req.GetReboot()
	tag.mu.Unlock()
	s.log.Info("shutdown requested", "reboot", req.GetReboot())
	return &api.ShutdownResponse{}, nil
}

type shutdownKey struct{}

type shutdownTag struct {
	mu        sync.Mutex
	requested bool
	reboot    bool
}

// shutdownTrigger is a gRPC stats handler. The End event of an RPC comes
// after its response and status were handed to the transport; powering
// off from there (and letting the shutdown hooks stop the server
// gracefully, which flushes connections) is what lets the client see the
// answer instead of a dropped connection.
type shutdownTrigger struct{ s *Server }

func (t *shutdownTrigger) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if info.FullMethodName == api.Agent_Shutdown_FullMethodName {
		return context.WithValue(ctx, shutdownKey{}, &shutdownTag{})
	}
	return ctx
}

func (t *shutdownTrigger) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	end, ok := rs.(*stats.End)
	if !ok {
		return
	}
	tag, ok := ctx.Value(shutdownKey{}).(*shutdownTag)
	if !ok {
		return
	}
	tag.mu.Lock()
	requested, reboot := tag.requested, tag.reboot
	tag.mu.Unlock()
	if requested && end.Error == nil {
		go t.s.cfg.Shutdown(reboot)
	}
}

func (t *shutdownTrigger) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (t *shutdownTrigger) HandleConn(context.Context, stats.ConnStats) {}
