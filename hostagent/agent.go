package hostagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/berthvm/berth/forwarding/portfwd"
	"github.com/berthvm/berth/guestagent/api"
	"github.com/berthvm/berth/hostagent/events"
	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/hostagent/usernet"
	"github.com/berthvm/berth/kernel"
	"github.com/berthvm/berth/vm"
)

// Timeouts of the agent's lifecycle. Boots under TCG (no KVM) are slow, so
// the guest gets minutes, not seconds. Variables so tests can shorten them.
var (
	guestTimeout    = 5 * time.Minute
	shutdownTimeout = 30 * time.Second
	powerBtnTimeout = 10 * time.Second
	timeSyncEvery   = time.Minute
)

// Agent runs one instance.
type Agent struct {
	inst *instance.Instance
	log  *slog.Logger
	ev   *events.Writer

	mu     sync.Mutex
	status events.Status
	guest  api.AgentClient
	conn   *grpc.ClientConn
	driver vm.Driver

	fwd        *portfwd.Forwarder // the running port forwarder, if any
	lastPorts  []portfwd.Forward  // what the event log last said
	portErrs   []string           // the status errors that are about ports
	dockerDown bool               // the docker socket could not be served

	stopReq chan struct{}
	stopOne sync.Once

	newDriver driverFactory
}

// driverFactory makes the VM backend for an instance; tests swap it.
type driverFactory func(*instance.Config, vm.Config, *slog.Logger) (vm.Driver, error)

// Run runs the host agent of inst until the VM stops or ctx ends; on ctx's
// end it stops the VM gracefully first. It returns nil after a clean stop.
func Run(ctx context.Context, inst *instance.Instance, log *slog.Logger) error {
	return run(ctx, inst, log, newDriver)
}

func run(ctx context.Context, inst *instance.Instance, log *slog.Logger, nd driverFactory) (err error) {
	if err := inst.WritePidFile(); err != nil {
		return err
	}
	defer inst.RemovePidFile()
	ev, err := events.OpenWriter(inst.Path(instance.EventsFile))
	if err != nil {
		return err
	}
	defer ev.Close()
	a := &Agent{inst: inst, log: log, ev: ev, stopReq: make(chan struct{}), newDriver: nd}
	a.status = events.Status{Phase: events.Starting, PID: os.Getpid()}
	a.emit(func(s *events.Status) { s.Step = "host agent started" })

	defer func() {
		if err != nil {
			a.emit(func(s *events.Status) {
				s.Phase = events.Stopped
				s.Step = ""
				s.Errors = append(s.Errors, err.Error())
			})
		}
	}()
	return a.boot(ctx)
}

// emit updates the status and appends it to the event log.
func (a *Agent) emit(change func(*events.Status)) {
	a.mu.Lock()
	s := a.status
	s.Errors = append([]string(nil), s.Errors...)
	s.Step, s.Duration, s.Message = "", 0, ""
	change(&s)
	a.status = s
	a.mu.Unlock()
	if err := a.ev.Write(s); err != nil {
		a.log.Warn("writing event", "err", err)
	}
	if s.Step != "" {
		a.log.Info(s.Step, "phase", s.Phase, "duration", s.Duration)
	}
}

func (a *Agent) step(name string, start time.Time) {
	a.emit(func(s *events.Status) { s.Step, s.Duration = name, time.Since(start) })
}

// Status returns the agent's current status.
func (a *Agent) Status() events.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// RequestStop asks the agent to stop the VM and exit.
func (a *Agent) RequestStop() { a.stopOne.Do(func() { close(a.stopReq) }) }

