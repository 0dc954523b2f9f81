package boot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PowerRequest asks for the guest to go down.
type PowerRequest struct {
	Reboot bool
	// Why says where the request came from, for the log.
	Why string
}

// Signals to PID 1 and what they mean. SIGTERM and SIGINT are what a
// person or a supervisor sends to "stop"; SIGINT is also what the kernel
// sends on Ctrl-Alt-Del once it is told not to reboot at once. SIGUSR2
// and SIGPWR follow busybox init and the sysvinit power-fail convention.
// SIGUSR1 is the one way to ask for a reboot.
var powerSignals = map[os.Signal]PowerRequest{
	unix.SIGTERM: {Why: "SIGTERM"},
	unix.SIGINT:  {Why: "SIGINT"},
	unix.SIGUSR2: {Why: "SIGUSR2"},
	unix.SIGPWR:  {Why: "SIGPWR"},
	unix.SIGUSR1: {Reboot: true, Why: "SIGUSR1"},
}

// PowerRequests delivers a request for each power-off signal and power
// button press until ctx is done. The channel is never closed.
func (s *System) PowerRequests(ctx context.Context) <-chan PowerRequest {
	out := make(chan PowerRequest, 4)
	send := func(r PowerRequest) {
		select {
		case out <- r:
		default: // one pending request is enough
		}
	}

	sigc := make(chan os.Signal, 4)
	sigs := make([]os.Signal, 0, len(powerSignals))
	for sig := range powerSignals {
		sigs = append(sigs, sig)
	}
	signal.Notify(sigc, sigs...)
	go func() {
		defer signal.Stop(sigc)
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-sigc:
				s.log.Info("power signal", "signal", sig)
				send(powerSignals[sig])
			}
		}
	}()

	// The button's drivers (evdev, button or gpio-keys) are not in the
	// boot set: look once every module has been tried. Waiting does not
	// start the loading; the agent does once it serves (StartBackground).
	go func() {
		select {
		case <-s.modules.restDone:
		case <-ctx.Done():
			return
		}
		s.watchPowerButtons(ctx, send)
	}()
	return out
}

// watchPowerButtons watches every power button and sends a request when
// one is pressed.
func (s *System) watchPowerButtons(ctx context.Context, send func(PowerRequest)) {
	devs, err := powerButtons("/sys/class/input", "/dev/input")
	if err != nil {
		s.log.Warn("looking for a power button", "err", err)
	}
	if len(devs) == 0 {
		s.log.Warn("no power button found; ACPI shutdown requests will be ignored (needs evdev and button or gpio-keys)")
	}
	for _, dev := range devs {
		f, err := os.Open(dev)
		if err != nil {
			s.log.Warn("opening power button", "device", dev, "err", err)
			continue
		}
		s.log.Debug("watching power button", "device", dev)
		go func() {
			<-ctx.Done()
			f.Close()
		}()
		go func() {
			if err := watchPowerKey(f); err != nil && ctx.Err() == nil {
				s.log.Warn("reading power button", "device", dev, "err", err)
				return
			}
			if ctx.Err() == nil {
				s.log.Info("power button pressed", "device", dev)
				send(PowerRequest{Why: "power button"})
			}
		}()
	}
}

const (
	evKey    = 0x01
	keyPower = 116
)

// powerButtons lists the event devices that can report KEY_POWER, from
// the key capability bitmaps in sysfs.
func powerButtons(sysInput, devInput string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(sysInput, "event*"))
	if err != nil {
		return nil, fmt.Errorf("listing input devices: %w", err)
	}
	var out []string
	for _, m := range matches {
		b, err := os.ReadFile(filepath.Join(m, "device", "capabilities", "key"))
		if err != nil {
			continue
		}
		if bitmapHas(strings.TrimSpace(string(b)), keyPower) {
			out = append(out, filepath.Join(devInput, filepath.Base(m)))
		}
	}
	return out, nil
}

// bitmapHas tests a bit in a sysfs capability bitmap: hex words of the
// kernel's long size, most significant first, separated by spaces.
func bitmapHas(bitmap string, bit int) bool {
	words := strings.Fields(bitmap)
	wordBits := int(unsafe.Sizeof(uintptr(0))) * 8
	idx := len(words) - 1 - bit/wordBits
	if idx < 0 || idx >= len(words) {
		return false
	}
	w, err := strconv.ParseUint(words[idx], 16, 64)
	if err != nil {
		return false
	}
	return w&(1<<(uint(bit)%uint(wordBits))) != 0
}

// inputEventSize is sizeof(struct input_event) on this architecture: a
// struct timeval, then u16 type, u16 code and s32 value.
var inputEventSize = int(unsafe.Sizeof(unix.Timeval{})) + 8

// watchPowerKey reads input events until a KEY_POWER press (or
// autorepeat) arrives, and returns nil then.
func watchPowerKey(r io.Reader) error {
	buf := make([]byte, inputEventSize*16)
	for {
		n, err := io.ReadAtLeast(r, buf, inputEventSize)
		if err != nil {
			return fmt.Errorf("reading input events: %w", err)
		}
		for off := 0; off+inputEventSize <= n; off += inputEventSize {
			ev := buf[off+inputEventSize-8 : off+inputEventSize]
			typ := binary.NativeEndian.Uint16(ev[0:2])
			code := binary.NativeEndian.Uint16(ev[2:4])
			value := int32(binary.NativeEndian.Uint32(ev[4:8]))
			if typ == evKey && code == keyPower && value != 0 {
				return nil
			}
		}
	}
}

// OnShutdown registers fn to run when the guest powers off. Hooks run in
// the reverse order of registration, like defers, each bounded by the
// shutdown deadline; a failing hook is logged and the others still run.
func (s *System) OnShutdown(name string, fn func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, hook{name, fn})
}

