package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthvm/berth/images/content"
	"github.com/berthvm/berth/images/reference"
	"github.com/berthvm/berth/images/snapshot"
)

// Options configures a Store.
type Options struct {
	// Root is the directory the store owns (created if missing).
	Root string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Platform images are pulled for when a pull names none. Defaults to
	// linux and the running architecture (arm64 variant v8).
	Platform *ocispec.Platform
	// InsecureRegistries are host[:port] names reached over plain HTTP.
	// Loopback registries (localhost, 127.0.0.1, ::1) always are, as in
	// dockerd.
	InsecureRegistries []string
	// Transport is the base HTTP transport for registries
	// (http.DefaultTransport when nil).
	Transport http.RoundTripper
	// MaxConcurrentDownloads bounds parallel layer downloads per pull
	// (default 3) and MaxConcurrentUploads per push (default 5).
	MaxConcurrentDownloads int
	MaxConcurrentUploads   int
	// AllowDeviceNodes lets layers create device nodes.
	AllowDeviceNodes bool
}

// Store is the image store: content, snapshots and image metadata under
// one root. All methods are safe for concurrent use.
type Store struct {
	opts      Options
	log       *slog.Logger
	root      string
	content   *content.Store
	snapshots *snapshot.Store
	unlock    func() error

	mu      sync.Mutex
	images  map[digest.Digest]*record
	refs    map[string]digest.Digest // normalised reference -> image ID
	leases  map[digest.Digest]int    // blobs and chain IDs in use by running operations
	configs map[digest.Digest]*dockerspec.DockerOCIImage

	flights flightGroup
}

// record is an image's metadata, persisted as meta/images/<hex>.json.
type record struct {
	ID          digest.Digest       `json:"id"`
	Manifest    ocispec.Descriptor  `json:"manifest"`
	Index       *ocispec.Descriptor `json:"index,omitempty"` // the multi-arch index it was pulled through
	Config      ocispec.Descriptor  `json:"config"`
	Layers      []layerRecord       `json:"layers"`
	Parent      digest.Digest       `json:"parent,omitempty"`
	Created     time.Time           `json:"created"`
	Platform    ocispec.Platform    `json:"platform"`
	Stored      time.Time           `json:"stored"`
	LastTagTime time.Time           `json:"lastTagTime,omitzero"`
}

type layerRecord struct {
	DiffID  digest.Digest      `json:"diffID"`
	ChainID digest.Digest      `json:"chainID"`
	Blob    ocispec.Descriptor `json:"blob"`
	Size    int64              `json:"size"`    // unpacked regular-file bytes
	TarSize int64              `json:"tarSize"` // uncompressed tar bytes
}

func (r *record) size() int64 {
	var n int64
	for _, l := range r.Layers {
		n += l.Size
	}
	return n
}

// Image is what the store knows of an image.
type Image struct {
	ID          string   // "sha256:..." (the config digest)
	RepoTags    []string // familiar, e.g. "busybox:latest"
	RepoDigests []string // familiar, e.g. "busybox@sha256:..."
	Parent      string   // image this one was committed from, if any
	Created     time.Time
	Size        int64 // unpacked size of all layers
	Layers      []Layer
	Platform    ocispec.Platform
	Manifest    ocispec.Descriptor
	LastTagTime time.Time
}

// Layer is one layer of an Image, bottom first.
type Layer struct {
	DiffID  digest.Digest
	ChainID digest.Digest      // the snapshot key
	Blob    ocispec.Descriptor // the (compressed) blob in the content store
	Size    int64
}

const (
	metaDir    = "meta"
	imagesDir  = "meta/images"
	refsFile   = "meta/refs.json"
	tmpDir     = "tmp"
	lockFile   = "lock"
	defaultDLs = 3
	defaultULs = 5
)

