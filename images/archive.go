package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthvm/berth/images/layer"
	"github.com/berthvm/berth/images/reference"
)

// Names in docker-archive tars.
const (
	archiveManifest     = "manifest.json"
	archiveRepositories = "repositories"
	annotationImageName = "io.containerd.image.name"
)

// archiveEntry is one element of a docker-archive manifest.json.
type archiveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

type saveImage struct {
	rec  *record
	tags []reference.Reference
}

// Save writes the images refs name to w as a docker-archive tar, as
// `docker save` does: manifest.json and repositories for every docker
// version, plus an OCI image layout (index.json, blobs/sha256/...) with
// uncompressed layers. A reference without tag saves every tag of its
// repository; an image ID saves the image without tags.
func (s *Store) Save(ctx context.Context, refs []string, w io.Writer) error {
	if len(refs) == 0 {
		return invalidf("no images to save")
	}
	var imgs []*saveImage
	byID := map[digest.Digest]*saveImage{}
	s.mu.Lock()
	for _, refStr := range refs {
		var matches []*record
		var tags []reference.Reference
		if ref, err := reference.Parse(refStr); err == nil && ref.Tag == "" && ref.Digest == "" {
			for k, id := range s.refs {
				if r, err := reference.Parse(k); err == nil && r.Tag != "" && r.Name() == ref.Name() {
					matches = append(matches, s.images[id])
					tags = append(tags, r)
				}
			}
		}
		if len(matches) == 0 {
			r, key, err := s.resolveLocked(refStr)
			if err != nil {
				s.mu.Unlock()
				return err
			}
			matches = append(matches, r)
			tags = append(tags, reference.Reference{})
			if ref, err := reference.Parse(key); err == nil && ref.Tag != "" {
				tags[0] = ref
			}
		}
		for i, r := range matches {
			si := byID[r.ID]
			if si == nil {
				si = &saveImage{rec: r}
				byID[r.ID] = si
				imgs = append(imgs, si)
				defer s.leaseLocked(recordKeys(r)...)()
			}
			if tags[i].Tag != "" && !slices.Contains(si.tags, tags[i]) {
				si.tags = append(si.tags, tags[i])
			}
		}
	}
	s.mu.Unlock()

	aw := &archiveWriter{tw: tar.NewWriter(w), written: map[string]bool{}}
	if err := aw.dir("blobs/"); err != nil {
		return err
	}
	if err := aw.dir("blobs/sha256/"); err != nil {
		return err
	}
	var manifest []archiveEntry
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	repos := map[string]map[string]string{}
	for _, si := range imgs {
		r := si.rec
		cfgBytes, err := s.content.ReadAll(r.Config.Digest)
		if err != nil {
			return fmt.Errorf("saving %s: %w", r.ID, err)
		}
		cfgPath := blobPath(r.Config.Digest)
		if err := aw.file(cfgPath, cfgBytes); err != nil {
			return err
		}
		ociManifest := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: r.Config.Digest, Size: int64(len(cfgBytes))},
			Layers:    []ocispec.Descriptor{},
		}
		entry := archiveEntry{Config: cfgPath, Layers: []string{}}
		for _, l := range r.Layers {
			p := blobPath(l.DiffID)
			if err := s.saveLayer(ctx, aw, p, l); err != nil {
				return fmt.Errorf("saving %s: %w", r.ID, err)
			}
			entry.Layers = append(entry.Layers, p)
			ociManifest.Layers = append(ociManifest.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l.DiffID, Size: l.TarSize})
		}
		mb, err := json.Marshal(ociManifest)
		if err != nil {
			return fmt.Errorf("encoding manifest: %w", err)
		}
		md := digest.FromBytes(mb)
		if err := aw.file(blobPath(md), mb); err != nil {
			return err
		}
		mdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))}
		if len(si.tags) == 0 {
			index.Manifests = append(index.Manifests, mdesc)
		}
		for _, t := range si.tags {
			d := mdesc
			d.Annotations = map[string]string{annotationImageName: t.String(), ocispec.AnnotationRefName: t.Tag}
			index.Manifests = append(index.Manifests, d)
			entry.RepoTags = append(entry.RepoTags, t.FamiliarString())
			if repos[t.FamiliarName()] == nil {
				repos[t.FamiliarName()] = map[string]string{}
			}
			if n := len(r.Layers); n > 0 {
				repos[t.FamiliarName()][t.Tag] = r.Layers[n-1].DiffID.Encoded()
			}
		}
		manifest = append(manifest, entry)
	}
	if err := aw.jsonFile("index.json", index); err != nil {
		return err
	}
	if err := aw.file(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`)); err != nil {
		return err
	}
	if err := aw.jsonFile(archiveManifest, manifest); err != nil {
		return err
	}
	if len(repos) > 0 {
		if err := aw.jsonFile(archiveRepositories, repos); err != nil {
			return err
		}
	}
	if err := aw.tw.Close(); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	return nil
}

// saveLayer writes layer l uncompressed at name, checking it against its
// diff ID as it goes.
func (s *Store) saveLayer(ctx context.Context, aw *archiveWriter, name string, l layerRecord) error {
	if aw.written[name] {
		return nil
	}
	f, err := s.content.Open(l.Blob.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	dr, _, err := layer.Decompress(f)
	if err != nil {
		return err
	}
	defer dr.Close()
	if err := aw.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: l.TarSize, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	h := digest.SHA256.Digester()
	n, err := io.Copy(io.MultiWriter(aw.tw, h.Hash()), io.LimitReader(ctxReader{ctx, dr}, l.TarSize))
	if err != nil {
		return fmt.Errorf("writing layer %s: %w", l.DiffID, err)
	}
	if n != l.TarSize || h.Digest() != l.DiffID {
		return fmt.Errorf("layer %s: stored content does not match its diff ID", l.DiffID)
	}
	aw.written[name] = true
	return nil
}

func blobPath(d digest.Digest) string {
	return "blobs/" + string(d.Algorithm()) + "/" + d.Encoded()
}

type archiveWriter struct {
	tw      *tar.Writer
	written map[string]bool
}

func (a *archiveWriter) dir(name string) error {
	if err := a.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0)}); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	return nil
}

func (a *archiveWriter) file(name string, data []byte) error {
	if a.written[name] {
		return nil
	}
	if err := a.tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	if _, err := a.tw.Write(data); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	a.written[name] = true
	return nil
}

func (a *archiveWriter) jsonFile(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	return a.file(name, b)
}

// LoadOptions tunes Load.
type LoadOptions struct {
	// Progress receives "Loading layer" progress and the "Loaded image:"
	// lines `docker load` prints; may be nil.
	Progress ProgressFunc
}

// maxArchiveMeta bounds the JSON files of an archive we read into memory.
const maxArchiveMeta = 16 << 20

// Load reads a docker-archive (manifest.json) or OCI layout tar, possibly
// gzip or zstd compressed, as `docker load` does, stores its images and
// tags them. It returns the familiar tags loaded, or the IDs of images
// loaded without tags.
func (s *Store) Load(ctx context.Context, r io.Reader, opts LoadOptions) ([]string, error) {
	p := newProgress(opts.Progress)
	dr, _, err := layer.Decompress(r)
	if err != nil {
		return nil, withKind(ErrInvalid, err, "loading images")
	}
	defer dr.Close()
	tmp, err := os.MkdirTemp(filepath.Join(s.root, tmpDir), "load-")
	if err != nil {
		return nil, fmt.Errorf("loading images: %w", err)
	}
	defer os.RemoveAll(tmp)
	ar, err := spoolArchive(ctx, dr, tmp)
	if err != nil {
		return nil, err
	}
	entries, err := ar.entries()
	if err != nil {
		return nil, err
	}
	var loaded []string
	for _, e := range entries {
		names, err := s.loadImage(ctx, ar, e, p)
		if err != nil {
			return loaded, err
		}
		loaded = append(loaded, names...)
	}
	return loaded, nil
}

// spooled is an archive unpacked to flat temporary files.
type spooled struct {
	dir   string
	files map[string]string // archive name -> temp file
	links map[string]string // archive name -> archive name it points to
}

func spoolArchive(ctx context.Context, r io.Reader, dir string) (*spooled, error) {
	ar := &spooled{dir: dir, files: map[string]string{}, links: map[string]string{}}
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, invalidf("loading images: reading archive: %v", err)
		}
		name, ok := archiveName(hdr.Name)
		if !ok {
			return nil, invalidf("loading images: invalid archive entry %q", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			p := filepath.Join(dir, strconv.Itoa(n))
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return nil, fmt.Errorf("loading images: %w", err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("loading images: spooling %s: %w", name, err)
			}
			ar.files[name] = p
		case tar.TypeSymlink, tar.TypeLink:
			target := hdr.Linkname
			if hdr.Typeflag == tar.TypeSymlink && !strings.HasPrefix(target, "/") {
				target = path.Join(path.Dir(name), target)
			}
			t, ok := archiveName(strings.TrimPrefix(target, "/"))
			if !ok {
				return nil, invalidf("loading images: invalid link %q -> %q", hdr.Name, hdr.Linkname)
			}
			ar.links[name] = t
		}
	}
	return ar, nil
}

// archiveName cleans a name inside an archive; ok is false for names that
// climb out of it.
func archiveName(n string) (string, bool) {
	c := path.Clean(strings.TrimPrefix(n, "/"))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	return c, true
}

func (a *spooled) path(name string) (string, error) {
	name, ok := archiveName(name)
	if !ok {
		return "", invalidf("loading images: invalid path %q", name)
	}
	for range 16 {
		if p, ok := a.files[name]; ok {
			return p, nil
		}
		t, ok := a.links[name]
		if !ok {
			break
		}
		name = t
	}
	return "", invalidf("loading images: %s is missing from the archive", name)
}

func (a *spooled) readJSON(name string, v any) error {
	p, err := a.path(name)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("loading images: %w", err)
	}
	defer f.Close()
	if err := json.NewDecoder(io.LimitReader(f, maxArchiveMeta)).Decode(v); err != nil {
		return invalidf("loading images: decoding %s: %v", name, err)
	}
	return nil
}

// entries lists the images of the archive from manifest.json, or from an
// OCI index.json when the archive has no manifest.json.
func (a *spooled) entries() ([]archiveEntry, error) {
	if _, err := a.path(archiveManifest); err == nil {
		var m []archiveEntry
		if err := a.readJSON(archiveManifest, &m); err != nil {
			return nil, err
		}
		return m, nil
	}
	var idx ocispec.Index
	if err := a.readJSON("index.json", &idx); err != nil {
		return nil, invalidf("loading images: the archive has neither manifest.json nor index.json")
	}
	var out []archiveEntry
	for _, d := range idx.Manifests {
		if d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != MediaTypeDockerManifest {
			continue
		}
		if err := d.Digest.Validate(); err != nil {
			return nil, invalidf("loading images: bad digest in index.json")
		}
		var m ocispec.Manifest
		if err := a.readJSON(blobPath(d.Digest), &m); err != nil {
			return nil, err
		}
		if m.Config.Digest.Validate() != nil {
			return nil, invalidf("loading images: bad config digest")
		}
		e := archiveEntry{Config: blobPath(m.Config.Digest)}
		for _, l := range m.Layers {
			if l.Digest.Validate() != nil {
				return nil, invalidf("loading images: bad layer digest")
			}
			e.Layers = append(e.Layers, blobPath(l.Digest))
		}
		if name := d.Annotations[annotationImageName]; name != "" {
			if r, err := reference.ParseDockerRef(name); err == nil && r.Tag != "" {
				e.RepoTags = append(e.RepoTags, r.FamiliarString())
			}
		}
		out = append(out, e)
	}
	return out, nil
}

func (s *Store) loadImage(ctx context.Context, ar *spooled, e archiveEntry, p *progress) ([]string, error) {
	cfgPath, err := ar.path(e.Config)
	if err != nil {
		return nil, err
	}
	cfgBytes, err := readFileLimit(cfgPath, maxConfigSize)
	if err != nil {
		return nil, err
	}
	id := digest.FromBytes(cfgBytes)
	release := s.lease(id)
	defer release()
	if err := s.content.Ingest(ctx, id, int64(len(cfgBytes)), strings.NewReader(string(cfgBytes))); err != nil {
		return nil, fmt.Errorf("loading image config: %w", err)
	}
	cfg, err := s.readConfig(id)
	if err != nil {
		return nil, err
	}
	if len(cfg.RootFS.DiffIDs) != len(e.Layers) {
		return nil, invalidf("loading images: config has %d layers, manifest %d", len(cfg.RootFS.DiffIDs), len(e.Layers))
	}
	var tags []reference.Reference
	for _, t := range e.RepoTags {
		ref, err := reference.ParseDockerRef(t)
		if err != nil || ref.Tag == "" {
			return nil, invalidf("loading images: invalid tag %q", t)
		}
		tags = append(tags, ref)
	}
	chains := chainIDs(cfg.RootFS.DiffIDs)
	layers := make([]layerRecord, len(e.Layers))
	for i, lp := range e.Layers {
		file, err := ar.path(lp)
		if err != nil {
			return nil, err
		}
		l, rel, err := s.importLayer(ctx, file, cfg.RootFS.DiffIDs[i], chains[i], p)
		if err != nil {
			return nil, fmt.Errorf("loading images: %w", err)
		}
		defer rel()
		layers[i] = l
	}
	rec, err := s.newRecord(ctx, id, int64(len(cfgBytes)), cfg.Created, configPlatform(cfg), layers, "")
	if err != nil {
		return nil, err
	}
	defer rec.release()
	return s.commitImage(rec.record, tags, p)
}

func readFileLimit(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, invalidf("file too large")
	}
	return b, nil
}

// importLayer stores the layer tar in file (any supported compression) as
// a gzip blob, unless a blob of that diff ID is stored already, and makes
// its snapshot. The returned func releases the lease on both.
func (s *Store) importLayer(ctx context.Context, file string, diffID, chainID digest.Digest, p *progress) (layerRecord, func(), error) {
	rel := s.lease(chainID)
	l := layerRecord{DiffID: diffID, ChainID: chainID}
	if blob, relBlob, ok := s.blobForDiffID(diffID); ok {
		if s.content.Has(blob.Digest) {
			l.Blob = blob
			if err := s.unpack(ctx, l, nil, ""); err != nil {
				relBlob()
				rel()
				return layerRecord{}, nil, err
			}
			info, err := s.snapshots.Info(chainID)
			if err != nil {
				relBlob()
				rel()
				return layerRecord{}, nil, err
			}
			l.Size, l.TarSize = info.Size, info.TarSize
			return l, func() { relBlob(); rel() }, nil
		}
		relBlob()
	}
	f, err := os.Open(file)
	if err != nil {
		rel()
		return layerRecord{}, nil, err
	}
	defer f.Close()
	var total int64
	if fi, err := f.Stat(); err == nil {
		total = fi.Size()
	}
	id := shortID(diffID)
	cr := &countingReader{r: f, tick: func(n int64) { p.bytes(id, "Loading layer", n, total) }}
	blob, got, tarSize, relBlob, err := s.compressToBlob(ctx, cr)
	if err != nil {
		rel()
		return layerRecord{}, nil, err
	}
	release := func() { relBlob(); rel() }
	if got != diffID {
		release()
		return layerRecord{}, nil, invalidf("layer %s: content does not match the config's diff ID (got %s)", diffID, got)
	}
	l.Blob = blob
	if err := s.unpack(ctx, l, nil, ""); err != nil {
		release()
		return layerRecord{}, nil, err
	}
	info, err := s.snapshots.Info(chainID)
	if err != nil {
		release()
		return layerRecord{}, nil, err
	}
	l.Size, l.TarSize = info.Size, tarSize
	return l, release, nil
}

// blobForDiffID finds a stored blob of the given diff ID and leases it.
func (s *Store) blobForDiffID(diffID digest.Digest) (ocispec.Descriptor, func(), bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.images {
		for _, l := range r.Layers {
			if l.DiffID == diffID {
				return l.Blob, s.leaseLocked(l.Blob.Digest), true
			}
		}
	}
	return ocispec.Descriptor{}, nil, false
}

// compressToBlob gzips the (possibly compressed) layer tar r into the
// content store; it returns the blob, leased until release is called, and
// the tar's diff ID and size.
func (s *Store) compressToBlob(ctx context.Context, r io.Reader) (blob ocispec.Descriptor, diffID digest.Digest, tarSize int64, release func(), err error) {
	dr, _, err := layer.Decompress(r)
	if err != nil {
		return ocispec.Descriptor{}, "", 0, nil, err
	}
	defer dr.Close()
	w, err := s.content.Writer()
	if err != nil {
		return ocispec.Descriptor{}, "", 0, nil, err
	}
	defer w.Close()
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return ocispec.Descriptor{}, "", 0, nil, err
	}
	h := digest.SHA256.Digester()
	n, err := io.Copy(io.MultiWriter(zw, h.Hash()), ctxReader{ctx, dr})
	if err != nil {
		return ocispec.Descriptor{}, "", 0, nil, fmt.Errorf("compressing layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, "", 0, nil, fmt.Errorf("compressing layer: %w", err)
	}
	// Lease before the blob appears, so garbage collection never sees it
	// unreferenced.
	release = s.lease(w.Digest())
	d, size, err := w.Commit()
	if err != nil {
		release()
		return ocispec.Descriptor{}, "", 0, nil, err
	}
	return ocispec.Descriptor{MediaType: MediaTypeDockerLayerGzip, Digest: d, Size: size}, h.Digest(), n, release, nil
}

// leasedRecord is a new record whose blobs stay leased until release.
type leasedRecord struct {
	*record
	release func()
}

// newRecord builds the record of a locally made image (load, commit): it
// writes a manifest for it and leases it.
func (s *Store) newRecord(ctx context.Context, id digest.Digest, cfgSize int64, created *time.Time, platform ocispec.Platform, layers []layerRecord, parent digest.Digest) (*leasedRecord, error) {
	cfgDesc := ocispec.Descriptor{MediaType: MediaTypeDockerConfig, Digest: id, Size: cfgSize}
	descs := make([]ocispec.Descriptor, len(layers))
	for i, l := range layers {
		descs[i] = l.Blob
	}
	mt, cfgDesc, descs := manifestFlavor(cfgDesc, descs)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mt, Config: cfgDesc, Layers: descs}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	md := digest.FromBytes(b)
	release := s.lease(md)
	if err := s.content.Ingest(ctx, md, int64(len(b)), strings.NewReader(string(b))); err != nil {
		release()
		return nil, fmt.Errorf("storing manifest: %w", err)
	}
	for i := range layers {
		layers[i].Blob = descs[i]
	}
	rec := &record{
		ID:       id,
		Manifest: ocispec.Descriptor{MediaType: mt, Digest: md, Size: int64(len(b))},
		Config:   cfgDesc,
		Layers:   layers,
		Parent:   parent,
		Platform: platform,
		Stored:   time.Now().UTC(),
	}
	if created != nil {
		rec.Created = *created
	}
	return &leasedRecord{record: rec, release: release}, nil
}

// manifestFlavor picks Docker's manifest format when all layers allow it
// (gzip or plain tar) and OCI's otherwise (zstd), converting media types.
func manifestFlavor(cfg ocispec.Descriptor, layers []ocispec.Descriptor) (string, ocispec.Descriptor, []ocispec.Descriptor) {
	docker := true
	for _, l := range layers {
		switch l.MediaType {
		case MediaTypeDockerLayerGzip, MediaTypeDockerLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayer:
		default:
			docker = false
		}
	}
	out := make([]ocispec.Descriptor, len(layers))
	for i, l := range layers {
		out[i] = ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
		switch {
		case docker && l.MediaType == ocispec.MediaTypeImageLayerGzip:
			out[i].MediaType = MediaTypeDockerLayerGzip
		case docker && l.MediaType == ocispec.MediaTypeImageLayer:
			out[i].MediaType = MediaTypeDockerLayer
		case !docker && l.MediaType == MediaTypeDockerLayerGzip:
			out[i].MediaType = ocispec.MediaTypeImageLayerGzip
		case !docker && l.MediaType == MediaTypeDockerLayer:
			out[i].MediaType = ocispec.MediaTypeImageLayer
		}
	}
	if docker {
		cfg.MediaType = MediaTypeDockerConfig
		return MediaTypeDockerManifest, cfg, out
	}
	cfg.MediaType = ocispec.MediaTypeImageConfig
	return ocispec.MediaTypeImageManifest, cfg, out
}

// commitImage stores rec (unless the image exists) and points tags at it,
// printing what `docker load` prints. It returns the familiar tags, or the
// ID when there are none.
func (s *Store) commitImage(rec *record, tags []reference.Reference, p *progress) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.images[rec.ID]; !ok {
		if err := s.saveRecordLocked(rec); err != nil {
			return nil, err
		}
		s.images[rec.ID] = rec
	}
	cur := s.images[rec.ID]
	var names []string
	for _, t := range tags {
		if old, ok := s.refs[t.String()]; ok && old != rec.ID {
			p.stream(fmt.Sprintf("The image %s already exists, renaming the old one with ID %s to empty string\n", t.FamiliarString(), old))
		}
		s.refs[t.String()] = rec.ID
		names = append(names, t.FamiliarString())
	}
	if len(tags) > 0 {
		cur.LastTagTime = time.Now().UTC()
		if err := s.saveRecordLocked(cur); err != nil {
			return nil, err
		}
		if err := s.saveRefsLocked(); err != nil {
			return nil, err
		}
	}
	sort.Strings(names)
	for _, n := range names {
		p.stream("Loaded image: " + n + "\n")
	}
	if len(names) == 0 {
		p.stream("Loaded image ID: " + rec.ID.String() + "\n")
		names = []string{rec.ID.String()}
	}
	return names, nil
}

// ctxReader makes a long copy stop when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
