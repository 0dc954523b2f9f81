package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berthvm/berth/guestagent/reaper"
	"golang.org/x/sys/unix"
)

// Config is what Boot needs from main.
type Config struct {
	// Log receives the boot's log. Required.
	Log *slog.Logger
	// Level, when set, is raised to debug when the kernel command line
	// has berth.debug, before anything else is logged.
	Level *slog.LevelVar
}

// System is the booted guest, as its init sees it.
type System struct {
	// Cmdline is what the host asked for on the kernel command line.
	Cmdline Cmdline
	// Reaper reaps every process in the guest. Start all processes
	// through it.
	Reaper *reaper.Reaper
	// DataDevice is the disk mounted at StateDir, or "" when the state is
	// on the tmpfs root. Set once Booted has returned.
	DataDevice string
	// BootTime is when the kernel started, by the guest's clock at Boot.
	BootTime time.Time
	// Release and Machine are uname -r and uname -m.
	Release, Machine string

	log     *slog.Logger
	start   time.Time
	modules *modules
	// ctx is Boot's context: it bounds the module loading that
	// StartBackground starts.
	ctx context.Context

	// booting runs the steps that Booted waits for.
	booting sync.WaitGroup
	// settled is closed once StartBackground's work is done.
	settleOnce sync.Once
	settled    chan struct{}
	formatted  bool
	steps      stepTimes

	mu          sync.Mutex
	hooks       []hook
	poweringOff bool
}

// stepTimes records when the boot steps were done, for the "booted" line.
type stepTimes struct {
	mu    sync.Mutex
	attrs []any
}

func (t *stepTimes) add(name string, d time.Duration) {
	t.mu.Lock()
	t.attrs = append(t.attrs, name, d.Round(time.Millisecond))
	t.mu.Unlock()
}

// Boot makes the calling process the guest's init. It must run as PID 1,
// first thing in main. It reads the berth.* kernel parameters and starts
// loading the rest of the kernel modules the agent needs to answer
// (package kmod began with its Core set before main), then makes the root
// an ordinary mount when it is the initramfs (see leaveInitramfs), mounts
// the kernel filesystems, and starts bringing up the network and the data
// disk. It returns without waiting for those: start the transport (see
// WaitTransport and WaitSerialPort), then call Booted, then serve, then
// StartBackground. Only a failure that leaves the guest useless is
// returned; the rest is logged.
//
// ctx bounds the waits for devices; the reaper it starts runs until ctx
// is done, so pass the context that lives as long as the agent.
func Boot(ctx context.Context, cfg Config) (*System, error) {
	log := cfg.Log
	if os.Getpid() != 1 {
		return nil, fmt.Errorf("boot: must run as PID 1, not %d", os.Getpid())
	}
	s := &System{log: log, start: time.Now(), ctx: ctx, settled: make(chan struct{})}
	// If this fails nothing can be logged anyway; carry on.
	_ = fixConsole()

	if !mounted("/proc") {
		if err := os.MkdirAll("/proc", 0o555); err != nil {
			return nil, fmt.Errorf("creating /proc: %w", err)
		}
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return nil, fmt.Errorf("mounting /proc: %w", err)
		}
	}
	// Modules first: they are the longest part of the boot (kmod began
	// with its Core set before main), and they need only the command
	// line, to pick the rest of the boot set, and their files.
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		log.Error("reading /proc/cmdline", "err", err)
	}
	s.Cmdline, err = ParseCmdline(string(cmdline))
	if s.Cmdline.Debug && cfg.Level != nil {
		cfg.Level.Set(slog.LevelDebug)
	}
	if err != nil {
		log.Warn("kernel command line", "err", err)
	}
	log.Debug("kernel command line", "transport", s.Cmdline.Transport, "ip", s.Cmdline.IP,
		"gw", s.Cmdline.Gateway, "dns", s.Cmdline.DNS, "hostname", s.Cmdline.Hostname)
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		s.Release, s.Machine = unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Machine[:])
	}
	s.BootTime = bootTime()
	s.modules, err = startModules(ctx, log, s.Cmdline)
	if err != nil {
		// Without modules there may be no disk, no transport: say why.
		log.Error("kernel modules", "err", err)
	}

	// The modules keep loading meanwhile: the root is the same files.
	initramfs, err := rootIsInitramfs()
	if err != nil {
		return nil, err
	}
	if initramfs {
		if err := leaveInitramfs(); err != nil {
			return nil, fmt.Errorf("leaving the initramfs: %w", err)
		}
	} else {
		log.Info("root is not the initramfs; staying on it")
	}
	if err := mountBase(log); err != nil {
		return nil, fmt.Errorf("mounting the kernel filesystems: %w", err)
	}

	s.Reaper = reaper.New(log.With("component", "reaper"))
	go func() {
		if err := s.Reaper.Run(ctx); err != nil {
			log.Error("reaper stopped", "err", err)
		}
	}()

	s.step("modules", func() error {
		<-s.modules.bootDone
		return nil
	})
	s.step("network", func() error {
		return errors.Join(setHostname(s.Cmdline.Hostname), s.setupNetwork(ctx),
			writeResolv(s.Cmdline.DNS), writeHosts(s.Cmdline))
	})
	s.step("disk", func() error {
		dev, err := s.setupDisk(ctx)
		s.DataDevice = dev
		if err != nil {
			log.Error("DATA DISK UNAVAILABLE: state lives in memory and is lost at power-off", "err", err)
		}
		return nil // logged above, louder
	})
	// Ctrl-Alt-Del becomes SIGINT to init instead of an instant reset.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	log.Debug("boot started", "took", since(s.start), "initramfs", initramfs)
	return s, nil
}

