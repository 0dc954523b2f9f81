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
	} else {
		f.cgroupVersion = "1"
	}
	return f
}
