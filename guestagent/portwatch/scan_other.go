//go:build !linux

package portwatch

import (
	"errors"
	"net/netip"
)

var errUnsupported = errors.New("listing listening sockets needs Linux's sock_diag")

func scanListeners() ([]Listener, error)          { return nil, errUnsupported }
func interfaceAddrs(string) ([]netip.Addr, error) { return nil, errUnsupported }
func ephemeralStart() uint16                      { return 32768 }
