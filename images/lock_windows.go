package images

import (
	"fmt"
	"os"
)

// lockDir holds path open; the image store does not run on Windows hosts,
// this only keeps the package building there.
func lockDir(path string) (func() error, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	return f.Close, nil
}
