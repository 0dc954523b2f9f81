//go:build unix && !linux

package control

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// The agent only runs on Linux; these keep the package building (and
// Info answering with what it can) on the other Unix hosts.

func uptime() (time.Duration, error) {
	return 0, errors.New("uptime: not implemented on this OS")
}

func memory() (total, avail uint64, err error) {
	return 0, 0, errors.New("memory: not implemented on this OS")
}

func diskUsage(dir string) (total, used uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	return uint64(st.Blocks) * bs, uint64(st.Blocks-st.Bfree) * bs, nil
}
