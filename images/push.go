package images

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/berthvm/berth/images/reference"
)

// PushOptions tunes Push.
type PushOptions struct {
	// Auth is the registry credential; nil means anonymous.
	Auth authn.Authenticator
	// Progress receives Docker's push progress messages; may be nil.
	Progress ProgressFunc
}

// PushResult is the aux message `docker push` ends each tag with.
type PushResult struct {
	Tag    string
	Digest string
	Size   int
}

// Push uploads the image ref names to its registry, as `docker push`
// does: a reference without tag pushes every tag of the repository. It
// returns the manifest digest of the last tag pushed and adds
// repo@digest to the image's RepoDigests.
func (s *Store) Push(ctx context.Context, refStr string, opts PushOptions) (digest.Digest, error) {
	ref, err := reference.Parse(refStr)
	if err != nil {
		return "", withKind(ErrInvalid, err, "pushing %s", refStr)
	}
	if ref.Digest != "" {
		return "", invalidf("pushing %s: cannot push a digest reference", refStr)
	}
	type job struct {
		ref reference.Reference
		rec *record
	}
	var jobs []job
	s.mu.Lock()
	for k, id := range s.refs {
		r, err := reference.Parse(k)
		if err != nil || r.Tag == "" || r.Name() != ref.Name() || (ref.Tag != "" && r.Tag != ref.Tag) {
			continue
		}
		jobs = append(jobs, job{ref: r, rec: s.images[id]})
		defer s.leaseLocked(recordKeys(s.images[id])...)()
	}
	s.mu.Unlock()
	if len(jobs) == 0 {
		if ref.Tag != "" {
			return "", notFoundf("tag does not exist: %s", ref.FamiliarString())
		}
		return "", notFoundf("An image does not exist locally with the tag: %s", ref.FamiliarName())
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].ref.Tag < jobs[j].ref.Tag })
	p := newProgress(opts.Progress)
	p.message("The push refers to repository [" + ref.Name() + "]")
	auth := opts.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	pusher, err := remote.NewPusher(remote.WithAuth(auth), remote.WithTransport(s.opts.Transport), remote.WithUserAgent("berth"))
	if err != nil {
		return "", fmt.Errorf("creating registry client: %w", err)
	}
	var last digest.Digest
	for _, j := range jobs {
		d, err := s.pushOne(ctx, pusher, j.ref, j.rec, p)
		if err != nil {
			return "", s.registryError(err, j.ref, "push")
		}
		last = d
	}
	return last, nil
}

func (s *Store) pushOne(ctx context.Context, pusher *remote.Pusher, ref reference.Reference, rec *record, p *progress) (digest.Digest, error) {
	rref, err := s.remoteRef(ref)
	if err != nil {
		return "", err
	}
	repo := rref.Context()
	// Blobs pulled from another repository of the same registry can be
	// mounted from there instead of uploaded.
	mountFrom := s.mountSources(ref)
	// Top layer first, as docker prints them.
	layers := make([]ocispec.Descriptor, 0, len(rec.Layers))
	seen := map[digest.Digest]bool{}
	for i := len(rec.Layers) - 1; i >= 0; i-- {
		b := rec.Layers[i].Blob
		if !seen[b.Digest] {
			seen[b.Digest] = true
			layers = append(layers, b)
		}
	}
	for _, l := range layers {
		p.status(shortID(l.Digest), "Preparing")
	}
	for n, l := range layers {
		if n >= s.opts.MaxConcurrentUploads {
			p.status(shortID(l.Digest), "Waiting")
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.MaxConcurrentUploads)
	for _, l := range layers {
		g.Go(func() error {
			id := shortID(l.Digest)
			bl := &blobLayer{s: s, desc: l, tick: func(n int64) { p.bytes(id, "Pushing", n, l.Size) }}
			var up v1.Layer = bl
			if from, ok := mountFrom[l.Digest]; ok {
				up = &remote.MountableLayer{Layer: bl, Reference: from}
			}
			if err := pusher.Upload(gctx, repo, up); err != nil {
				return fmt.Errorf("uploading layer %s: %w", l.Digest, err)
			}
			if bl.opened.Load() {
				p.status(id, "Pushed")
			} else {
				p.status(id, "Layer already exists")
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", err
	}
	if err := pusher.Upload(ctx, repo, &blobLayer{s: s, desc: rec.Config}); err != nil {
		return "", fmt.Errorf("uploading config: %w", err)
	}
	raw, err := s.content.ReadAll(rec.Manifest.Digest)
	if err != nil {
		return "", err
	}
	if err := pusher.Put(ctx, rref, rawManifest{raw: raw, mt: types.MediaType(rec.Manifest.MediaType)}); err != nil {
		return "", fmt.Errorf("uploading manifest: %w", err)
	}
	d := rec.Manifest.Digest
	p.message(fmt.Sprintf("%s: digest: %s size: %d", ref.Tag, d, len(raw)))
	p.aux(PushResult{Tag: ref.Tag, Digest: d.String(), Size: len(raw)})

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.images[rec.ID]; ok {
		s.refs[ref.WithDigest(d).String()] = rec.ID
		if err := s.saveRefsLocked(); err != nil {
			return "", err
		}
	}
	return d, nil
}

// mountSources maps blobs to a repository of ref's registry, other than
// ref's, that an image holding them was pulled from or pushed to.
func (s *Store) mountSources(ref reference.Reference) map[digest.Digest]name.Reference {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[digest.Digest]name.Reference{}
	for k, id := range s.refs {
		r, err := reference.Parse(k)
		if err != nil || r.Domain != ref.Domain || r.Name() == ref.Name() {
			continue
		}
		mr, err := s.remoteRef(r)
		if err != nil {
			continue
		}
		for _, l := range s.images[id].Layers {
			if _, ok := out[l.Blob.Digest]; !ok {
				out[l.Blob.Digest] = mr
			}
		}
	}
	return out
}

// rawManifest is a stored manifest as the registry client takes it.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// blobLayer serves a stored blob to the registry client as a layer. It
// notes whether the client read it (uploaded) or found it in the registry.
type blobLayer struct {
	s      *Store
	desc   ocispec.Descriptor
	tick   func(int64)
	opened atomic.Bool
}

var _ v1.Layer = (*blobLayer)(nil)

func (b *blobLayer) Digest() (v1.Hash, error) { return v1.NewHash(b.desc.Digest.String()) }
func (b *blobLayer) DiffID() (v1.Hash, error) {
	return v1.Hash{}, fmt.Errorf("diff ID of a stored blob is not known here")
}
func (b *blobLayer) Size() (int64, error) { return b.desc.Size, nil }
func (b *blobLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(b.desc.MediaType), nil
}
func (b *blobLayer) Uncompressed() (io.ReadCloser, error) {
	return nil, fmt.Errorf("uncompressed stream of a stored blob is not served")
}

func (b *blobLayer) Compressed() (io.ReadCloser, error) {
	f, err := b.s.content.Open(b.desc.Digest)
	if err != nil {
		return nil, err
	}
	b.opened.Store(true)
	if b.tick == nil {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{&countingReader{r: f, tick: b.tick}, f}, nil
}
