//go:build linux

// Command berth-guestagent is the berth guest agent. In the VM it is PID 1:
// it boots the guest (guestagent/boot) and serves the control service
// (guestagent/control) on the transport the kernel command line names. On
// a Linux host, `serve` runs the same service as a plain process ("native
// mode"). This package only parses flags and wires the parts together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthvm/berth/forwarding/portfwd"
	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/guestagent/boot"
	"github.com/berthvm/berth/guestagent/control"
	"github.com/berthvm/berth/guestagent/netctl"
	"github.com/berthvm/berth/guestagent/portwatch"
	"github.com/berthvm/berth/guestagent/reaper"
)

const usage = `berth-guestagent: the berth guest agent.

In the berth VM this binary is /init (PID 1). It loads the kernel
modules it needs to answer, moves the root off the initramfs, mounts the
kernel filesystems, sets up the network and the data disk from the berth.*
kernel parameters, then serves the gRPC control service (berth.agent.v1)
on guest port 1024 of the transport named by berth.transport (serial:
/dev/virtio-ports/berth.0; vsock). It powers off on the Shutdown RPC, the
ACPI power button, or SIGTERM/SIGINT/SIGUSR2/SIGPWR; SIGUSR1 reboots.
The other kernel modules (netfilter, bridge, overlay...) load once it
serves.

Usage:
  berth-guestagent                 as PID 1: boot the guest and serve
  berth-guestagent init            the same, spelled out (must be PID 1)
  berth-guestagent serve --listen unix:///DIR --root DIR [--debug]
        [--bridge NAME] [--subnet CIDR] [--docker-socket PATH] [--live-restore] [--userns-remap]
                                   native mode: serve the control service on
                                   DIR/1024.sock and the Docker API on
                                   DIR/2375.sock as a process on a Linux host
                                   (as root), with state under --root; Ctrl-C
                                   stops the containers, then the agent
  berth-guestagent version         print the version
  berth-guestagent help            this text

Kernel parameters read in the VM:
  berth.transport=serial|vsock  berth.ip=192.168.127.2/24
  berth.gw=192.168.127.1  berth.dns=192.168.127.1[,...]
  berth.hostname=NAME  berth.debug=1
`

