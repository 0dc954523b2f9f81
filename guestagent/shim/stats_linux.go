package shim

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

func (s *server) stats() (Stats, error) {
	st, err := s.ctr.Stats()
	if err != nil {
		return Stats{}, fmt.Errorf("reading container stats: %w", err)
	}
	out := Stats{Read: time.Now().UTC()}
	out.SystemCPUNs, out.OnlineCPUs = systemCPU()
	if cg := st.CgroupStats; cg != nil {
		cpu := cg.CpuStats.CpuUsage
		out.CPUUsageNs = cpu.TotalUsage
		out.CPUUserNs = cpu.UsageInUsermode
		out.CPUSystemNs = cpu.UsageInKernelmode
		out.MemoryUsage = cg.MemoryStats.Usage.Usage
		out.MemoryLimit = cg.MemoryStats.Usage.Limit
		out.MemoryStats = cg.MemoryStats.Stats
		out.PidsCurrent = cg.PidsStats.Current
		out.PidsLimit = cg.PidsStats.Limit
		for _, e := range cg.BlkioStats.IoServiceBytesRecursive {
			switch strings.ToLower(e.Op) {
			case "read":
				out.BlkioRead += e.Value
			case "write":
				out.BlkioWrite += e.Value
			}
		}
	}
	return out, nil
}

// systemCPU returns the host's total CPU time in nanoseconds and its
// CPU count from /proc/stat, as Docker's system_cpu_usage.
func systemCPU() (uint64, uint32) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	return parseProcStat(string(b))
}

func parseProcStat(text string) (uint64, uint32) {
	const clockTicks = 100 // USER_HZ on every Linux this runs on
	var total uint64
	var cpus uint32
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "cpu":
			for _, v := range f[1:min(len(f), 8)] {
				n, _ := strconv.ParseUint(v, 10, 64)
				total += n
			}
		case strings.HasPrefix(f[0], "cpu"):
			cpus++
		}
	}
	return total * (1e9 / clockTicks), cpus
}
