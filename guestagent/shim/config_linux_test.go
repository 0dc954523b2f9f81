package shim

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCapabilities(t *testing.T) {
	all := allCaps()
	tests := []struct {
		name       string
		privileged bool
		add, drop  []string
		has, hasNt []string
		count      int // -1: don't check
	}{
		{"default", false, nil, nil, []string{"CAP_CHOWN", "CAP_KILL"}, []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN"}, len(defaultCaps)},
		{"add", false, []string{"net_admin"}, nil, []string{"CAP_NET_ADMIN", "CAP_CHOWN"}, nil, len(defaultCaps) + 1},
		{"drop", false, nil, []string{"CAP_CHOWN"}, []string{"CAP_KILL"}, []string{"CAP_CHOWN"}, len(defaultCaps) - 1},
		{"drop all", false, nil, []string{"ALL"}, nil, []string{"CAP_CHOWN"}, 0},
		{"drop all add one", false, []string{"NET_BIND_SERVICE"}, []string{"all"}, []string{"CAP_NET_BIND_SERVICE"}, []string{"CAP_CHOWN"}, 1},
		{"add all drop one", false, []string{"ALL"}, []string{"SYS_ADMIN"}, []string{"CAP_NET_ADMIN"}, []string{"CAP_SYS_ADMIN"}, len(all) - 1},
		{"privileged", true, nil, []string{"ALL"}, []string{"CAP_SYS_ADMIN"}, nil, len(all)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := capabilities(tt.privileged, tt.add, tt.drop)
			for _, c := range tt.has {
				if !slices.Contains(got, c) {
					t.Errorf("missing %s in %v", c, got)
				}
			}
			for _, c := range tt.hasNt {
				if slices.Contains(got, c) {
					t.Errorf("unexpected %s in %v", c, got)
				}
			}
			if tt.count >= 0 && len(got) != tt.count {
				t.Errorf("got %d caps, want %d: %v", len(got), tt.count, got)
			}
		})
	}
}

func TestOCISpec(t *testing.T) {
	base := Spec{ID: "c1", Rootfs: "/r", Process: Process{Args: []string{"true"}}}
	tests := []struct {
		name  string
		mod   func(*Spec)
		check func(*testing.T, *specs.Spec)
	}{
		{"defaults", func(*Spec) {}, func(t *testing.T, s *specs.Spec) {
			if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
				t.Error("no masked/readonly paths")
			}
			if s.Process.Cwd != "/" || !slices.ContainsFunc(s.Process.Env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
				t.Errorf("cwd %q env %v", s.Process.Cwd, s.Process.Env)
			}
			if !hasNS(s, specs.NetworkNamespace, "") || !hasNS(s, specs.PIDNamespace, "") {
				t.Errorf("namespaces %v", s.Linux.Namespaces)
			}
			if sysRO(s) != "ro" {
				t.Error("/sys not read-only")
			}
		}},
		{"privileged", func(s *Spec) { s.Privileged = true }, func(t *testing.T, s *specs.Spec) {
			if len(s.Linux.MaskedPaths) != 0 || s.Linux.Seccomp != nil || sysRO(s) != "rw" {
				t.Error("privileged keeps confinement")
			}
		}},
		{"netns path", func(s *Spec) { s.NetNS = "/run/netns/x" }, func(t *testing.T, s *specs.Spec) {
			if !hasNS(s, specs.NetworkNamespace, "/run/netns/x") {
				t.Errorf("namespaces %v", s.Linux.Namespaces)
			}
		}},
		{"host net", func(s *Spec) { s.NetNS = "host" }, func(t *testing.T, s *specs.Spec) {
			if hasNS(s, specs.NetworkNamespace, "") {
				t.Error("host network has a netns")
			}
		}},
		{"userns", func(s *Spec) { s.UserNS = true }, func(t *testing.T, s *specs.Spec) {
			if !hasNS(s, specs.UserNamespace, "") || len(s.Linux.UIDMappings) != 1 {
				t.Error("no user namespace")
			}
			if sysType(s) != "sysfs" {
				t.Errorf("/sys is %s, want sysfs in the container's own netns", sysType(s))
			}
		}},
		{"userns with a joined netns", func(s *Spec) { s.UserNS, s.NetNS = true, "/run/netns/x" }, func(t *testing.T, s *specs.Spec) {
			if sysType(s) != "bind" || sysRO(s) != "ro" {
				t.Errorf("/sys is %s (%s), want a read-only bind: sysfs cannot be mounted there", sysType(s), sysRO(s))
			}
		}},
		{"readonly and mounts", func(s *Spec) {
			s.Readonly = true
			s.Mounts = []Mount{{Source: "/a", Destination: "/b", Options: []string{"ro"}}}
			s.Hosts = "/h"
		}, func(t *testing.T, s *specs.Spec) {
			if !s.Root.Readonly {
				t.Error("root not read-only")
			}
			var found int
			for _, m := range s.Mounts {
				if (m.Destination == "/b" && m.Type == "bind" && slices.Contains(m.Options, "rbind")) || m.Destination == "/etc/hosts" {
					found++
				}
			}
			if found != 2 {
				t.Errorf("mounts %v", s.Mounts)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.mod(&s)
			got, _, err := ociSpec(s, "/berth/c1")
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
	if _, _, err := ociSpec(Spec{ID: "x"}, "/berth/x"); err == nil {
		t.Error("no command: no error")
	}
}

func hasNS(s *specs.Spec, typ specs.LinuxNamespaceType, path string) bool {
	return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == typ && n.Path == path })
}

func sysRO(s *specs.Spec) string {
	for _, m := range s.Mounts {
		if m.Destination == "/sys" {
			for _, o := range m.Options {
				if o == "ro" || o == "rw" {
					return o
				}
			}
		}
	}
	return ""
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		in    string
		total uint64
		cpus  uint32
	}{
		{"cpu  1 2 3 4 5 6 7 8 9\ncpu0 1 1 1 1 1 1 1\ncpu1 0 0 0 0 0 0 0\nintr 5\n", 28 * 1e7, 2},
		{"", 0, 0},
	}
	for _, tt := range tests {
		total, cpus := parseProcStat(tt.in)
		if total != tt.total || cpus != tt.cpus {
			t.Errorf("parseProcStat = %d, %d; want %d, %d", total, cpus, tt.total, tt.cpus)
		}
	}
}

