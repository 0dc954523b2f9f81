package kmod

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestOpen(t *testing.T) {
	log := slog.New(slog.DiscardHandler) // a kmod.Logger
	dir := t.TempDir()

	// No list: a Loader with nothing to load.
	l, err := open(log, filepath.Join(dir, "missing"), dir)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Start(t.Context(), Core...):
	default:
		t.Error("Start without a list should be done at once")
	}
	if err := l.Wait(t.Context(), "ext4"); err != nil {
		t.Errorf("Wait without a list: %v", err)
	}

	// A list: paths resolve under the module dir, sizes become costs.
	list := filepath.Join(dir, "modules")
	if err := os.WriteFile(list, []byte("kernel/a.ko:\nkernel/b.ko: kernel/a.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kernel", "b.ko"), make([]byte, 1234), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = open(log, list, dir)
	if err != nil {
		t.Fatal(err)
	}
	mods := l.sched.plan.mods
	if len(mods) != 2 || mods[1].path != filepath.Join(dir, "kernel", "b.ko") || mods[1].cost != 1234 || mods[0].cost != 0 {
		t.Errorf("plan = %+v", mods)
	}

	if err := os.WriteFile(list, []byte("kernel/b.ko: kernel/a.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := open(log, list, dir); err == nil {
		t.Error("a dependency that is not listed first should fail the list")
	}
}