// Open opens the store in opts.Root, taking an exclusive lock on it, and
// loads its metadata. Leftovers of a crash (temporary files, half-unpacked
// layers) are removed; references to missing images are dropped.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Root == "" {
		return nil, errors.New("opening image store: no root")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Platform == nil {
		p := DefaultPlatform()
		opts.Platform = &p
	}
	if opts.Transport == nil {
		opts.Transport = http.DefaultTransport
	}
	if opts.MaxConcurrentDownloads <= 0 {
		opts.MaxConcurrentDownloads = defaultDLs
	}
	if opts.MaxConcurrentUploads <= 0 {
		opts.MaxConcurrentUploads = defaultULs
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("opening image store: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, imagesDir), 0o700); err != nil {
		return nil, fmt.Errorf("opening image store: %w", err)
	}
	unlock, err := lockDir(filepath.Join(root, lockFile))
	if err != nil {
		return nil, fmt.Errorf("opening image store %s: %w", root, err)
	}
	s := &Store{
		opts:    opts,
		log:     opts.Logger,
		root:    root,
		unlock:  unlock,
		images:  map[digest.Digest]*record{},
		refs:    map[string]digest.Digest{},
		leases:  map[digest.Digest]int{},
		configs: map[digest.Digest]*dockerspec.DockerOCIImage{},
	}
	if err := s.load(); err != nil {
		_ = unlock()
		return nil, err
	}
	return s, nil
}

// DefaultPlatform is the platform of the running binary: linux/GOARCH,
// with variant v8 on arm64.
func DefaultPlatform() ocispec.Platform {
	p := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if p.Architecture == "arm64" {
		p.Variant = "v8"
	}
	return p
}

func (s *Store) load() error {
	var err error
	if err := os.RemoveAll(filepath.Join(s.root, tmpDir)); err != nil {
		return fmt.Errorf("cleaning image store tmp: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(s.root, tmpDir), 0o700); err != nil {
		return fmt.Errorf("creating image store tmp: %w", err)
	}
	if s.content, err = content.Open(filepath.Join(s.root, "content")); err != nil {
		return err
	}
	if s.snapshots, err = snapshot.Open(filepath.Join(s.root, "snapshots")); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(s.root, imagesDir))
	if err != nil {
		return fmt.Errorf("reading image records: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(s.root, imagesDir, e.Name())
		if strings.HasPrefix(e.Name(), ".tmp-") {
			_ = os.Remove(p)
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("reading image record: %w", err)
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil || r.ID.Validate() != nil || r.ID.Encoded()+".json" != e.Name() {
			s.log.Warn("dropping unreadable image record", "file", p, "err", err)
			_ = os.Remove(p)
			continue
		}
		s.images[r.ID] = &r
	}
	b, err := os.ReadFile(filepath.Join(s.root, refsFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("reading references: %w", err)
	default:
		var refs map[string]digest.Digest
		if err := json.Unmarshal(b, &refs); err != nil {
			return fmt.Errorf("decoding references: %w", err)
		}
		for k, id := range refs {
			if _, ok := s.images[id]; !ok {
				s.log.Warn("dropping reference to a missing image", "ref", k, "id", id)
				continue
			}
			s.refs[k] = id
		}
	}
	if entries, err := os.ReadDir(filepath.Join(s.root, metaDir)); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				_ = os.Remove(filepath.Join(s.root, metaDir, e.Name()))
			}
		}
	}
	// Blobs and snapshots no image uses are what a crash mid-pull left.
	_, err = s.gcLocked()
	return err
}

// Close releases the store's lock.
func (s *Store) Close() error {
	if s.unlock == nil {
		return nil
	}
	err := s.unlock()
	s.unlock = nil
	return err
}

// Root is the directory the store owns.
func (s *Store) Root() string { return s.root }

// SnapshotRoot is the directory holding layer dirs; LowerDirs are below it.
func (s *Store) SnapshotRoot() string { return s.snapshots.Root() }

// writeFileAtomic writes data to path via a synced temp file and a rename.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return err
	}
	name := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		_ = os.Remove(name)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}

func (s *Store) saveRecordLocked(r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding image record: %w", err)
	}
	if err := writeFileAtomic(s.recordPath(r.ID), b); err != nil {
		return fmt.Errorf("writing image record: %w", err)
	}
	return nil
}

