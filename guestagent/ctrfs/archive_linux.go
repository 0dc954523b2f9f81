package ctrfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

// CopyFrom writes a tar of path (GET /containers/{id}/archive), after
// calling stat with what Stat returns for it. As in dockerd, the tar's
// top entry is named after the path's base name ("." for a path ending
// in "/."); a directory's symlinks are stored as symlinks, and mounts
// beneath it are included from their sources.
func (f FS) CopyFrom(ctx context.Context, p string, stat func(container.PathStat), w io.Writer) error {
	v := f.open()
	defer v.close()
	ps, cp, fi, err := v.pathStat(p)
	if err != nil {
		return err
	}
	if stat != nil {
		stat(ps)
	}
	t := newTarWriter(ctx, v, w)
	name := path.Base(cleanPath(p))
	if fi.IsDir() && name == "/" {
		// dockerd names the entries of "/" "/", "/bin", ...
		name = ""
	}
	if err := t.add(cp, name); err != nil {
		return err
	}
	if err := t.tw.Close(); err != nil {
		return fmt.Errorf("writing the archive: %w", err)
	}
	return nil
}

// Export writes the container's root filesystem as a tar (docker
// export): mount points appear as they are in the root filesystem
// (empty directories), without the mounts' content, and /proc and /sys
// without their content. Names are relative ("bin/ls"), as dockerd's.
func (f FS) Export(ctx context.Context, w io.Writer) error {
	v := FS{Root: f.Root}.open()
	defer v.close()
	t := newTarWriter(ctx, v, w)
	t.noDescend = map[string]bool{"/proc": true, "/sys": true}
	for _, m := range f.Mounts {
		t.noDescend[path.Clean("/"+m.Destination)] = true
	}
	names, err := t.readDir("/")
	if err != nil {
		return fmt.Errorf("exporting: %w", err)
	}
	for _, n := range names {
		if err := t.add("/"+n, n); err != nil {
			return err
		}
	}
	if err := t.tw.Close(); err != nil {
		return fmt.Errorf("writing the archive: %w", err)
	}
	return nil
}

type fileKey struct{ dev, ino uint64 }

// tarWriter writes a tree of the container as tar entries.
type tarWriter struct {
	ctx       context.Context
	v         *view
	tw        *tar.Writer
	links     map[fileKey]string // hard-linked files already written
	noDescend map[string]bool    // directories written without content
}

func newTarWriter(ctx context.Context, v *view, w io.Writer) *tarWriter {
	return &tarWriter{ctx: ctx, v: v, tw: tar.NewWriter(w), links: map[fileKey]string{}}
}

// add writes the container path cp (resolved) as the entry name, and a
// directory's content beneath it. Files that vanish meanwhile are left
// out, as dockerd does.
func (t *tarWriter) add(cp, name string) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	fi, err := t.v.lstat(cp)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("archiving %s: %w", cp, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("archiving %s: no stat data", cp)
	}
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: fi.ModTime().Truncate(time.Second),
		Format:  tar.FormatPAX,
	}
	switch fi.Mode().Type() {
	case 0:
		return t.addFile(cp, hdr)
	case fs.ModeDir:
		hdr.Typeflag = tar.TypeDir
		hdr.Name = name + "/"
		if err := t.write(hdr); err != nil {
			return err
		}
		if t.noDescend[cp] {
			return nil
		}
		names, err := t.readDir(cp)
		if isNotExist(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archiving %s: %w", cp, err)
		}
		for _, n := range names {
			if err := t.add(path.Join(cp, n), name+"/"+n); err != nil {
				return err
			}
		}
		return nil
	case fs.ModeSymlink:
		target, err := t.v.readlink(cp)
		if isNotExist(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archiving %s: %w", cp, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case fs.ModeNamedPipe:
		hdr.Typeflag = tar.TypeFifo
	case fs.ModeDevice | fs.ModeCharDevice:
		hdr.Typeflag = tar.TypeChar
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev))) //nolint:unconvert // not uint64 on every arch
	case fs.ModeDevice:
		hdr.Typeflag = tar.TypeBlock
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev))) //nolint:unconvert // not uint64 on every arch
	default:
		return nil // sockets have no tar form
	}
	return t.write(hdr)
}

// addFile writes a regular file. It is opened without following a
// symlink and without blocking (a fifo swapped in is left out), and
// described from the open file, so header and content agree.
func (t *tarWriter) addFile(cp string, hdr *tar.Header) error {
	r, name, err := t.v.locate(cp)
	if err != nil {
		return fmt.Errorf("archiving %s: %w", cp, err)
	}
	f, err := r.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if isNotExist(err) || errors.Is(err, unix.ELOOP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("archiving %s: %w", cp, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("archiving %s: %w", cp, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	hdr.Typeflag = tar.TypeReg
	hdr.Mode, hdr.Uid, hdr.Gid = int64(st.Mode&0o7777), int(st.Uid), int(st.Gid)
	hdr.Size = st.Size
	if st.Nlink > 1 {
		k := fileKey{uint64(st.Dev), uint64(st.Ino)} //nolint:unconvert // not uint64 on every arch
		if first, ok := t.links[k]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			return t.write(hdr)
		}
		t.links[k] = hdr.Name
	}
	if capability := getXattr(int(f.Fd()), "security.capability"); capability != nil {
		hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(capability)}
	}
	if err := t.write(hdr); err != nil {
		return err
	}
	// Exactly Size bytes, whatever the file does meanwhile.
	n, err := io.Copy(t.tw, io.LimitReader(f, hdr.Size))
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("archiving %s: %w", cp, err)
	}
	if n < hdr.Size {
		if _, err := io.CopyN(t.tw, zeros{}, hdr.Size-n); err != nil {
			return fmt.Errorf("archiving %s: %w", cp, err)
		}
	}
	return nil
}

func (t *tarWriter) write(hdr *tar.Header) error {
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing the archive: %w", err)
	}
	return nil
}

// readDir returns the names in the directory cp, sorted.
func (t *tarWriter) readDir(cp string) ([]string, error) {
	r, name, err := t.v.locate(cp)
	if err != nil {
		return nil, err
	}
	d, err := r.OpenFile(name, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// getXattr returns an extended attribute of the open file fd, or nil.
func getXattr(fd int, key string) []byte {
	n, err := unix.Fgetxattr(fd, key, nil)
	if err != nil || n <= 0 {
		return nil
	}
	buf := make([]byte, n)
	n, err = unix.Fgetxattr(fd, key, buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}
