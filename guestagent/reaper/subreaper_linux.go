package reaper

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SetSubreaper makes the calling process a child subreaper, so orphans of
// its descendants are reparented to it instead of to the real PID 1. Native
// mode uses it to get the same reaping duties as the guest's PID 1.
func SetSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting child subreaper: %w", err)
	}
	return nil
}
