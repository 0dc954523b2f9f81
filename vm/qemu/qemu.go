// Package qemu is berth's QEMU backend: the VM driver on Linux hosts, the
// fallback on macOS, and the command line on Windows. It builds QEMU's argv,
// starts QEMU detached so the VM outlives the host agent, re-attaches to a
// running VM through its pidfile and QMP socket, and hands out the
// virtio-serial transport to the guest agent.
//
// It does not own the guest bundle, the data disk's contents, the user-mode
// network (it only plugs the NIC into cfg.NetSocket: a datagram socket that
// QEMU sends frames to from its own qnet.sock, or on Windows a stream
// socket) or the transport's framing (forwarding/transport).
//
// Machine choice, measured under TCG on the shared 2-core build host: Debian's
// 6.1 kernel, a busybox init that loads virtio and waits for /dev/vda, then
// powers off; launch to QEMU exit, median/best of 8 (the host is noisy):
//
//	q35, bzImage (xz), our kernel args      8.2 s / 5.5 s
//	q35, vmlinux ELF (PVH entry), our args  3.7 s / 2.45 s
//	q35, vmlinux, console= only             3.7 s / 2.8 s
//	microvm, vmlinux, our args              4.3 s / 1.95 s
//
// microvm's half second at best is not worth it: under TCG it boots only with a
// made-up tsc_early_khz, so the guest clock runs at the wrong rate, and it
// has no HPET or PM timer to fall back on. The boot format matters far more:
// an uncompressed x86_64 vmlinux skips the in-guest xz decompression.
//
// On Windows, QMP and the transport still use unix sockets (QEMU 7.1+ and Go
// both support AF_UNIX there); named pipes are not done. The pidfile check
// cannot read a Windows process's command line, so a live pid is trusted.
package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/vm"
)

var (
	_ vm.Driver      = (*Driver)(nil)
	_ vm.Attacher    = (*Driver)(nil)
	_ vm.PowerButton = (*Driver)(nil)
)

const (
	// pollInterval is how often an attached VM's pid is checked: it is not
	// our child, so nothing tells us when it exits.
	pollInterval = 200 * time.Millisecond
	// quitTimeout is how long Stop waits after QMP quit before SIGKILL.
	quitTimeout = 3 * time.Second
	// killTimeout is how long Stop waits for the process to go after SIGKILL.
	killTimeout = 5 * time.Second
	// logTail is how much of qemu.log an early-exit error quotes.
	logTail = 2048
)

// errNoCmdline means this OS does not let berth read a process's command
// line, so a pid cannot be matched to an instance.
var errNoCmdline = errors.New("process command lines are not readable here")

// Driver runs one instance's VM under QEMU.
type Driver struct {
	cfg   vm.Config
	host  Host
	files files
	log   *slog.Logger

	mu     sync.Mutex
	proc   *process // the VM this driver started or attached to
	done   chan struct{}
	dialer *transport.SerialDialer

	extraArgs []string // tests only: appended to the command line
}

// process is a running QEMU that the driver holds.
type process struct {
	pid    int
	qmp    *qmpClient
	exited chan struct{} // closed once the process is gone
	stop   func()        // stops watching without touching QEMU
}

// New returns a driver for cfg on this host. It starts nothing.
func New(cfg vm.Config, log *slog.Logger) (*Driver, error) {
	return newDriver(cfg, DetectHost(), log)
}

func newDriver(cfg vm.Config, host Host, log *slog.Logger) (*Driver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := absPaths(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := Args(cfg, host); err != nil {
		return nil, err
	}
	return &Driver{
		cfg:   cfg,
		host:  host,
		files: instanceFiles(cfg.Dir, host.GOOS),
		log:   log.With("vm", "qemu"),
		done:  make(chan struct{}),
	}, nil
}

// absPaths makes cfg's paths absolute: QEMU may resolve them from another
// directory, and a later host agent matches the pidfile path in QEMU's
// command line whatever its own working directory.
func absPaths(cfg vm.Config) (vm.Config, error) {
	ptrs := []*string{&cfg.Dir, &cfg.DataDisk, &cfg.Kernel, &cfg.Initrd, &cfg.SerialLog, &cfg.NetSocket}
	cfg.Shares = slices.Clone(cfg.Shares)
	for i := range cfg.Shares {
		ptrs = append(ptrs, &cfg.Shares[i].HostPath)
	}
	for _, p := range ptrs {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return cfg, fmt.Errorf("resolving %s: %w", *p, err)
		}
		*p = abs
	}
	return cfg, nil
}