// step runs a boot step on its own goroutine; Booted waits for it.
func (s *System) step(name string, fn func() error) {
	s.booting.Add(1)
	go func() {
		defer s.booting.Done()
		t := time.Now()
		if err := fn(); err != nil {
			s.log.Error("boot step failed", "step", name, "took", since(t), "err", err)
		}
		s.steps.add(name, time.Since(s.start))
	}()
}

// Booted waits until the boot steps Boot started are done: the boot set of
// modules, the network and the data disk. It then logs "booted" with when
// each step was done, counted from Boot.
func (s *System) Booted(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.booting.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the boot: %w", ctx.Err())
	}
	s.steps.mu.Lock()
	steps := slog.Group("done", s.steps.attrs...)
	s.steps.mu.Unlock()
	s.log.Info("booted", "took", since(s.start), "since kernel start", time.Since(s.BootTime).Round(time.Millisecond),
		"kernel", s.Release, "arch", s.Machine, "disk", s.DataDevice, "formatted", s.formatted, steps)
	return nil
}

// StartBackground starts the work the agent does not need to answer, in
// the background: loading the modules the boot left out (netfilter,
// bridge, overlay, 9p, fuse...) and delegating the cgroup controllers.
// Call it once the agent serves, so that it does not compete with the
// boot. Settled tells when it is done. It is safe to call more than once.
func (s *System) StartBackground() {
	s.settleOnce.Do(func() {
		s.modules.loadRest(s.ctx)
		go func() {
			t := time.Now()
			if err := enableControllers(s.log); err != nil {
				s.log.Error("delegating cgroup controllers", "err", err)
			}
			s.log.Debug("cgroup controllers delegated", "took", since(t))
			<-s.modules.restDone
			close(s.settled)
		}()
	})
}

// Settled returns a channel closed once the background work is done:
// every module in the bundle tried (failures are logged) and the cgroup
// controllers delegated. What needs overlay, bridge, netfilter or cgroups
// (the engine) waits on it. It starts that work if StartBackground has
// not.
func (s *System) Settled() <-chan struct{} {
	s.StartBackground()
	return s.settled
}

// WaitTransport waits until the kernel modules of the transport the
// command line names (virtio_console for serial, the vsock transport for
// vsock) and the virtio buses have been loaded.
func (s *System) WaitTransport(ctx context.Context) error {
	return s.modules.wait(ctx, append(transportModules(s.Cmdline.Transport), virtioTransports...)...)
}

// WaitSerialPort waits, at most timeout, until the named virtio-serial
// port exists at /dev/virtio-ports/NAME: virtio_console has loaded, the
// host's port has been announced and named, and the link is made. Ports
// come after the driver, from the device's control queue.
func (s *System) WaitSerialPort(ctx context.Context, path string, timeout time.Duration) error {
	if err := s.modules.waitDevice(ctx, "virtio_console"); err != nil {
		return err
	}
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if err := LinkVirtioPorts(); err != nil {
			s.log.Debug("linking virtio ports", "err", err)
		}
		if _, err := os.Stat(path); err == nil {
			s.log.Debug("serial port appeared", "path", path, "waited", since(start))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no virtio-serial port %s after %v (is the virtserialport named %s?)",
				path, timeout, filepath.Base(path))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Microsecond) }

// bootTime is now minus CLOCK_BOOTTIME: when the kernel started.
func bootTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}
