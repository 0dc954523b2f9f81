package e2e

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostHTTP serves body on the host's 127.0.0.1 and returns the port.
func hostHTTP(t *testing.T, body string) int {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// hostTFTP serves one file, content, to every read request on the host's
// 127.0.0.1, answering from the port it listens on (a NAT passes replies
// from the port the request went to only).
func hostTFTP(t *testing.T, content string) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 2 && binary.BigEndian.Uint16(buf) == 1 { // RRQ
				data := []byte{0, 3, 0, 1} // DATA, block 1: short, so the last
				c.WriteTo(append(data, content...), addr)
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// freeHostPort returns a TCP port free on the host's 127.0.0.1 and ::1.
func freeHostPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port)); err == nil {
			l6.Close()
			return port
		} else if !strings.Contains(err.Error(), "address already in use") {
			return port // no IPv6 loopback here
		}
	}
	t.Fatal("no free port")
	return 0
}

// httpGet fetches url from the host.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitHTTP polls url from the host until it answers with want.
func waitHTTP(t *testing.T, url, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < within {
		body, err := httpGet(url)
		if err == nil && strings.Contains(body, want) {
			return time.Since(start)
		}
		last = fmt.Sprintf("%q %v", body, err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %q within %v; last: %s", url, want, within, last)
	return 0
}

// guestFetch fetches url from inside the VM. (Debian busybox 1.35's
// wget crashes on -T, so timeout(1) bounds it instead.)
func (e *env) guestFetch(name, url string) string {
	e.t.Helper()
	return e.must("exec", name, "--", "timeout", "20", "wget", "-qO-", url)
}

func (e *env) statusJSON(name string) map[string]any {
	e.t.Helper()
	out, code := e.run("status", name, "--format", "json")
	if code != 0 {
		e.t.Fatalf("status: %d %s", code, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("status json %q: %v", out, err)
	}
	return m
}

// TestNetworkAndPorts is the host integration scenario without containers:
// the VM's user-mode network (gvisor-tap-vsock), the host's loopback as
// host.docker.internal, services in the VM forwarded to the host's
// loopback, a taken host port, and all of it surviving a host agent
// killed with -9.
func TestNetworkAndPorts(t *testing.T) {
	e := newEnv(t)
	out := e.must("start", "--cpus", "2", "--memory", "1GiB", "--disk", "4GiB")
	if !strings.Contains(out, "docker --context berth") {
		t.Fatalf("start does not say how to use the docker context: %q", out)
	}
	meta, _ := filepath.Glob(filepath.Join(e.dockerConfig, "contexts", "meta", "*", "meta.json"))
	if len(meta) != 1 {
		t.Fatalf("docker context files: %v", meta)
	}
	if b, _ := os.ReadFile(meta[0]); !strings.Contains(string(b), filepath.Join(e.home, "default", "docker.sock")) {
		t.Fatalf("docker context: %s", b)
	}

	// eth0 is the static address from the kernel command line, with the
	// gateway as default route and resolver.
	out = e.must("exec", "default", "--", "ip", "-4", "addr", "show", "eth0")
	if !strings.Contains(out, "inet 192.168.127.2/24") {
		t.Fatalf("eth0: %q", out)
	}
	if out = e.must("exec", "default", "--", "ip", "route"); !strings.Contains(out, "default via 192.168.127.1 dev eth0") {
		t.Fatalf("routes: %q", out)
	}
	if out = e.must("exec", "default", "--", "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver 192.168.127.1") {
		t.Fatalf("resolv.conf: %q", out)
	}

	// The host's loopback, by address and by name (in /etc/hosts, and
	// from the gateway's DNS).
	port := hostHTTP(t, "hello from the host")
	for _, host := range []string{"192.168.127.254", "host.docker.internal", "host.berth.internal"} {
		if got := e.guestFetch("default", fmt.Sprintf("http://%s:%d/", host, port)); got != "hello from the host" {
			t.Fatalf("guest -> host via %s: %q", host, got)
		}
	}
	out = e.must("exec", "default", "--", "nslookup", "host.docker.internal", "192.168.127.1")
	if !strings.Contains(out, "192.168.127.254") {
		t.Fatalf("the gateway's DNS for host.docker.internal: %q", out)
	}
	// UDP out through the NAT: busybox's tftp against a TFTP server on
	// the host's loopback (its nc has no UDP mode).
	tport := hostTFTP(t, "udp through the nat")
	out = e.must("exec", "default", "--", "sh", "-c",
		fmt.Sprintf("timeout 20 tftp -g -r hello -l /tmp/tftp.out 192.168.127.254 %d && cat /tmp/tftp.out", tport))
	if !strings.Contains(out, "udp through the nat") {
		t.Fatalf("UDP through the NAT: %q", out)
	}

	// A service listening in the VM appears on the host's loopback.
	vmPort := freeHostPort(t)
	e.must("exec", "default", "--", "sh", "-c",
		fmt.Sprintf("mkdir -p /tmp/www && echo hello from the vm > /tmp/www/index.html && httpd -p %d -h /tmp/www", vmPort))
	url := fmt.Sprintf("http://127.0.0.1:%d/", vmPort)
	took := waitHTTP(t, url, "hello from the vm", 10*time.Second)
	t.Logf("a VM listener reached the host in %v", took)
	out = e.must("ports")
	if !strings.Contains(out, fmt.Sprintf("127.0.0.1:%d", vmPort)) || !strings.Contains(out, "forwarding") {
		t.Fatalf("berth ports: %q", out)
	}
	// Only on loopback: not on the host's other addresses.
	if ip := hostNonLoopbackIP(); ip != "" {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(vmPort)), time.Second); err == nil {
			c.Close()
			t.Fatalf("the forward listens on %s, a non-loopback host address", ip)
		}
	}

	// A listener on the VM's loopback only stays on the host's loopback.
	loPort := freeHostPort(t)
	e.must("exec", "default", "--", "sh", "-c", fmt.Sprintf("httpd -p 127.0.0.1:%d -h /tmp/www", loPort))
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", loPort), "hello from the vm", 10*time.Second)

	// A host port someone else holds: a clear error in status and in
	// events.jsonl; the instance is Degraded but works.
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	taken := holder.Addr().(*net.TCPAddr).Port
	e.must("exec", "default", "--", "sh", "-c", fmt.Sprintf("httpd -f -p %d -h /tmp/www >/dev/null 2>&1 & echo $! >/tmp/taken.pid", taken))
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := e.status("default")
		if s.State == "Degraded" && strings.Contains(strings.Join(s.Errors, "\n"), fmt.Sprintf("127.0.0.1:%d/tcp is already in use", taken)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status with a taken port: %+v", s)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if b, _ := os.ReadFile(filepath.Join(e.home, "default", "events.jsonl")); !strings.Contains(string(b), fmt.Sprintf("cannot forward tcp 0.0.0.0:%d", taken)) {
		t.Fatalf("events.jsonl does not tell about the taken port")
	}
	if got, _ := httpGet(url); !strings.Contains(got, "hello from the vm") {
		t.Fatalf("other forwards while Degraded: %q", got)
	}
	// The program in the VM goes away: so does the error.
	e.must("exec", "default", "--", "sh", "-c", "kill $(cat /tmp/taken.pid)")
	e.waitState("default", "Running", 10*time.Second)

	// Kill -9 the host agent, start again: the VM is reattached, its NIC
	// works again and the forwards come back from the guest's snapshot.
	s := e.status("default")
	syscall.Kill(s.HostagentPid, syscall.SIGKILL)
	e.waitState("default", "Running (host agent down)", 10*time.Second)
	if _, err := httpGet(url); err == nil {
		t.Fatal("the forward outlived its host agent")
	}
	if out := e.must("start"); !strings.Contains(out, "reattached") {
		t.Fatalf("start after kill -9: %q", out)
	}
	took = waitHTTP(t, url, "hello from the vm", 10*time.Second)
	t.Logf("forwards came back %v after the restart", took)
	if got := e.guestFetch("default", fmt.Sprintf("http://host.docker.internal:%d/", port)); got != "hello from the host" {
		t.Fatalf("guest -> host after the host agent restart: %q", got)
	}

	// Stopped: the forwards and the docker socket go, so clients fail at
	// once instead of hanging.
	e.must("stop")
	if _, err := httpGet(url); err == nil {
		t.Fatal("the forward outlived the instance")
	}
	if _, err := os.Stat(filepath.Join(e.home, "default", "docker.sock")); !os.IsNotExist(err) {
		t.Fatalf("docker.sock after stop: %v", err)
	}
	if docker, err := exec.LookPath("docker"); err == nil {
		c := exec.Command(docker, "--context", "berth", "ps")
		c.Env = append(os.Environ(), "DOCKER_CONFIG="+e.dockerConfig, "DOCKER_HOST=", "DOCKER_CONTEXT=")
		start := time.Now()
		b, err := c.CombinedOutput()
		if err == nil || time.Since(start) > 10*time.Second || !strings.Contains(string(b), "docker.sock") {
			t.Fatalf("docker ps on a stopped instance: %v after %v: %s", err, time.Since(start), b)
		}
	}
}

// TestGuestAgentPortsNotOnTCP: the guest agent's ports (control 1024,
// port forwarding 1025, Docker API 2375) are on the transport only;
// nothing in the VM listens on TCP for them, on any address.
func TestGuestAgentPortsNotOnTCP(t *testing.T) {
	e := newEnv(t)
	e.must("start", "--memory", "1GiB", "--disk", "4GiB")
	out := e.must("exec", "default", "--", "netstat", "-ltnu")
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		for _, p := range []string{":1024", ":1025", ":2375"} {
			if strings.HasSuffix(f[3], p) {
				t.Errorf("the guest listens on %s: %s", f[3], sc.Text())
			}
		}
	}
	for _, addr := range []string{"127.0.0.1", "192.168.127.2"} {
		for _, p := range []string{"1024", "1025", "2375"} {
			if _, code := e.run("exec", "default", "--", "nc", "-z", "-w", "2", addr, p); code == 0 {
				t.Errorf("%s:%s accepts TCP connections in the guest", addr, p)
			}
		}
	}
}

// hostNonLoopbackIP is an IPv4 address of this host outside loopback, or "".
func hostNonLoopbackIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	return ""
}
