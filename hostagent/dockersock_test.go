package hostagent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

	// No engine in the guest yet: a clear JSON error, not a hang or EOF.
	code, body := dockerGet(t, sock, "/_ping")
	if code != http.StatusBadGateway || !strings.Contains(body, "container engine in the VM is not answering") {
		t.Fatalf("without an engine: %d %q", code, body)
	}

	// An engine on guest port 2375 answers through the socket.
	ln, err := net.Listen("unix", filepath.Join(f.dir, fmt.Sprint(transport.PortDocker)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pong "+r.URL.Path)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	code, body = dockerGet(t, sock, "/v1.43/_ping")
	if code != 200 || body != "pong /v1.43/_ping" {
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
