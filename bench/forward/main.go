// Command forward is the port-forwarding benchmark. Side by side in one
// run, it measures:
//
//   - throughput of one TCP connection carrying -size bytes, each way,
//     through the port forwarder (host listener -> transport stream ->
//     guest side -> service) and directly over host loopback;
//   - connection setup: -conns short connections (dial, one byte echoed,
//     close), p50 and p99, forwarded and direct;
//   - the Docker API through the host's docker.sock forwarder and on the
//     guest's socket directly: GET /containers/json on a new connection,
//     as "docker ps" does, and the docker CLI's "docker ps" itself.
//
// Native mode runs the forwarder over the unix transport twice: with both
// of its sides in this process, then with the host side and the guest
// side each in a child process (this program with -role), as the host
// agent and the guest agent run it. The second is the faithful one; the
// clients and services are this process's in both. The docker comparison
// runs the native guest agent (-agent) in a private network namespace and
// its host socket forwarder in a child process (and, for reference, in
// this process), with the paths taking turns. With -vm it also boots an
// instance with out/bin/berth (QEMU; TCG here) and measures through the
// real serial transport.
//
//	go run ./bench/forward [-size 1GiB] [-conns 1000] [-buf 32KiB] [-vm] [-vm-size 256MiB]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthvm/berth/bench/internal/benchutil"
	"github.com/berthvm/berth/forwarding/portfwd"
	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/hostagent"
	"github.com/berthvm/berth/hostagent/instance"
)

func main() {
	size := flag.String("size", "1GiB", "bytes per throughput run, native mode")
	conns := flag.Int("conns", 1000, "short connections for the setup latency")
	vmMode := flag.Bool("vm", false, "also measure through a VM booted with out/bin/berth")
	vmSize := flag.String("vm-size", "", "bytes per throughput run through the VM (default -size)")
	agent := flag.String("agent", "", "native guest agent for the Docker API comparison (default out/build/<arch>/berth-guestagent)")
	buf := flag.String("buf", "32KiB", "read and write size of the benchmark's own clients and services")
	role := flag.String("role", "", "internal: serve one side of the forwarder (guest or host) or the docker socket (docker) for the bench")
	roleDir := flag.String("dir", "", "internal: the unix transport's directory, with -role")
	rolePorts := flag.String("ports", "", "internal: HOSTPORT:GUESTPORT,... to forward, with -role host")
	roleSock := flag.String("sock", "", "internal: the socket to serve, with -role docker or echo")
	rolePort := flag.Int("port", 0, "internal: the TCP port to echo on, with -role tcpecho (in the VM)")
	flag.Parse()
	if *role != "" {
		if err := serveRole(*role, *roleDir, *rolePorts, *roleSock, *rolePort); err != nil {
			fmt.Fprintln(os.Stderr, "forward bench:", *role, "side:", err)
			os.Exit(1)
		}
		return
	}
	b, err := instance.ParseSize(*buf)
	if err != nil || b < 1 {
		fmt.Fprintln(os.Stderr, "forward bench: -buf:", err)
		os.Exit(2)
	}
	ioBuffer = int(b)
	if err := run(*size, *vmSize, *conns, *vmMode, *agent); err != nil {
		fmt.Fprintln(os.Stderr, "forward bench:", err)
		os.Exit(1)
	}
}

