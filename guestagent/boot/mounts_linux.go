package boot

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// baseMounts are the kernel filesystems every guest gets, in order.
var baseMounts = []mountSpec{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	// ptmxmode makes /dev/pts/ptmx usable through the /dev/ptmx symlink;
	// gid 5 is "tty" by convention.
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
	{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

// mountBase mounts baseMounts, skipping targets that are mounted already
// (the agent may run on a root where the kernel mounted /dev).
func mountBase(log *slog.Logger) error {
	for _, m := range baseMounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", m.target, err)
		}
		if mounted(m.target) {
			log.Debug("already mounted", "target", m.target)
			continue
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err != nil && m.data != "" && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBUSY)) {
			// An older kernel may not know an option (nsdelegate); the
			// defaults are still better than no mount.
			log.Warn("mount options refused, retrying without", "target", m.target, "options", m.data, "err", err)
			err = unix.Mount(m.source, m.target, m.fstype, m.flags, "")
		}
		if err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return devLinks()
}

// mounted tells whether path is a mount point, by comparing its device
// with its parent's (enough for the fixed paths used here).
func mounted(path string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	if path == "/" {
		return true
	}
	return st.Dev != parent.Dev
}

// devLinks adds what devtmpfs lacks and containers and shells expect.
func devLinks() error {
	links := []struct{ name, target string }{
		{"/dev/fd", "/proc/self/fd"},
		{"/dev/stdin", "/proc/self/fd/0"},
		{"/dev/stdout", "/proc/self/fd/1"},
		{"/dev/stderr", "/proc/self/fd/2"},
		{"/dev/core", "/proc/kcore"},
	}
	for _, l := range links {
		if err := os.Symlink(l.target, l.name); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("linking %s: %w", l.name, err)
		}
	}
	// The devtmpfs node opens the initial devpts instance; the link opens
	// the one mounted with ptmxmode above.
	if target, err := os.Readlink("/dev/ptmx"); err != nil || target != "pts/ptmx" {
		_ = os.Remove("/dev/ptmx")
		if err := os.Symlink("pts/ptmx", "/dev/ptmx"); err != nil {
			return fmt.Errorf("linking /dev/ptmx: %w", err)
		}
	}
	return nil
}

// enableControllers delegates every cgroup v2 controller the kernel has to
// the children of the root cgroup, where containers will live. One
// refusal does not stop the others.
func enableControllers(log *slog.Logger) error {
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		return fmt.Errorf("reading cgroup controllers: %w", err)
	}
	ctrls := strings.Fields(string(b))
	if len(ctrls) == 0 {
		return nil
	}
	path := "/sys/fs/cgroup/cgroup.subtree_control"
	all := "+" + strings.Join(ctrls, " +")
	if err := os.WriteFile(path, []byte(all), 0o644); err == nil {
		log.Debug("cgroup controllers enabled", "controllers", ctrls)
		return nil
	}
	var errs []error
	for _, c := range ctrls {
		if err := os.WriteFile(path, []byte("+"+c), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("enabling cgroup controller %s: %w", c, err))
		}
	}
	return errors.Join(errs...)
}

// fixConsole makes sure fds 0, 1 and 2 are open. The kernel opens
// /dev/console for init only if the initramfs has that node; without it
// every log line would be lost.
func fixConsole() error {
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err == nil {
		return nil
	}
	if err := os.MkdirAll("/dev", 0o755); err != nil {
		return fmt.Errorf("creating /dev: %w", err)
	}
	tmp := !mounted("/dev")
	if tmp {
		if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"); err != nil {
			return fmt.Errorf("mounting devtmpfs for the console: %w", err)
		}
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("opening /dev/console: %w", err)
	}
	for i := 0; i < 3; i++ {
		if fd != i {
			if err := unix.Dup3(fd, i, 0); err != nil {
				return fmt.Errorf("dup console to fd %d: %w", i, err)
			}
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	if tmp {
		// The open console keeps working; the real /dev comes later.
		_ = unix.Unmount("/dev", unix.MNT_DETACH)
	}
	return nil
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	target, fstype, source string
	// id and parent are the mount's ID and its parent's; the root of a
	// mount namespace is its own parent.
	id, parent int
}

// parseMountinfo reads the IDs, mount point, type and source of each line
// of /proc/self/mountinfo, in mount order. Octal escapes (\040) are
// decoded.
func parseMountinfo(s string) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, mountEntry{target: unescapeOctal(f[4]), fstype: f[sep+1], source: unescapeOctal(f[sep+2]), id: id, parent: parent})
	}
	return out
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
