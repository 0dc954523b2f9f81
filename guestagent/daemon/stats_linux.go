package daemon

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
)

// Stats samples the container's resource use.
func (d *Daemon) Stats(ctx context.Context, name string) (container.StatsResponse, error) {
	c, err := d.lookup(name)
	if err != nil {
		return container.StatsResponse{}, err
	}
	c.mu.Lock()
	sc := c.shim
	r := container.StatsResponse{ID: c.id, Name: c.rec.Name, OSType: "linux"}
	host := c.hc.NetworkMode == "host"
	c.mu.Unlock()
	if sc == nil {
		return r, nil // a stopped container's stats are all zero, as dockerd's
	}
	s, err := sc.Stats(ctx)
	if err != nil {
		return r, fmt.Errorf("reading the stats of %s: %w", c.id, err)
	}
	r.Read = s.Read
	r.CPUStats = container.CPUStats{
		CPUUsage: container.CPUUsage{
			TotalUsage:        s.CPUUsageNs,
			UsageInUsermode:   s.CPUUserNs,
			UsageInKernelmode: s.CPUSystemNs,
		},
		SystemUsage: s.SystemCPUNs,
		OnlineCPUs:  s.OnlineCPUs,
	}
	limit := s.MemoryLimit
	if total := memTotal(); total > 0 && (limit == 0 || limit > total) {
		limit = total
	}
	r.MemoryStats = container.MemoryStats{Usage: s.MemoryUsage, Limit: limit, Stats: s.MemoryStats}
	r.PidsStats = container.PidsStats{Current: s.PidsCurrent, Limit: s.PidsLimit}
	if s.BlkioRead > 0 || s.BlkioWrite > 0 {
		r.BlkioStats.IoServiceBytesRecursive = []container.BlkioStatEntry{
			{Op: "read", Value: s.BlkioRead}, {Op: "write", Value: s.BlkioWrite},
		}
	}
	if pid := sc.Pid(); pid > 0 && !host {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid)); err == nil {
			r.Networks = parseNetDev(b)
		}
	}
	return r, nil
}

// parseNetDev reads /proc/PID/net/dev into per-interface counters,
// loopback left out as dockerd does.
func parseNetDev(b []byte) map[string]container.NetworkStats {
	out := map[string]container.NetworkStats{}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 16 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		out[name] = container.NetworkStats{
			RxBytes: n(0), RxPackets: n(1), RxErrors: n(2), RxDropped: n(3),
			TxBytes: n(8), TxPackets: n(9), TxErrors: n(10), TxDropped: n(11),
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