// Name is "qemu".
func (d *Driver) Name() string { return "qemu" }

// Done is closed when the VM this driver started or attached to exits.
func (d *Driver) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.done
}

// Transport dials guest ports over the virtio-serial port's unix socket. It
// reconnects by itself when QEMU or the guest restarts.
func (d *Driver) Transport() transport.Dialer {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dialer == nil {
		path := d.files.Serial
		d.dialer = transport.NewSerialDialer(func(ctx context.Context) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, "unix", path)
		}, d.log)
	}
	return d.dialer
}

// Running reports whether this instance's QEMU is alive, whoever started it.
func (d *Driver) Running() bool {
	pid, err := readPidfile(d.files.PID)
	return err == nil && d.ours(pid)
}

// Start boots the VM. It returns once QEMU has initialised the machine and
// answers QMP; the guest is still booting then.
func (d *Driver) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil {
		return fmt.Errorf("starting vm %s: already started (pid %d)", d.cfg.Name, d.proc.pid)
	}
	if pid, err := readPidfile(d.files.PID); err == nil && d.ours(pid) {
		return fmt.Errorf("starting vm %s: already running as pid %d; attach to it", d.cfg.Name, pid)
	}
	bin, err := d.lookBinary()
	if err != nil {
		return err
	}
	for _, p := range []string{d.cfg.Kernel, d.cfg.Initrd, d.cfg.DataDisk} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("starting vm %s: %w", d.cfg.Name, err)
		}
	}
	for _, s := range d.cfg.Shares {
		if st, err := os.Stat(s.HostPath); err != nil {
			return fmt.Errorf("starting vm %s: share %s: %w", d.cfg.Name, s.Tag, err)
		} else if !st.IsDir() {
			return fmt.Errorf("starting vm %s: share %s: %s is not a directory", d.cfg.Name, s.Tag, s.HostPath)
		}
	}
	args, err := Args(d.cfg, d.host)
	if err != nil {
		return err
	}
	args = append(args, d.extraArgs...)
	d.removeRuntimeFiles()

	now := time.Now().Format(time.RFC3339)
	if err := appendLine(serialLog(d.cfg, d.files), "\n=== berth: qemu boot "+now+" ===\n"); err != nil {
		return fmt.Errorf("starting vm %s: marking the serial log: %w", d.cfg.Name, err)
	}
	logf, err := os.OpenFile(d.files.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("starting vm %s: opening qemu log: %w", d.cfg.Name, err)
	}
	defer logf.Close() // QEMU has its own copy
	fmt.Fprintf(logf, "=== berth: %s %s %s\n", now, bin, strings.Join(args, " "))
	st, err := logf.Stat()
	if err != nil {
		return fmt.Errorf("starting vm %s: %w", d.cfg.Name, err)
	}
	logStart := st.Size() // an early-exit error quotes what QEMU wrote after this

	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf // stdin stays /dev/null
	detach(cmd)
	d.log.Info("starting qemu", "binary", bin, "args", args)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting vm %s: %w", d.cfg.Name, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		d.log.Info("qemu exited", "pid", pid, "status", err)
		close(exited)
	}()

	qmp, err := d.waitQMP(ctx, exited)
	if err != nil {
		select {
		case <-exited:
			err = fmt.Errorf("%w\nqemu.log:\n%s", err, tailFrom(d.files.Log, logStart, logTail))
		default:
			// Started but unusable: do not leave it running.
			killProcess(pid)
			<-exited
		}
		d.removeRuntimeFiles()
		return fmt.Errorf("starting vm %s: %w", d.cfg.Name, err)
	}
	d.hold(&process{pid: pid, qmp: qmp, exited: exited, stop: func() {}})
	d.log.Info("qemu running", "pid", pid)
	return nil
}

