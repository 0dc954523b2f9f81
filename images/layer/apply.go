// Package layer turns layer tars into overlayfs layer directories and back:
// safe unpacking (Apply), the diff tar of a container's upper dir
// (WriteDiff) and its list of changes as `docker diff` shows them (Changes).
//
// Apply refuses, with an error wrapping ErrUnsafe, any tar entry that could
// write outside the target directory or that legitimate image builders never
// produce: absolute or ".." paths, paths through a symlink or a file,
// hardlinks to anything but an earlier entry of the same layer, device nodes
// (unless allowed) and overlay xattrs. Files are created by
// github.com/moby/go-archive through an os.Root, so a bug in these checks
// still cannot escape the target. Whiteouts become what overlayfs expects:
// ".wh.NAME" a 0/0 character device, ".wh..wh..opq" the
// trusted.overlay.opaque=y xattr on its directory.
//
// The package knows nothing of digests of compressed blobs, chain IDs or
// where layer directories live: see packages content, snapshot and images.
package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	archive "github.com/moby/go-archive"
	"github.com/opencontainers/go-digest"
)

// ErrUnsafe is wrapped by the error for a refused tar entry.
var ErrUnsafe = errors.New("unsafe layer entry")

// ApplyOptions tunes Apply.
type ApplyOptions struct {
	// AllowDevices lets character and block device entries through. Off,
	// they are refused (whiteouts are not device entries and always work).
	AllowDevices bool
	// NoChown keeps files owned by the caller instead of the tar's owners;
	// needed when not root. Apply sets it itself when not running as root.
	NoChown bool
}

// Result describes an applied layer.
type Result struct {
	DiffID      digest.Digest // sha256 of the uncompressed tar
	Size        int64         // bytes of regular file content
	TarSize     int64         // bytes of the uncompressed tar
	Compression Compression
}

const (
	whiteoutPrefix    = ".wh."
	whiteoutMetaPrefx = ".wh..wh."
	whiteoutOpaque    = ".wh..wh..opq"
	paxXattrPrefix    = "SCHILY.xattr."
)

// Apply unpacks the layer tar read from r (gzip, zstd or uncompressed)
// into dest, an existing empty directory, as an overlayfs layer dir. It
// returns the layer's DiffID; verifying it is the caller's job. On error
// dest holds a partial layer the caller must discard.
func Apply(ctx context.Context, dest string, r io.Reader, opts ApplyOptions) (Result, error) {
	dr, comp, err := Decompress(r)
	if err != nil {
		return Result{}, err
	}
	defer dr.Close()
	if os.Geteuid() != 0 {
		opts.NoChown = true
	}
	h := digest.SHA256.Digester()
	counted := &countWriter{w: h.Hash()}
	raw := io.TeeReader(dr, counted)

	pr, pw := io.Pipe()
	unpacked := make(chan error, 1)
	go func() {
		err := archive.Unpack(pr, dest, &archive.TarOptions{
			WhiteoutFormat: archive.OverlayWhiteoutFormat,
			NoLchown:       opts.NoChown,
		})
		if err != nil {
			err = fmt.Errorf("unpacking layer: %w", err)
			pr.CloseWithError(err)
		} else {
			// Drain so the writer never blocks on trailing padding.
			_, _ = io.Copy(io.Discard, pr)
		}
		unpacked <- err
	}()

	size, opaque, ferr := filter(ctx, raw, pw, opts)
	if ferr == nil {
		// Hash what follows the end-of-archive marker too: the DiffID
		// covers the whole stream.
		_, ferr = io.Copy(io.Discard, raw)
	}
	pw.CloseWithError(ferr)
	uerr := <-unpacked
	// When the filter fails first, unpacking fails with the filter's
	// error: report that. When unpacking fails first, the filter's error
	// is only the closed pipe.
	if ferr != nil && (uerr == nil || errors.Is(uerr, ferr)) {
		return Result{}, ferr
	}
	if uerr != nil {
		return Result{}, uerr
	}
	for _, dir := range opaque {
		if err := markOpaque(dest, dir); err != nil {
			return Result{}, err
		}
	}
	return Result{DiffID: h.Digest(), Size: size, TarSize: counted.n, Compression: comp}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// kind is what a path in the layer being unpacked is.
type kind uint8

const (
	kindDir kind = iota + 1
	kindSymlink
	kindOther
)

// policy tracks the entries of one layer to refuse unsafe ones. The target
// dir starts empty, so what it has seen is the whole target tree.
type policy struct {
	allowDevices bool
	seen         map[string]kind
	opaque       []string // dirs to mark opaque once unpacked
}

// filter reads the tar from r, checks each entry and writes the accepted
// ones, with cleaned names and only the header fields unpacking needs, to
// w. It returns the total regular-file size and the directories that
// opaque markers name.
func filter(ctx context.Context, r io.Reader, w io.Writer, opts ApplyOptions) (int64, []string, error) {
	p := &policy{allowDevices: opts.AllowDevices, seen: map[string]kind{}}
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return 0, nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, nil, fmt.Errorf("reading layer tar: %w", err)
		}
		out, err := p.check(hdr)
		if err != nil {
			return 0, nil, err
		}
		if out == nil {
			continue
		}
		if err := tw.WriteHeader(out); err != nil {
			return 0, nil, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		if out.Typeflag == tar.TypeReg {
			n, err := io.Copy(tw, tr)
			if err != nil {
				return 0, nil, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
			}
			size += n
		}
	}
	if err := tw.Close(); err != nil {
		return 0, nil, fmt.Errorf("writing layer tar: %w", err)
	}
	return size, p.opaque, nil
}

