package daemon

import (
	"io/fs"
	"path/filepath"
	"syscall"
)

// walkFiles calls fn with the size, device and inode of every regular
// file under dir, without following symlinks.
func walkFiles(dir string, fn func(size int64, dev, ino uint64)) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // vanished or unreadable: skip, as du does
		}
		if !e.Type().IsRegular() {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			fn(fi.Size(), uint64(st.Dev), st.Ino)
		}
		return nil
	})
}
