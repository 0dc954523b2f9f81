package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthvm/berth/vm"
)

// These tests run real QEMU. They skip when qemu-system-x86_64 is missing;
// the boot tests also skip without a guest bundle, which they take from
// $BERTH_GUEST_DIR (holding x86_64/kernel and x86_64/initrd) or from the
// build output, out/share/berth/guest/x86_64.

func needQEMU(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the QEMU integration tests run on Linux hosts")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
	}
}

func guestBundle(t *testing.T) (kernel, initrd string) {
	t.Helper()
	var dirs []string
	if d := os.Getenv("BERTH_GUEST_DIR"); d != "" {
		dirs = append(dirs, filepath.Join(d, "x86_64"))
	}
	dirs = append(dirs, filepath.Join("..", "..", "out", "share", "berth", "guest", "x86_64"))
	for _, d := range dirs {
		k, i := filepath.Join(d, "kernel"), filepath.Join(d, "initrd")
		if _, err := os.Stat(k); err != nil {
			continue
		}
		if _, err := os.Stat(i); err != nil {
			continue
		}
		return k, i
	}
	t.Skipf("no x86_64 guest bundle in %s: build it first", strings.Join(dirs, " or "))
	return "", ""
}

// testConfig is a small x86_64 instance in a fresh short dir (socket paths
// must stay short).
func testConfig(t *testing.T, kernel, initrd string) vm.Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "bq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	disk := filepath.Join(dir, "data.img")
	if err := vm.CreateDataDisk(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	return vm.Config{
		Name:        "itest",
		Dir:         dir,
		Arch:        vm.X86_64,
		CPUs:        1,
		MemoryBytes: 512 << 20,
		DataDisk:    disk,
		Kernel:      kernel,
		Initrd:      initrd,
		SerialLog:   filepath.Join(dir, "serial.log"),
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestStartEarlyExitShowsLog(t *testing.T) {
	needQEMU(t)
	dir, err := os.MkdirTemp("", "bq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// QEMU rejects the option before it reads the kernel, so dummies do.
	for _, f := range []string{"kernel", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("not a kernel"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t, filepath.Join(dir, "kernel"), filepath.Join(dir, "initrd"))
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	d.extraArgs = []string{"-berth-no-such-option"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = d.Start(ctx)
	if err == nil {
		d.Stop(ctx)
		t.Fatal("Start with a bad option: no error")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "-berth-no-such-option: invalid option") {
		t.Errorf("error does not quote qemu.log: %v", err)
	}
	if d.Running() {
		t.Error("Running after a failed start")
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, "qemu.pid")); err == nil {
		t.Error("pidfile left after a failed start")
	}
}

func TestStartMissingFiles(t *testing.T) {
	needQEMU(t)
	cfg := testConfig(t, "/nonexistent/kernel", "/nonexistent/initrd")
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err %v, want not exist", err)
	}
}

func TestAttachStalePidfile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("windows trusts any live pid in the pidfile")
	}
	tests := []struct {
		name string
		pid  string
	}{
		{"process gone", "999999999"},
		{"pid reused by another program", strconv.Itoa(os.Getpid())},
		{"garbage", "qemu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, "k", "i")
			d, err := New(cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			pidfile := filepath.Join(cfg.Dir, "qemu.pid")
			if err := os.WriteFile(pidfile, []byte(tt.pid+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if d.Running() {
				t.Fatal("Running with a stale pidfile")
			}
			if _, err := os.Stat(pidfile); err != nil {
				t.Fatal("Running removed the pidfile; it must have no side effects")
			}
			if err := d.Attach(context.Background()); !errors.Is(err, vm.ErrNotRunning) {
				t.Fatalf("Attach: %v, want ErrNotRunning", err)
			}
			if _, err := os.Stat(pidfile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("stale pidfile kept: %v", err)
			}
			if err := d.Stop(context.Background()); err != nil {
				t.Errorf("Stop of a stopped vm: %v", err)
			}
		})
	}
}

// TestHelperHostAgent is not a test: TestAttachAfterHostAgentDeath runs the
// test binary with it as a stand-in host agent, which it then kills.
func TestHelperHostAgent(t *testing.T) {
	dir := os.Getenv("BERTH_QEMU_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	cfg := vm.Config{
		Name: "itest", Dir: dir, Arch: vm.X86_64, CPUs: 1, MemoryBytes: 512 << 20,
		DataDisk: filepath.Join(dir, "data.img"), Kernel: os.Getenv("BERTH_QEMU_HELPER_KERNEL"),
		Initrd: os.Getenv("BERTH_QEMU_HELPER_INITRD"), SerialLog: filepath.Join(dir, "serial.log"),
	}
	d, err := New(cfg, nil)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if err := d.Start(context.Background()); err != nil {
		fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " | "))
		os.Exit(1)
	}
	fmt.Println("STARTED")
	time.Sleep(time.Hour) // until killed
}

func TestAttachAfterHostAgentDeath(t *testing.T) {
	needQEMU(t)
	kernel, initrd := guestBundle(t)
	cfg := testConfig(t, kernel, initrd)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A host agent starts QEMU, then dies without a word.
	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperHostAgent$", "-test.v")
	helper.Env = append(os.Environ(),
		"BERTH_QEMU_HELPER_DIR="+cfg.Dir, "BERTH_QEMU_HELPER_KERNEL="+kernel, "BERTH_QEMU_HELPER_INITRD="+initrd)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	started := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ERROR") {
			t.Fatal(line)
		}
		if line == "STARTED" {
			started = true
			break
		}
	}
	if !started {
		helper.Wait()
		t.Fatal("helper host agent did not start QEMU")
	}
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	helper.Wait()

	// A new host agent finds the VM and takes it over.
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Running() {
		t.Fatalf("QEMU died with its host agent; qemu.log:\n%s", tailFrom(filepath.Join(cfg.Dir, "qemu.log"), 0, 4096))
	}
	if err := d.Start(ctx); err == nil {
		t.Fatal("a second Start on a running VM succeeded")
	}
	if err := d.Attach(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
		t.Fatal("Done closed while the VM runs")
	default:
	}
	var status struct {
		Status string `json:"status"`
	}
	d.mu.Lock()
	qmp := d.proc.qmp
	d.mu.Unlock()
	if err := qmp.execute(ctx, "query-status", nil, &status); err != nil {
		t.Fatal(err)
	}
	if status.Status != "running" {
		t.Errorf("vm status %q", status.Status)
	}

	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Stop")
	}
	if d.Running() {
		t.Error("Running after Stop")
	}
	for _, f := range []string{"qemu.pid", "qmp.sock", "serial.sock"} {
		if _, err := os.Stat(filepath.Join(cfg.Dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Stop: %v", f, err)
		}
	}
	if err := d.Attach(ctx); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("Attach after Stop: %v, want ErrNotRunning", err)
	}
	serial, err := os.ReadFile(cfg.SerialLog)
	if err != nil || !strings.Contains(string(serial), "=== berth: qemu boot") {
		t.Errorf("serial log has no boot marker: %v", err)
	}
}

func TestStartStopAndGuestExit(t *testing.T) {
	needQEMU(t)
	kernel, initrd := guestBundle(t)
	cfg := testConfig(t, kernel, initrd)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if !d.Running() {
		t.Fatal("not Running after Start")
	}
	if err := d.PressPowerButton(ctx); err != nil {
		t.Fatal(err)
	}
	// Whether the guest honours the button depends on it; the plug is
	// pulled regardless.
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Stop")
	}
	if err := d.PressPowerButton(ctx); !errors.Is(err, vm.ErrNotRunning) {
		t.Errorf("PressPowerButton after Stop: %v", err)
	}
	// The driver starts again after a stop, with a fresh Done.
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
		t.Fatal("Done of the second run is already closed")
	default:
	}
	d.mu.Lock()
	pid := d.proc.pid
	d.mu.Unlock()
	if err := killProcess(pid); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed when QEMU died")
	}
	if d.Running() {
		t.Error("Running after QEMU died")
	}
}