func unsafef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsafe}, args...)...)
}

// check validates hdr against the layer seen so far. It returns the header
// to unpack, or nil to skip the entry.
func (p *policy) check(hdr *tar.Header) (*tar.Header, error) {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil, nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return nil, err
	}
	if name == "." {
		return nil, nil
	}
	dir, base := path.Split(name)
	dir = strings.TrimSuffix(dir, "/")
	for _, c := range strings.Split(dir, "/") {
		if strings.HasPrefix(c, whiteoutMetaPrefx) {
			return nil, nil // inside AUFS metadata (.wh..wh.plnk): not content
		}
		if strings.HasPrefix(c, whiteoutPrefix) {
			return nil, unsafef("%q: whiteout used as a directory", hdr.Name)
		}
	}
	if err := p.checkParents(hdr.Name, dir); err != nil {
		return nil, err
	}

	if strings.HasPrefix(base, whiteoutPrefix) {
		if hdr.Typeflag == tar.TypeDir {
			return nil, unsafef("%q: whiteout is a directory", hdr.Name)
		}
		switch {
		case base == whiteoutOpaque:
			// Marked after unpacking (trusted.* or user.* xattr, as the
			// privileges allow). The directory may exist only through
			// this marker: create it then.
			target := dir
			if target == "" {
				target = "."
			}
			p.opaque = append(p.opaque, target)
			_, known := p.seen[dir]
			p.markParents(dir)
			if dir == "" || known {
				return nil, nil
			}
			return &tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, Uid: hdr.Uid, Gid: hdr.Gid, ModTime: hdr.ModTime}, nil
		case strings.HasPrefix(base, whiteoutMetaPrefx):
			return nil, nil // other AUFS metadata
		default:
			target := base[len(whiteoutPrefix):]
			if target == "" || target == "." || target == ".." {
				return nil, unsafef("%q: invalid whiteout", hdr.Name)
			}
			full := path.Join(dir, target)
			if _, ok := p.seen[full]; ok {
				return nil, unsafef("%q: whiteout of a path the same layer creates", hdr.Name)
			}
			p.seen[full] = kindOther
		}
		p.markParents(dir)
		return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Uid: hdr.Uid, Gid: hdr.Gid, ModTime: hdr.ModTime}, nil
	}

	out := &tar.Header{
		Name:       name,
		Mode:       hdr.Mode,
		Uid:        hdr.Uid,
		Gid:        hdr.Gid,
		Uname:      hdr.Uname,
		Gname:      hdr.Gname,
		ModTime:    hdr.ModTime,
		AccessTime: hdr.AccessTime,
		ChangeTime: hdr.ChangeTime,
		PAXRecords: xattrRecords(hdr.PAXRecords),
	}
	var k kind
	switch hdr.Typeflag {
	case tar.TypeGNUSparse:
		return nil, unsafef("%q: sparse files are not supported", hdr.Name)
	case tar.TypeReg, tar.TypeRegA:
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				// A few bytes could declare terabytes of holes.
				return nil, unsafef("%q: sparse files are not supported", hdr.Name)
			}
		}
		out.Typeflag, out.Size, k = tar.TypeReg, hdr.Size, kindOther
	case tar.TypeDir:
		out.Typeflag, k = tar.TypeDir, kindDir
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return nil, unsafef("%q: symlink with empty target", hdr.Name)
		}
		out.Typeflag, out.Linkname, k = tar.TypeSymlink, hdr.Linkname, kindSymlink
	case tar.TypeLink:
		target, err := p.checkHardlink(hdr, name)
		if err != nil {
			return nil, err
		}
		out.Typeflag, out.Linkname, k = tar.TypeLink, target, kindOther
	case tar.TypeFifo:
		out.Typeflag, k = tar.TypeFifo, kindOther
	case tar.TypeChar, tar.TypeBlock:
		if !p.allowDevices {
			return nil, unsafef("%q: device nodes are not allowed in layers", hdr.Name)
		}
		out.Typeflag, out.Devmajor, out.Devminor, k = hdr.Typeflag, hdr.Devmajor, hdr.Devminor, kindOther
	default:
		return nil, unsafef("%q: unsupported tar entry type %q", hdr.Name, hdr.Typeflag)
	}
	if old, ok := p.seen[name]; ok && old == kindDir && k != kindDir {
		// Unpacking replaces the directory and all it holds.
		prefix := name + "/"
		for q := range p.seen {
			if strings.HasPrefix(q, prefix) {
				delete(p.seen, q)
			}
		}
	}
	p.seen[name] = k
	p.markParents(dir)
	return out, nil
}

