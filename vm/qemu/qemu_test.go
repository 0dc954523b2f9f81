package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMatchesInstance(t *testing.T) {
	f := instanceFiles("/home/u/.berth/a", "linux")
	tests := []struct {
		name    string
		cmdline string
		want    bool
	}{
		{"ours", "/usr/bin/qemu-system-x86_64 -name berth-a -pidfile /home/u/.berth/a/qemu.pid -drive x", true},
		{"ours, pidfile last", "qemu-system-aarch64 -pidfile /home/u/.berth/a/qemu.pid", true},
		{"other instance with a longer name", "/usr/bin/qemu-system-x86_64 -pidfile /home/u/.berth/ab/qemu.pid -x", false},
		{"other instance in a subdir", "/usr/bin/qemu-system-x86_64 -pidfile /home/u/.berth/a/b/qemu.pid -x", false},
		{"not qemu (pid reused)", "/usr/bin/vim -pidfile /home/u/.berth/a/qemu.pid -x", false},
		{"zombie", "", false},
	}
	for _, tt := range tests {
		if got := matchesInstance(tt.cmdline, f); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestReadPidfile(t *testing.T) {
	tests := []struct {
		content string
		want    int
		wantErr bool
	}{
		{"1234\n", 1234, false},
		{"  77 ", 77, false},
		{"", 0, true},
		{"abc", 0, true},
		{"-5", 0, true},
		{"0", 0, true},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "qemu.pid")
		if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readPidfile(path)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("readPidfile(%q) = %d, %v", tt.content, got, err)
		}
	}
}

func TestTailFrom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qemu.log")
	old := "old boot: unrelated error\n"
	cur := "qemu-system-x86_64: -device nope: 'nope' is not a valid device model name\n"
	if err := os.WriteFile(path, []byte(old+cur), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		start, n int64
		want     string
	}{
		{int64(len(old)), 4096, strings.TrimSpace(cur)},
		{0, 4096, strings.TrimSpace(old + cur)},
		{0, 10, "odel name"},
	}
	for _, tt := range tests {
		if got := tailFrom(path, tt.start, tt.n); got != tt.want {
			t.Errorf("tailFrom(%d, %d) = %q, want %q", tt.start, tt.n, got, tt.want)
		}
	}
}
