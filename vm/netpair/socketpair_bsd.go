//go:build unix && !linux

package netpair

import (
	"os"
	"syscall"
)

// No option passes the OS cap here; macOS allows kern.ipc.maxsockbuf (8 MiB).
const (
	soSndbufForce = 0
	soRcvbufForce = 0
)

// socketpair makes the pair and marks it close-on-exec. macOS has no
// SOCK_CLOEXEC, so ForkLock keeps a concurrent fork+exec from inheriting the
// fds in between.
func socketpair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return fds, os.NewSyscallError("socketpair", err)
	}
	syscall.CloseOnExec(fds[0])
	syscall.CloseOnExec(fds[1])
	return fds, nil
}