func run(sizeFlag, vmSizeFlag string, conns int, vmMode bool, agent string) error {
	size, err := instance.ParseSize(sizeFlag)
	if err != nil {
		return err
	}
	vmSize := size
	if vmSizeFlag != "" {
		if vmSize, err = instance.ParseSize(vmSizeFlag); err != nil {
			return err
		}
	}
	fmt.Printf("port forwarding, %s per throughput run in %s writes and reads, %d short connections (%s/%s, %d CPUs)\n\n",
		size, instance.Size(ioBuffer), conns, runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if err := native(int64(size), conns); err != nil {
		return fmt.Errorf("native mode: %w", err)
	}
	fmt.Println()
	if err := dockerNative(agent, conns/5); err != nil {
		fmt.Printf("docker API: skipped: %v\n", err)
	}
	if vmMode {
		fmt.Println()
		if err := vm(int64(vmSize), conns); err != nil {
			return fmt.Errorf("vm mode: %w", err)
		}
	}
	return nil
}

// native measures the forwarder over the unix transport, twice: with both
// of its sides in this process, and with each side in a process of its
// own, as the host agent and the guest agent run it. The clients and the
// services are this process's in both.
func native(size int64, conns int) error {
	svc, err := startServices()
	if err != nil {
		return err
	}
	defer svc.close()
	targets := map[string]int{"sink": svc.sink, "source": svc.source, "echo": svc.echo}

	fwd, stop, err := inProcessForwarder(targets)
	if err != nil {
		return err
	}
	fmt.Println("native: unix transport, both sides of the forwarder in the bench's process")
	err = measureNative(svc, fwd, size, conns, nil)
	stop()
	if err != nil {
		return err
	}

	fwd, stop, children, err := processForwarder(targets)
	if err != nil {
		return err
	}
	defer stop()
	fmt.Println("native: unix transport, the host side and the guest side each in a process of its own")
	return measureNative(svc, fwd, size, conns, children)
}

// inProcessForwarder forwards a fresh host port to each target through
// the unix transport, with both sides in this process. It returns the
// forwarded addresses by target name.
func inProcessForwarder(targets map[string]int) (map[string]string, func(), error) {
	dir, err := os.MkdirTemp("", "bfwd")
	if err != nil {
		return nil, nil, err
	}
	tl, err := transport.NewUnixListener(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	gl, err := tl.ListenPort(transport.PortForward)
	if err != nil {
		tl.Close()
		os.RemoveAll(dir)
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go portfwd.ServeGuest(ctx, gl, nil)
	f := portfwd.NewForwarder(transport.NewUnixDialer(dir), portfwd.Options{Log: slog.New(slog.DiscardHandler)})
	stop := func() {
		f.Close()
		cancel()
		tl.Close()
		os.RemoveAll(dir)
	}
	fwd := map[string]string{}
	for name, port := range targets {
		hp, err := freePort()
		if err == nil {
			err = f.Add(portfwd.Port{Proto: portfwd.TCP, HostIP: "127.0.0.1", HostPort: uint16(hp), GuestIP: "127.0.0.1", GuestPort: uint16(port)})
		}
		if err != nil {
			stop()
			return nil, nil, err
		}
		fwd[name] = addr(hp)
	}
	return fwd, stop, nil
}

// processForwarder is inProcessForwarder with the guest side and the host
// side in two child processes: this program again, with -role.
// It also returns the children by side, for their CPU time.
func processForwarder(targets map[string]int) (map[string]string, func(), []party, error) {
	dir, err := os.MkdirTemp("", "bfwd")
	if err != nil {
		return nil, nil, nil, err
	}
	var children []*exec.Cmd
	stop := func() {
		for _, c := range children {
			c.Process.Kill()
			c.Wait()
		}
		os.RemoveAll(dir)
	}
	var ports []string
	fwd := map[string]string{}
	for name, port := range targets {
		hp, err := freePort()
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		ports = append(ports, fmt.Sprintf("%d:%d", hp, port))
		fwd[name] = addr(hp)
	}
	var parties []party
	for _, args := range [][]string{
		{"-role", "guest", "-dir", dir},
		{"-role", "host", "-dir", dir, "-ports", strings.Join(ports, ",")},
	} {
		c, err := startRole(args...)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		children = append(children, c)
		parties = append(parties, party{args[1] + " side", c.Process.Pid})
	}
	return fwd, stop, parties, nil
}

// startRole starts this program with args (-role ...) and waits for it
// to print "ready". The child lives while its stdin is open: it goes with
// this process however this process ends.
func startRole(args ...string) (*exec.Cmd, error) {
	c := exec.Command(os.Args[0], args...)
	c.Stderr = os.Stderr
	_, err := c.StdinPipe()
	var out io.ReadCloser
	if err == nil {
		out, err = c.StdoutPipe()
	}
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		return nil, fmt.Errorf("starting the %s side: %w", args[1], err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		c.Process.Kill()
		c.Wait()
		return nil, fmt.Errorf("the %s side did not start: %q %v", args[1], line, err)
	}
	return c, nil
}

// serveRole is the child process of processForwarder and dockerNative:
// one side of the forwarder over the unix transport in dir, or the host
// agent's docker socket at sock forwarding to the Docker API in dir, or
// an echo service on sock. It prints "ready" once it serves, and serves
// until it is killed or its stdin ends. The tcpecho role is the VM's echo
// service: it serves until the VM goes.
func serveRole(role, dir, ports, sock string, port int) error {
	if role == "tcpecho" {
		// In the VM, in the background, until the VM goes.
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return err
		}
		return serveEcho(l)
	}
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	switch role {
	case "guest":
		tl, err := transport.NewUnixListener(dir)
		if err != nil {
			return err
		}
		gl, err := tl.ListenPort(transport.PortForward)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		return portfwd.ServeGuest(context.Background(), gl, nil)
	case "host":
		f := portfwd.NewForwarder(transport.NewUnixDialer(dir), portfwd.Options{Log: slog.New(slog.DiscardHandler)})
		for _, pp := range strings.Split(ports, ",") {
			var hp, gp uint16
			if _, err := fmt.Sscanf(pp, "%d:%d", &hp, &gp); err != nil {
				return fmt.Errorf("-ports %q: %w", pp, err)
			}
			if err := f.Add(portfwd.Port{Proto: portfwd.TCP, HostIP: "127.0.0.1", HostPort: hp, GuestIP: "127.0.0.1", GuestPort: gp}); err != nil {
				return err
			}
		}
		fmt.Println("ready")
		select {}
	case "echo":
		l, err := net.Listen("unix", sock)
		if err != nil {
			return err
		}
		fmt.Println("ready")
		return serveEcho(l)
	case "docker":
		if _, err := hostagent.ServeDockerSocket(context.Background(), sock, transport.NewUnixDialer(dir), nil, slog.New(slog.DiscardHandler)); err != nil {
			return err
		}
		fmt.Println("ready")
		select {}
	}
	return fmt.Errorf("unknown -role %q", role)
}

// measureNative runs the throughput rounds and the connection setup
// through the forwarded addresses fwd, against the services directly.
// It shows how the CPU time of the forwarded runs splits between this
// process (the clients and services, and an in-process forwarder) and the
// forwarder's child processes, if any.
func measureNative(svc *services, fwd map[string]string, size int64, conns int, children []party) error {
	parties := append([]party{{"this process", os.Getpid()}}, children...)
	for _, dir := range []struct {
		name       string
		run        func(string, int64) (time.Duration, error)
		direct, fw string
	}{
		{"upload", upload, addr(svc.sink), fwd["sink"]},
		{"download", download, addr(svc.source), fwd["source"]},
	} {
		// Each round measures direct then forwarded, back to back. The
		// machine is shared and noisy: the rates shown are the best of
		// each side, and the ratio judged against the goal is the median
		// of the rounds' own ratios, so that a slow spell of the machine
		// weighs on both sides of a round alike.
		var d, fw time.Duration
		var ratios []float64
		var cpuD, cpuF machineCPU
		var selfD procUsage
		partyF := make([]procUsage, len(parties))
		for range throughputRounds {
			m0, p0 := readMachineCPU(), readProcUsage(parties)
			td, err := dir.run(dir.direct, size)
			if err != nil {
				return fmt.Errorf("%s direct: %w", dir.name, err)
			}
			m1, p1 := readMachineCPU(), readProcUsage(parties)
			tf, err := dir.run(dir.fw, size)
			if err != nil {
				return fmt.Errorf("%s forwarded: %w", dir.name, err)
			}
			m2, p2 := readMachineCPU(), readProcUsage(parties)
			cpuD.add(m0, m1)
			cpuF.add(m1, m2)
			selfD.add(p0[0], p1[0])
			for i := range parties {
				partyF[i].add(p1[i], p2[i])
			}
			if d == 0 || td < d {
				d = td
			}
			if fw == 0 || tf < fw {
				fw = tf
			}
			ratios = append(ratios, td.Seconds()/tf.Seconds())
		}
		slices.Sort(ratios)
		fmt.Printf("  %-9s %s   direct %9s   forwarded %9s   best/best %.2fx   rounds %.2f-%.2fx, median %.2fx   (goal: at least 0.5x)\n",
			dir.name, instance.Size(size), rate(size, d), rate(size, fw), d.Seconds()/fw.Seconds(),
			ratios[0], ratios[len(ratios)-1], ratios[len(ratios)/2])
		if cpuD.ok() && cpuF.ok() {
			gib := float64(size*throughputRounds) / (1 << 30)
			fmt.Printf("            the machine's CPUs busy: direct %.2f of %d (%.2f CPU-s per GiB), forwarded %.2f (%.2f CPU-s per GiB)\n",
				cpuD.cores(), runtime.NumCPU(), cpuD.busy/gib, cpuF.cores(), cpuF.busy/gib)
			if selfD.cpu > 0 {
				fmt.Printf("            by process, CPU-s and thousands of context switches per GiB: direct: this process %.2f, %.1fk; forwarded:",
					selfD.cpu/gib, selfD.switches/gib/1000)
				for i, p := range parties {
					fmt.Printf(" %s %.2f, %.1fk;", p.name, partyF[i].cpu/gib, partyF[i].switches/gib/1000)
				}
				fmt.Println()
			}
		}
	}
	direct, err := setup(addr(svc.echo), conns)
	if err != nil {
		return fmt.Errorf("setup direct: %w", err)
	}
	forwarded, err := setup(fwd["echo"], conns)
	if err != nil {
		return fmt.Errorf("setup forwarded: %w", err)
	}
	printSetup(conns, direct, forwarded, "direct")
	return nil
}

// machineCPU sums, over runs, the CPU time the whole machine spent busy
// (from /proc/stat, every process and the kernel) and the time that passed.
type machineCPU struct {
	busy, wall float64 // seconds
}

// cpuSample is /proc/stat's first line: busy and total jiffies of all CPUs.
type cpuSample struct {
	busy, total float64
	at          time.Time
}

// readMachineCPU reads /proc/stat; its zero value (off Linux, or on an
// error) makes the sums report !ok.
func readMachineCPU() cpuSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return cpuSample{}
	}
	var s cpuSample
	// user nice system idle iowait irq softirq steal; guest time after
	// them is already counted in user.
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return cpuSample{}
		}
		s.total += n
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n
		}
	}
	s.at = time.Now()
	return s
}

