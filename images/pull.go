package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/berthvm/berth/images/content"
	"github.com/berthvm/berth/images/layer"
	"github.com/berthvm/berth/images/reference"
	"github.com/berthvm/berth/images/snapshot"
)

// Media types of Docker's image format (v2 schema 2).
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerForeign      = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mediaTypeSchema1            = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeSchema1Signed      = "application/vnd.docker.distribution.manifest.v1+prettyjws"

	maxConfigSize   = 8 << 20
	maxManifestSize = 4 << 20
)

// PullOptions tunes Pull.
type PullOptions struct {
	// Auth is the registry credential (see Authenticator and
	// DecodeRegistryAuth); nil means anonymous.
	Auth authn.Authenticator
	// Platform selects the image of a multi-arch index; nil means the
	// store's platform.
	Platform *ocispec.Platform
	// Progress receives Docker's pull progress messages; may be nil.
	Progress ProgressFunc
}

// Pull fetches ref (tag or digest) from its registry, unpacks its layers
// and tags it, reporting progress as `docker pull` shows it. Layers
// already present are not fetched again.
func (s *Store) Pull(ctx context.Context, refStr string, opts PullOptions) (Image, error) {
	ref, err := reference.ParseDockerRef(refStr)
	if err != nil {
		return Image{}, withKind(ErrInvalid, err, "pulling %s", refStr)
	}
	p := newProgress(opts.Progress)
	want := *s.opts.Platform
	if opts.Platform != nil {
		want = normalizePlatform(*opts.Platform)
	}
	rref, err := s.remoteRef(ref)
	if err != nil {
		return Image{}, err
	}
	puller, err := s.puller(opts.Auth)
	if err != nil {
		return Image{}, err
	}
	id := ref.Tag
	if ref.Digest != "" {
		id = ref.Digest.String()
	}
	p.idStatus(id, "Pulling from "+familiarPath(ref))

	top, err := puller.Get(ctx, rref)
	if err != nil {
		return Image{}, s.registryError(err, ref, "pull")
	}
	if len(top.Manifest) > maxManifestSize {
		return Image{}, fmt.Errorf("pulling %s: manifest too large", ref.FamiliarString())
	}
	topDigest := digest.Digest(top.Digest.String())
	if ref.Digest != "" && topDigest != ref.Digest {
		return Image{}, fmt.Errorf("pulling %s: registry returned manifest %s", ref.FamiliarString(), topDigest)
	}
	releaseTop := s.lease(topDigest)
	defer releaseTop()
	topDesc := ocispec.Descriptor{MediaType: string(top.MediaType), Digest: topDigest, Size: int64(len(top.Manifest))}
	manifestDesc, manifestBytes := topDesc, top.Manifest
	var indexDesc *ocispec.Descriptor
	switch topDesc.MediaType {
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		var idx ocispec.Index
		if err := json.Unmarshal(top.Manifest, &idx); err != nil {
			return Image{}, fmt.Errorf("pulling %s: decoding index: %w", ref.FamiliarString(), err)
		}
		child, err := selectPlatform(idx, want)
		if err != nil {
			return Image{}, withKind(ErrNotFound, err, "pulling %s", ref.FamiliarString())
		}
		releaseChild := s.lease(child.Digest)
		defer releaseChild()
		if err := s.content.Ingest(ctx, topDigest, topDesc.Size, strings.NewReader(string(top.Manifest))); err != nil {
			return Image{}, fmt.Errorf("pulling %s: storing index: %w", ref.FamiliarString(), err)
		}
		indexDesc = &topDesc
		cdesc, err := puller.Get(ctx, rref.Context().Digest(child.Digest.String()))
		if err != nil {
			return Image{}, s.registryError(err, ref, "pull")
		}
		if digest.Digest(cdesc.Digest.String()) != child.Digest {
			return Image{}, fmt.Errorf("pulling %s: manifest digest mismatch", ref.FamiliarString())
		}
		manifestDesc = ocispec.Descriptor{MediaType: string(cdesc.MediaType), Digest: child.Digest, Size: int64(len(cdesc.Manifest))}
		manifestBytes = cdesc.Manifest
	case mediaTypeSchema1, mediaTypeSchema1Signed:
		return Image{}, invalidf("pulling %s: Docker image format v1 (schema 1) is not supported", ref.FamiliarString())
	}

	var m ocispec.Manifest
	if err := json.Unmarshal(manifestBytes, &m); err != nil {
		return Image{}, fmt.Errorf("pulling %s: decoding manifest: %w", ref.FamiliarString(), err)
	}
	if manifestDesc.MediaType != ocispec.MediaTypeImageManifest && manifestDesc.MediaType != MediaTypeDockerManifest {
		return Image{}, invalidf("pulling %s: unsupported manifest type %q", ref.FamiliarString(), manifestDesc.MediaType)
	}
	if err := s.content.Ingest(ctx, manifestDesc.Digest, manifestDesc.Size, strings.NewReader(string(manifestBytes))); err != nil {
		return Image{}, fmt.Errorf("pulling %s: storing manifest: %w", ref.FamiliarString(), err)
	}
	if err := checkManifest(m); err != nil {
		return Image{}, withKind(ErrInvalid, err, "pulling %s", ref.FamiliarString())
	}

	release := s.lease(m.Config.Digest)
	defer release()
	if !s.content.Has(m.Config.Digest) {
		if err := s.fetchBlob(ctx, puller, rref.Context(), m.Config, nil); err != nil {
			return Image{}, s.registryError(err, ref, "pull")
		}
	}
	cfg, err := s.readConfig(m.Config.Digest)
	if err != nil {
		return Image{}, fmt.Errorf("pulling %s: %w", ref.FamiliarString(), err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return Image{}, invalidf("pulling %s: config has %d layers, manifest %d", ref.FamiliarString(), len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	got := configPlatform(cfg)
	if indexDesc == nil && !platformMatches(want, got) {
		if opts.Platform != nil {
			return Image{}, notFoundf("image with reference %s was found but its platform (%s) does not match the specified platform (%s)", ref.FamiliarString(), platformString(got), platformString(want))
		}
		s.log.Warn("pulled image platform does not match", "ref", ref.String(), "image", platformString(got), "want", platformString(want))
	}

	chains := chainIDs(cfg.RootFS.DiffIDs)
	layers := make([]layerRecord, len(m.Layers))
	var keys []digest.Digest
	for i, l := range m.Layers {
		layers[i] = layerRecord{DiffID: cfg.RootFS.DiffIDs[i], ChainID: chains[i], Blob: l}
		keys = append(keys, l.Digest, chains[i])
	}
	releaseLayers := s.lease(keys...)
	defer releaseLayers()

	if err := s.fetchLayers(ctx, puller, rref.Context(), layers, p); err != nil {
		return Image{}, s.registryError(err, ref, "pull")
	}
	for i := range layers {
		info, err := s.snapshots.Info(layers[i].ChainID)
		if err != nil {
			return Image{}, fmt.Errorf("pulling %s: %w", ref.FamiliarString(), err)
		}
		layers[i].Size, layers[i].TarSize = info.Size, info.TarSize
	}

	rec := &record{
		ID:       m.Config.Digest,
		Manifest: manifestDesc,
		Index:    indexDesc,
		Config:   m.Config,
		Layers:   layers,
		Platform: got,
		Stored:   time.Now().UTC(),
	}
	if cfg.Created != nil {
		rec.Created = *cfg.Created
	}
	newer, err := s.commitPull(rec, ref, topDigest)
	if err != nil {
		return Image{}, err
	}
	p.message("Digest: " + topDigest.String())
	if newer {
		p.message("Status: Downloaded newer image for " + ref.FamiliarString())
	} else {
		p.message("Status: Image is up to date for " + ref.FamiliarString())
	}
	return s.Resolve(ctx, rec.ID.String())
}

// commitPull stores the record (unless the image exists) and points ref
// and repo@topDigest at it. newer reports whether ref changed.
func (s *Store) commitPull(rec *record, ref reference.Reference, topDigest digest.Digest) (newer bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.images[rec.ID]; !ok {
		if err := s.saveRecordLocked(rec); err != nil {
			return false, err
		}
		s.images[rec.ID] = rec
		newer = true
	}
	key := ref.String()
	if old, ok := s.refs[key]; !ok || old != rec.ID {
		newer = true
	}
	s.refs[key] = rec.ID
	s.refs[ref.WithDigest(topDigest).String()] = rec.ID
	if ref.Tag != "" && newer {
		s.images[rec.ID].LastTagTime = time.Now().UTC()
		if err := s.saveRecordLocked(s.images[rec.ID]); err != nil {
			return false, err
		}
	}
	if err := s.saveRefsLocked(); err != nil {
		return false, err
	}
	return newer, nil
}

func (s *Store) readConfig(d digest.Digest) (*dockerspec.DockerOCIImage, error) {
	b, err := s.content.ReadAll(d)
	if err != nil {
		return nil, err
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, invalidf("decoding image config: %v", err)
	}
	if cfg.RootFS.Type != "layers" {
		return nil, invalidf("image config: unsupported rootfs type %q", cfg.RootFS.Type)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, invalidf("image config: bad diff ID %q", d)
		}
	}
	return &cfg, nil
}

// checkManifest refuses manifests that are not container images or that
// we cannot unpack.
func checkManifest(m ocispec.Manifest) error {
	switch m.Config.MediaType {
	case MediaTypeDockerConfig, ocispec.MediaTypeImageConfig:
	default:
		return fmt.Errorf("not a container image: config media type %q", m.Config.MediaType)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return fmt.Errorf("bad config digest: %w", err)
	}
	if m.Config.Size < 0 || m.Config.Size > maxConfigSize {
		return fmt.Errorf("image config size %d out of range", m.Config.Size)
	}
	for _, l := range m.Layers {
		switch l.MediaType {
		case MediaTypeDockerLayerGzip, MediaTypeDockerLayer, ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd:
		case mediaTypeDockerForeign, ocispec.MediaTypeImageLayerNonDistributable, ocispec.MediaTypeImageLayerNonDistributableGzip, ocispec.MediaTypeImageLayerNonDistributableZstd: //nolint:staticcheck // recognised to refuse clearly
			return fmt.Errorf("foreign (non-distributable) layers are not supported")
		default:
			return fmt.Errorf("unsupported layer media type %q", l.MediaType)
		}
		if err := l.Digest.Validate(); err != nil {
			return fmt.Errorf("bad layer digest: %w", err)
		}
		if l.Size < 0 {
			return fmt.Errorf("bad layer size %d", l.Size)
		}
	}
	return nil
}

// fetchLayers downloads and unpacks what is missing, MaxConcurrentDownloads
// at a time, unpacking each layer as soon as it is in.
func (s *Store) fetchLayers(ctx context.Context, puller *remote.Puller, repo name.Repository, layers []layerRecord, p *progress) error {
	var todo []int
	for i, l := range layers {
		if s.snapshots.Exists(l.ChainID) && s.content.Has(l.Blob.Digest) {
			p.status(shortID(l.Blob.Digest), "Already exists")
			continue
		}
		todo = append(todo, i)
	}
	for _, i := range todo {
		p.status(shortID(layers[i].Blob.Digest), "Pulling fs layer")
	}
	for n, i := range todo {
		if n >= s.opts.MaxConcurrentDownloads {
			p.status(shortID(layers[i].Blob.Digest), "Waiting")
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.MaxConcurrentDownloads)
	for _, i := range todo {
		l := layers[i]
		g.Go(func() error {
			id := shortID(l.Blob.Digest)
			if !s.content.Has(l.Blob.Digest) {
				err := s.flights.do(gctx, "blob:"+l.Blob.Digest.String(), func() error {
					return s.fetchBlob(gctx, puller, repo, l.Blob, func(n int64) { p.bytes(id, "Downloading", n, l.Blob.Size) })
				})
				if err != nil {
					return err
				}
				p.status(id, "Verifying Checksum")
				p.status(id, "Download complete")
			}
			if err := s.unpack(gctx, l, p, id); err != nil {
				return err
			}
			p.status(id, "Pull complete")
			return nil
		})
	}
	return g.Wait()
}

// fetchBlob downloads one blob into the content store, verified.
func (s *Store) fetchBlob(ctx context.Context, puller *remote.Puller, repo name.Repository, desc ocispec.Descriptor, tick func(int64)) error {
	if s.content.Has(desc.Digest) {
		return nil
	}
	rl, err := puller.Layer(ctx, repo.Digest(desc.Digest.String()))
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", desc.Digest, err)
	}
	rc, err := rl.Compressed()
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if tick != nil {
		r = &countingReader{r: rc, tick: tick}
	}
	if err := s.content.Ingest(ctx, desc.Digest, desc.Size, r); err != nil {
		return fmt.Errorf("fetching blob %s: %w", desc.Digest, err)
	}
	return nil
}

// unpack makes the snapshot of layer l from its stored blob, checking its
// diff ID.
func (s *Store) unpack(ctx context.Context, l layerRecord, p *progress, id string) error {
	_, err := s.snapshots.Create(ctx, l.ChainID, func(ctx context.Context, dir string) (snapshot.Info, error) {
		f, err := s.content.Open(l.Blob.Digest)
		if err != nil {
			return snapshot.Info{}, err
		}
		defer f.Close()
		var r io.Reader = f
		if p != nil {
			r = &countingReader{r: f, tick: func(n int64) { p.bytes(id, "Extracting", n, l.Blob.Size) }}
		}
		res, err := layer.Apply(ctx, dir, r, layer.ApplyOptions{AllowDevices: s.opts.AllowDeviceNodes})
		if err != nil {
			return snapshot.Info{}, fmt.Errorf("layer %s: %w", l.Blob.Digest, err)
		}
		if res.DiffID != l.DiffID {
			return snapshot.Info{}, fmt.Errorf("layer %s: %w: the image config says diff ID %s, the content is %s", l.Blob.Digest, content.ErrDigestMismatch, l.DiffID, res.DiffID)
		}
		return snapshot.Info{DiffID: res.DiffID, Size: res.Size, TarSize: res.TarSize}, nil
	})
	return err
}

func shortID(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		return e[:12]
	}
	return e
}

// familiarPath is the repository path `docker pull` prints: "library/busybox".
func familiarPath(r reference.Reference) string { return r.Path }

func (s *Store) puller(auth authn.Authenticator) (*remote.Puller, error) {
	if auth == nil {
		auth = authn.Anonymous
	}
	p, err := remote.NewPuller(remote.WithAuth(auth), remote.WithTransport(s.opts.Transport), remote.WithUserAgent("berth"))
	if err != nil {
		return nil, fmt.Errorf("creating registry client: %w", err)
	}
	return p, nil
}

// remoteRef converts ref for the registry client, with plain HTTP for
// loopback and configured insecure registries.
func (s *Store) remoteRef(ref reference.Reference) (name.Reference, error) {
	var opts []name.Option
	if s.insecure(ref.Domain) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref.String(), opts...)
	if err != nil {
		return nil, withKind(ErrInvalid, err, "reference %s", ref.FamiliarString())
	}
	return r, nil
}

