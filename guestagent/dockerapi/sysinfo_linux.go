package dockerapi

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// hostFacts reads what `docker info` and `docker version` report of the
// kernel and machine.
func hostFacts() facts {
	var f facts
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		f.kernel = unix.ByteSliceToString(u.Release[:])
	}
	if file, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "MemTotal:" {
				if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
					f.memTotal = kb * 1024
				}
				break
			}
		}
		file.Close()
	}
	// cgroup v2 alone has cgroup.controllers at the root; a v1/v2 hybrid
	// (some hosts in native mode) does not.
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		f.cgroupVersion = "2"
		return f
	}
	f.cgroupVersion = "1"
	// On v1, a limit works when its controller's file is there (the
	// usual /sys/fs/cgroup/<controller> layout), as the shim checks.
	has := func(p string) bool { _, err := os.Stat("/sys/fs/cgroup/" + p); return err == nil }
	f.v1 = &v1Limits{
		memory: has("memory/memory.limit_in_bytes"),
		swap:   has("memory/memory.memsw.limit_in_bytes"),
		cfs:    has("cpu/cpu.cfs_quota_us"),
		shares: has("cpu/cpu.shares"),
		cpuset: has("cpuset/cpuset.cpus"),
		pids:   has("pids/cgroup.procs"), // pids.max exists only below the root
	}
	return f
}