func TestApplyResources(t *testing.T) {
	tests := []struct {
		name    string
		r       Resources
		wantErr bool
		check   func(*testing.T, *specs.LinuxResources)
	}{
		{"none", Resources{}, false, func(t *testing.T, r *specs.LinuxResources) {
			if r.Memory != nil || r.CPU != nil || r.Pids != nil {
				t.Errorf("limits set: %+v", r)
			}
		}},
		{"memory and swap", Resources{MemoryBytes: 1 << 20, MemorySwap: 2 << 20}, false, func(t *testing.T, r *specs.LinuxResources) {
			if *r.Memory.Limit != 1<<20 || *r.Memory.Swap != 2<<20 {
				t.Errorf("memory %+v", r.Memory)
			}
		}},
		{"unlimited swap", Resources{MemoryBytes: 1 << 20, MemorySwap: -1}, false, func(t *testing.T, r *specs.LinuxResources) {
			if *r.Memory.Swap != -1 {
				t.Errorf("swap %d", *r.Memory.Swap)
			}
		}},
		{"swap below memory", Resources{MemoryBytes: 2 << 20, MemorySwap: 1 << 20}, true, nil},
		{"cpu", Resources{CPUQuota: 50000, CPUShares: 1}, false, func(t *testing.T, r *specs.LinuxResources) {
			if *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 2 {
				t.Errorf("cpu %+v", r.CPU)
			}
		}},
		{"pids", Resources{PidsLimit: 10}, false, func(t *testing.T, r *specs.LinuxResources) {
			if *r.Pids.Limit != 10 {
				t.Errorf("pids %+v", r.Pids)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res specs.LinuxResources
			w, err := applyResources(&res, tt.r, true)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if len(w) != 0 {
				t.Errorf("warnings on cgroup v2: %v", w)
			}
			if tt.check != nil {
				tt.check(t, &res)
			}
		})
	}
}

func sysType(s *specs.Spec) string {
	for _, m := range s.Mounts {
		if m.Destination == "/sys" {
			return m.Type
		}
	}
	return ""
}