func (s *Store) saveRefsLocked() error {
	b, err := json.MarshalIndent(s.refs, "", " ")
	if err != nil {
		return fmt.Errorf("encoding references: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(s.root, refsFile), b); err != nil {
		return fmt.Errorf("writing references: %w", err)
	}
	return nil
}

// lease keeps blobs and snapshots from garbage collection until the
// returned func is called.
func (s *Store) lease(ds ...digest.Digest) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leaseLocked(ds...)
}

// leaseLocked is lease for callers holding s.mu, so that what they just
// looked up cannot go before it is leased.
func (s *Store) leaseLocked(ds ...digest.Digest) func() {
	for _, d := range ds {
		s.leases[d]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			for _, d := range ds {
				if s.leases[d]--; s.leases[d] <= 0 {
					delete(s.leases, d)
				}
			}
			s.mu.Unlock()
		})
	}
}

// recordKeys lists the blobs and snapshots image r needs.
func recordKeys(r *record) []digest.Digest {
	ds := []digest.Digest{r.Manifest.Digest, r.Config.Digest}
	if r.Index != nil {
		ds = append(ds, r.Index.Digest)
	}
	for _, l := range r.Layers {
		ds = append(ds, l.Blob.Digest, l.ChainID)
	}
	return ds
}

// gcLocked deletes blobs and snapshots that no image and no running
// operation uses. It returns the chain IDs of the snapshots it removed.
func (s *Store) gcLocked() ([]digest.Digest, error) {
	used := map[digest.Digest]bool{}
	for d := range s.leases {
		used[d] = true
	}
	for _, r := range s.images {
		used[r.Manifest.Digest] = true
		used[r.Config.Digest] = true
		if r.Index != nil {
			used[r.Index.Digest] = true
		}
		for _, l := range r.Layers {
			used[l.Blob.Digest] = true
			used[l.ChainID] = true
		}
	}
	keys, err := s.snapshots.List()
	if err != nil {
		return nil, err
	}
	var removed []digest.Digest
	var errs []error
	for _, k := range keys {
		if used[k] {
			continue
		}
		if err := s.snapshots.Remove(k); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, k)
	}
	err = s.content.Walk(func(d digest.Digest, _ int64) error {
		if !used[d] {
			if err := s.content.Delete(d); err != nil {
				errs = append(errs, err)
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("collecting garbage: %w", errors.Join(errs...))
	}
	return removed, nil
}

// refsOfLocked returns the references to id, tags first, each sorted.
func (s *Store) refsOfLocked(id digest.Digest) (tags, digests []reference.Reference) {
	for k, v := range s.refs {
		if v != id {
			continue
		}
		r, err := reference.Parse(k)
		if err != nil {
			continue
		}
		if r.Digest != "" {
			digests = append(digests, r)
		} else {
			tags = append(tags, r)
		}
	}
	sort.Slice(tags, func(i, j int) bool { return tags[i].String() < tags[j].String() })
	sort.Slice(digests, func(i, j int) bool { return digests[i].String() < digests[j].String() })
	return tags, digests
}

func familiar(refs []reference.Reference) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.FamiliarString())
	}
	return out
}

func (s *Store) imageLocked(r *record) Image {
	tags, digests := s.refsOfLocked(r.ID)
	img := Image{
		ID:          r.ID.String(),
		RepoTags:    familiar(tags),
		RepoDigests: familiar(digests),
		Created:     r.Created,
		Size:        r.size(),
		Platform:    r.Platform,
		Manifest:    r.Manifest,
		LastTagTime: r.LastTagTime,
	}
	if r.Parent != "" {
		img.Parent = r.Parent.String()
	}
	for _, l := range r.Layers {
		img.Layers = append(img.Layers, Layer{DiffID: l.DiffID, ChainID: l.ChainID, Blob: l.Blob, Size: l.Size})
	}
	return img
}

// childrenLocked returns the images committed from id.
func (s *Store) childrenLocked(id digest.Digest) []digest.Digest {
	var out []digest.Digest
	for _, r := range s.images {
		if r.Parent == id {
			out = append(out, r.ID)
		}
	}
	return out
}