func (m *machineCPU) add(a, b cpuSample) {
	if a.total == 0 || b.total <= a.total || m.wall < 0 {
		m.wall = -1
		return
	}
	wall := b.at.Sub(a.at).Seconds()
	// The share of all CPUs that was busy, times the CPUs, times the time.
	m.busy += (b.busy - a.busy) / (b.total - a.total) * float64(runtime.NumCPU()) * wall
	m.wall += wall
}

func (m *machineCPU) ok() bool { return m.wall > 0 }

// party is a process whose CPU time the throughput rounds report.
type party struct {
	name string
	pid  int
}

// procUsage is a process's CPU time (user and system, in seconds) and
// context switches (voluntary and not, of all its threads), summed.
type procUsage struct{ cpu, switches float64 }

func (u *procUsage) add(a, b procUsage) {
	u.cpu += b.cpu - a.cpu
	u.switches += b.switches - a.switches
}

// readProcUsage reads each party's usage so far from /proc/PID/stat and
// /proc/PID/task/*/status. What it cannot read reads 0. Go processes keep
// their threads, so the sum over the threads alive is the process's.
func readProcUsage(parties []party) []procUsage {
	out := make([]procUsage, len(parties))
	for i, p := range parties {
		dir := "/proc/" + strconv.Itoa(p.pid)
		if b, err := os.ReadFile(dir + "/stat"); err == nil {
			// The command name, in parentheses, may hold spaces: count
			// the fields after its closing parenthesis. utime and stime
			// are the 14th and 15th fields, in USER_HZ (100 per second
			// on Linux).
			if j := strings.LastIndexByte(string(b), ')'); j >= 0 {
				f := strings.Fields(string(b[j+1:]))
				if len(f) >= 13 {
					u, err1 := strconv.ParseFloat(f[11], 64)
					s, err2 := strconv.ParseFloat(f[12], 64)
					if err1 == nil && err2 == nil {
						out[i].cpu = (u + s) / 100
					}
				}
			}
		}
		tasks, _ := os.ReadDir(dir + "/task")
		for _, t := range tasks {
			b, err := os.ReadFile(dir + "/task/" + t.Name() + "/status")
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(line, ":")
				if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
					n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
					out[i].switches += n
				}
			}
		}
	}
	return out
}
func (m *machineCPU) cores() float64 { return m.busy / m.wall }

