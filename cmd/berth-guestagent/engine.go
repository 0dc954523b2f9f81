//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/guestagent/control"
	"github.com/berthvm/berth/guestagent/daemon"
	"github.com/berthvm/berth/guestagent/dockerapi"
	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/guestagent/netctl"
	"github.com/berthvm/berth/guestagent/reaper"
	"github.com/berthvm/berth/guestagent/shim"
	"github.com/berthvm/berth/guestagent/volumes"
	"github.com/berthvm/berth/images"
)

// engineConfig is what the container engine is started with, in the VM
// or natively.
type engineConfig struct {
	root   string // state root: images/, volumes/, net/, containers/ under it
	reaper *reaper.Reaper
	// bridge, subnet and uplink configure container networking.
	bridge, subnet, uplink string
	hostGatewayIP          string
	// onPorts receives published port changes (the control service's
	// event broker).
	onPorts func(added, removed []netctl.PublishedPort)
	// userns runs containers in a private user namespace by default.
	userns bool
	log    *slog.Logger
}

// idleTrim is how long the API must be quiet before the engine gives its
// free memory back to the OS.
const idleTrim = 3 * time.Second

// containerEngine is the running engine: the stores, networking, the
// daemon and the Docker API handler over them.
type containerEngine struct {
	log    *slog.Logger
	images *images.Store
	vols   *volumes.Store
	net    *netctl.Manager // nil when networking could not be set up
	daemon *daemon.Daemon
	api    *dockerapi.Server
	// handler is api, giving memory back to the OS when idle.
	handler http.Handler

	mu        sync.Mutex
	listeners []net.Listener
	serving   sync.WaitGroup
}

// startEngine opens the stores, sets up container networking (a failure
// there leaves --network none and host working), and starts the daemon,
// which reconnects to the containers that survived.
func startEngine(ctx context.Context, cfg engineConfig) (_ *containerEngine, retErr error) {
	log := cfg.log
	e := &containerEngine{log: log}
	defer func() {
		if retErr != nil {
			e.closeStores()
		}
	}()
	var err error
	if e.images, err = images.Open(ctx, images.Options{Root: filepath.Join(cfg.root, "images"), Logger: log.With("component", "images")}); err != nil {
		return nil, fmt.Errorf("opening the image store: %w", err)
	}
	if e.vols, err = volumes.Open(filepath.Join(cfg.root, "volumes"), log.With("component", "volumes")); err != nil {
		return nil, fmt.Errorf("opening the volume store: %w", err)
	}
	e.net, err = netctl.New(ctx, netctl.Config{
		StateDir: filepath.Join(cfg.root, "net"),
		Bridge:   cfg.bridge,
		Subnet:   cfg.subnet,
		Uplink:   cfg.uplink,
		OnPorts:  cfg.onPorts,
		Log:      log.With("component", "netctl"),
	})
	if err != nil {
		log.Error("container networking is unavailable: only --network none and host work", "err", err)
		e.net = nil
	}
	gateway := cfg.hostGatewayIP
	if gateway == "" && e.net != nil {
		// Natively the bridge's own address is the host, as dockerd
		// maps host-gateway to docker0's.
		if p, err := netip.ParsePrefix(orDefault(cfg.subnet, netctl.DefaultSubnet)); err == nil {
			gateway = p.Masked().Addr().Next().String()
		}
	}
	events := engine.NewEvents(engine.EventsOptions{})
	dcfg := daemon.Config{
		Root:          filepath.Join(cfg.root, "containers"),
		Images:        e.images,
		Volumes:       e.vols,
		Shims:         shim.NewManager(shim.Options{Reaper: cfg.reaper, Log: log.With("component", "shim")}),
		Events:        events,
		HostGatewayIP: gateway,
		UsernsRemap:   cfg.userns,
		Log:           log.With("component", "daemon"),
	}
	if e.net != nil {
		dcfg.Net = e.net
	}
	if e.daemon, err = daemon.New(ctx, dcfg); err != nil {
		return nil, err
	}
	hostname, _ := os.Hostname()
	e.api = dockerapi.New(dockerapi.Config{
		Images:     e.images,
		Containers: e.daemon,
		Volumes:    e.vols,
		Events:     events,
		Name:       hostname,
		RootDir:    cfg.root,
		Version:    control.Version,
		Log:        log.With("component", "dockerapi"),
		// The bridge docker network inspect shows.
		BridgeSubnet:    orDefault(cfg.subnet, netctl.DefaultSubnet),
		BridgeInterface: orDefault(cfg.bridge, netctl.DefaultBridge),
	})
	e.handler = dockerapi.TrimWhenIdle(ctx, e.api, idleTrim)
	return e, nil
}

// serve answers the Docker API on l until ctx ends or close.
func (e *containerEngine) serve(ctx context.Context, l net.Listener) {
	e.mu.Lock()
	e.listeners = append(e.listeners, l)
	e.serving.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.serving.Done()
		if err := dockerapi.Serve(ctx, l, e.handler); err != nil && !errors.Is(err, net.ErrClosed) {
			e.log.Error("docker api", "addr", l.Addr().String(), "err", err)
		}
	}()
}

// portsSnapshot is the control service's snapshot of published ports for
// a new events subscriber.
func (e *containerEngine) portsSnapshot() *api.Event {
	if e == nil || e.net == nil {
		return netctl.SnapshotEvent(nil)
	}
	return netctl.SnapshotEvent(e.net.Ports())
}

// close stops serving and leaves the containers running (native mode:
// the next engine reconnects to them, as dockerd's live-restore).
func (e *containerEngine) close() error {
	e.closeListeners()
	err := e.daemon.Close()
	return errors.Join(err, e.closeStores())
}

// shutdown stops serving, stops the containers (their stop signal, then
// SIGKILL when ctx ends) and closes the stores: the VM powers off next.
func (e *containerEngine) shutdown(ctx context.Context) error {
	e.closeListeners()
	err := e.daemon.Shutdown(ctx)
	err = errors.Join(err, e.daemon.Close())
	return errors.Join(err, e.closeStores())
}

func (e *containerEngine) closeListeners() {
	e.mu.Lock()
	ls := e.listeners
	e.listeners = nil
	e.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	done := make(chan struct{})
	go func() { e.serving.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

func (e *containerEngine) closeStores() error {
	var errs []error
	if e.net != nil {
		errs = append(errs, e.net.Close())
	}
	if e.images != nil {
		errs = append(errs, e.images.Close())
	}
	return errors.Join(errs...)
}

// listenUnix listens on a unix socket at path with the given mode,
// replacing a stale socket file.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("listening on %s: another process is serving there", path)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("setting the mode of %s: %w", path, err)
	}
	return l, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
