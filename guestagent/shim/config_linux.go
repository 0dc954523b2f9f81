package shim

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	"github.com/moby/sys/devices"
	"github.com/opencontainers/cgroups"
	// Registers the cgroup device-rule managers libcontainer needs.
	_ "github.com/opencontainers/cgroups/devices"
	devconfig "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	lcseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultCaps is Docker's default capability set.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// userNSBase and userNSSize are the host range container root maps to
// with Spec.UserNS.
const (
	userNSBase = 100000
	userNSSize = 65536
)

func capName(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if c == "ALL" || strings.HasPrefix(c, "CAP_") {
		return c
	}
	return "CAP_" + c
}

// allCaps is every capability this process can hand on: the known ones
// in its bounding set (a nested agent may lack some, and asking for
// them would fail the container's start).
func allCaps() []string {
	own, err := capability.NewPid2(0)
	if err == nil {
		err = own.Load()
	}
	var out []string
	for _, c := range capability.ListKnown() {
		if err == nil && !own.Get(capability.BOUNDING, c) {
			continue
		}
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}

// capabilities applies Docker's rules: start from the defaults (or all
// when privileged), add, then drop; "ALL" in either list means every
// capability, and an explicit add wins over a drop of ALL.
func capabilities(privileged bool, add, drop []string) []string {
	if privileged {
		return allCaps()
	}
	set := map[string]bool{}
	addAll, dropAll := false, false
	for _, c := range add {
		if capName(c) == "ALL" {
			addAll = true
		}
	}
	for _, c := range drop {
		if capName(c) == "ALL" {
			dropAll = true
		}
	}
	switch {
	case addAll:
		for _, c := range allCaps() {
			set[c] = true
		}
	case !dropAll:
		for _, c := range defaultCaps {
			set[c] = true
		}
	}
	if !addAll {
		for _, c := range drop {
			delete(set, capName(c))
		}
	}
	for _, c := range add {
		if n := capName(c); n != "ALL" {
			set[n] = true
		}
	}
	if addAll {
		for _, c := range drop {
			if n := capName(c); n != "ALL" {
				delete(set, n)
			}
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// ociSpec turns a Spec into a runtime-spec document, as Docker's
// defaults would make it. Warnings name what the host cannot apply.
func ociSpec(s Spec, cgroupPath string) (*specs.Spec, []string, error) {
	var warnings []string
	caps := capabilities(s.Privileged, s.CapAdd, s.CapDrop)
	env := s.Process.Env
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	cwd := s.Process.Cwd
	if cwd == "" {
		cwd = "/"
	}
	p := &specs.Process{
		Terminal: s.Process.Tty,
		Args:     s.Process.Args,
		Env:      env,
		Cwd:      cwd,
		User: specs.User{
			UID:            s.Process.UID,
			GID:            s.Process.GID,
			AdditionalGids: s.Process.AdditionalGIDs,
		},
		Capabilities: &specs.LinuxCapabilities{
			Bounding: caps, Effective: caps, Permitted: caps,
		},
		NoNewPrivileges: s.NoNewPrivileges,
		Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1048576, Soft: 1048576}},
	}
	if s.Process.Tty {
		p.ConsoleSize = &specs.Box{Width: uint(s.Process.Width), Height: uint(s.Process.Height)}
	}
	if len(p.Args) == 0 {
		return nil, nil, fmt.Errorf("building container config: no command")
	}

	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	cgOpts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
	if s.Privileged {
		sysOpts[3] = "rw"
		cgOpts[4] = "rw"
	}
	sys := specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts}
	if s.UserNS && s.NetNS != "" {
		// sysfs can be mounted only from the user namespace that owns
		// the network namespace; a joined one (netctl's, the host's) is
		// the host's: bind the host's /sys instead, as runc does for
		// rootless containers.
		sys = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: append([]string{"rbind"}, sysOpts...)}
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		sys,
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: cgOpts},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=67108864"}},
	}
	for _, f := range []struct{ src, dst string }{
		{s.Hosts, "/etc/hosts"}, {s.ResolvConf, "/etc/resolv.conf"}, {s.HostnameFile, "/etc/hostname"},
	} {
		if f.src != "" {
			mounts = append(mounts, specs.Mount{Destination: f.dst, Type: "bind", Source: f.src, Options: []string{"rbind", "rprivate"}})
		}
	}
	for _, m := range s.Mounts {
		typ := m.Type
		opts := m.Options
		src := m.Source
		if typ == "" || typ == "bind" {
			typ = "bind"
			if !slices.Contains(opts, "bind") && !slices.Contains(opts, "rbind") {
				opts = append(slices.Clone(opts), "rbind")
			}
		}
		if typ == "tmpfs" && src == "" {
			src = "tmpfs"
		}
		mounts = append(mounts, specs.Mount{Destination: m.Destination, Type: typ, Source: src, Options: opts})
	}

	unified := cgroups.IsCgroup2UnifiedMode()
	ns := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
	}
	switch s.NetNS {
	case "host":
	case "":
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	default:
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: s.NetNS})
	}
	if unified {
		// Docker's default on cgroup v2; on v1 it shares the host's.
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	linux := &specs.Linux{
		Namespaces:  ns,
		CgroupsPath: cgroupPath,
		Resources:   &specs.LinuxResources{},
	}
	if s.NetNS == "host" {
		// Docker does not mount a read-only sysfs over the host's net.
		linux.Namespaces = slices.DeleteFunc(linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
	}
	if s.UserNS {
		linux.Namespaces = append(linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: userNSBase, Size: userNSSize}}
		linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: userNSBase, Size: userNSSize}}
	}
	if !s.Privileged {
		linux.MaskedPaths = maskedPaths
		linux.ReadonlyPaths = readonlyPaths
	}

	r := s.Resources
	w, err := applyResources(linux.Resources, r, unified)
	if err != nil {
		return nil, nil, err
	}
	warnings = append(warnings, w...)

	spec := &specs.Spec{
		Version:  specs.Version,
		Process:  p,
		Root:     &specs.Root{Path: s.Rootfs, Readonly: s.Readonly},
		Hostname: s.Hostname,
		Mounts:   mounts,
		Linux:    linux,
	}
	if !s.Privileged && !s.SeccompUnconfined {
		if !lcseccomp.Enabled {
			warnings = append(warnings, "seccomp profile not applied: the agent was built without seccomp support (build tag seccomp)")
		} else {
			prof, err := seccomp.GetDefaultProfile(spec)
			if err != nil {
				return nil, nil, fmt.Errorf("loading the default seccomp profile: %w", err)
			}
			linux.Seccomp = prof
		}
	}
	return spec, warnings, nil
}

