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
	"time"

	"github.com/berthvm/berth/forwarding/transport"
)

// serveDockerSocket forwards each connection on the instance's docker.sock
// to the Docker API in the guest. The socket is 0600: only its owner may
// drive the engine, as with dockerd's socket and its group.
func serveDockerSocket(ctx context.Context, path string, d transport.Dialer, log *slog.Logger) (func(), error) {
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
			go forwardDocker(ctx, c, d, log)
		}
	}()
	return func() { ln.Close(); os.Remove(path) }, nil
}

func forwardDocker(ctx context.Context, c net.Conn, d transport.Dialer, log *slog.Logger) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	g, err := d.DialPort(dctx, transport.PortDocker)
	cancel()
	if err != nil {
		// Answer in HTTP so the docker CLI prints the reason instead of
		// "EOF". Read the request first: a client that gets an answer
		// before it has sent its request drops it as unsolicited.
		log.Warn("reaching the guest's Docker API failed", "err", err)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if req, rerr := http.ReadRequest(bufio.NewReader(c)); rerr == nil {
			io.Copy(io.Discard, io.LimitReader(req.Body, 1<<20))
			req.Body.Close()
		}
		body := `{"message":` + strconv.Quote("berth: the container engine in the VM is not answering: "+err.Error()) + "}\n"
		fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		c.Close()
		return
	}
	transport.Proxy(ctx, c, g)
}
