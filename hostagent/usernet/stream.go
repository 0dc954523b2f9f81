package usernet

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// ServeStream attaches NICs through a stream socket at path that QEMU
// connects to, each frame prefixed by its 32-bit length (QEMU's stream
// netdev). Each connection is a NIC; a reconnecting QEMU is served again.
func (n *Network) ServeStream(ctx context.Context, path string) error {
	if err := removeStale(path); err != nil {
		return fmt.Errorf("attaching the NIC: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("attaching the NIC: %w", err)
	}
	if err := n.track(ln); err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					n.log.Warn("accepting the NIC connection", "err", err)
				}
				return
			}
			if n.track(c) != nil {
				return
			}
			n.serve(ctx, "stream socket", c, n.vn.AcceptQemu)
		}
	}()
	return nil
}
