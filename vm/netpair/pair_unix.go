//go:build unix

package netpair

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// New returns both ends of a connected AF_UNIX SOCK_DGRAM socket pair, with
// their send and receive buffers raised to SendBuffer and ReceiveBuffer (or
// as close as the OS allows). Both ends are close-on-exec.
func New() (vmEnd, hostEnd *os.File, err error) {
	fds, err := socketpair()
	if err != nil {
		return nil, nil, fmt.Errorf("making the network socket pair: %w", err)
	}
	for _, fd := range fds {
		if err := raiseBuffers(fd); err != nil {
			syscall.Close(fds[0])
			syscall.Close(fds[1])
			return nil, nil, fmt.Errorf("sizing the network socket buffers: %w", err)
		}
	}
	return os.NewFile(uintptr(fds[0]), "berth-net-vm"), os.NewFile(uintptr(fds[1]), "berth-net-host"), nil
}

// raiseBuffers sets the buffer sizes. An OS cap (Linux's
// net.core.{w,r}mem_max for unprivileged users) is not an error: the
// kernel clamps the value, and privileged callers get past the cap.
func raiseBuffers(fd int) error {
	for _, o := range []struct{ opt, force, size int }{
		{syscall.SO_SNDBUF, soSndbufForce, SendBuffer},
		{syscall.SO_RCVBUF, soRcvbufForce, ReceiveBuffer},
	} {
		if o.force != 0 {
			if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, o.force, o.size); err == nil {
				continue
			} else if !errors.Is(err, syscall.EPERM) {
				return os.NewSyscallError("setsockopt", err)
			}
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, o.opt, o.size); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}
