//go:build unix

package usernet

import (
	"context"
	"fmt"
	"net"
	"os"
)

// ServeDatagram attaches a NIC through a unixgram socket at path, taking
// frames from the socket bound at peer (QEMU's end) and sending frames
// there. It replaces a socket file left by an earlier host agent, and
// serves in the background.
func (n *Network) ServeDatagram(ctx context.Context, path, peer string) error {
	if err := removeStale(path); err != nil {
		return fmt.Errorf("attaching the NIC: %w", err)
	}
	uc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("attaching the NIC: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		uc.Close()
		return fmt.Errorf("attaching the NIC: %w", err)
	}
	// Frames queue here while the switch is busy: the kernel default
	// (about 200 KiB) drops bursts.
	uc.SetReadBuffer(4 << 20)
	uc.SetWriteBuffer(1 << 20)
	to := &net.UnixAddr{Name: peer, Net: "unixgram"}
	fc := &frameConn{Conn: uc, peer: to, to: to, from: peer, log: n.log}
	if err := n.track(fc); err != nil {
		return err
	}
	n.serve(ctx, "datagram socket", fc, n.vn.AcceptVfkit)
	return nil
}
