package qemu

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// processCmdline is pid's command line, arguments joined by spaces. A zombie
// has an empty one.
func processCmdline(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return "", fmt.Errorf("reading command line of pid %d: %w", pid, err)
	}
	return string(bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})), nil
}