// cleanName normalises a tar entry name and refuses names that are
// absolute or climb out of the root.
func cleanName(n string) (string, error) {
	if n == "" {
		return "", unsafef("empty entry name")
	}
	if strings.HasPrefix(n, "/") {
		return "", unsafef("%q: absolute path", n)
	}
	if strings.ContainsRune(n, 0) {
		return "", unsafef("%q: NUL in name", n)
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", unsafef("%q: path escapes the layer root", n)
	}
	return c, nil
}

// checkParents refuses a path whose parent is, or goes through, a symlink
// or a non-directory created by this layer: writing there would follow the
// link.
func (p *policy) checkParents(name, dir string) error {
	if dir == "" || dir == "." {
		return nil
	}
	cur := ""
	for _, c := range strings.Split(dir, "/") {
		if cur == "" {
			cur = c
		} else {
			cur += "/" + c
		}
		switch p.seen[cur] {
		case kindSymlink:
			return unsafef("%q: path goes through symlink %q", name, cur)
		case kindOther:
			return unsafef("%q: parent %q is not a directory", name, cur)
		}
	}
	return nil
}

// markParents records the directories unpacking creates implicitly.
func (p *policy) markParents(dir string) {
	for dir != "" && dir != "." {
		if _, ok := p.seen[dir]; !ok {
			p.seen[dir] = kindDir
		}
		dir = path.Dir(dir)
	}
}

// checkHardlink returns the cleaned target of a hardlink entry, which must
// be an earlier non-directory entry of this layer. Absolute targets (some
// builders write them) are taken relative to the layer root.
func (p *policy) checkHardlink(hdr *tar.Header, name string) (string, error) {
	t := strings.TrimLeft(hdr.Linkname, "/")
	if t == "" {
		return "", unsafef("%q: hardlink with empty target", hdr.Name)
	}
	c, err := cleanName(t)
	if err != nil {
		return "", unsafef("%q: hardlink target %q escapes the layer root", hdr.Name, hdr.Linkname)
	}
	if c == "." || c == name {
		return "", unsafef("%q: invalid hardlink target %q", hdr.Name, hdr.Linkname)
	}
	if err := p.checkParents(hdr.Name, path.Dir(c)); err != nil {
		return "", err
	}
	switch p.seen[c] {
	case kindOther, kindSymlink:
		return c, nil
	case kindDir:
		return "", unsafef("%q: hardlink to directory %q", hdr.Name, hdr.Linkname)
	default:
		return "", unsafef("%q: hardlink target %q is not in this layer", hdr.Name, hdr.Linkname)
	}
}

// xattrRecords keeps the xattr records of a PAX header, minus overlayfs'
// own: a layer must not forge opaque dirs, redirects or metacopy files
// other than through whiteout entries.
func xattrRecords(recs map[string]string) map[string]string {
	var out map[string]string
	for k, v := range recs {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok || strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}