func (s *Store) insecure(domain string) bool {
	if slices.Contains(s.opts.InsecureRegistries, domain) {
		return true
	}
	host := domain
	if h, _, err := net.SplitHostPort(domain); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	return slices.Contains(s.opts.InsecureRegistries, host)
}

// registryError gives registry failures the kind and wording dockerd uses.
func (s *Store) registryError(err error, ref reference.Reference, op string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrConflict) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		codes := map[transport.ErrorCode]bool{}
		for _, d := range te.Errors {
			codes[d.Code] = true
		}
		switch {
		case te.StatusCode == http.StatusUnauthorized || codes[transport.UnauthorizedErrorCode]:
			return withKind(ErrUnauthorized, err, "%s access denied for %s, authentication required or failed", op, ref.FamiliarName())
		case te.StatusCode == http.StatusForbidden || codes[transport.DeniedErrorCode]:
			return withKind(ErrUnauthorized, err, "%s access denied for %s", op, ref.FamiliarName())
		case codes[transport.ManifestUnknownErrorCode]:
			return withKind(ErrNotFound, err, "manifest for %s not found", ref.FamiliarString())
		case codes[transport.NameUnknownErrorCode]:
			return withKind(ErrNotFound, err, "repository %s not found", ref.FamiliarName())
		case te.StatusCode == http.StatusNotFound:
			return withKind(ErrNotFound, err, "%s not found", ref.FamiliarString())
		}
	}
	return fmt.Errorf("%sing %s: %w", op, ref.FamiliarString(), err)
}

