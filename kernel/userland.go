package kernel

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/berthvm/berth/kernel/initramfs"
)

// mke2fsPackages are the Debian packages that hold mke2fs and every
// library it loads. stageELF fails, naming the library, if one is missing.
var mke2fsPackages = []string{"e2fsprogs", "libext2fs2", "libcom-err2", "libblkid1", "libuuid1", "libc6"}

// mke2fsFiles are copied from e2fsprogs besides the binaries' closures.
var mke2fsFiles = []string{"/sbin/mkfs.ext4", "/etc/mke2fs.conf"}

// stager copies files out of an extracted package tree into an archive,
// keeping symlinks as symlinks and pulling in what dynamic ELF binaries
// need: their program interpreter and DT_NEEDED libraries, recursively.
type stager struct {
	root string // extracted tree
	arch Arch
	arc  *initramfs.Archive
	done map[string]bool
}

func newStager(root string, a Arch, arc *initramfs.Archive) *stager {
	return &stager{root: root, arch: a, arc: arc, done: map[string]bool{}}
}

// addTree adds p (absolute in the tree), following and keeping symlinks,
// and returns the path of the regular file it ends at.
func (s *stager) add(p string) (string, error) {
	for hops := 0; hops < 40; hops++ {
		p = path.Clean(p)
		full := filepath.Join(s.root, filepath.FromSlash(p))
		st, err := os.Lstat(full)
		if err != nil {
			return "", fmt.Errorf("%s is not in the extracted packages: %w", p, err)
		}
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				return "", fmt.Errorf("reading link %s: %w", p, err)
			}
			if !s.done[p] {
				s.done[p] = true
				if err := s.arc.AddSymlink(p, target); err != nil {
					return "", err
				}
			}
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(p), target)
			}
			p = target
		case st.Mode().IsRegular():
			if !s.done[p] {
				s.done[p] = true
				if err := s.arc.AddFile(p, st.Mode().Perm(), full); err != nil {
					return "", err
				}
			}
			return p, nil
		default:
			return "", fmt.Errorf("%s is neither a file nor a symlink", p)
		}
	}
	return "", fmt.Errorf("%s: too many levels of symlinks", p)
}

// addELF adds the binary p and everything it needs to run.
func (s *stager) addELF(p string) error {
	queue := []string{p}
	seen := map[string]bool{}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		file, err := s.add(cur)
		if err != nil {
			return err
		}
		if seen[file] {
			continue
		}
		seen[file] = true
		interp, needed, err := s.dynamic(file)
		if err != nil {
			return err
		}
		if interp != "" {
			queue = append(queue, interp)
		}
		for _, lib := range needed {
			found, err := s.findLib(lib)
			if err != nil {
				return fmt.Errorf("%s needs %s: %w", file, lib, err)
			}
			queue = append(queue, found)
		}
	}
	return nil
}

// dynamic returns an ELF file's interpreter and needed libraries, checking
// it is built for the target arch.
func (s *stager) dynamic(p string) (interp string, needed []string, err error) {
	ef, err := elf.Open(filepath.Join(s.root, filepath.FromSlash(p)))
	if err != nil {
		return "", nil, fmt.Errorf("reading ELF %s: %w", p, err)
	}
	defer ef.Close()
	if ef.Machine != s.arch.Machine {
		return "", nil, fmt.Errorf("%s is built for %v, not %s (%v)", p, ef.Machine, s.arch.Name, s.arch.Machine)
	}
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return "", nil, fmt.Errorf("reading interpreter of %s: %w", p, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = ef.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return "", nil, fmt.Errorf("reading needed libraries of %s: %w", p, err)
	}
	return interp, needed, nil
}

// findLib looks a soname up where glibc's loader looks by default on
// Debian (no ld.so.cache in the guest): the multiarch dirs, then /lib.
func (s *stager) findLib(soname string) (string, error) {
	for _, dir := range []string{"/lib/" + s.arch.Triplet, "/usr/lib/" + s.arch.Triplet, "/lib", "/usr/lib"} {
		p := path.Join(dir, soname)
		if _, err := os.Lstat(filepath.Join(s.root, filepath.FromSlash(p))); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no package in %v provides it (add the one that does)", mke2fsPackages)
}

// stageMke2fs adds mke2fs, its libraries and loader, and its config from
// the extracted userland tree root.
func stageMke2fs(root string, a Arch, arc *initramfs.Archive) error {
	s := newStager(root, a, arc)
	if err := s.addELF("/sbin/mke2fs"); err != nil {
		return fmt.Errorf("staging mke2fs: %w", err)
	}
	if !s.done[a.Loader] {
		return fmt.Errorf("staging mke2fs: its loader is not %s; fix Arch.Loader", a.Loader)
	}
	for _, f := range mke2fsFiles {
		if _, err := s.add(f); err != nil {
			return fmt.Errorf("staging mke2fs: %w", err)
		}
	}
	return nil
}