func (a *Agent) boot(ctx context.Context) error {
	t := time.Now()
	cfg, err := a.inst.LoadConfig()
	if err != nil {
		return err
	}
	a.step("config loaded", t)

	t = time.Now()
	kern, initrd, err := kernel.Find(cfg.Arch)
	if err != nil {
		return err
	}
	a.step("guest bundle found", t)

	t = time.Now()
	disk := a.inst.Path(instance.DataDiskFile)
	if err := vm.CreateDataDisk(disk, int64(cfg.Disk)); err != nil {
		return err
	}
	a.step("data disk ready", t)

	t = time.Now()
	netw, err := usernet.New(a.log)
	if err != nil {
		return err
	}
	defer netw.Close()
	vcfg := VMConfig(a.inst, cfg, kern, initrd)
	releaseNIC, err := attachNIC(ctx, netw, a.inst, cfg, &vcfg)
	if err != nil {
		return err
	}
	defer releaseNIC()
	a.step("user-mode network ready", t)

	d, err := a.newDriver(cfg, vcfg, a.log)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.driver = d
	a.mu.Unlock()

	t = time.Now()
	attached := false
	if at, ok := d.(vm.Attacher); ok {
		switch err := at.Attach(ctx); {
		case err == nil:
			attached = true
		case !errors.Is(err, vm.ErrNotRunning):
			return fmt.Errorf("attaching to the running VM: %w", err)
		}
	}
	if attached {
		a.step("reattached to the running VM", t)
	} else {
		if err := d.Start(ctx); err != nil {
			return fmt.Errorf("starting the VM: %w", err)
		}
		a.step(fmt.Sprintf("VM started (%s)", d.Name()), t)
	}

	ln, err := listenControl(a.inst.Path(instance.ControlSocket))
	if err != nil {
		d.Stop(context.Background())
		return err
	}
	srv := newControlServer(a)
	go srv.Serve(ln)
	defer srv.Close()

	conn, err := DialGuest(d.Transport())
	if err != nil {
		d.Stop(context.Background())
		return err
	}
	defer conn.Close()
	client := api.NewAgentClient(conn)
	a.mu.Lock()
	a.conn, a.guest = conn, client
	a.mu.Unlock()

	t = time.Now()
	wctx, cancel := context.WithTimeout(ctx, guestTimeout)
	info, err := WaitGuest(wctx, client, d.Done())
	cancel()
	if err != nil {
		if ctx.Err() == nil && d.Running() {
			d.Stop(context.Background())
		}
		return err
	}
	// The clock is set while the rest comes up: nothing in the guest needs
	// it before the engine starts, which is later still.
	go a.syncTime(ctx)
	closeDocker, err := ServeDockerSocket(ctx, a.inst.Path(instance.DockerSocket), d.Transport(), a.dockerReady, a.log)
	if err != nil {
		a.mu.Lock()
		a.dockerDown = true
		a.mu.Unlock()
		a.emit(func(s *events.Status) { s.Degraded = true; s.Errors = append(s.Errors, err.Error()) })
	} else {
		defer closeDocker()
	}
	a.startPorts(ctx, d, client, cfg.Ports.BindAll)
	defer a.stopPorts()
	a.emit(func(s *events.Status) {
		s.Phase = events.Running
		s.Step = "guest agent answered"
		s.Duration = time.Since(t)
		s.Guest = &events.GuestInfo{
			AgentVersion: info.AgentVersion, Kernel: info.Kernel,
			Arch: info.Arch, Transport: info.Transport,
		}
	})

	return a.supervise(ctx, d)
}

// supervise keeps the running VM company until it stops or must be stopped.
func (a *Agent) supervise(ctx context.Context, d vm.Driver) error {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	lastSync := time.Now()
	lastWall, lastMono := time.Now().Round(0), time.Now()
	for {
		select {
		case <-d.Done():
			return errors.New("the VM exited unexpectedly; see \"berth logs --serial\"")
		case <-ctx.Done():
			return a.stop(d)
		case <-a.stopReq:
			return a.stop(d)
		case <-tick.C:
			// A wall clock that moved further than the monotonic one means
			// the host slept: the guest's clock is now behind.
			nowWall, nowMono := time.Now().Round(0), time.Now()
			jump := nowWall.Sub(lastWall) - nowMono.Sub(lastMono)
			lastWall, lastMono = nowWall, nowMono
			if jump > time.Second || jump < -time.Second || time.Since(lastSync) > timeSyncEvery {
				a.syncTime(ctx)
				lastSync = time.Now()
			}
		}
	}
}