// normalizePlatform fills the defaults Docker assumes: linux, arm64 v8.
func normalizePlatform(p ocispec.Platform) ocispec.Platform {
	if p.OS == "" {
		p.OS = "linux"
	}
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	}
	if p.Architecture == "arm64" && p.Variant == "" {
		p.Variant = "v8"
	}
	return p
}

func configPlatform(cfg *dockerspec.DockerOCIImage) ocispec.Platform {
	return normalizePlatform(cfg.Platform)
}

// platformMatches reports whether an image for got runs where want is
// asked for. A missing variant on either side matches.
func platformMatches(want, got ocispec.Platform) bool {
	want, got = normalizePlatform(want), normalizePlatform(got)
	if want.OS != got.OS || want.Architecture != got.Architecture {
		return false
	}
	return want.Variant == "" || got.Variant == "" || want.Variant == got.Variant
}

// selectPlatform picks the manifest of an index for want, preferring an
// exact variant match.
func selectPlatform(idx ocispec.Index, want ocispec.Platform) (ocispec.Descriptor, error) {
	var best *ocispec.Descriptor
	bestScore := 0
	var seen []string
	for i := range idx.Manifests {
		d := &idx.Manifests[i]
		if d.Platform == nil || (d.MediaType != ocispec.MediaTypeImageManifest && d.MediaType != MediaTypeDockerManifest) {
			continue
		}
		if d.Platform.OS == "unknown" {
			continue // attestations
		}
		seen = append(seen, platformString(normalizePlatform(*d.Platform)))
		if !platformMatches(want, *d.Platform) {
			continue
		}
		// An entry naming the very variant beats one that matches by default.
		score := 1
		if d.Platform.Variant == want.Variant {
			score = 2
		}
		if score > bestScore {
			best, bestScore = d, score
		}
	}
	if best == nil {
		return ocispec.Descriptor{}, fmt.Errorf("no matching manifest for %s in the manifest list entries (has %s)", platformString(want), strings.Join(seen, ", "))
	}
	if err := best.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("bad manifest digest in index: %w", err)
	}
	return *best, nil
}

func platformString(p ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
