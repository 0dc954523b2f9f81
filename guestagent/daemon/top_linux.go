package daemon

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
)

// clockTicks is USER_HZ, 100 on every Linux the guest runs.
const clockTicks = 100

// procInfo is what `docker top` shows of one process, from /proc.
type procInfo struct {
	pid, ppid, session int
	uid                uint32
	state              string
	ttyNr              int
	utime, stime       uint64 // ticks
	threads            int
	startTicks         uint64 // since boot
	start              time.Time
	vsize, rss         uint64 // bytes
	cmd                string
}

// parseStat reads /proc/PID/stat; comm may hold spaces and parentheses.
func parseStat(b []byte) (procInfo, error) {
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procInfo{}, fmt.Errorf("malformed stat")
	}
	var p procInfo
	var err error
	if p.pid, err = strconv.Atoi(strings.TrimSpace(s[:open])); err != nil {
		return procInfo{}, fmt.Errorf("malformed stat: %w", err)
	}
	comm := s[open+1 : end]
	f := strings.Fields(s[end+1:])
	if len(f) < 22 {
		return procInfo{}, fmt.Errorf("malformed stat: %d fields", len(f))
	}
	num := func(i int) uint64 { n, _ := strconv.ParseUint(f[i], 10, 64); return n }
	inum := func(i int) int { n, _ := strconv.Atoi(f[i]); return n }
	p.state = f[0]
	p.ppid = inum(1)
	p.session = inum(3)
	p.ttyNr = inum(4)
	p.utime, p.stime = num(11), num(12)
	p.threads = inum(17)
	p.vsize = num(20)
	p.rss = num(21) * uint64(os.Getpagesize())
	p.cmd = "[" + comm + "]"
	p.startTicks = num(19)
	return p, nil
}

func readProc(pid int, boot time.Time) (procInfo, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procInfo{}, err
	}
	p, err := parseStat(b)
	if err != nil {
		return procInfo{}, err
	}
	p.start = boot.Add(time.Duration(p.startTicks) * time.Second / clockTicks)
	if cl, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(cl) > 0 {
		p.cmd = strings.TrimSpace(strings.ReplaceAll(string(bytes.TrimRight(cl, "\x00")), "\x00", " "))
	}
	if st, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(st))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					if n, err := strconv.ParseUint(f[0], 10, 32); err == nil {
						p.uid = uint32(n)
					}
				}
			}
		}
	}
	return p, nil
}

// bootTime is when the kernel started, from /proc/stat.
func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64); err == nil {
				return time.Unix(n, 0)
			}
		}
	}
	return time.Time{}
}

func ttyName(nr int) string {
	if nr == 0 {
		return "?"
	}
	major, minor := (nr>>8)&0xfff, (nr&0xff)|((nr>>12)&0xfff00)
	switch {
	case major == 136 || major >= 137 && major <= 143:
		return fmt.Sprintf("pts/%d", minor+(major-136)*256)
	case major == 4 && minor < 64:
		return fmt.Sprintf("tty%d", minor)
	case major == 4:
		return fmt.Sprintf("ttyS%d", minor-64)
	case major == 5 && minor == 1:
		return "console"
	}
	return "?"
}

// cpuTime formats ticks as ps's TIME: [DD-]HH:MM:SS.
func cpuTime(ticks uint64) string {
	s := ticks / clockTicks
	h, m, sec := s/3600, s/60%60, s%60
	if h >= 24 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", h/24, h%24, m, sec)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
}

// psStart formats a start time as ps's STIME/START: the time today, else
// the date.
func psStart(t, now time.Time) string {
	if t.Year() == now.Year() && t.YearDay() == now.YearDay() {
		return t.Format("15:04")
	}
	if t.Year() == now.Year() {
		return t.Format("Jan02")
	}
	return t.Format("2006")
}

// topRows renders processes as ps does with psArgs ("-ef" or "aux").
func topRows(ps []procInfo, psArgs string, now time.Time, users map[uint32]string, memTotal uint64) (container.TopResponse, error) {
	user := func(uid uint32) string {
		if n, ok := users[uid]; ok {
			return n
		}
		return strconv.FormatUint(uint64(uid), 10)
	}
	cpuPct := func(p procInfo) float64 {
		el := now.Sub(p.start).Seconds()
		if el <= 0 {
			return 0
		}
		return float64(p.utime+p.stime) / clockTicks / el * 100
	}
	var r container.TopResponse
	switch strings.TrimPrefix(psArgs, "-") {
	case "", "ef", "fe":
		r.Titles = []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}
		for _, p := range ps {
			r.Processes = append(r.Processes, []string{
				user(p.uid), strconv.Itoa(p.pid), strconv.Itoa(p.ppid), strconv.Itoa(int(cpuPct(p))),
				psStart(p.start, now), ttyName(p.ttyNr), cpuTime(p.utime + p.stime), p.cmd,
			})
		}
	case "aux", "axu", "uax", "xau", "aux ww", "auxww":
		r.Titles = []string{"USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME", "COMMAND"}
		for _, p := range ps {
			mem := 0.0
			if memTotal > 0 {
				mem = float64(p.rss) / float64(memTotal) * 100
			}
			stat := p.state
			if p.session == p.pid {
				stat += "s"
			}
			if p.threads > 1 {
				stat += "l"
			}
			t := (p.utime + p.stime) / clockTicks
			r.Processes = append(r.Processes, []string{
				user(p.uid), strconv.Itoa(p.pid), fmt.Sprintf("%.1f", cpuPct(p)), fmt.Sprintf("%.1f", mem),
				strconv.FormatUint(p.vsize/1024, 10), strconv.FormatUint(p.rss/1024, 10), ttyName(p.ttyNr), stat,
				psStart(p.start, now), fmt.Sprintf("%d:%02d", t/60, t%60), p.cmd,
			})
		}
	default:
		return r, invalidf("ps options %q are not supported by berth (use -ef or aux)", psArgs)
	}
	if r.Processes == nil {
		r.Processes = [][]string{}
	}
	return r, nil
}

// memTotal is the guest's memory in bytes.
func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// Top lists the container's processes.
func (d *Daemon) Top(ctx context.Context, name, psArgs string) (container.TopResponse, error) {
	c, err := d.lookup(name)
	if err != nil {
		return container.TopResponse{}, err
	}
	if _, err := topRows(nil, psArgs, time.Now(), nil, 0); err != nil {
		return container.TopResponse{}, err
	}
	c.mu.Lock()
	sc := c.shim
	c.mu.Unlock()
	if sc == nil {
		return container.TopResponse{}, notRunning(c.id)
	}
	pids, err := sc.Top(ctx)
	if err != nil {
		return container.TopResponse{}, fmt.Errorf("listing the processes of %s: %w", c.id, err)
	}
	slices.Sort(pids)
	boot := bootTime()
	var ps []procInfo
	for _, pid := range pids {
		if p, err := readProc(pid, boot); err == nil {
			ps = append(ps, p)
		}
	}
	users := map[uint32]string{}
	if b, err := rootReader(c.path(rootfsDir))("/etc/passwd"); err == nil {
		for _, e := range parsePasswd(b) {
			if _, dup := users[e.uid]; !dup {
				users[e.uid] = e.name
			}
		}
	}
	r, err := topRows(ps, psArgs, time.Now(), users, memTotal())
	if err != nil {
		return r, err
	}
	d.publish(c, events.ActionTop, nil)
	return r, nil
}
