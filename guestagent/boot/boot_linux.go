package boot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/berthvm/berth/guestagent/reaper"
	"golang.org/x/sys/unix"
)

// System is the booted guest, as its init sees it.
type System struct {
	// Cmdline is what the host asked for on the kernel command line.
	Cmdline Cmdline
	// Reaper reaps every process in the guest. Start all processes
	// through it.
	Reaper *reaper.Reaper
	// DataDevice is the disk mounted at StateDir, or "" when the state is
	// on the tmpfs root.
	DataDevice string
	// BootTime is when the kernel started, by the guest's clock at Boot.
	BootTime time.Time
	// Release and Machine are uname -r and uname -m.
	Release, Machine string

	log *slog.Logger

	mu          sync.Mutex
	hooks       []hook
	poweringOff bool
}

// Boot makes the calling process the guest's init. It must run as PID 1,
// first thing in main. The first time, on the initramfs, it moves the root
// to a tmpfs and re-executes the binary, so that call does not return;
// the second run finds the marker, mounts, loads modules, configures the
// guest and returns. Each step is logged with its duration. Only a failure
// that leaves the guest useless is returned; the rest is logged.
//
// ctx bounds the waits for devices; the reaper it starts runs until ctx
// is done, so pass the context that lives as long as the agent.
func Boot(ctx context.Context, log *slog.Logger) (*System, error) {
	if os.Getpid() != 1 {
		return nil, fmt.Errorf("boot: must run as PID 1, not %d", os.Getpid())
	}
	start := time.Now()
	step := func(name string, fn func() error) error {
		t := time.Now()
		err := fn()
		if err != nil {
			log.Error("boot step failed", "step", name, "took", since(t), "err", err)
			return err
		}
		log.Info("boot step", "step", name, "took", since(t))
		return nil
	}

	// If this fails nothing can be logged anyway; carry on.
	_ = fixConsole()
	_, switched := os.LookupEnv(switchedEnv)
	os.Unsetenv(switchedEnv)
	if !switched {
		if err := step("mount /proc", func() error {
			if err := os.MkdirAll("/proc", 0o555); err != nil {
				return err
			}
			return unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}); err != nil {
			return nil, fmt.Errorf("mounting /proc: %w", err)
		}
		initramfs, err := rootIsInitramfs()
		if err != nil {
			return nil, err
		}
		if initramfs {
			err := switchRoot(log) // returns only on failure
			return nil, fmt.Errorf("leaving the initramfs: %w", err)
		}
		log.Info("root is not the initramfs; staying on it")
	}

	s := &System{log: log, Reaper: reaper.New(log.With("component", "reaper"))}
	go func() {
		if err := s.Reaper.Run(ctx); err != nil {
			log.Error("reaper stopped", "err", err)
		}
	}()

	if err := step("mount", func() error { return mountBase(log) }); err != nil {
		return nil, err
	}
	_ = step("cgroup controllers", func() error { return enableControllers(log) })
	// Ctrl-Alt-Del becomes SIGINT to init instead of an instant reset.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)

	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		s.Release, s.Machine = unix.ByteSliceToString(uts.Release[:]), unix.ByteSliceToString(uts.Machine[:])
	}
	s.BootTime = bootTime()
	_ = step("modules", func() error {
		n, err := loadModules(log, s.Release)
		log.Debug("modules loaded", "count", n)
		return err
	})

	_ = step("virtio port links", LinkVirtioPorts)

	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		log.Error("reading /proc/cmdline", "err", err)
	}
	s.Cmdline, err = ParseCmdline(string(cmdline))
	if err != nil {
		log.Warn("kernel command line", "err", err)
	}
	log.Info("kernel command line", "transport", s.Cmdline.Transport, "ip", s.Cmdline.IP,
		"gw", s.Cmdline.Gateway, "dns", s.Cmdline.DNS, "hostname", s.Cmdline.Hostname, "debug", s.Cmdline.Debug)

	_ = step("hostname", func() error { return setHostname(s.Cmdline.Hostname) })
	_ = step("network", func() error {
		nctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return errors.Join(setupNetwork(nctx, s.Cmdline), writeResolv(s.Cmdline.DNS), writeHosts(s.Cmdline))
	})
	if err := step("data disk", func() error {
		dev, err := setupDisk(ctx, log, s.Reaper)
		s.DataDevice = dev
		return err
	}); err != nil {
		log.Error("DATA DISK UNAVAILABLE: state lives in memory and is lost at power-off", "err", err)
	}
	log.Info("booted", "took", since(start), "since kernel start", time.Since(s.BootTime).Round(time.Millisecond),
		"kernel", s.Release, "arch", s.Machine)
	return s, nil
}

// seedRandom waits until the kernel's random generator is initialized.
// Without a hardware source (no virtio-rng, no RDRAND under TCG) the
// kernel may stay uninitialized for minutes, and programs that ask without
// blocking, like mke2fs's libuuid, fall back to slow paths: about a second
// per UUID, three seconds per mke2fs. One blocking getrandom makes the
// kernel gather jitter entropy instead, about a second under TCG. It is
// not done on every boot because that spinning competes with the rest of
// the boot on a single vCPU.
func seedRandom(ctx context.Context, log *slog.Logger) {
	var b [1]byte
	if _, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK); err == nil {
		return
	}
	t := time.Now()
	done := make(chan error, 1)
	go func() {
		for {
			_, err := unix.Getrandom(b[:], 0)
			if !errors.Is(err, unix.EINTR) {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			log.Warn("waiting for the kernel random generator", "err", err)
			return
		}
		log.Info("kernel random generator ready", "waited", since(t))
	case <-time.After(10 * time.Second):
		log.Warn("kernel random generator still not ready; going on")
	case <-ctx.Done():
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