// LimitWarnings returns, for limits r asks for, the ones this host's
// cgroups cannot apply (a cgroup v1 host without the controller or its
// file), worded as the warnings a container start logs; nil on cgroup v2.
// The engine shows them when the container is created.
func LimitWarnings(r Resources) []string {
	w, err := applyResources(&specs.LinuxResources{}, r, cgroups.IsCgroup2UnifiedMode())
	if err != nil {
		return nil // the start reports it
	}
	return w
}

// applyResources sets the limits into res. On cgroup v1 it checks the
// controller files the limits need and returns a warning for each limit
// it cannot apply instead of failing, as Docker does.
func applyResources(res *specs.LinuxResources, r Resources, unified bool) ([]string, error) {
	var warnings []string
	has := func(subsys, file string) bool {
		if unified {
			return true
		}
		mnt, err := cgroups.FindCgroupMountpoint("", subsys)
		if err != nil {
			return false
		}
		_, err = os.Stat(filepath.Join(mnt, file))
		return err == nil
	}
	if r.MemoryBytes > 0 || r.MemorySwap != 0 {
		mem := &specs.LinuxMemory{}
		if r.MemoryBytes > 0 {
			if has("memory", "memory.limit_in_bytes") {
				mem.Limit = &r.MemoryBytes
			} else {
				warnings = append(warnings, "memory limit not applied: no memory cgroup controller")
			}
		}
		if r.MemorySwap != 0 && r.MemoryBytes > 0 {
			if r.MemorySwap > 0 && r.MemorySwap < r.MemoryBytes {
				return nil, fmt.Errorf("memory+swap limit %d is below the memory limit %d", r.MemorySwap, r.MemoryBytes)
			}
			if has("memory", "memory.memsw.limit_in_bytes") {
				sw := r.MemorySwap
				mem.Swap = &sw
			} else {
				warnings = append(warnings, "memory swap limit not applied: the kernel has no swap accounting (memory.memsw) on this cgroup v1 host")
			}
		}
		if mem.Limit != nil || mem.Swap != nil {
			res.Memory = mem
		}
	}
	if r.CPUQuota > 0 || r.CPUShares > 0 {
		cpu := &specs.LinuxCPU{}
		if r.CPUQuota > 0 {
			if has("cpu", "cpu.cfs_quota_us") {
				q := r.CPUQuota
				per := r.CPUPeriod
				if per == 0 {
					per = 100000
				}
				cpu.Quota, cpu.Period = &q, &per
			} else {
				warnings = append(warnings, "CPU quota not applied: no CFS quota support in the cpu cgroup controller")
			}
		}
		if r.CPUShares > 0 {
			if has("cpu", "cpu.shares") {
				sh := min(max(r.CPUShares, 2), 262144)
				cpu.Shares = &sh
			} else {
				warnings = append(warnings, "CPU shares not applied: no cpu cgroup controller")
			}
		}
		res.CPU = cpu
	}
	if r.PidsLimit > 0 {
		// pids.max exists only below the v1 root: the mount is the test.
		if has("pids", "cgroup.procs") {
			res.Pids = &specs.LinuxPids{Limit: &r.PidsLimit}
		} else {
			warnings = append(warnings, "PIDs limit not applied: no pids cgroup controller")
		}
	}
	return warnings, nil
}

// libcontainerConfig converts the runtime spec, and grants a privileged
// container every host device.
func libcontainerConfig(id string, spec *specs.Spec, privileged bool) (*configs.Config, error) {
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName: id,
		Spec:       spec,
	})
	if err != nil {
		return nil, fmt.Errorf("converting container config: %w", err)
	}
	if privileged {
		hostDevs, err := devices.HostDevices()
		if err != nil {
			return nil, fmt.Errorf("listing host devices: %w", err)
		}
		have := map[string]bool{}
		for _, d := range cfg.Devices {
			have[d.Path] = true
		}
		for _, d := range hostDevs {
			if !have[d.Path] && !strings.HasPrefix(d.Path, "/dev/pts/") && d.Path != "/dev/ptmx" && d.Path != "/dev/console" {
				cfg.Devices = append(cfg.Devices, d)
			}
		}
		cfg.Cgroups.Resources.Devices = []*devconfig.Rule{{
			Type: devconfig.WildcardDevice, Major: devconfig.Wildcard, Minor: devconfig.Wildcard,
			Permissions: "rwm", Allow: true,
		}}
	}
	return cfg, nil
}