// serveEcho echoes each connection l accepts until l fails, and returns
// that error.
func serveEcho(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// throughputRounds is how many times each throughput is measured.
const throughputRounds = 7

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// services are the "guest" services of native mode, on host loopback.
type services struct {
	sink, source, echo int
	ls                 []net.Listener
}

func (s *services) close() {
	for _, l := range s.ls {
		l.Close()
	}
}

// startServices starts a sink (reads to EOF, answers one byte), a source
// (reads an 8-byte size, writes that many bytes, closes) and an echo.
func startServices() (*services, error) {
	s := &services{}
	serve := func(handle func(net.Conn)) (int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		s.ls = append(s.ls, l)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); handle(c) }()
			}
		}()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	var err error
	if s.sink, err = serve(func(c net.Conn) {
		drain(c)
		c.Write([]byte{1})
	}); err != nil {
		return nil, err
	}
	if s.source, err = serve(func(c net.Conn) {
		var b [8]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b[:])), 16, 64)
		fill(c, n)
	}); err != nil {
		return nil, err
	}
	if s.echo, err = serve(func(c net.Conn) { io.Copy(c, c) }); err != nil {
		return nil, err
	}
	return s, nil
}

// ioBuffer is what the benchmark's clients and services read and write
// at a time (-buf). The default, 32 KiB, is io.Copy's and about what
// common clients and servers use. Larger buffers make the endpoints
// cheaper, so on a machine with few cores the forwarder's two extra
// socket hops weigh more in the ratio.
var ioBuffer = 32 << 10

