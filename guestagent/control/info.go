//go:build unix

package control

import (
	"bufio"
	"context"
	"io"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthvm/berth/guestagent/api"
)

// Info reports the guest's identity and how much of it is in use. Parts
// that cannot be read are left zero rather than failing the call.
func (s *Server) Info(ctx context.Context, _ *api.InfoRequest) (*api.InfoResponse, error) {
	resp := &api.InfoResponse{
		AgentVersion: Version,
		Cpus:         int32(runtime.NumCPU()),
		Transport:    s.cfg.Transport,
		Native:       s.cfg.Native,
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		resp.Kernel = unix.ByteSliceToString(uts.Release[:])
		resp.Arch = unix.ByteSliceToString(uts.Machine[:])
	}
	if up, err := uptime(); err == nil {
		resp.UptimeNs = int64(up)
		resp.BootTimeUnixNs = time.Now().Add(-up).UnixNano()
	} else {
		s.log.Debug("reading uptime", "err", err)
	}
	if !s.cfg.BootTime.IsZero() {
		resp.BootTimeUnixNs = s.cfg.BootTime.UnixNano()
	}
	if total, avail, err := memory(); err == nil {
		resp.MemoryTotalBytes = total
		if avail <= total {
			resp.MemoryUsedBytes = total - avail
		}
	} else {
		s.log.Debug("reading memory", "err", err)
	}
	if s.cfg.StateDir != "" {
		if total, used, err := diskUsage(s.cfg.StateDir); err == nil {
			resp.DiskTotalBytes, resp.DiskUsedBytes = total, used
		} else {
			s.log.Debug("reading disk usage", "dir", s.cfg.StateDir, "err", err)
		}
	}
	return resp, nil
}

// parseMeminfo returns MemTotal and MemAvailable from /proc/meminfo, in
// bytes. Kernels before 3.14 lack MemAvailable; then free + buffers +
// cached stands in for it.
func parseMeminfo(r io.Reader) (total, avail uint64, ok bool) {
	vals := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, found := strings.Cut(sc.Text(), ":")
		if !found {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		vals[key] = n
	}
	total, ok = vals["MemTotal"]
	if !ok {
		return 0, 0, false
	}
	avail, hasAvail := vals["MemAvailable"]
	if !hasAvail {
		avail = vals["MemFree"] + vals["Buffers"] + vals["Cached"]
	}
	return total, avail, true
}
