package ctrfs

import (
	"io/fs"
	"path"

	"github.com/moby/moby/api/types/container"
)

// Stat describes path as the container sees it: mounts and the symlinks
// on the way are resolved inside the container, a final symlink is
// described rather than followed (LinkTarget is where it leads, fully
// resolved, as far as it exists), unless path ends in "/" or "/.".
func (f FS) Stat(p string) (container.PathStat, error) {
	v := f.open()
	defer v.close()
	ps, _, _, err := v.pathStat(p)
	return ps, err
}

// pathStat is Stat that also returns the resolved path and its info.
func (v *view) pathStat(req string) (container.PathStat, string, fs.FileInfo, error) {
	cp, fi, err := v.stat(req)
	if err != nil {
		return container.PathStat{}, "", nil, err
	}
	ps := container.PathStat{
		Name:  path.Base(cleanPath(req)),
		Size:  fi.Size(),
		Mode:  fi.Mode(),
		Mtime: fi.ModTime(),
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _, err := v.resolve(cp, resolveOpts{followFinal: true})
		if err != nil {
			// A loop: describe the link, as far as it goes.
			target = cp
		}
		ps.LinkTarget = target
	}
	return ps, cp, fi, nil
}
