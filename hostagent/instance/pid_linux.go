package instance

import (
	"fmt"
	"os"
	"strings"
)

func processArgs(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	// A zombie has an empty command line: it is as good as dead.
	if len(b) == 0 {
		return []string{}, nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}
