package volumes

import (
	"context"
	"fmt"
)

// CopyUp fills the volume from src, the image's content at the volume's
// mount point, once in the volume's life: only while nothing was ever
// copied in and its data directory is empty. The data directory takes
// src's owner, mode and times, as in dockerd. Files, directories,
// symlinks and fifos are copied with owner, mode, times and (best
// effort) xattrs; hard links become separate files; device nodes and
// sockets are skipped. A src that is missing or not a directory copies
// nothing.
func (s *Store) CopyUp(ctx context.Context, name, src string) error {
	s.mu.Lock()
	v, ok := s.vols[name]
	s.mu.Unlock()
	if !ok {
		return noSuchVolume(name)
	}
	v.copyMu.Lock()
	defer v.copyMu.Unlock()
	s.mu.Lock()
	filled := v.meta.Filled
	s.mu.Unlock()
	if filled {
		return nil
	}
	copied, err := copyTree(ctx, src, s.data(name))
	if err != nil {
		return fmt.Errorf("copying the image's content into volume %s: %w", name, err)
	}
	if !copied {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vols[name] != v {
		return nil // removed meanwhile
	}
	m := v.meta
	m.Filled = true
	if err := s.save(v, m); err != nil {
		return fmt.Errorf("copying the image's content into volume %s: %w", name, err)
	}
	return nil
}