// waitQMP connects to QEMU's QMP socket as soon as QEMU creates it. It gives
// up when QEMU exits or ctx ends.
func (d *Driver) waitQMP(ctx context.Context, exited <-chan struct{}) (*qmpClient, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := dialQMP(ctx, d.files.QMP)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errQMPUnreachable) {
			// Connected but the handshake failed: QEMU is probably dying
			// in machine init. Let it finish so the error shows why.
			select {
			case <-exited:
				return nil, errors.New("qemu exited during start")
			case <-time.After(2 * time.Second):
				return nil, fmt.Errorf("waiting for qmp: %w", err)
			}
		}
		select {
		case <-exited:
			return nil, errors.New("qemu exited during start")
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for qmp: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Attach takes over this instance's running QEMU, as a restarted host agent
// does. It returns vm.ErrNotRunning, after removing the stale files, when the
// pidfile names no live QEMU of this instance.
func (d *Driver) Attach(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.attach(ctx)
}

func (d *Driver) attach(ctx context.Context) error {
	if d.proc != nil {
		return nil
	}
	pid, err := readPidfile(d.files.PID)
	if errors.Is(err, fs.ErrNotExist) {
		return vm.ErrNotRunning
	}
	if err != nil || !d.ours(pid) {
		d.log.Info("removing stale qemu files", "pid", pid, "err", err)
		d.removeRuntimeFiles()
		return vm.ErrNotRunning
	}
	qmp, err := dialQMP(ctx, d.files.QMP)
	if err != nil {
		return fmt.Errorf("attaching to vm %s (pid %d): %w", d.cfg.Name, pid, err)
	}
	exited := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		tick := time.NewTicker(pollInterval)
		defer tick.Stop()
		qmpClosed := qmp.Closed() // QEMU closing the socket is the quick hint
		for {
			select {
			case <-stopWatch:
				return
			case <-tick.C:
			case <-qmpClosed:
				qmpClosed = nil
			}
			if !d.ours(pid) {
				d.log.Info("qemu exited", "pid", pid)
				close(exited)
				return
			}
		}
	}()
	d.hold(&process{pid: pid, qmp: qmp, exited: exited, stop: sync.OnceFunc(func() { close(stopWatch) })})
	d.log.Info("attached to qemu", "pid", pid)
	return nil
}

// hold makes p the driver's VM and arranges the cleanup for its exit. d.mu
// is held.
func (d *Driver) hold(p *process) {
	if isClosed(d.done) {
		d.done = make(chan struct{})
	}
	d.proc = p
	done := d.done
	go d.logEvents(p.qmp)
	go func() {
		<-p.exited
		p.qmp.Close()
		d.mu.Lock()
		if d.proc == p {
			d.proc = nil
			d.removeRuntimeFiles()
		}
		d.mu.Unlock()
		close(done)
	}()
}

func (d *Driver) logEvents(q *qmpClient) {
	for ev := range q.Events() {
		d.log.Info("qemu event", "event", ev.Name, "data", string(ev.Data))
	}
}

// Stop pulls the plug: QMP quit, then SIGKILL if QEMU lingers. It stops a
// VM this driver did not start too. Stopping a stopped VM is not an error.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	err := d.attach(ctx)
	p, done := d.proc, d.done
	d.mu.Unlock()
	if errors.Is(err, vm.ErrNotRunning) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stopping vm %s: %w", d.cfg.Name, err)
	}

	qctx, cancel := context.WithTimeout(ctx, quitTimeout)
	defer cancel()
	if err := p.qmp.execute(qctx, "quit", nil, nil); err != nil && !errors.Is(err, errQMPClosed) {
		d.log.Warn("qmp quit failed; killing qemu", "pid", p.pid, "err", err)
	}
	select {
	case <-done:
		return nil
	case <-qctx.Done():
	}
	d.log.Warn("qemu did not quit; killing it", "pid", p.pid)
	if err := killProcess(p.pid); err != nil && d.ours(p.pid) {
		return fmt.Errorf("stopping vm %s: killing pid %d: %w", d.cfg.Name, p.pid, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("stopping vm %s: pid %d outlived SIGKILL", d.cfg.Name, p.pid)
	case <-ctx.Done():
		return fmt.Errorf("stopping vm %s: %w", d.cfg.Name, ctx.Err())
	}
}

