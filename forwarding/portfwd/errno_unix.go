//go:build !windows

package portfwd

import (
	"errors"
	"syscall"
)

// Socket errors, by meaning, as this OS spells them.

func isAddrInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }
func isAccessDenied(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}
func isAddrAbsent(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)
}
func isAddrNotAvail(err error) bool { return errors.Is(err, syscall.EADDRNOTAVAIL) }

// isPortUnreachable is the error a connected UDP socket reports after an
// ICMP port unreachable: the service may come back, so it is not fatal.
func isPortUnreachable(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
