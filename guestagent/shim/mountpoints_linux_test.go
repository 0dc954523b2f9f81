package shim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestMakeMountPoints(t *testing.T) {
	outside := t.TempDir()
	src := t.TempDir()
	file := filepath.Join(src, "hosts")
	os.WriteFile(file, []byte("x"), 0o644)
	tests := []struct {
		name    string
		m       specs.Mount
		want    string // path in the rootfs that must now exist
		wantDir bool
	}{
		{"file bind", specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: file}, "etc/hosts", false},
		{"dir bind, parents made", specs.Mount{Destination: "/data/vol", Type: "bind", Source: src}, "data/vol", true},
		{"tmpfs", specs.Mount{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs"}, "scratch", true},
		// An absolute link resolves in the rootfs, not on the guest.
		{"through a symlink that leaves the rootfs", specs.Mount{Destination: "/evil/x", Type: "tmpfs"}, filepath.Join(outside, "x"), true},
		{"through a relative symlink", specs.Mount{Destination: "/up/y", Type: "tmpfs"}, "y", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rootfs := t.TempDir()
			os.Mkdir(filepath.Join(rootfs, "etc"), 0o755)
			os.Symlink(outside, filepath.Join(rootfs, "evil"))
			os.Symlink("../../..", filepath.Join(rootfs, "up"))
			if err := makeMountPoints(rootfs, []specs.Mount{tt.m}); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(filepath.Join(rootfs, tt.want))
			if err != nil || fi.IsDir() != tt.wantDir {
				t.Errorf("%s: %v (dir %v, want %v)", tt.want, err, fi != nil && fi.IsDir(), tt.wantDir)
			}
			if entries, _ := os.ReadDir(outside); len(entries) > 0 {
				t.Errorf("a mount point was made outside the rootfs: %v", entries)
			}
		})
	}
	// Mounts on the container's own /proc, /sys and /dev are left alone,
	// and what exists is kept.
	rootfs := t.TempDir()
	os.WriteFile(filepath.Join(rootfs, "keep"), []byte("k"), 0o600)
	mounts := []specs.Mount{
		{Destination: "/dev/pts", Type: "devpts"}, {Destination: "/sys/fs/cgroup", Type: "cgroup"},
		{Destination: "/proc/x", Type: "bind", Source: file}, {Destination: "/keep", Type: "bind", Source: src},
	}
	if err := makeMountPoints(rootfs, mounts); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(rootfs); len(entries) != 1 {
		t.Errorf("rootfs holds %v, want only keep", entries)
	}
}
