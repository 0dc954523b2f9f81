//go:build unix && !linux

package reaper

import "errors"

// SetSubreaper is Linux-only; elsewhere orphans go to the system's init.
func SetSubreaper() error {
	return errors.New("child subreaper: not supported on this OS")
}