func (a *Agent) syncTime(ctx context.Context) {
	a.mu.Lock()
	c := a.guest
	a.mu.Unlock()
	if c == nil {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := c.SyncTime(sctx, &api.SyncTimeRequest{HostUnixNs: time.Now().UnixNano()})
	if err != nil {
		a.log.Warn("time sync failed", "err", err)
		return
	}
	if r.Stepped {
		a.log.Info("guest clock corrected", "drift", time.Duration(r.DriftNs))
	}
}

func (a *Agent) stop(d vm.Driver) error {
	a.stopPorts()
	a.emit(func(s *events.Status) { s.Phase = events.Stopping; s.Step = "stopping" })
	t := time.Now()
	a.mu.Lock()
	c := a.guest
	a.mu.Unlock()
	how, err := ShutdownVM(context.Background(), d, c, a.log)
	if err != nil {
		return err
	}
	a.emit(func(s *events.Status) {
		s.Phase = events.Stopped
		s.Step = "VM stopped (" + how + ")"
		s.Duration = time.Since(t)
		s.Guest = nil
	})
	return nil
}

// ShutdownVM stops a VM as gently as it will go: the guest agent's
// Shutdown, then the ACPI power button, then pulling the plug. It returns
// which one worked.
func ShutdownVM(ctx context.Context, d vm.Driver, c api.AgentClient, log *slog.Logger) (string, error) {
	if !d.Running() {
		return "already stopped", nil
	}
	if c != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.Shutdown(sctx, &api.ShutdownRequest{})
		cancel()
		if err != nil {
			log.Warn("guest shutdown request failed", "err", err)
		} else if waitDone(d, shutdownTimeout) {
			return "guest shutdown", nil
		}
	}
	if pb, ok := d.(vm.PowerButton); ok {
		if err := pb.PressPowerButton(ctx); err != nil {
			log.Warn("pressing the power button failed", "err", err)
		} else if waitDone(d, powerBtnTimeout) {
			return "power button", nil
		}
	}
	log.Warn("the guest did not power off; stopping the VM hard")
	if err := d.Stop(ctx); err != nil {
		return "", fmt.Errorf("stopping the VM: %w", err)
	}
	return "hard stop", nil
}

func waitDone(d vm.Driver, timeout time.Duration) bool {
	select {
	case <-d.Done():
		return true
	case <-time.After(timeout):
		return false
	}
}

// dockerReady says why the docker socket cannot reach the engine now, so
// that clients get that at once instead of waiting on a guest that is
// going away.
func (a *Agent) dockerReady() error {
	switch a.Status().Phase {
	case events.Running:
		return nil
	case events.Stopping:
		return fmt.Errorf("instance %q is stopping", a.inst.Name)
	default:
		return fmt.Errorf("instance %q is not running", a.inst.Name)
	}
}

// guestTHP gives transparent huge pages only to the programs that ask for
// them (madvise), as Ubuntu and Fedora do, instead of Debian's "always".
// With "always", a small process is rounded up to 2 MiB pages: the guest
// agent's 3-4 MiB of heap and stacks took 8 MiB, and every shim and small
// container pays the same. JVMs, databases and others that gain from huge
// pages madvise for them.
const guestTHP = "transparent_hugepage=madvise"

// VMConfig maps an instance's config to the driver's. The guest's network
// settings go on its kernel command line; the NIC itself is attached by
// the host agent (attachNIC).
func VMConfig(inst *instance.Instance, cfg *instance.Config, kern, initrd string) vm.Config {
	return vm.Config{
		Name:        inst.Name,
		Dir:         inst.Dir,
		Arch:        vm.Arch(cfg.Arch),
		CPUs:        cfg.CPUs,
		MemoryBytes: uint64(cfg.Memory),
		DataDisk:    inst.Path(instance.DataDiskFile),
		Kernel:      kern,
		Initrd:      initrd,
		Cmdline:     append([]string{"berth.hostname=" + inst.Name, guestTHP}, usernet.KernelArgs()...),
		MAC:         usernet.GuestMAC(inst.Name),
		SerialLog:   inst.Path(instance.SerialLogFile),
	}
}

func listenControl(path string) (net.Listener, error) {
	return listenPrivate(path, "the control socket")
}

// listenPrivate listens on a unix socket at path that only its owner may
// use, replacing a stale socket file left by a crash.
func listenPrivate(path, what string) (net.Listener, error) {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", what, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("securing %s: %w", what, err)
	}
	return ln, nil
}