type hook struct {
	name string
	fn   func(ctx context.Context) error
}

const (
	hooksTimeout = 10 * time.Second
	termTimeout  = 3 * time.Second
	killTimeout  = 2 * time.Second
)

// PowerOff stops the guest: shutdown hooks, SIGTERM then SIGKILL to every
// remaining process, sync, unmount (the data disk first), sync again and
// reboot(2) with power-off or restart. It never returns; if the kernel
// refuses, it logs and blocks forever. Concurrent calls after the first
// block too.
func (s *System) PowerOff(ctx context.Context, reboot bool) {
	s.mu.Lock()
	if s.poweringOff {
		s.mu.Unlock()
		select {}
	}
	s.poweringOff = true
	hooks := append([]hook(nil), s.hooks...)
	s.mu.Unlock()

	start := time.Now()
	s.log.Info("shutting down", "reboot", reboot)
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), hooksTimeout)
	for i := len(hooks) - 1; i >= 0; i-- {
		h := hooks[i]
		t := time.Now()
		if err := h.fn(hctx); err != nil {
			s.log.Error("shutdown hook failed", "hook", h.name, "err", err)
		} else {
			s.log.Debug("shutdown hook done", "hook", h.name, "took", time.Since(t).Round(time.Millisecond))
		}
	}
	cancel()

	s.killAll()
	unix.Sync()
	s.unmountAll()
	unix.Sync()

	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	s.log.Info("powering off", "reboot", reboot, "took", time.Since(start).Round(time.Millisecond))
	err := unix.Reboot(cmd)
	s.log.Error("reboot(2) failed; halting here", "err", err)
	select {}
}

// killAll signals every process but PID 1 (kill(-1) skips the caller),
// waits for them to go, then kills what is left. The reaper collects them.
func (s *System) killAll() {
	if os.Getpid() != 1 {
		return // kill(-1) from anywhere else would hit the host's processes
	}
	if n := userProcesses(); n > 0 {
		s.log.Info("stopping remaining processes", "count", n)
		_ = unix.Kill(-1, unix.SIGTERM)
		_ = unix.Kill(-1, unix.SIGCONT)
		if waitNoProcesses(termTimeout) {
			return
		}
		s.log.Warn("killing processes that ignored SIGTERM", "count", userProcesses())
		_ = unix.Kill(-1, unix.SIGKILL)
		waitNoProcesses(killTimeout)
	}
}

func waitNoProcesses(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if userProcesses() == 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// pfKthread is PF_KTHREAD in the flags field of /proc/PID/stat.
const pfKthread = 0x00200000

// userProcesses counts live processes other than the caller that are not
// kernel threads.
func userProcesses() int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		state, flags, ok := parseStat(string(b))
		if !ok || state == 'Z' || state == 'X' || flags&pfKthread != 0 {
			continue
		}
		n++
	}
	return n
}

// parseStat reads the state and flags fields of /proc/PID/stat. The
// command name may hold spaces and parentheses, so fields are counted
// from the last ')'.
func parseStat(s string) (state byte, flags uint64, ok bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	// After the name: state(3) ppid pgrp session tty_nr tpgid flags(9).
	if len(f) < 7 || len(f[0]) != 1 {
		return 0, 0, false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], flags, true
}

// unmountAll unmounts the data disk, then everything else in reverse
// mount order. A busy filesystem is remounted read-only so its journal is
// clean, then detached.
func (s *System) unmountAll() {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		s.log.Error("reading mounts for unmount", "err", err)
		return
	}
	for _, m := range unmountOrder(parseMountinfo(string(b))) {
		if err := unmount(m); err != nil {
			s.log.Warn("unmounting", "target", m.target, "err", err)
		} else {
			s.log.Debug("unmounted", "target", m.target)
		}
	}
}

// pseudoFS hold no data worth unmounting and are still in use to the end.
var pseudoFS = map[string]bool{"proc": true, "sysfs": true, "devtmpfs": true, "devpts": true, "cgroup2": true, "cgroup": true}

// unmountOrder returns the mounts to take down: the ones mounted below
// the data disk (container overlays), then the data disk, then the rest in
// reverse mount order; never / or the kernel's pseudo filesystems.
func unmountOrder(entries []mountEntry) []mountEntry {
	var under, disk, rest []mountEntry
	for i := len(entries) - 1; i >= 0; i-- {
		m := entries[i]
		switch {
		case m.target == "/" || pseudoFS[m.fstype]:
		case m.target == StateDir:
			disk = append(disk, m)
		case strings.HasPrefix(m.target, StateDir+"/"):
			under = append(under, m)
		default:
			rest = append(rest, m)
		}
	}
	return append(append(under, disk...), rest...)
}

func unmount(m mountEntry) error {
	target := m.target
	err := unix.Unmount(target, 0)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil // done, or not a mount any more (a parent went first)
	}
	if !strings.HasPrefix(m.source, "/dev/") {
		if derr := unix.Unmount(target, unix.MNT_DETACH); derr != nil {
			return fmt.Errorf("unmount %s: %w", target, errors.Join(err, derr))
		}
		return nil
	}
	// A block filesystem still in use: read-only makes its journal clean
	// before the power goes.
	rerr := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	if derr := unix.Unmount(target, unix.MNT_DETACH); derr != nil {
		return fmt.Errorf("unmount %s: %w", target, errors.Join(err, rerr, derr))
	}
	if rerr != nil {
		return fmt.Errorf("busy, detached without a read-only remount: %w", errors.Join(err, rerr))
	}
	return nil
}
