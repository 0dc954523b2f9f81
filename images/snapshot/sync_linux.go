package snapshot

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncFS flushes the filesystem holding dir: one syncfs is far cheaper
// than an fsync per unpacked file.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
