package hostagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/hostagent/events"
	"github.com/berthvm/berth/hostagent/instance"
)

func dockerGet(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	resp, err := c.Get("http://docker" + path)
	if err != nil {
		t.Fatalf("GET %s through docker.sock: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDockerSocketForwards(t *testing.T) {
	inst, f := setup(t)
	cancel, result := startAgent(t, inst, f)
	defer func() { cancel(); <-result }()
	waitPhase(t, inst, events.Running)
	sock := inst.Path(instance.DockerSocket)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("docker.sock: %v %v", fi, err)
	}

	// No engine in the guest yet, for longer than a client waits: a
	// clear JSON error, not a hang or EOF.
	defer engineStartWait.Store(engineStartWait.Load())
	engineStartWait.Store(int64(300 * time.Millisecond))
	code, body := dockerGet(t, sock, "/_ping")
	if code != http.StatusBadGateway || !strings.Contains(body, "container engine in the VM is not answering") {
		t.Fatalf("without an engine: %d %q", code, body)
	}

	// An engine that comes up while the client waits (right after
	// berth start) answers it; then it answers at once.
	engineStartWait.Store(int64(20 * time.Second))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pong "+r.URL.Path)
	})}
	defer srv.Close()
	go func() {
		time.Sleep(500 * time.Millisecond)
		ln, err := net.Listen("unix", filepath.Join(f.dir, fmt.Sprint(transport.PortDocker)))
		if err != nil {
			t.Error(err)
			return
		}
		srv.Serve(ln)
	}()
	start := time.Now()
	code, body = dockerGet(t, sock, "/v1.43/_ping")
	if code != 200 || body != "pong /v1.43/_ping" {
		t.Fatalf("through the socket, engine starting: %d %q", code, body)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Fatalf("answered after %v, before the engine listened", waited)
	}
	code, body = dockerGet(t, sock, "/_ping")
	if code != 200 || body != "pong /_ping" {
		t.Fatalf("through the socket: %d %q", code, body)
	}

	// When the agent stops, the socket goes away, so clients fail fast.
	cancel()
	<-result
	result <- nil
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("docker.sock left behind after stop: %v", err)
	}
}

// TestDockerSocketStopping: while the instance stops, clients get the
// reason at once instead of waiting for a guest that is going away.
func TestDockerSocketStopping(t *testing.T) {
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "docker.sock")
	dialed := false
	d := transport.DialerFunc(func(ctx context.Context, port uint32) (net.Conn, error) {
		dialed = true
		<-ctx.Done()
		return nil, ctx.Err()
	})
	stopping := func() error { return errors.New(`instance "t" is stopping`) }
	closeSock, err := ServeDockerSocket(context.Background(), sock, d, stopping, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeSock()
	start := time.Now()
	code, body := dockerGet(t, sock, "/_ping")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "is stopping") {
		t.Fatalf("while stopping: %d %q", code, body)
	}
	if dialed || time.Since(start) > 2*time.Second {
		t.Fatalf("the answer waited for the guest (dialed %v, %v)", dialed, time.Since(start))
	}
}

func shortTempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "ds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
