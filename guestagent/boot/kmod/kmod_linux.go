package kmod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Logger is what the Loader logs to; *slog.Logger is one. (This package
// does not import log/slog: see Early.)
type Logger interface {
	Debug(msg string, args ...any)
	Info(msg string, args ...any)
	Error(msg string, args ...any)
}

// Loader loads the modules of the bundle's list into the running kernel.
type Loader struct {
	log   atomic.Value // of logBox
	sched *scheduler   // nil without a list
	start time.Time

	loaded, noDevice, failed atomic.Int32
}

// Open reads the module list (ListPath) of the running kernel's release.
// Without a list (a root that is not berth's initramfs) the Loader has no
// modules: Start returns a closed channel and Wait nil.
func Open(log Logger) (*Loader, error) {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	return open(log, ListPath, path.Join("/lib/modules", unix.ByteSliceToString(uts.Release[:])))
}

func open(log Logger, list, dir string) (*Loader, error) {
	l := &Loader{start: time.Now()}
	l.SetLogger(log)
	f, err := os.Open(list)
	if errors.Is(err, os.ErrNotExist) {
		log.Debug("no module list", "path", list)
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening module list: %w", err)
	}
	defer f.Close()
	p, err := parsePlan(f, dir)
	if err != nil {
		return nil, err
	}
	for i := range p.mods {
		if st, err := os.Stat(p.mods[i].path); err == nil {
			p.mods[i].cost = st.Size()
		}
	}
	// Background loads leave a CPU to the agent.
	l.sched = newScheduler(p, runtime.NumCPU(), runtime.NumCPU()-1, l.loadOne)
	return l, nil
}

// SetLogger sends the Loader's log to log from now on.
func (l *Loader) SetLogger(log Logger) { l.log.Store(logBox{log}) }

// logBox gives the atomic.Value one concrete type whatever the Logger.
type logBox struct{ Logger }

func (l *Loader) logger() Logger { return l.log.Load().(logBox).Logger }

// Start begins loading the named modules and their dependencies, at full
// priority, unless that has begun already, and returns a channel closed
// once they have all been tried. Names that are not in the list (built
// into the kernel, or not in this bundle) are skipped. ctx bounds the
// loading it begins.
func (l *Loader) Start(ctx context.Context, names ...string) <-chan struct{} {
	if l.sched == nil {
		return closed()
	}
	return l.sched.start(ctx, l.sched.plan.closure(names...), false)
}

// StartRest begins loading every module not begun yet, in the background:
// one CPU fewer than the foreground, and at a lower CPU priority, so that
// they yield to the agent. It returns a channel closed once every module
// in the list has been tried.
func (l *Loader) StartRest(ctx context.Context) <-chan struct{} {
	if l.sched == nil {
		return closed()
	}
	all := make([]int, len(l.sched.plan.mods))
	for i := range all {
		all[i] = i
	}
	return l.sched.start(ctx, all, true)
}

// Wait waits until the named modules have been tried and returns the
// failures that matter, joined. It does not start them. Names not in the
// list are taken as built in.
func (l *Loader) Wait(ctx context.Context, names ...string) error {
	if l.sched == nil {
		return nil
	}
	return l.sched.wait(ctx, names...)
}

// LogSummary logs how many modules loaded, had no device or failed, and
// how long since the Loader was opened.
func (l *Loader) LogSummary(msg string) {
	l.logger().Info(msg, "loaded", l.loaded.Load(), "no device", l.noDevice.Load(), "failed", l.failed.Load(),
		"since open", time.Since(l.start).Round(time.Millisecond))
}

// backgroundNice is the nice value of background loads: they yield to the
// agent (the host's first requests come in as they start) but still make
// progress when the guest is busy.
const backgroundNice = 10

// loadOne loads a module and sorts out its failure: only a failure that
// matters is returned (and logged). A background load runs on a thread of
// its own with a lower priority; the thread ends with the scheduler's
// goroutine, which exits still locked to it.
func (l *Loader) loadOne(_ context.Context, m module, background bool) error {
	log := l.logger()
	if background {
		runtime.LockOSThread()
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), backgroundNice); err != nil {
			log.Debug("lowering the priority of a module load", "err", err)
		}
	}
	start := time.Now()
	err := finitModule(m.path)
	switch {
	case err == nil:
		l.loaded.Add(1)
		log.Debug("module loaded", "module", m.name, "took", time.Since(start).Round(100*time.Microsecond), "background", background)
		return nil
	case errors.Is(err, unix.EEXIST):
		// Built in, or loaded already.
		return nil
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		// A driver for hardware this machine lacks, such as crc32c-intel
		// on a CPU without SSE4.2 (QEMU's TCG).
		l.noDevice.Add(1)
		log.Debug("module has no device here", "module", m.name)
		return nil
	}
	l.failed.Add(1)
	log.Error("loading kernel module", "module", m.name, "path", m.path, "err", err)
	return err
}

func finitModule(file string) error {
	fd, err := unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", file, err)
	}
	defer unix.Close(fd)
	flags := 0
	switch path.Ext(file) {
	case ".xz", ".zst", ".gz":
		// Decompressed by the kernel (5.17+ with the matching option).
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(fd, "", flags); err != nil {
		return fmt.Errorf("finit_module %s: %w", path.Base(file), err)
	}
	return nil
}

func closed() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// The early start. Under emulation (TCG) the Go runtime takes about
// 150 ms to initialize the agent's packages (gRPC, protobuf...) before
// main runs. Go initializes a package once its imports are, the lexically
// smallest ready one first, and this one imports only what the first
// packages need anyway (no log/slog, no path/filepath, which come late),
// so its init runs early in that sequence. As the VM's init it starts
// loading Core right away, on other threads, while the rest initializes.
// Boot takes the Loader over with Early.
var (
	earlyLoader *Loader
	earlyErr    error
)

func init() {
	if os.Getpid() != 1 {
		return
	}
	earlyLoader, earlyErr = Open(stderrLogger{})
	if earlyErr == nil {
		earlyLoader.Start(context.Background(), Core...)
	}
}

// Early returns the Loader that began loading Core when the program
// started, if it runs as PID 1; otherwise (nil, nil), and the caller
// opens its own.
func Early() (*Loader, error) { return earlyLoader, earlyErr }

// stderrLogger is the Loader's log until Boot sets the agent's: errors
// only, on the console.
type stderrLogger struct{}

func (stderrLogger) Debug(string, ...any) {}
func (stderrLogger) Info(string, ...any)  {}
func (stderrLogger) Error(msg string, args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"kmod:", msg}, args...)...)
}