// resolveLocked finds the image refOrID names: a full or short image ID
// ("sha256:abc...", "abc..."), or a reference ("busybox",
// "x@sha256:..."). refKey is the normalised reference when a reference
// matched.
func (s *Store) resolveLocked(refOrID string) (r *record, refKey string, err error) {
	if refOrID == "" {
		return nil, "", invalidf("no image given")
	}
	if d := digest.Digest(refOrID); d.Validate() == nil {
		if r, ok := s.images[d]; ok {
			return r, "", nil
		}
	}
	if isHex(refOrID) && len(refOrID) == 64 {
		if r, ok := s.images[digest.NewDigestFromEncoded(digest.SHA256, refOrID)]; ok {
			return r, "", nil
		}
	}
	if ref, err := reference.ParseDockerRef(refOrID); err == nil {
		if id, ok := s.refs[ref.String()]; ok {
			return s.images[id], ref.String(), nil
		}
	}
	prefix := strings.TrimPrefix(refOrID, "sha256:")
	if isHex(prefix) {
		var found *record
		for id, r := range s.images {
			if strings.HasPrefix(id.Encoded(), prefix) {
				if found != nil {
					return nil, "", invalidf("multiple IDs found with provided prefix: %s", prefix)
				}
				found = r
			}
		}
		if found != nil {
			return found, "", nil
		}
	}
	return nil, "", notFoundf("No such image: %s", refOrID)
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Resolve returns the image refOrID names: an image ID, a unique ID
// prefix, or a reference as the docker CLI gives it ("busybox",
// "localhost:5000/x:1", "x@sha256:...").
func (s *Store) Resolve(ctx context.Context, refOrID string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _, err := s.resolveLocked(refOrID)
	if err != nil {
		return Image{}, err
	}
	return s.imageLocked(r), nil
}

// Images returns every image in the store.
func (s *Store) Images(ctx context.Context) []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.images))
	for _, r := range s.images {
		out = append(out, s.imageLocked(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// Config returns the image configuration of image id (or any reference
// Resolve takes): what a container created from it starts with.
func (s *Store) Config(ctx context.Context, refOrID string) (*dockerspec.DockerOCIImage, error) {
	s.mu.Lock()
	r, _, err := s.resolveLocked(refOrID)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c, err := s.config(r.ID)
	if err != nil {
		return nil, err
	}
	return copyConfig(c)
}

// copyConfig deep-copies a cached config, which callers must not share.
func copyConfig(c *dockerspec.DockerOCIImage) (*dockerspec.DockerOCIImage, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("copying image config: %w", err)
	}
	out := new(dockerspec.DockerOCIImage)
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("copying image config: %w", err)
	}
	return out, nil
}

// config returns the parsed config of image id; callers must not modify it.
func (s *Store) config(id digest.Digest) (*dockerspec.DockerOCIImage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.configLocked(id)
}

// LowerDirs returns the overlayfs lower dirs of an image, top-most layer
// first, as the lowerdir= mount option lists them. An image without
// layers has none: the caller mounts an empty dir then.
func (s *Store) LowerDirs(ctx context.Context, refOrID string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, _, err := s.resolveLocked(refOrID)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(r.Layers))
	for i := len(r.Layers) - 1; i >= 0; i-- {
		k := r.Layers[i].ChainID
		if !s.snapshots.Exists(k) {
			return nil, fmt.Errorf("image %s: layer %s is missing; pull the image again", r.ID, k)
		}
		out = append(out, s.snapshots.Path(k))
	}
	return out, nil
}

// chainIDs computes the chain IDs of a stack of diff IDs, bottom first:
// chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " + diff(n)).
func chainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// flightGroup runs one function per key at a time; callers arriving while
// it runs wait for it and share its result.
type flightGroup struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	err  error
}

func (g *flightGroup) do(ctx context.Context, key string, fn func() error) error {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*flight{}
	}
	if f, ok := g.m[key]; ok {
		g.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	g.m[key] = f
	g.mu.Unlock()
	f.err = fn()
	g.mu.Lock()
	delete(g.m, key)
	g.mu.Unlock()
	close(f.done)
	return f.err
}

func (s *Store) recordPath(id digest.Digest) string {
	return filepath.Join(s.root, imagesDir, id.Encoded()+".json")
}

// removeFile removes path; a missing file is not an error.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
