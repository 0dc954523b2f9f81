package usernet

import (
	"context"
	"errors"
)

// ServeDatagram is not available on Windows, which has no unix datagram
// sockets: use ServeStream.
func (n *Network) ServeDatagram(context.Context, string, string) error {
	return errors.New("attaching the NIC: Windows has no unix datagram sockets; use a stream socket")
}
