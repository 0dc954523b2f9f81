// Package initramfs writes Linux initramfs images: newc ("070701") cpio
// archives that are byte-for-byte reproducible. Entries are sorted by path,
// every mtime is 0, every owner is root and inode numbers are assigned in
// order, so the same inputs always give the same image.
//
// It owns the archive format only. What goes into the guest's initrd (the
// agent, modules, tools) is decided by package kernel.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Type is the kind of an archive entry.
type Type int

// Entry types.
const (
	Regular Type = iota
	Dir
	Symlink
	CharDev
	BlockDev
)

func (t Type) String() string {
	switch t {
	case Regular:
		return "file"
	case Dir:
		return "dir"
	case Symlink:
		return "symlink"
	case CharDev:
		return "char device"
	case BlockDev:
		return "block device"
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// Entry is one member of the archive.
type Entry struct {
	// Path inside the archive. A leading "/" is allowed and dropped.
	Path string
	Type Type
	// Mode holds the permission bits plus, optionally, fs.ModeSetuid,
	// fs.ModeSetgid and fs.ModeSticky; the file type comes from Type.
	Mode fs.FileMode
	// Data is a regular file's content when Source is empty.
	Data []byte
	// Source is a file on disk whose content is copied at write time.
	Source string
	// Target is a symlink's target.
	Target string
	// Major and Minor number a device node.
	Major, Minor uint32
}

// Archive collects entries and writes them as one cpio image.
// The zero value is not usable; call New.
type Archive struct {
	entries map[string]Entry
}

// New returns an empty archive.
func New() *Archive {
	return &Archive{entries: map[string]Entry{}}
}

// Add adds e. Adding the same directory twice is allowed (the last mode
// wins); any other duplicate path is an error, so that two sources never
// silently fight over one file.
func (a *Archive) Add(e Entry) error {
	p, err := cleanPath(e.Path)
	if err != nil {
		return err
	}
	e.Path = p
	if e.Mode&^modeBits != 0 {
		return fmt.Errorf("adding %s: mode %v has bits beyond permissions", p, e.Mode)
	}
	switch e.Type {
	case Regular, Dir, CharDev, BlockDev:
	case Symlink:
		if e.Target == "" {
			return fmt.Errorf("adding %s: symlink without a target", p)
		}
	default:
		return fmt.Errorf("adding %s: unknown entry type %v", p, e.Type)
	}
	if old, ok := a.entries[p]; ok && !(old.Type == Dir && e.Type == Dir) {
		return fmt.Errorf("adding %s %s: already added as a %s", e.Type, p, old.Type)
	}
	a.entries[p] = e
	return nil
}

// AddDir adds a directory.
func (a *Archive) AddDir(p string, mode fs.FileMode) error {
	return a.Add(Entry{Path: p, Type: Dir, Mode: mode})
}

// AddBytes adds a regular file holding data.
func (a *Archive) AddBytes(p string, mode fs.FileMode, data []byte) error {
	return a.Add(Entry{Path: p, Type: Regular, Mode: mode, Data: data})
}

// AddFile adds a regular file whose content is read from src when the
// archive is written.
func (a *Archive) AddFile(p string, mode fs.FileMode, src string) error {
	return a.Add(Entry{Path: p, Type: Regular, Mode: mode, Source: src})
}

// AddSymlink adds a symbolic link p pointing to target.
func (a *Archive) AddSymlink(p, target string) error {
	return a.Add(Entry{Path: p, Type: Symlink, Mode: 0o777, Target: target})
}

// AddCharDev adds a character device node.
func (a *Archive) AddCharDev(p string, mode fs.FileMode, major, minor uint32) error {
	return a.Add(Entry{Path: p, Type: CharDev, Mode: mode, Major: major, Minor: minor})
}

// Has reports whether an entry was added at p. Parent directories that
// are only implied by deeper entries do not count.
func (a *Archive) Has(p string) bool {
	p, err := cleanPath(p)
	if err != nil {
		return false
	}
	_, ok := a.entries[p]
	return ok
}

// Lookup returns the entry added at p.
func (a *Archive) Lookup(p string) (Entry, bool) {
	p, err := cleanPath(p)
	if err != nil {
		return Entry{}, false
	}
	e, ok := a.entries[p]
	return e, ok
}

// Len reports how many entries were added (implied parents not counted).
func (a *Archive) Len() int { return len(a.entries) }

// modeBits are the fs.FileMode bits an Entry may carry.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// unixMode converts Entry.Mode to the cpio (st_mode) permission bits.
func unixMode(m fs.FileMode) cpio.FileMode {
	out := cpio.FileMode(m.Perm())
	if m&fs.ModeSetuid != 0 {
		out |= cpio.ModeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		out |= cpio.ModeSetgid
	}
	if m&fs.ModeSticky != 0 {
		out |= cpio.ModeSticky
	}
	return out
}

func cleanPath(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" || c == "." {
		return "", fmt.Errorf("adding %q: not a path below the archive root", p)
	}
	if c == "TRAILER!!!" {
		return "", fmt.Errorf("adding %q: reserved cpio name", p)
	}
	return c, nil
}

// Compression selects how WriteTo's output is compressed.
type Compression string

// Compressions the kernel can unpack (given CONFIG_RD_GZIP for gzip).
const (
	None Compression = ""
	Gzip Compression = "gzip"
)

// ParseCompression maps a flag value to a Compression.
func ParseCompression(s string) (Compression, error) {
	switch s {
	case "", "none":
		return None, nil
	case "gzip":
		return Gzip, nil
	}
	return None, fmt.Errorf("unknown compression %q (want none or gzip)", s)
}

// Write writes the archive to w, compressed as c.
func (a *Archive) Write(w io.Writer, c Compression) error {
	switch c {
	case None:
		return a.writeCpio(w)
	case Gzip:
		zw := gzip.NewWriter(w) // zero header ModTime keeps it reproducible
		if err := a.writeCpio(zw); err != nil {
			return errors.Join(err, zw.Close())
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("finishing gzip stream: %w", err)
		}
		return nil
	}
	return fmt.Errorf("writing initramfs: unknown compression %q", c)
}

// sorted returns all entries, implied parent directories included, in
// path order. Lexical order puts every directory before its children.
func (a *Archive) sorted() ([]Entry, error) {
	all := make(map[string]Entry, len(a.entries))
	for p, e := range a.entries {
		all[p] = e
	}
	for p := range a.entries {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			e, ok := all[d]
			if !ok {
				all[d] = Entry{Path: d, Type: Dir, Mode: 0o755}
				continue
			}
			if e.Type != Dir {
				return nil, fmt.Errorf("%s %s: parent %s is a %s, not a dir", a.entries[p].Type, p, d, e.Type)
			}
		}
	}
	out := make([]Entry, 0, len(all))
	for _, e := range all {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func (a *Archive) writeCpio(w io.Writer) error {
	entries, err := a.sorted()
	if err != nil {
		return fmt.Errorf("laying out initramfs: %w", err)
	}
	pw := &rdevPatcher{w: w}
	cw := cpio.NewWriter(pw)
	for i, e := range entries {
		if err := writeEntry(cw, pw, e, int64(i+1)); err != nil {
			return fmt.Errorf("writing %s to initramfs: %w", e.Path, err)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("writing cpio trailer: %w", err)
	}
	return nil
}

func writeEntry(cw *cpio.Writer, pw *rdevPatcher, e Entry, inode int64) error {
	h := &cpio.Header{
		Name:  e.Path,
		Mode:  unixMode(e.Mode),
		Inode: inode,
		Links: 1,
	}

	var body io.Reader
	switch e.Type {
	case Dir:
		h.Mode |= cpio.TypeDir
		h.Links = 2
	case Symlink:
		h.Mode |= cpio.TypeSymlink
		h.Size = int64(len(e.Target))
		body = strings.NewReader(e.Target)
	case CharDev, BlockDev:
		if e.Type == CharDev {
			h.Mode |= cpio.TypeChar
		} else {
			h.Mode |= cpio.TypeBlock
		}
		pw.arm(e.Major, e.Minor)
	case Regular:
		h.Mode |= cpio.TypeReg
		if e.Source == "" {
			h.Size = int64(len(e.Data))
			body = bytes.NewReader(e.Data)
			break
		}
		f, err := os.Open(e.Source)
		if err != nil {
			return fmt.Errorf("opening source: %w", err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("inspecting source: %w", err)
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("source %s is not a regular file", e.Source)
		}
		h.Size = st.Size()
		body = f
	}
	if h.Size > 0xffffffff {
		return fmt.Errorf("%d bytes is too big for newc cpio", h.Size)
	}
	if err := cw.WriteHeader(h); err != nil {
		return err
	}
	if err := pw.disarmed(); err != nil {
		return err
	}
	if body != nil {
		n, err := io.Copy(cw, body)
		if err != nil {
			return fmt.Errorf("copying content: %w", err)
		}
		if n != h.Size {
			return fmt.Errorf("content changed while writing: wrote %d of %d bytes", n, h.Size)
		}
	}
	return nil
}

// rdevPatcher fills in the rdevmajor/rdevminor header fields, which
// cavaliergopher/cpio's Header has no room for (it always writes zeros).
// The library writes each 110-byte newc header with a single Write call;
// when armed, the patcher rewrites the two fields of that header. Tests
// check the result byte for byte, so a library change that breaks this
// assumption fails loudly.
type rdevPatcher struct {
	w            io.Writer
	armed        bool
	major, minor uint32
}

const (
	newcHeaderLen = 110
	rdevMajorOff  = 78
	rdevMinorOff  = 86
)

func (p *rdevPatcher) arm(major, minor uint32) {
	p.armed, p.major, p.minor = true, major, minor
}

// disarmed reports an error when an armed patch found no header to patch.
func (p *rdevPatcher) disarmed() error {
	if p.armed {
		p.armed = false
		return errors.New("device numbers not written: cpio header was not written in one piece")
	}
	return nil
}

func (p *rdevPatcher) Write(b []byte) (int, error) {
	if p.armed && len(b) == newcHeaderLen && bytes.HasPrefix(b, []byte("070701")) {
		hdr := make([]byte, len(b))
		copy(hdr, b)
		copy(hdr[rdevMajorOff:], fmt.Sprintf("%08X", p.major))
		copy(hdr[rdevMinorOff:], fmt.Sprintf("%08X", p.minor))
		p.armed = false
		return p.w.Write(hdr)
	}
	return p.w.Write(b)
}