// fill writes n zero bytes to w.
func fill(w io.Writer, n int64) error {
	buf := make([]byte, ioBuffer)
	for n > 0 {
		k, err := w.Write(buf[:min(int64(len(buf)), n)])
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// drain reads r to EOF and returns how many bytes it read.
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, ioBuffer)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// upload sends size bytes to a sink and waits for its answer, so the
// time covers delivery.
func upload(target string, size int64) (time.Duration, error) {
	c, err := net.Dial("tcp", target)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	if err := fill(c, size); err != nil {
		return 0, err
	}
	c.(*net.TCPConn).CloseWrite()
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, fmt.Errorf("waiting for the sink: %w", err)
	}
	return time.Since(start), nil
}

// download asks a source for size bytes and reads them to EOF.
func download(target string, size int64) (time.Duration, error) {
	c, err := net.Dial("tcp", target)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "%08x", size)
	n, err := drain(c)
	if err != nil {
		return 0, err
	}
	if n != size {
		return 0, fmt.Errorf("got %d bytes of %d", n, size)
	}
	return time.Since(start), nil
}

func best(n int, f func() (time.Duration, error)) (time.Duration, error) {
	var b time.Duration
	for range n {
		d, err := f()
		if err != nil {
			return 0, err
		}
		if b == 0 || d < b {
			b = d
		}
	}
	return b, nil
}

func rate(size int64, d time.Duration) string {
	mbs := float64(size) / d.Seconds() / (1 << 20)
	if mbs >= 1024 {
		return fmt.Sprintf("%.2f GiB/s", mbs/1024)
	}
	return fmt.Sprintf("%.1f MiB/s", mbs)
}