func main() {
	// The kernel hands PID 1 any bare words of its command line as
	// arguments; they mean nothing here.
	if os.Getpid() == 1 {
		runInit()
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "init":
		fmt.Fprintln(os.Stderr, "berth-guestagent init: must run as PID 1 (the VM's init)")
		os.Exit(1)
	case "serve":
		if err := runServe(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "berth-guestagent serve:", err)
			os.Exit(1)
		}
	case "version", "--version", "-version":
		fmt.Printf("berth-guestagent %s (%s, %s/%s)\n", control.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case "help", "-h", "-help", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "berth-guestagent: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}

// runInit is PID 1's life. It never returns: the guest ends in reboot(2),
// because an init that exits panics the kernel.
func runInit() {
	level := new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	log.Info("berth guest agent starting", "version", control.Version)
	ctx := context.Background()

	var sys *boot.System
	defer func() {
		if r := recover(); r != nil {
			fatal(ctx, log, sys, fmt.Errorf("panic: %v\n%s", r, debug.Stack()))
		}
	}()

	// Boot returns with the slow parts (modules, disk, network) still
	// going: the transport comes up meanwhile, and serving waits for
	// Booted.
	sys, err := boot.Boot(ctx, boot.Config{Log: log, Level: level})
	if err != nil {
		fatal(ctx, log, sys, fmt.Errorf("boot: %w", err))
	}
	powerReqs := sys.PowerRequests(ctx)

	name := sys.Cmdline.Transport
	if name == "" {
		name = boot.TransportSerial
		log.Warn("no berth.transport on the kernel command line; using serial")
	}
	tl, err := listener(ctx, log, name, sys)
	if err != nil {
		fatal(ctx, log, sys, err)
	}
	rpcReqs := make(chan boot.PowerRequest, 1)
	eng := new(atomic.Pointer[containerEngine])
	pw := portwatch.New(portwatch.Config{Log: log.With("component", "portwatch")})
	booted := make(chan struct{})
	srv, err := control.New(control.Config{
		Ready:     booted,
		Reaper:    sys.Reaper,
		StateDir:  boot.StateDir,
		Transport: name,
		BootTime:  sys.BootTime,
		Shutdown: func(reboot bool) {
			rpcReqs <- boot.PowerRequest{Reboot: reboot, Why: "Shutdown RPC"}
		},
		Snapshot: func() []*api.Event { return []*api.Event{eng.Load().portsSnapshot(), pw.Snapshot()} },
		Log:      log.With("component", "control"),
	})
	if err != nil {
		fatal(ctx, log, sys, err)
	}
	// Hooks run last-registered first: the service drains (flushing the
	// Shutdown answer) before the transport under it closes.
	sys.OnShutdown("transport", func(context.Context) error { return tl.Close() })
	sys.OnShutdown("control service", srv.Stop)

	// The host may open its stream now; it waits until Serve accepts it.
	lis, err := tl.ListenPort(transport.PortControl)
	if err != nil {
		fatal(ctx, log, sys, fmt.Errorf("listening on the control port: %w", err))
	}
	// Serve now: the host's connection and first request are read while
	// the boot finishes, and the answers wait for it (control.Config.Ready).
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	if err := sys.Booted(ctx); err != nil {
		fatal(ctx, log, sys, err)
	}
	close(booted)
	log.Info("berth guest agent ready", "transport", name, "port", transport.PortControl,
		"since kernel start", time.Since(sys.BootTime).Round(time.Millisecond))
	sys.StartBackground()
	go serveForwarding(ctx, log, tl, srv, pw)
	go runVMEngine(ctx, log, sys, tl, srv, eng)

	var req boot.PowerRequest
	select {
	case req = <-powerReqs:
	case req = <-rpcReqs:
	case err := <-serveErr:
		fatal(ctx, log, sys, fmt.Errorf("control service stopped: %w", err))
	}
	log.Info("power request", "reboot", req.Reboot, "from", req.Why)
	sys.PowerOff(ctx, req.Reboot)
}

type guestListener interface {
	transport.Listener
	Close() error
}

func listener(ctx context.Context, log *slog.Logger, name string, sys *boot.System) (guestListener, error) {
	switch name {
	case boot.TransportVsock:
		// AF_VSOCK exists once the transport module is in.
		if err := sys.WaitTransport(ctx); err != nil {
			log.Error("vsock transport modules", "err", err)
		}
		return transport.NewVsockListener(log), nil
	case boot.TransportSerial:
		// The listener calls open again, with backoff, when it fails; a
		// port that is coming is better waited for here, closely.
		open := func() (io.ReadWriteCloser, error) {
			if err := sys.WaitSerialPort(ctx, transport.SerialGuestPath, 5*time.Second); err != nil {
				return nil, err
			}
			return transport.OpenSerialPort(transport.SerialGuestPath)
		}
		return transport.NewSerialListener(open, log), nil
	default:
		return nil, fmt.Errorf("unknown transport %q", name)
	}
}

// fatal is where PID 1 goes when it cannot do its job. Exiting would panic
// the kernel and lose the message, so it logs loudly, offers a shell on
// the console with berth.debug=1, and otherwise powers off after a delay
// that leaves the message readable in the serial log.
func fatal(ctx context.Context, log *slog.Logger, sys *boot.System, err error) {
	log.Error("FATAL: the guest agent cannot continue", "err", err)
	if sys != nil && sys.Cmdline.Debug {
		if _, serr := os.Stat("/bin/sh"); serr == nil {
			log.Error("berth.debug=1: starting a shell on the console; exit it to power off")
			sh := exec.Command("/bin/sh")
			sh.Stdin, sh.Stdout, sh.Stderr = os.Stdin, os.Stdout, os.Stderr
			sh.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
			if err := sys.Reaper.Start(sh); err == nil {
				_, _ = sys.Reaper.Wait(ctx, sh)
			}
		}
	}
	log.Error("powering off in 10s")
	time.Sleep(10 * time.Second)
	if sys != nil {
		sys.PowerOff(ctx, false)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// nativeSubnet is native mode's default container subnet.
const nativeSubnet = "10.213.0.0/16"

// runServe is native mode.
func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "", "where to serve: unix:///DIR puts one socket per guest port in DIR (control: DIR/1024.sock)")
	root := fs.String("root", "", "state directory (the VM's /var/lib/berth)")
	debugLog := fs.Bool("debug", false, "log at debug level")
	bridge := fs.String("bridge", "berth0", "the containers' bridge interface")
	subnet := fs.String("subnet", nativeSubnet, "the containers' IPv4 subnet (clear of a host docker0's 172.17.0.0/16)")
	dockerSocket := fs.String("docker-socket", "", "also serve the Docker API on this unix socket (mode 0660)")
	usernsRemap := fs.Bool("userns-remap", false, "run containers in a private user namespace by default (--userns=host or --privileged opts one out), as dockerd's userns-remap")
	liveRestore := fs.Bool("live-restore", false, "leave containers running when the agent stops (the next agent reconnects to them), instead of stopping them as dockerd does")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: berth-guestagent serve --listen unix:///DIR --root DIR [--debug] [--bridge NAME] [--subnet CIDR] [--docker-socket PATH] [--live-restore] [--userns-remap]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	dir, ok := strings.CutPrefix(*listen, "unix://")
	if !ok || dir == "" {
		return errors.New("--listen must be unix:///path/to/dir")
	}
	if *root == "" {
		return errors.New("--root is required")
	}
	level := slog.LevelInfo
	if *debugLog {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if os.Geteuid() != 0 {
		log.Warn("not running as root; exec and the engine will be limited")
	}
	if err := os.MkdirAll(*root, 0o711); err != nil {
		return fmt.Errorf("creating the state directory: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Orphans of the processes it starts come back to it, as in the VM.
	if err := reaper.SetSubreaper(); err != nil {
		return err
	}
	rp := reaper.New(log.With("component", "reaper"))
	go rp.Run(ctx)

	tl, err := transport.NewUnixListener(dir)
	if err != nil {
		return err
	}
	defer tl.Close()
	lis, err := tl.ListenPort(transport.PortControl)
	if err != nil {
		return err
	}
	eng := new(atomic.Pointer[containerEngine])
	srv, err := control.New(control.Config{
		Reaper:    rp,
		StateDir:  *root,
		Transport: "unix",
		Native:    true,
		Shutdown:  func(bool) { stop() },
		Snapshot:  func() []*api.Event { return []*api.Event{eng.Load().portsSnapshot()} },
		Log:       log.With("component", "control"),
	})
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	fl, err := tl.ListenPort(transport.PortForward)
	if err != nil {
		return err
	}
	go portfwd.ServeGuest(ctx, fl, log.With("component", "portfwd"))
	go func() { serveErr <- srv.Serve(lis) }()

	e, err := startEngine(ctx, engineConfig{
		root:    *root,
		reaper:  rp,
		bridge:  *bridge,
		subnet:  *subnet,
		onPorts: netctl.BrokerSink(srv.Broker().Publish),
		userns:  *usernsRemap,
		log:     log,
	})
	if err != nil {
		srv.Stop(context.Background())
		<-serveErr
		return fmt.Errorf("starting the container engine: %w", err)
	}
	eng.Store(e)
	dl, err := tl.ListenPort(transport.PortDocker)
	if err != nil {
		e.close()
		return err
	}
	e.serve(ctx, dl)
	if *dockerSocket != "" {
		l, err := listenUnix(*dockerSocket, 0o660)
		if err != nil {
			e.close()
			return err
		}
		defer os.Remove(*dockerSocket)
		e.serve(ctx, l)
	}
	log.Info("berth guest agent ready (native mode)", "listen", lis.Addr().String(), "docker", dl.Addr().String(), "root", *root, "version", control.Version)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		e.close()
		return err
	}
	var engErr error
	if *liveRestore {
		log.Info("stopping; containers keep running")
		engErr = e.close()
	} else {
		log.Info("stopping the containers, then the agent")
		ectx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		engErr = e.shutdown(ectx)
		cancel()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = errors.Join(engErr, srv.Stop(sctx))
	<-serveErr
	return err
}

// runVMEngine starts the container engine in the VM once the boot has
// settled (the data disk, overlay, bridge and netfilter modules and the
// cgroup controllers are ready), then serves the Docker API on guest port
// 2375. The control service answers meanwhile. At power-off the engine
// stops the containers (briefly: the hooks share a deadline) and closes.
func runVMEngine(ctx context.Context, log *slog.Logger, sys *boot.System, tl guestListener, srv *control.Server, eng *atomic.Pointer[containerEngine]) {
	<-sys.Settled()
	elog := log.With("component", "engine")
	e, err := startEngine(ctx, engineConfig{
		root:          boot.StateDir,
		reaper:        sys.Reaper,
		bridge:        netctl.DefaultBridge,
		subnet:        netctl.DefaultSubnet,
		uplink:        "eth0",
		hostGatewayIP: vmHostGatewayIP,
		onPorts:       netctl.BrokerSink(srv.Broker().Publish),
		log:           log,
	})
	if err != nil {
		elog.Error("the container engine did not start: docker is unavailable", "err", err)
		return
	}
	eng.Store(e)
	sys.OnShutdown("container engine", func(ctx context.Context) error {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return e.shutdown(sctx)
	})
	l, err := tl.ListenPort(transport.PortDocker)
	if err != nil {

		elog.Error("listening on the docker port: docker is unavailable", "err", err)
		return
	}
	e.serve(ctx, l)
	elog.Info("docker engine ready", "port", transport.PortDocker, "since kernel start", time.Since(sys.BootTime).Round(time.Millisecond))
}

// vmHostGatewayIP is the host's loopback as gvisor-tap-vsock exposes it
// to the guest (DESIGN.md, "Guest network").
const vmHostGatewayIP = "192.168.127.254"

// serveForwarding serves the host's port-forward streams on guest port
// 1025, and publishes the services that listen in the VM itself (outside
// containers) as port events, so the host forwards them too.
func serveForwarding(ctx context.Context, log *slog.Logger, tl guestListener, srv *control.Server, pw *portwatch.Watcher) {
	l, err := tl.ListenPort(transport.PortForward)
	if err != nil {
		log.Error("listening on the port-forward port: published ports are not forwarded", "err", err)
	} else {
		go func() {
			if err := portfwd.ServeGuest(ctx, l, log.With("component", "portfwd")); err != nil {
				log.Error("port forwarding stopped", "err", err)
			}
		}()
	}
	pw.Run(ctx, srv.Broker().Publish)
}
