package dockerapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/images"
)

const dockerCLI = "/usr/local/bin/docker"

// testEnv is a running API server on a unix socket, with its store.
type testEnv struct {
	sock   string
	store  *images.Store
	events *engine.Events
	srv    *Server
	config string // DOCKER_CONFIG of the CLI
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startEnv(t *testing.T, edit func(*Config)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := images.Open(ctx, images.Options{Root: filepath.Join(dir, "images"), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hub := engine.NewEvents(engine.EventsOptions{})
	cfg := Config{Images: st, Events: hub, Name: "berth-test", RootDir: dir, Version: "0.0.0-test", Log: testLogger()}
	if edit != nil {
		edit(&cfg)
	}
	srv := New(cfg)
	sock := filepath.Join(dir, "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, l, srv) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		hub.Close()
		_ = st.Close()
	})
	cfgDir := filepath.Join(dir, "docker-config")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &testEnv{sock: sock, store: st, events: hub, srv: srv, config: cfgDir}
}

// docker runs the real docker CLI against the env.
func (e *testEnv) docker(t *testing.T, stdin io.Reader, args ...string) (string, string, error) {
	t.Helper()
	if _, err := os.Stat(dockerCLI); err != nil {
		t.Skipf("docker CLI not installed at %s", dockerCLI)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dockerCLI, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+e.sock, "DOCKER_CONFIG="+e.config,
		"DOCKER_CLI_HINTS=false", "DOCKER_CONTEXT=", "NO_COLOR=1")
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	err := cmd.Run()
	t.Logf("docker %s: err=%v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	return out.String(), errb.String(), err
}

// mustDocker runs the CLI and fails the test when it fails.
func (e *testEnv) mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := e.docker(t, nil, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// client is a raw HTTP client on the env's socket.
func (e *testEnv) client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sock)
		},
	}}
}

// do sends a raw request and returns the status and body.
func (e *testEnv) do(t *testing.T, method, path string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://docker"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// hijacked is a raw attach or exec-start connection.
type hijacked struct {
	conn *net.UnixConn
	br   *bufio.Reader
	resp *http.Response
}

// hijack sends a POST that the server takes over (attach, exec start) and
// reads the response head; the stream follows on h.br.
func (e *testEnv) hijack(t *testing.T, path, body string, upgrade bool) *hijacked {
	t.Helper()
	c, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*net.UnixConn)
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	req, err := http.NewRequest("POST", "http://docker"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if upgrade {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "tcp")
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("POST %s: reading the response: %v", path, err)
	}
	return &hijacked{conn: conn, br: br, resp: resp}
}

// rest reads the stream to its end.
func (h *hijacked) rest(t *testing.T) []byte {
	t.Helper()
	var r io.Reader = h.br
	if h.resp.StatusCode != http.StatusSwitchingProtocols {
		r = h.resp.Body
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	return b
}

// demux splits a multiplexed stream, failing on a malformed one.
func demux(t *testing.T, b []byte) (stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	if _, err := stdcopy.StdCopy(&o, &e, bytes.NewReader(b)); err != nil {
		t.Fatalf("demultiplexing %q: %v", b, err)
	}
	return o.String(), e.String()
}

// startFake starts a server on the fake engine and volume store.
func startFake(t *testing.T) (*testEnv, *fakeEngine, *fakeVolumes) {
	t.Helper()
	fe, fv := newFakeEngine(), newFakeVolumes()
	e := startEnv(t, func(c *Config) {
		c.Containers, c.Volumes, c.ID = fe, fv, "TEST:DAEMON:ID"
	})
	e.srv.statsInterval = 20 * time.Millisecond
	return e, fe, fv
}

// mustJSON sends a request, checks the status and decodes the body.
func (e *testEnv) mustJSON(t *testing.T, method, path, body string, code int, out any) {
	t.Helper()
	resp, b := e.do(t, method, path, strings.NewReader(body), map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, code, b)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(b), out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, path, b, err)
		}
	}
}