// setup times n connections that each send a byte, read its echo and
// close.
func setup(target string, n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	var b [1]byte
	for i := range n {
		start := time.Now()
		c, err := net.Dial("tcp", target)
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = c.Write([]byte{'x'})
		if err == nil {
			_, err = io.ReadFull(c, b[:])
		}
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

func printSetup(n int, base, fw []time.Duration, baseName string) {
	fmt.Printf("  connect+echo+close, %d connections:\n", n)
	fmt.Printf("    %-10s p50 %9v   p99 %9v\n", baseName, benchutil.Percentile(base, .5).Round(time.Microsecond), benchutil.Percentile(base, .99).Round(time.Microsecond))
	fmt.Printf("    %-10s p50 %9v   p99 %9v   (p50 %.1fx)\n", "forwarded", benchutil.Percentile(fw, .5).Round(time.Microsecond), benchutil.Percentile(fw, .99).Round(time.Microsecond),
		benchutil.Percentile(fw, .5).Seconds()/benchutil.Percentile(base, .5).Seconds())
}

// dockerGets times n GETs of /containers/json, each on a new connection
// made by dial, as "docker ps" does.
func dockerGets(dial func() (net.Conn, error), n int) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := range n {
		tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return dial() }, DisableKeepAlives: true}
		c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
		start := time.Now()
		resp, err := c.Get("http://docker/v1.43/containers/json")
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("request %d: %s", i, resp.Status)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// dockerNative runs the native guest agent in a private network namespace
// and compares the Docker API on its socket with the same through the
// host agent's docker.sock forwarder.
func dockerNative(agent string, n int) error {
	if n < 10 {
		n = 10
	}
	if os.Geteuid() != 0 {
		return errors.New("the native guest agent needs root")
	}
	if agent == "" {
		root, err := benchutil.RepoRoot()
		if err != nil {
			return err
		}
		arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
		agent = filepath.Join(root, "out", "build", arch, "berth-guestagent")
	}
	if _, err := os.Stat(agent); err != nil {
		return fmt.Errorf("no guest agent binary (make guest): %w", err)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return fmt.Errorf("unshare(1) keeps the agent's networking off the host: %w", err)
	}
	// Short paths: the engine's container sockets live under --root.
	dir, err := os.MkdirTemp("", "bd")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(unshare, "--net", agent, "serve", "--listen", "unix://"+sock, "--root", filepath.Join(dir, "r"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer benchutil.Stop(cmd, syscall.SIGTERM, 10*time.Second)
	guest := filepath.Join(sock, strconv.Itoa(int(transport.PortDocker))+".sock")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", guest); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("the native agent did not serve %s:\n%s", guest, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	inproc := filepath.Join(dir, "docker.sock")
	closeSock, err := hostagent.ServeDockerSocket(context.Background(), inproc, transport.NewUnixDialer(sock), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer closeSock()
	host := filepath.Join(dir, "d.sock")
	child, err := startRole("-role", "docker", "-dir", sock, "-sock", host)
	if err != nil {
		return err
	}
	defer benchutil.Stop(child, syscall.SIGKILL, 0)
	dial := func(p string) func() (net.Conn, error) {
		return func() (net.Conn, error) { return net.Dial("unix", p) }
	}
	// The three paths take turns, request by request, so that a slow
	// spell of the machine falls on all of them alike.
	paths := []struct {
		name, sock string
		times      []time.Duration
	}{
		{name: "guest socket", sock: guest},
		{name: "host socket", sock: host},
		{name: "in-process", sock: inproc},
	}
	for i := -5; i < n; i++ { // five rounds to warm up
		for j := range paths {
			d, err := dockerGets(dial(paths[j].sock), 1)
			if err != nil {
				return fmt.Errorf("%s: %w", paths[j].name, err)
			}
			if i >= 0 {
				paths[j].times = append(paths[j].times, d[0])
			}
		}
	}
	direct := paths[0].times
	fmt.Println("docker API (native guest agent): GET /containers/json, a new connection each, as \"docker ps\"")
	fmt.Printf("  %d requests on each path, the paths taking turns:\n", n)
	for _, p := range paths {
		p50 := benchutil.Percentile(p.times, .5)
		fmt.Printf("    %-12s p50 %9v   p99 %9v", p.name, p50.Round(time.Microsecond), benchutil.Percentile(p.times, .99).Round(time.Microsecond))
		if p.sock != guest {
			fmt.Printf("   (p50 %.2fx)", p50.Seconds()/benchutil.Percentile(direct, .5).Seconds())
		}
		fmt.Println()
	}
	fmt.Println("    (host socket: the docker socket forwarder in a process of its own, as the host agent runs it;")
	fmt.Println("     in-process: the same forwarder in this process, beside the client)")
	if err := pingPong(dir); err != nil {
		return err
	}
	if docker, err := exec.LookPath("docker"); err == nil {
		// The CLI itself, as users run it: turns again, median of 21.
		var g, h []time.Duration
		for range 21 {
			for _, p := range []struct {
				sock string
				to   *[]time.Duration
			}{{guest, &g}, {host, &h}} {
				start := time.Now()
				if out, err := exec.Command(docker, "-H", "unix://"+p.sock, "ps").CombinedOutput(); err != nil {
					return fmt.Errorf("docker ps: %v: %s", err, out)
				}
				*p.to = append(*p.to, time.Since(start))
			}
		}
		gm, hm := benchutil.Median(g), benchutil.Median(h)
		fmt.Printf("  the docker CLI, median of 21 runs each, taking turns: docker ps   guest socket %v   host socket %v   (%.2fx, goal at most 1.2x)\n",
			gm.Round(100*time.Microsecond), hm.Round(100*time.Microsecond), hm.Seconds()/gm.Seconds())
	}
	return nil
}

// pingPong prints what one round trip over a unix socket costs, to a
// goroutine of this process and to another process: the second is what
// each hop through a forwarding process adds, and it is mostly the cost
// of waking a sleeping process on this machine.
func pingPong(dir string) error {
	inproc := filepath.Join(dir, "e1.sock")
	l, err := net.Listen("unix", inproc)
	if err != nil {
		return err
	}
	defer l.Close()
	go serveEcho(l)
	other := filepath.Join(dir, "e2.sock")
	child, err := startRole("-role", "echo", "-sock", other)
	if err != nil {
		return err
	}
	defer benchutil.Stop(child, syscall.SIGKILL, 0)
	rtt := func(p string) (time.Duration, error) {
		c, err := net.Dial("unix", p)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		var b [1]byte
		ds := make([]time.Duration, 0, 1000)
		for range cap(ds) {
			time.Sleep(100 * time.Microsecond) // let the peer go back to sleep
			start := time.Now()
			if _, err := c.Write(b[:]); err != nil {
				return 0, err
			}
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return 0, err
			}
			ds = append(ds, time.Since(start))
		}
		return benchutil.Median(ds), nil
	}
	a, err1 := rtt(inproc)
	b, err2 := rtt(other)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("ping-pong: %w", err)
	}
	fmt.Printf("  reference, a 1-byte round trip on a unix socket, median of 1000: to a goroutine here %v, to another process %v\n",
		a.Round(time.Microsecond), b.Round(time.Microsecond))
	return nil
}

// vmEcho is where the VM's echo service lives.
const vmEcho = "/run/bench-forward"

// pushEcho builds this program static for the VM's arch and copies it to
// vmEcho in the VM, through berth exec's stdin.
func pushEcho(env []string, berth, root, home string) error {
	bin := filepath.Join(home, "bench-forward")
	build := exec.Command("go", "build", "-o", bin, "./bench/forward")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the VM's echo service: %v\n%s", err, out)
	}
	f, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	c := exec.Command(berth, "exec", "-i", "default", "--", "sh", "-c", "cat > "+vmEcho+" && chmod 755 "+vmEcho+" && wc -c < "+vmEcho)
	c.Env, c.Stdin = env, f
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("copying the echo service into the VM: %v\n%s", err, out)
	}
	if n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); n != fi.Size() {
		return fmt.Errorf("copying the echo service into the VM: %q bytes arrived of %d", strings.TrimSpace(string(out)), fi.Size())
	}
	return nil
}

