//go:build linux

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEngine drives one engine through the docker CLI. The subtests
// share it and run in order.
func TestEngine(t *testing.T) {
	e := newEnv(t)
	e.pullImages(t)

	t.Run("run rm echo", func(t *testing.T) {
		out := e.must(t, "run", "--rm", busyboxImg, "echo", "hello", "world")
		if out != "hello world\n" {
			t.Errorf("output %q", out)
		}
		if ps := e.must(t, "ps", "-aq"); strings.TrimSpace(ps) != "" {
			t.Errorf("--rm container left behind: %q", ps)
		}
	})

	t.Run("exit code", func(t *testing.T) {
		code, _, errOut := e.exitCode(t, "run", "--rm", busyboxImg, "sh", "-c", "echo oops >&2; exit 3")
		if code != 3 || errOut != "oops\n" {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
		code, _, errOut = e.exitCode(t, "run", "--rm", busyboxImg, "nosuchcommand")
		if code != 127 || !strings.Contains(errOut, "executable file not found") {
			t.Errorf("missing command: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("env workdir user", func(t *testing.T) {
		out := e.must(t, "run", "--rm", "-e", "FOO=bar", "-w", "/tmp/new/dir", "-u", "1000:1000", busyboxImg,
			"sh", "-c", `echo "$FOO $(pwd) $(id -u):$(id -g) $HOME $HOSTNAME"`)
		f := strings.Fields(out)
		if len(f) != 5 || f[0] != "bar" || f[1] != "/tmp/new/dir" || f[2] != "1000:1000" || f[3] != "/home/app" || len(f[4]) != 12 {
			t.Errorf("output %q", out)
		}
		if out := e.must(t, "run", "--rm", "-u", "app", busyboxImg, "id"); !strings.Contains(out, "uid=1000(app) gid=1000(app)") {
			t.Errorf("-u app: %q", out)
		}
		code, _, errOut := e.exitCode(t, "run", "--rm", "-u", "nosuchuser", busyboxImg, "true")
		if code == 0 || !strings.Contains(errOut, "unable to find user nosuchuser: no matching entries in passwd file") {
			t.Errorf("unknown user: exit %d, %q", code, errOut)
		}
		// The image's config: Entrypoint, Cmd, Env, WorkingDir, User.
		out = e.must(t, "run", "--rm", layeredImg, "sh", "-c", `echo "$GREETING $(pwd) $(id -u)"; greet`)
		if out != "hello /data 1000\nhello from greet\n" {
			t.Errorf("layered image: %q", out)
		}
		out = e.must(t, "run", "--rm", "--entrypoint", "echo", layeredImg, "replaced")
		if out != "replaced\n" {
			t.Errorf("--entrypoint: %q", out)
		}
	})

	t.Run("stdin", func(t *testing.T) {
		out, errOut, err := e.docker([]byte("from stdin\n"), "run", "--rm", "-i", busyboxImg, "cat")
		if err != nil || out != "from stdin\n" {
			t.Errorf("run -i cat: %q %q %v", out, errOut, err)
		}
	})

	t.Run("tty", func(t *testing.T) {
		if _, err := exec.LookPath("script"); err != nil {
			t.Skip("script(1) is needed for a terminal")
		}
		// script gives the CLI a terminal; the container gets one too.
		out := e.underTTY(t, "run --rm -it "+busyboxImg+" sh -c 'tty; echo $TERM; stty size'")
		if !strings.Contains(out, "/dev/pts/0") || !strings.Contains(out, "xterm") || !strings.Contains(out, "30 100") {
			t.Errorf("run -it: %q", out)
		}
		e.must(t, "run", "-d", "--name", "ttyc", "-t", busyboxImg, "sleep", "60")
		defer e.must(t, "rm", "-f", "ttyc")
		out = e.underTTY(t, "exec -it ttyc sh -c 'tty; echo $TERM'")
		if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "xterm") {
			t.Errorf("exec -it: %q", out)
		}
	})

	t.Run("detached lifecycle", func(t *testing.T) {
		id := strings.TrimSpace(e.must(t, "run", "-d", "--name", "web", "--label", "tier=front", busyboxImg,
			"sh", "-c", `trap "echo bye; exit 0" TERM; echo started; while true; do sleep 0.1; done`))
		if len(id) != 64 {
			t.Fatalf("run -d printed %q", id)
		}
		waitFor(t, "the log", func() bool { return e.must(t, "logs", "web") == "started\n" })
		ps := e.must(t, "ps", "--format", "{{.ID}} {{.Names}} {{.Status}} {{.Image}} {{.Labels}}")
		if !strings.Contains(ps, id[:12]+" web Up ") || !strings.Contains(ps, busyboxImg) || !strings.Contains(ps, "tier=front") {
			t.Errorf("ps: %q", ps)
		}
		start := time.Now()
		e.must(t, "stop", "web")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stop took %s: the TERM trap was not honoured", d)
		}
		if out := e.must(t, "ps", "-a", "--filter", "name=web", "--format", "{{.Status}}"); !strings.HasPrefix(out, "Exited (0) ") {
			t.Errorf("after stop: %q", out)
		}
		if logs := e.must(t, "logs", "web"); logs != "started\nbye\n" {
			t.Errorf("logs after stop: %q", logs)
		}
		e.must(t, "start", "web")
		if st := inspect(t, e, "web", "{{.State.Status}} {{.State.Running}} {{.RestartCount}}"); st != "running true 0" {
			t.Errorf("after start: %q", st)
		}
		code, _, errOut := e.exitCode(t, "rm", "web")
		if code == 0 || !strings.Contains(errOut, "container is running") {
			t.Errorf("rm of a running container: %d %q", code, errOut)
		}
		e.must(t, "rm", "-f", "web")
		if out := e.must(t, "ps", "-aq"); strings.TrimSpace(out) != "" {
			t.Errorf("left after rm -f: %q", out)
		}
	})

	t.Run("names", func(t *testing.T) {
		e.must(t, "create", "--name", "named", busyboxImg, "true")
		code, _, errOut := e.exitCode(t, "create", "--name", "named", busyboxImg, "true")
		if code == 0 || !strings.Contains(errOut, `Conflict. The container name "/named" is already in use by container`) {
			t.Errorf("name conflict: %d %q", code, errOut)
		}
		e.must(t, "rename", "named", "renamed")
		if n := inspect(t, e, "renamed", "{{.Name}}"); n != "/renamed" {
			t.Errorf("renamed: %q", n)
		}
		id := strings.TrimSpace(e.must(t, "create", busyboxImg, "true"))
		n := inspect(t, e, id[:6], "{{.Name}}")
		if !strings.HasPrefix(n, "/") || !strings.Contains(n, "_") {
			t.Errorf("random name %q", n)
		}
		e.must(t, "rm", "renamed", id)
	})

	t.Run("inspect", func(t *testing.T) {
		e.must(t, "run", "-d", "--name", "insp", "-p", "18080:80", busyboxImg, "sleep", "60")
		defer e.must(t, "rm", "-f", "insp")
		var got []struct {
			ID      string `json:"Id"`
			Name    string
			Path    string
			Args    []string
			Driver  string
			Image   string
			LogPath string
			State   struct {
				Status  string
				Running bool
				Pid     int
			}
			Config struct {
				Image string
				Cmd   []string
				Env   []string
			}
			HostConfig struct {
				NetworkMode string
			}
			GraphDriver struct {
				Name string
				Data map[string]string
			}
			NetworkSettings struct {
				Ports    map[string][]struct{ HostIP, HostPort string }
				Networks map[string]struct {
					IPAddress  string
					Gateway    string
					MacAddress string
				}
			}
		}
		if err := json.Unmarshal([]byte(e.must(t, "inspect", "insp")), &got); err != nil || len(got) != 1 {
			t.Fatalf("inspect: %v", err)
		}
		c := got[0]
		if c.Name != "/insp" || c.Path != "sleep" || fmt.Sprint(c.Args) != "[60]" || c.Driver != "overlay2" ||
			!strings.HasPrefix(c.Image, "sha256:") || c.State.Status != "running" || !c.State.Running || c.State.Pid == 0 ||
			c.Config.Image != busyboxImg || c.HostConfig.NetworkMode != "bridge" || c.GraphDriver.Name != "overlay2" {
			t.Errorf("inspect: %+v", c)
		}
		if _, err := os.Stat(c.LogPath); err != nil {
			t.Errorf("LogPath: %v", err)
		}
		if _, err := os.Stat(c.GraphDriver.Data["UpperDir"]); err != nil {
			t.Errorf("UpperDir: %v", err)
		}
		br := c.NetworkSettings.Networks["bridge"]
		if !strings.HasPrefix(br.IPAddress, strings.TrimSuffix(e.subnet, "0/24")) || br.Gateway == "" || !strings.HasPrefix(br.MacAddress, "02:42:") {
			t.Errorf("network: %+v", c.NetworkSettings)
		}
		if b := c.NetworkSettings.Ports["80/tcp"]; len(b) != 1 || b[0].HostPort != "18080" {
			t.Errorf("ports: %+v", c.NetworkSettings.Ports)
		}
		if out := e.must(t, "port", "insp"); !strings.Contains(out, "80/tcp -> 0.0.0.0:18080") {
			t.Errorf("docker port: %q", out)
		}
	})

	t.Run("exec", func(t *testing.T) {
		e.must(t, "run", "-d", "--name", "ex", "-e", "CTR=1", busyboxImg, "sleep", "60")
		defer e.must(t, "rm", "-f", "ex")
		if out := e.must(t, "exec", "ex", "echo", "hi"); out != "hi\n" {
			t.Errorf("exec echo: %q", out)
		}
		if out := e.must(t, "exec", "-u", "1000", "-w", "/tmp", "-e", "X=2", "ex", "sh", "-c", `echo $(id -u) $(pwd) $X $CTR`); out != "1000 /tmp 2 1\n" {
			t.Errorf("exec -u -w -e: %q", out)
		}
		if code, _, _ := e.exitCode(t, "exec", "ex", "sh", "-c", "exit 5"); code != 5 {
			t.Errorf("exec exit code %d", code)
		}
		if out, _, err := e.docker([]byte("piped\n"), "exec", "-i", "ex", "cat"); err != nil || out != "piped\n" {
			t.Errorf("exec -i: %q %v", out, err)
		}
		e.must(t, "exec", "-d", "ex", "sh", "-c", "echo detached > /tmp/d")
		waitFor(t, "the detached exec", func() bool {
			out, _, _ := e.docker(nil, "exec", "ex", "cat", "/tmp/d")
			return out == "detached\n"
		})
		code, _, errOut := e.exitCode(t, "exec", "ex", "nosuchcmd")
		if code != 127 && code != 126 {
			t.Errorf("exec of a missing command: %d %q", code, errOut)
		}
	})

	t.Run("top stats", func(t *testing.T) {
		e.must(t, "run", "-d", "--name", "tp", busyboxImg, "sleep", "60")
		defer e.must(t, "rm", "-f", "tp")
		// run -d returns once the container has started; its process may
		// still be in execve, with no command line to show yet.
		var out string
		waitFor(t, "sleep in docker top", func() bool {
			out = e.must(t, "top", "tp")
			return strings.Contains(out, "sleep 60")
		})
		if !strings.Contains(out, "UID") {
			t.Errorf("top: %q", out)
		}
		if out := e.must(t, "top", "tp", "aux"); !strings.Contains(out, "%CPU") || !strings.Contains(out, "sleep 60") {
			t.Errorf("top aux: %q", out)
		}
		out = e.must(t, "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "tp")
		if !strings.HasPrefix(out, "tp ") || !strings.HasSuffix(strings.TrimSpace(out), " 1") {
			t.Errorf("stats: %q", out)
		}
	})

	t.Run("pause kill wait", func(t *testing.T) {
		e.must(t, "run", "-d", "--name", "pk", busyboxImg, "sh", "-c", `trap "echo usr1" USR1; trap "exit 0" TERM; echo ready; while true; do sleep 0.1; done`)
		e.waitReady(t, "pk", 1)
		defer e.docker(nil, "rm", "-f", "pk")
		e.must(t, "pause", "pk")
		if st := inspect(t, e, "pk", "{{.State.Status}} {{.State.Paused}}"); st != "paused true" {
			t.Errorf("paused: %q", st)
		}
		if out := e.must(t, "ps", "--filter", "name=pk", "--format", "{{.Status}}"); !strings.Contains(out, "(Paused)") {
			t.Errorf("ps of a paused container: %q", out)
		}
		e.must(t, "unpause", "pk")
		e.must(t, "kill", "-s", "USR1", "pk")
		waitFor(t, "the USR1 trap", func() bool { return strings.Contains(e.must(t, "logs", "pk"), "usr1") })
		e.must(t, "restart", "-t", "1", "pk")
		if got := inspect(t, e, "pk", "{{.State.Status}} {{.RestartCount}}"); got != "running 0" {
			t.Errorf("after restart: %q", got)
		}
		e.must(t, "kill", "pk")
		if out := strings.TrimSpace(e.must(t, "wait", "pk")); out != "137" {
			t.Errorf("wait after kill: %q", out)
		}
		// A paused container stops too (it is thawed for its signal).
		e.must(t, "start", "pk")
		e.waitReady(t, "pk", 3) // the first run, the restart, this start
		e.must(t, "pause", "pk")
		e.must(t, "stop", "-t", "1", "pk")
		if got := inspect(t, e, "pk", "{{.State.Status}} {{.State.Paused}} {{.State.ExitCode}}"); got != "exited false 0" {
			t.Errorf("stop of a paused container: %q", got)
		}
		id := strings.TrimSpace(e.must(t, "run", "-d", busyboxImg, "sh", "-c", "sleep 0.5; exit 7"))
		if out := strings.TrimSpace(e.must(t, "wait", id)); out != "7" {
			t.Errorf("wait: %q", out)
		}
		e.must(t, "rm", id)
	})

	t.Run("security and limits", func(t *testing.T) {
		status := func(args ...string) map[string]string {
			t.Helper()
			out := e.must(t, append(append([]string{"run", "--rm"}, args...), busyboxImg, "grep", "-E", "^(Seccomp|CapEff|NoNewPrivs):", "/proc/self/status")...)
			m := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				k, v, _ := strings.Cut(line, ":")
				m[k] = strings.TrimSpace(v)
			}
			return m
		}
		def := status()
		if def["CapEff"] != "00000000a80425fb" || def["NoNewPrivs"] != "0" {
			t.Errorf("default: %v", def)
		}
		if seccomp := def["Seccomp"]; seccomp != "2" {
			t.Logf("default seccomp mode %q (2 with a seccomp build)", seccomp)
		}
		if m := status("--security-opt", "seccomp=unconfined", "--security-opt", "no-new-privileges", "--cap-drop", "ALL"); m["Seccomp"] != "0" || m["CapEff"] != "0000000000000000" || m["NoNewPrivs"] != "1" {
			t.Errorf("unconfined, no caps: %v", m)
		}
		if m := status("--cap-add", "NET_ADMIN"); m["CapEff"] != "00000000a80435fb" {
			t.Errorf("--cap-add NET_ADMIN: %v", m)
		}
		if m := status("--privileged"); m["Seccomp"] != "0" || m["CapEff"] == def["CapEff"] {
			t.Errorf("--privileged: %v", m)
		}
		code, _, errOut := e.exitCode(t, "run", "--rm", "--read-only", busyboxImg, "touch", "/x")
		if code == 0 || !strings.Contains(errOut, "Read-only file system") {
			t.Errorf("--read-only: %d %q", code, errOut)
		}
		e.must(t, "run", "-d", "--name", "lim", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "20", busyboxImg, "sleep", "60")
		defer e.must(t, "rm", "-f", "lim")
		if out := e.must(t, "stats", "--no-stream", "--format", "{{.MemUsage}}", "lim"); !strings.HasSuffix(strings.TrimSpace(out), "/ 64MiB") {
			t.Errorf("memory limit in stats: %q", out)
		}
		if got := inspect(t, e, "lim", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}"); got != "67108864 500000000 20" {
			t.Errorf("limits in inspect: %q", got)
		}
		code, _, errOut = e.exitCode(t, "run", "--rm", "--memory", "1m", busyboxImg, "true")
		if code == 0 || !strings.Contains(errOut, "Minimum memory limit allowed is 6MB") {
			t.Errorf("--memory 1m: %d %q", code, errOut)
		}
	})

	t.Run("oom", func(t *testing.T) {
		// tail holds its whole newline-free input: far over the limit.
		code, _, errOut := e.exitCode(t, "run", "--name", "oom", "-m", "16m", busyboxImg, "sh", "-c", "head -c 100000000 /dev/zero | tail")
		defer e.must(t, "rm", "oom")
		state := inspect(t, e, "oom", "{{.State.OOMKilled}} {{.State.ExitCode}}")
		if code == 137 && state == "true 137" {
			return
		}
		// A host whose cgroups cannot limit memory must say so.
		if log, _ := os.ReadFile(e.logPath); strings.Contains(string(log), "memory limit not applied") {
			t.Skipf("memory limits are not enforced on this host, and the engine says so (exit %d, %s)", code, state)
		}
		t.Errorf("-m 16m and 100 MB held: exit %d, OOMKilled/ExitCode %s, stderr %q", code, state, errOut)
	})

	t.Run("userns", func(t *testing.T) {
		// The docker CLI accepts only --userns=host; the engine's
		// "private" mode is asked for through the API.
		body := `{"Image": "` + busyboxImg + `", "Cmd": ["sh", "-c", "id -u; cat /proc/self/uid_map; stat -c %u /etc/passwd; touch /x && echo wrote"], "HostConfig": {"UsernsMode": "private"}}`
		if code, resp := e.api(t, "POST", "/containers/create?name=uns", body); code != 201 {
			t.Fatalf("create with UsernsMode private: %d %s", code, resp)
		}
		defer e.must(t, "rm", "uns")
		out := strings.Split(strings.TrimSpace(e.must(t, "start", "-a", "uns")), "\n")
		// Root inside, an unprivileged range outside; the image's
		// files, host root's, show as nobody.
		if len(out) != 4 || out[0] != "0" || strings.Join(strings.Fields(out[1]), " ") != "0 100000 65536" || out[2] != "65534" || out[3] != "wrote" {
			t.Errorf("user-namespaced container: %q", out)
		}
		host := e.must(t, "run", "--rm", busyboxImg, "cat", "/proc/self/uid_map")
		if strings.Join(strings.Fields(host), " ") != "0 0 4294967295" {
			t.Errorf("uid_map without a user namespace: %q", host)
		}
		if got := inspect(t, e, "uns", "{{.HostConfig.UsernsMode}}"); got != "private" {
			t.Errorf("UsernsMode: %q", got)
		}
	})

	t.Run("volumes", func(t *testing.T) {
		e.must(t, "run", "--rm", "-v", "vol1:/data", busyboxImg, "sh", "-c", "echo persisted > /data/f")
		if out := e.must(t, "run", "--rm", "-v", "vol1:/data:ro", busyboxImg, "cat", "/data/f"); out != "persisted\n" {
			t.Errorf("named volume: %q", out)
		}
		// The image's VOLUME /data: an anonymous volume filled from the image.
		id := strings.TrimSpace(e.must(t, "create", volumeImg, "sh", "-c", "ls /data; echo x > /data/new"))
		out := e.must(t, "start", "-a", id)
		if out != "keep\n" {
			t.Errorf("image volume content: %q", out)
		}
		mounts := inspect(t, e, id, "{{range .Mounts}}{{.Type}} {{.Destination}} {{.Driver}} {{.Name}}{{end}}")
		f := strings.Fields(mounts)
		if len(f) != 4 || f[0] != "volume" || f[1] != "/data" || f[2] != "local" || len(f[3]) != 64 {
			t.Errorf("mounts: %q", mounts)
		}
		e.must(t, "rm", "-v", id)
		if out, _, err := e.docker(nil, "volume", "inspect", f[3]); err == nil {
			t.Errorf("rm -v left the anonymous volume: %s", out)
		}
		// A named volume on an image path is filled too.
		if out := e.must(t, "run", "--rm", "-v", "vol2:/data", volumeImg, "ls", "/data"); out != "keep\n" {
			t.Errorf("named volume over image content: %q", out)
		}
		code, _, errOut := e.exitCode(t, "run", "--rm", "-v", "vol1:/data:ro", busyboxImg, "touch", "/data/x")
		if code == 0 || !strings.Contains(errOut, "Read-only file system") {
			t.Errorf("write to a ro volume: %d %q", code, errOut)
		}
	})

	t.Run("bind and tmpfs", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "host.txt"), []byte("from host\n"), 0o644)
		out := e.must(t, "run", "--rm", "-v", dir+":/mnt", busyboxImg, "sh", "-c", "cat /mnt/host.txt; echo back > /mnt/back.txt")
		if out != "from host\n" {
			t.Errorf("bind read: %q", out)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "back.txt")); err != nil || string(b) != "back\n" {
			t.Errorf("bind write: %q %v", b, err)
		}
		out = e.must(t, "run", "--rm", "--tmpfs", "/scratch:size=1m", "--mount", "type=tmpfs,dst=/t2", busyboxImg,
			"sh", "-c", "grep -E ' /(scratch|t2) ' /proc/mounts; echo ok > /scratch/f && cat /scratch/f")
		if !strings.Contains(out, "tmpfs /scratch tmpfs rw,nosuid,nodev,noexec") || !strings.Contains(out, "tmpfs /t2 tmpfs") || !strings.HasSuffix(out, "ok\n") {
			t.Errorf("tmpfs: %q", out)
		}
		code, _, errOut := e.exitCode(t, "run", "--rm", "--mount", "type=bind,src=/nonexistent/berth,dst=/x", busyboxImg, "true")
		if code == 0 || !strings.Contains(errOut, "bind source path does not exist") {
			t.Errorf("missing bind source: %d %q", code, errOut)
		}
	})

	t.Run("networks", func(t *testing.T) {
		out := e.must(t, "run", "--rm", "--network", "none", busyboxImg, "cat", "/proc/net/dev")
		if strings.Contains(out, "eth0") || !strings.Contains(out, "lo:") {
			t.Errorf("--network none: %q", out)
		}
		out = e.must(t, "run", "--rm", "--network", "host", busyboxImg, "cat", "/proc/net/dev")
		if !strings.Contains(out, e.bridge) {
			t.Errorf("--network host does not see the bridge %s: %q", e.bridge, out)
		}
		code, _, errOut := e.exitCode(t, "run", "--rm", "--network", "nosuchnet", busyboxImg, "true")
		if code == 0 || !strings.Contains(errOut, "network nosuchnet not found") {
			t.Errorf("unknown network: %d %q", code, errOut)
		}
		e.must(t, "run", "-d", "--name", "srv", "-p", "18081:80", "--expose", "90", "-P", busyboxImg, "sh", "-c",
			`while true; do printf 'HTTP/1.0 200 OK\r\n\r\nhello from srv\n' | nc -l -p 80; done`)
		defer e.must(t, "rm", "-f", "srv")
		ip := inspect(t, e, "srv", "{{.NetworkSettings.Networks.bridge.IPAddress}}")
		var body string
		waitFor(t, "the published port", func() bool {
			c, err := e.dial("127.0.0.1:18081")
			if err != nil {
				return false
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
			b, _ := io.ReadAll(c)
			body = string(b)
			return strings.Contains(body, "hello from srv")
		})
		// Container to container, by address.
		out = e.must(t, "run", "--rm", busyboxImg, "wget", "-qO-", "http://"+ip+":80/")
		if !strings.Contains(out, "hello from srv") {
			t.Errorf("container to container: %q", out)
		}
		// -P published the exposed port 90 on a random host port.
		out = e.must(t, "port", "srv", "90/tcp")
		hp := out[strings.LastIndex(out, ":")+1:]
		if n, err := strconv.Atoi(strings.TrimSpace(hp)); err != nil || n == 0 {
			t.Errorf("-P: %q", out)
		}
		hosts := e.must(t, "exec", "srv", "cat", "/etc/hosts")
		gw := inspect(t, e, "srv", "{{.NetworkSettings.Networks.bridge.Gateway}}")
		if !strings.Contains(hosts, ip+"\t") || !strings.Contains(hosts, gw+"\thost.docker.internal host.berth.internal\n") {
			t.Errorf("/etc/hosts (gateway %s): %q", gw, hosts)
		}
	})

	t.Run("cp diff commit", func(t *testing.T) {
		e.must(t, "run", "-d", "--name", "fs", busyboxImg, "sh", "-c", "echo content > /created; rm /etc/group; sleep 60")
		defer e.must(t, "rm", "-f", "fs")
		waitFor(t, "the file", func() bool {
			_, _, err := e.docker(nil, "exec", "fs", "test", "-f", "/created")
			return err == nil
		})
		diff := e.must(t, "diff", "fs")
		if !strings.Contains(diff, "A /created") || !strings.Contains(diff, "D /etc/group") || !strings.Contains(diff, "C /etc") {
			t.Errorf("diff: %q", diff)
		}
		dir := t.TempDir()
		e.must(t, "cp", "fs:/created", dir)
		if b, err := os.ReadFile(filepath.Join(dir, "created")); err != nil || string(b) != "content\n" {
			t.Errorf("cp out: %q %v", b, err)
		}
		os.WriteFile(filepath.Join(dir, "in.txt"), []byte("copied in\n"), 0o644)
		if _, errOut, err := e.docker(nil, "cp", filepath.Join(dir, "in.txt"), "fs:/tmp/"); err != nil {
			t.Errorf("cp in: %v %s", err, errOut)
		} else if out := e.must(t, "exec", "fs", "cat", "/tmp/in.txt"); out != "copied in\n" {
			t.Errorf("cp in: %q", out)
		}
		id := strings.TrimSpace(e.must(t, "commit", "-c", "ENV COMMITTED=yes", "-c", `CMD ["cat", "/created"]`, "-m", "a test", "fs", "berthtest/committed:1"))
		if !strings.HasPrefix(id, "sha256:") {
			t.Errorf("commit printed %q", id)
		}
		if out := e.must(t, "run", "--rm", "berthtest/committed:1"); out != "content\n" {
			t.Errorf("committed image: %q", out)
		}
		if out := e.must(t, "run", "--rm", "berthtest/committed:1", "sh", "-c", "echo $COMMITTED; test -e /etc/group || echo nogroup"); out != "yes\nnogroup\n" {
			t.Errorf("committed image: %q", out)
		}
		// export: the whole root filesystem as a tar.
		tarOut := e.must(t, "export", "fs")
		if !strings.Contains(tarOut, "bin/busybox") || !strings.Contains(tarOut, "content\n") {
			t.Errorf("export lacks the image's or the container's files (%d bytes)", len(tarOut))
		}
		// A stopped container's filesystem.
		e.must(t, "stop", "-t", "0", "fs")
		e.must(t, "cp", "fs:/created", filepath.Join(dir, "again"))
		if b, err := os.ReadFile(filepath.Join(dir, "again")); err != nil || string(b) != "content\n" {
			t.Errorf("cp out of a stopped container: %q %v", b, err)
		}
	})

	t.Run("ps filters and prune", func(t *testing.T) {
		a := strings.TrimSpace(e.must(t, "run", "-d", "--label", "app=a", busyboxImg, "sh", "-c", "exit 2"))
		b := strings.TrimSpace(e.must(t, "run", "-d", "--label", "app=b", busyboxImg, "sleep", "60"))
		e.must(t, "wait", a)
		if out := e.must(t, "ps", "-aq", "--no-trunc", "--filter", "label=app=a"); strings.TrimSpace(out) != a {
			t.Errorf("label filter: %q", out)
		}
		if out := e.must(t, "ps", "-aq", "--no-trunc", "--filter", "exited=2"); strings.TrimSpace(out) != a {
			t.Errorf("exited filter: %q", out)
		}
		if out := e.must(t, "ps", "-q", "--no-trunc", "--filter", "status=running", "--filter", "ancestor="+busyboxImg); !strings.Contains(out, b) || strings.Contains(out, a) {
			t.Errorf("status+ancestor filter: %q", out)
		}
		code, _, errOut := e.exitCode(t, "ps", "--filter", "colour=red")
		if code == 0 || !strings.Contains(errOut, "invalid filter 'colour'") {
			t.Errorf("bad filter: %d %q", code, errOut)
		}
		out := e.must(t, "container", "prune", "-f", "--filter", "label=app")
		if !strings.Contains(out, a) || strings.Contains(out, b) {
			t.Errorf("prune: %q", out)
		}
		e.must(t, "rm", "-f", b)
	})

	t.Run("restart policies", func(t *testing.T) {
		e.must(t, "run", "-d", "--name", "onfail", "--restart", "on-failure:2", busyboxImg, "sh", "-c", "exit 1")
		waitFor(t, "two restarts", func() bool {
			return inspect(t, e, "onfail", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
		})
		code, _, errOut := e.exitCode(t, "run", "--rm", "--restart", "always", busyboxImg, "true")
		if code == 0 || !strings.Contains(errOut, "--restart") {
			t.Errorf("--rm with --restart: %d %q", code, errOut)
		}
		e.must(t, "rm", "onfail")
	})

	t.Run("engine restart", func(t *testing.T) {
		loop := `trap "exit 0" TERM; echo ready; while true; do sleep 0.1; done`
		e.must(t, "run", "-d", "--name", "always", "--restart", "always", busyboxImg, "sh", "-c", loop)
		e.must(t, "run", "-d", "--name", "always-stopped", "--restart", "always", busyboxImg, "sh", "-c", loop)
		e.waitReady(t, "always", 1)
		e.waitReady(t, "always-stopped", 1)
		e.must(t, "stop", "always-stopped")
		e.must(t, "run", "-d", "--name", "unless", "--restart", "unless-stopped", busyboxImg, "sh", "-c", loop)
		e.waitReady(t, "unless", 1)
		e.must(t, "stop", "unless")
		e.must(t, "run", "-d", "--name", "plain", busyboxImg, "sh", "-c", "echo plain; sleep 2; exit 4")
		e.must(t, "run", "-d", "--name", "failing", "--restart", "on-failure", busyboxImg, "sh", "-c", "sleep 2; exit 1")
		pid := inspect(t, e, "always", "{{.State.Pid}}")

		e.kill()
		time.Sleep(3 * time.Second) // plain and failing exit while the engine is down
		e.start()

		if got := inspect(t, e, "always", "{{.State.Status}} {{.State.Pid}}"); got != "running "+pid {
			t.Errorf("the running container was not reconnected: %q (pid was %s)", got, pid)
		}
		waitFor(t, "always-stopped to come back", func() bool {
			return inspect(t, e, "always-stopped", "{{.State.Status}}") == "running"
		})
		if got := inspect(t, e, "unless", "{{.State.Status}}"); got != "exited" {
			t.Errorf("unless-stopped after a manual stop: %q", got)
		}
		if got := inspect(t, e, "plain", "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 4" {
			t.Errorf("exit while the engine was down: %q", got)
		}
		if logs := e.must(t, "logs", "plain"); logs != "plain\n" {
			t.Errorf("logs across the engine restart: %q", logs)
		}
		waitFor(t, "failing to be restarted", func() bool {
			n, _ := strconv.Atoi(inspect(t, e, "failing", "{{.RestartCount}}"))
			return n >= 1
		})
		// The reconnected container still stops and starts.
		e.must(t, "stop", "always")
		e.must(t, "start", "always")
		e.must(t, "rm", "-f", "always", "always-stopped", "unless", "plain", "failing")
	})

	t.Run("graceful engine stop", func(t *testing.T) {
		loop := `trap "exit 0" TERM; echo ready; while true; do sleep 0.1; done`
		e.must(t, "run", "-d", "--name", "back", "--restart", "unless-stopped", busyboxImg, "sh", "-c", loop)
		e.must(t, "run", "-d", "--name", "gone", busyboxImg, "sh", "-c", loop)
		e.waitReady(t, "back", 1)
		e.waitReady(t, "gone", 1)
		pid := inspect(t, e, "back", "{{.State.Pid}}")
		if err := e.stop(); err != nil {
			t.Fatalf("stopping the agent: %v\n%s", err, e.agentLog())
		}
		if n, _ := strconv.Atoi(pid); n > 0 {
			if err := syscall.Kill(n, 0); err == nil {
				t.Errorf("the container's process %d survived a graceful engine stop", n)
			}
		}
		e.start()
		waitFor(t, "unless-stopped to come back", func() bool { return inspect(t, e, "back", "{{.State.Status}}") == "running" })
		if got := inspect(t, e, "gone", "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 0" {
			t.Errorf("a container without a policy after a graceful stop: %q", got)
		}
		e.must(t, "rm", "-f", "back", "gone")
	})

	t.Run("logs follow and events", func(t *testing.T) {
		since := time.Now().Add(-time.Second).Unix()
		id := strings.TrimSpace(e.must(t, "run", "-d", busyboxImg, "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done"))
		out := e.must(t, "logs", "-f", id)
		if out != "line1\nline2\nline3\n" {
			t.Errorf("logs -f: %q", out)
		}
		if out := e.must(t, "logs", "--tail", "1", id); out != "line3\n" {
			t.Errorf("logs --tail 1: %q", out)
		}
		until := time.Now().Add(time.Second).Unix()
		ev := e.must(t, "events", "--since", strconv.FormatInt(since, 10), "--until", strconv.FormatInt(until, 10),
			"--filter", "container="+id, "--format", "{{.Action}}")
		var actions []string
		sc := bufio.NewScanner(strings.NewReader(ev))
		for sc.Scan() {
			actions = append(actions, sc.Text())
		}
		if strings.Join(actions, ",") != "create,attach,start,die" && strings.Join(actions, ",") != "create,start,die" {
			t.Errorf("events: %q", actions)
		}
		e.must(t, "rm", id)
	})
}

// inspect formats one container with the CLI.
func inspect(t *testing.T, e *env, name, format string) string {
	t.Helper()
	return strings.TrimSpace(e.must(t, "inspect", "--format", format, name))
}

// waitReady waits until the container's log has said "ready" n times: its
// shell has set its traps, and a signal now is not lost (a PID 1 ignores
// the signals it has no handler for).
func (e *env) waitReady(t *testing.T, name string, n int) {
	t.Helper()
	waitFor(t, name+" to set its traps", func() bool {
		out, _, _ := e.docker(nil, "logs", name)
		return strings.Count(out, "ready\n") >= n
	})
}

// waitFor polls cond for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
