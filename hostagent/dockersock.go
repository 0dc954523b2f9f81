package hostagent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/berthvm/berth/forwarding/transport"
)

// ServeDockerSocket forwards each connection on the instance's docker.sock
// to the Docker API in the guest. The socket is 0600: only its owner may
// drive the engine, as with dockerd's socket and its group. ready says
// why the engine cannot be reached now (the instance is stopping); such
// connections get that reason at once, as an API error. The socket is
// removed when the returned func is called, so clients of a stopped
// instance fail to connect at once instead of hanging.
func ServeDockerSocket(ctx context.Context, path string, d transport.Dialer, ready func() error, log *slog.Logger) (func(), error) {
	ln, err := listenPrivate(path, "the docker socket")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					log.Warn("docker socket accept failed", "err", err)
				}
				return
			}
			go forwardDocker(ctx, c, d, ready, log)
		}
	}()
	return func() { ln.Close(); os.Remove(path) }, nil
}

func forwardDocker(ctx context.Context, c net.Conn, d transport.Dialer, ready func() error, log *slog.Logger) {
	if ready != nil {
		if err := ready(); err != nil {
			answerDockerError(c, http.StatusServiceUnavailable, "berth: "+err.Error())
			return
		}
	}
	g, err := dialEngine(ctx, d, time.Duration(engineStartWait.Load()))
	if err != nil {
		log.Warn("reaching the guest's Docker API failed", "err", err)
		answerDockerError(c, http.StatusBadGateway, "berth: the container engine in the VM is not answering: "+err.Error())
		return
	}
	transport.Proxy(ctx, c, g)
}

// engineStartWait is how long a docker client may wait for the engine,
// which starts a moment after the guest agent answers (once the guest's
// background modules are in): a `docker` run right after `berth start`
// waits for it instead of failing.
// Tests shorten it.
var engineStartWait atomic.Int64 // nanoseconds

func init() { engineStartWait.Store(int64(60 * time.Second)) }

// dialEngine dials the guest's Docker API, retrying while nothing listens
// on its port yet, for up to wait.
func dialEngine(ctx context.Context, d transport.Dialer, wait time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(wait)
	for {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		g, err := d.DialPort(dctx, transport.PortDocker)
		cancel()
		if err == nil || !errors.Is(err, transport.ErrNotListening) || time.Now().After(deadline) {
			return g, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// answerDockerError answers a client in HTTP, as the Docker API does, so
// the docker CLI prints the reason instead of "EOF". It reads the request
// first: a client that gets an answer before it has sent its request
// drops it as unsolicited.
func answerDockerError(c net.Conn, code int, msg string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if req, rerr := http.ReadRequest(bufio.NewReader(c)); rerr == nil {
		io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
		req.Body.Close()
	}
	body := `{"message":` + strconv.Quote(msg) + "}\n"
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(body), body)
}
