package portfwd

import (
	"errors"

	"golang.org/x/sys/windows"
)

// Socket errors, by meaning, as Winsock spells them.

func isAddrInUse(err error) bool    { return errors.Is(err, windows.WSAEADDRINUSE) }
func isAccessDenied(err error) bool { return errors.Is(err, windows.WSAEACCES) }
func isAddrAbsent(err error) bool {
	return errors.Is(err, windows.WSAEADDRNOTAVAIL) || errors.Is(err, windows.WSAEAFNOSUPPORT)
}
func isAddrNotAvail(err error) bool { return errors.Is(err, windows.WSAEADDRNOTAVAIL) }

// isPortUnreachable: Winsock reports an ICMP port unreachable on a UDP
// socket as a reset.
func isPortUnreachable(err error) bool {
	return errors.Is(err, windows.WSAECONNRESET) || errors.Is(err, windows.WSAECONNREFUSED)
}
