//go:build unix && !linux

package qemu

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// processCmdline is pid's command line as ps shows it (macOS and the BSDs
// have no /proc to read it from).
func processCmdline(pid int) (string, error) {
	out, err := exec.Command("ps", "-ww", "-o", "command=", "-p", strconv.Itoa(pid)).Output()
	if err != nil {
		return "", fmt.Errorf("reading command line of pid %d: %w", pid, err)
	}
	return strings.TrimSpace(string(out)), nil
}
