package vm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// DiskAlign is the granularity of data disk sizes. Sizes are rounded up to
// it, so the guest always sees whole sectors and a whole last MiB.
const DiskAlign = 1 << 20

// ErrDiskShrink means a data disk was asked to become smaller than it is.
// Shrinking would cut off the end of the guest's file system, so it is
// always refused.
var ErrDiskShrink = errors.New("data disks can only grow")

// CreateDataDisk makes the raw sparse data disk at path, of sizeBytes rounded
// up to DiskAlign. An existing disk is kept, with its data: it is grown when
// it is smaller than asked and refused with ErrDiskShrink when it is larger.
// The guest formats the disk on first boot, so a new disk is all holes.
func CreateDataDisk(path string, sizeBytes int64) error {
	size, err := alignDiskSize(sizeBytes)
	if err != nil {
		return fmt.Errorf("creating data disk %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ResizeDataDisk(path, sizeBytes)
	}
	if err != nil {
		return fmt.Errorf("creating data disk: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		return errors.Join(fmt.Errorf("sizing data disk %s: %w", path, err), f.Close(), os.Remove(path))
	}
	if err := f.Close(); err != nil {
		return errors.Join(fmt.Errorf("closing data disk %s: %w", path, err), os.Remove(path))
	}
	return nil
}

// ResizeDataDisk grows the existing data disk at path to sizeBytes rounded up
// to DiskAlign. Asking for the current size is a no-op; asking for less is
// ErrDiskShrink. The guest grows its file system on the next boot.
func ResizeDataDisk(path string, sizeBytes int64) error {
	size, err := alignDiskSize(sizeBytes)
	if err != nil {
		return fmt.Errorf("resizing data disk %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("resizing data disk: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("resizing data disk: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("resizing data disk %s: not a regular file", path)
	}
	switch cur := st.Size(); {
	case cur == size:
		return nil
	case cur > size:
		return fmt.Errorf("resizing data disk %s from %d to %d bytes: %w", path, cur, size, ErrDiskShrink)
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("growing data disk %s: %w", path, err)
	}
	return f.Close()
}

func alignDiskSize(sizeBytes int64) (int64, error) {
	if sizeBytes <= 0 {
		return 0, fmt.Errorf("size %d is not positive", sizeBytes)
	}
	if sizeBytes > (1<<62)-DiskAlign {
		return 0, fmt.Errorf("size %d is too large", sizeBytes)
	}
	return (sizeBytes + DiskAlign - 1) &^ (DiskAlign - 1), nil
}