// vm boots an instance with out/bin/berth and measures through the real
// transport: services run in the VM (busybox nc), and the VM's own port
// watcher makes their forwards.
func vm(size int64, conns int) error {
	root, err := benchutil.RepoRoot()
	if err != nil {
		return err
	}
	berth := filepath.Join(root, "out", "bin", "berth")
	if _, err := os.Stat(berth); err != nil {
		return fmt.Errorf("%s is missing: run \"make build guest\"", berth)
	}
	home, err := os.MkdirTemp("", "bfwdvm")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	env := append(os.Environ(), "BERTH_HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"))
	b := func(args ...string) (string, error) {
		c := exec.Command(berth, args...)
		c.Env = env
		out, err := c.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("berth %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	if _, err := b("start", "--cpus", "2", "--memory", "1GiB", "--disk", "4GiB"); err != nil {
		return err
	}
	defer b("delete", "--force")

	var sink, sourcePort, echo int
	for _, p := range []*int{&sink, &sourcePort, &echo} {
		if *p, err = freePort(); err != nil {
			return err
		}
	}
	// The source writes with dd in 64 KiB blocks: busybox head -c moves
	// about 26 MiB/s under TCG, slower than the forwarder it would measure.
	const block = 64 << 10
	source := fmt.Sprintf("dd if=/dev/zero bs=%d count=%d 2>/dev/null", block, size/block)
	if r := size % block; r != 0 {
		source += fmt.Sprintf("; head -c %d /dev/zero", r)
	}
	// The echo service is this program, built static and copied in: busybox
	// nc -e forks a process per connection, which under TCG costs more
	// than the forwarder whose connection setup it would time.
	if err := pushEcho(env, berth, root, home); err != nil {
		return err
	}
	script := fmt.Sprintf(`nc -ll -p %d -e sh -c 'cat >/dev/null; echo x' >/dev/null 2>&1 &
nc -ll -p %d -e sh -c '%s' >/dev/null 2>&1 &
%s -role tcpecho -port %d </dev/null >/dev/null 2>&1 &`, sink, sourcePort, source, vmEcho, echo)
	if _, err := b("exec", "default", "--", "sh", "-c", script); err != nil {
		return err
	}
	client := hostagent.NewClient(filepath.Join(home, "default", instance.ControlSocket))
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, err := client.Ports(context.Background())
		n := 0
		for _, p := range ps {
			if p.Error == "" && len(p.Listen) > 0 && (int(p.HostPort) == sink || int(p.HostPort) == sourcePort || int(p.HostPort) == echo) {
				n++
			}
		}
		if err == nil && n == 3 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the VM's services were not forwarded: %v %v", ps, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	svc, err := startServices()
	if err != nil {
		return err
	}
	defer svc.close()
	fmt.Println("vm: QEMU, serial transport (yamux over virtio-serial), services in the VM (busybox nc; echo: this program)")
	d, err := upload(addr(svc.sink), size)
	if err != nil {
		return err
	}
	fw, err := upload(addr(sink), size)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	fmt.Printf("  %-9s %s   host loopback %9s   forwarded into the VM %9s   ratio %.3fx\n",
		"upload", instance.Size(size), rate(size, d), rate(size, fw), d.Seconds()/fw.Seconds())
	start := time.Now()
	c, err := net.Dial("tcp", addr(sourcePort))
	if err != nil {
		return err
	}
	n, err := drain(c)
	c.Close()
	fwd := time.Since(start)
	if err != nil || n != size {
		return fmt.Errorf("download: %d of %d bytes: %v", n, size, err)
	}
	dd, err := download(addr(svc.source), size)
	if err != nil {
		return err
	}
	fmt.Printf("  %-9s %s   host loopback %9s   forwarded from the VM %9s   ratio %.3fx\n",
		"download", instance.Size(size), rate(size, dd), rate(size, fwd), dd.Seconds()/fwd.Seconds())
	direct, err := setup(addr(svc.echo), conns)
	if err != nil {
		return err
	}
	forwarded, err := setup(addr(echo), conns)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	printSetup(conns, direct, forwarded, "loopback")

	// The Docker API through the host's docker.sock, once the engine runs.
	sock := filepath.Join(home, "default", instance.DockerSocket)
	dial := func() (net.Conn, error) { return net.Dial("unix", sock) }
	deadline = time.Now().Add(90 * time.Second)
	var gets []time.Duration
	for {
		if gets, err = dockerGets(dial, 3); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		fmt.Printf("  docker API: skipped: the engine in the VM does not answer: %v\n", err)
		return nil
	}
	if gets, err = dockerGets(dial, max(conns/10, 10)); err != nil {
		return err
	}
	fmt.Printf("  docker API through the host socket, GET /containers/json, %d requests: p50 %v   p99 %v\n",
		len(gets), benchutil.Percentile(gets, .5).Round(time.Microsecond), benchutil.Percentile(gets, .99).Round(time.Microsecond))
	return nil
}
