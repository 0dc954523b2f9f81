package hostagent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/berthvm/berth/forwarding/portfwd"
	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/hostagent/events"
)

// The control API, served on the instance's hostagent.sock (0600):
//
//	GET  /v1/status        the agent's Status as JSON
//	POST /v1/stop          start a graceful stop; 202, progress goes to events.jsonl
//	GET  /v1/ports         the forwarded ports ([]portfwd.Forward) as JSON
//	GET  /v1/tunnel/{port} upgrade to a raw byte stream to that guest port
//
// The tunnel lets the CLI speak gRPC to the guest agent itself, so the host
// agent never needs to learn each new RPC.
const tunnelProtocol = "berth-tunnel"

type controlServer struct {
	a   *Agent
	srv *http.Server
}

func newControlServer(a *Agent) *controlServer {
	mux := http.NewServeMux()
	c := &controlServer{a: a, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	mux.HandleFunc("GET /v1/status", c.status)
	mux.HandleFunc("POST /v1/stop", c.stop)
	mux.HandleFunc("GET /v1/ports", c.ports)
	mux.HandleFunc("GET /v1/tunnel/{port}", c.tunnel)
	return c
}

func (c *controlServer) Serve(ln net.Listener) error { return c.srv.Serve(ln) }
func (c *controlServer) Close() error                { return c.srv.Close() }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"message": msg})
}

func (c *controlServer) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.a.Status())
}

func (c *controlServer) ports(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.a.Ports())
}

func (c *controlServer) stop(w http.ResponseWriter, r *http.Request) {
	c.a.RequestStop()
	writeJSON(w, http.StatusAccepted, map[string]string{"message": "stopping"})
}

func (c *controlServer) tunnel(w http.ResponseWriter, r *http.Request) {
	port, err := strconv.ParseUint(r.PathValue("port"), 10, 32)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid guest port "+strconv.Quote(r.PathValue("port")))
		return
	}
	if r.Header.Get("Upgrade") != tunnelProtocol {
		writeError(w, http.StatusBadRequest, "the tunnel needs \"Upgrade: "+tunnelProtocol+"\"")
		return
	}
	c.a.mu.Lock()
	d := c.a.driver
	c.a.mu.Unlock()
	if d == nil || c.a.Status().Phase != events.Running {
		writeError(w, http.StatusServiceUnavailable, "the instance is not running")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	guest, err := d.Transport().DialPort(ctx, uint32(port))
	cancel()
	if err != nil {
		writeError(w, http.StatusBadGateway, fmt.Sprintf("reaching guest port %d: %v", port, err))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		guest.Close()
		writeError(w, http.StatusInternalServerError, "the control server cannot hijack connections")
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		guest.Close()
		return
	}
	fmt.Fprintf(buf, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", tunnelProtocol)
	if err := buf.Flush(); err != nil {
		conn.Close()
		guest.Close()
		return
	}
	// Bytes the client sent after its request are already buffered.
	if n := buf.Reader.Buffered(); n > 0 {
		pending, _ := buf.Reader.Peek(n)
		if _, err := guest.Write(pending); err != nil {
			conn.Close()
			guest.Close()
			return
		}
	}
	transport.Proxy(context.Background(), conn, guest)
}

// Client talks to a host agent through its control socket. It is also a
// transport.Dialer, so the CLI reaches guest ports through the agent.
type Client struct {
	sock string
	http *http.Client
}

// NewClient returns a client for the control socket at sock.
func NewClient(sock string) *Client {
	return &Client{
		sock: sock,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}},
	}
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://hostagent"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the host agent at %s: %w", c.sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func decodeError(resp *http.Response) error {
	var e struct{ Message string }
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return errors.New(e.Message)
	}
	return fmt.Errorf("host agent answered %s", resp.Status)
}

// Status returns the agent's status.
func (c *Client) Status(ctx context.Context) (*events.Status, error) {
	var s events.Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Ports lists the ports the agent forwards.
func (c *Client) Ports(ctx context.Context) ([]portfwd.Forward, error) {
	var ps []portfwd.Forward
	if err := c.do(ctx, http.MethodGet, "/v1/ports", &ps); err != nil {
		return nil, err
	}
	return ps, nil
}

// Stop asks the agent to stop the VM. It returns at once; the agent exits
// when the VM is down.
func (c *Client) Stop(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/stop", nil)
}

// DialPort opens a raw stream to a guest port through the agent.
func (c *Client) DialPort(ctx context.Context, port uint32) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.sock)
	if err != nil {
		return nil, fmt.Errorf("reaching the host agent at %s: %w", c.sock, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fmt.Fprintf(conn, "GET /v1/tunnel/%d HTTP/1.1\r\nHost: hostagent\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", port, tunnelProtocol)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening a tunnel to guest port %d: %w", port, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		err := decodeError(resp)
		resp.Body.Close()
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return &bufferedConn{Conn: conn, r: br}, nil
}

// bufferedConn reads first what the HTTP reader buffered past the response.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// CloseWrite half-closes the underlying unix socket.
func (b *bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

var _ transport.Dialer = (*Client)(nil)