// PressPowerButton asks the guest to shut down through ACPI.
func (d *Driver) PressPowerButton(ctx context.Context) error {
	d.mu.Lock()
	p := d.proc
	d.mu.Unlock()
	if p == nil {
		return vm.ErrNotRunning
	}
	if err := p.qmp.execute(ctx, "system_powerdown", nil, nil); err != nil {
		return fmt.Errorf("pressing the power button of vm %s: %w", d.cfg.Name, err)
	}
	return nil
}

// Close lets go of the VM without stopping it: it closes QMP and the
// transport, as a host agent that exits and leaves its VM running does.
// Done is not closed.
func (d *Driver) Close() error {
	d.mu.Lock()
	p, dialer := d.proc, d.dialer
	d.proc, d.dialer = nil, nil
	d.mu.Unlock()
	var errs []error
	if p != nil {
		p.stop()
		errs = append(errs, p.qmp.Close())
	}
	if dialer != nil {
		errs = append(errs, dialer.Close())
	}
	return errors.Join(errs...)
}

// ours reports whether pid is this instance's QEMU: alive, and started with
// this instance's pidfile.
func (d *Driver) ours(pid int) bool {
	if pid <= 0 || !processExists(pid) {
		return false
	}
	cl, err := processCmdline(pid)
	if errors.Is(err, errNoCmdline) {
		return true
	}
	return err == nil && matchesInstance(cl, d.files)
}

// matchesInstance reports whether a process command line is the QEMU of the
// instance whose files are f.
func matchesInstance(cmdline string, f files) bool {
	return strings.Contains(cmdline, "qemu-system") && strings.Contains(cmdline+" ", " -pidfile "+f.PID+" ")
}

func (d *Driver) lookBinary() (string, error) {
	name, err := Binary(d.cfg.Arch)
	if err != nil {
		return "", err
	}
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	hint := "install QEMU"
	switch d.host.GOOS {
	case "linux":
		hint = "install it: apt-get install qemu-system-x86 (Fedora: dnf install qemu-system-x86)"
		if d.cfg.Arch == vm.AARCH64 {
			hint = "install it: apt-get install qemu-system-arm (Fedora: dnf install qemu-system-aarch64)"
		}
	case "darwin":
		hint = "install it: brew install qemu"
	case "windows":
		hint = "install QEMU from qemu.org and add it to PATH"
	}
	return "", fmt.Errorf("starting vm %s: %s not found: %s: %w", d.cfg.Name, name, hint, err)
}

// removeRuntimeFiles deletes what a dead QEMU leaves behind. The logs stay.
func (d *Driver) removeRuntimeFiles() {
	for _, p := range []string{d.files.PID, d.files.QMP, d.files.Serial, d.files.Net} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("removing qemu runtime file", "path", p, "err", err)
		}
	}
}

func readPidfile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pidfile %s: malformed pid %q", path, b)
	}
	return pid, nil
}

func appendLine(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, s)
	return errors.Join(err, f.Close())
}

// tailFrom returns at most n bytes from the end of path, reading nothing
// before offset start.
func tailFrom(path string, start, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "(" + err.Error() + ")"
	}
	from := max(start, st.Size()-n)
	b := make([]byte, st.Size()-from)
	if _, err := f.ReadAt(b, from); err != nil && !errors.Is(err, io.EOF) {
		return "(" + err.Error() + ")"
	}
	return strings.TrimSpace(string(b))
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
