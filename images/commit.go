package images

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berthvm/berth/images/layer"
	"github.com/berthvm/berth/images/reference"
)

// CommitOptions describes a `docker commit`.
type CommitOptions struct {
	// Parent is the image the container was created from (ID or
	// reference); empty for a container of no image (scratch).
	Parent string
	// UpperDir is the container's overlayfs upper dir. Mount it with
	// redirect_dir and index off so it holds only whiteouts, opaque dirs
	// and files.
	UpperDir string
	// Config is the new image's config (the container's, with --change
	// applied); nil keeps the parent's.
	Config *dockerspec.DockerOCIImageConfig
	// Author and Comment go to the config and its history entry.
	Author, Comment string
	// CreatedBy is the history line, e.g. the container's command.
	CreatedBy string
	// Reference, if set, tags the new image ("repo[:tag]").
	Reference string
	// Created defaults to now.
	Created time.Time
}

// Commit makes a new image from a parent image and a container's upper
// dir: the upper dir becomes a new layer (whiteouts as ".wh." entries)
// unless it is empty, and the config gets a history entry. The new image
// records Parent, as images committed by dockerd do.
func (s *Store) Commit(ctx context.Context, opts CommitOptions) (Image, error) {
	var tag *reference.Reference
	if opts.Reference != "" {
		ref, err := reference.Parse(opts.Reference)
		if err != nil {
			return Image{}, withKind(ErrInvalid, err, "committing")
		}
		if ref.Digest != "" {
			return Image{}, invalidf("committing: refusing to create a tag with a digest reference")
		}
		if ref.Tag == "" {
			ref.Tag = reference.DefaultTag
		}
		tag = &ref
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC()

	var parent *record
	cfg := &dockerspec.DockerOCIImage{}
	cfg.Platform = DefaultPlatform()
	cfg.RootFS.Type = "layers"
	if opts.Parent != "" {
		s.mu.Lock()
		r, _, err := s.resolveLocked(opts.Parent)
		if err != nil {
			s.mu.Unlock()
			return Image{}, err
		}
		defer s.leaseLocked(recordKeys(r)...)()
		s.mu.Unlock()
		parent = r
		if cfg, err = s.Config(ctx, r.ID.String()); err != nil {
			return Image{}, err
		}
	}
	var layers []layerRecord
	if parent != nil {
		layers = append(layers, parent.Layers...)
	}

	changed, err := dirHasEntries(opts.UpperDir)
	if err != nil {
		return Image{}, fmt.Errorf("committing: %w", err)
	}
	if changed {
		l, rel, err := s.diffLayer(ctx, opts.UpperDir, layers)
		if err != nil {
			return Image{}, fmt.Errorf("committing: %w", err)
		}
		defer rel()
		layers = append(layers, l)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
	}
	if opts.Config != nil {
		cfg.Config = *opts.Config
	}
	cfg.Created = &created
	if opts.Author != "" {
		cfg.Author = opts.Author
	}
	cfg.History = append(cfg.History, ocispec.History{
		Created:    &created,
		CreatedBy:  opts.CreatedBy,
		Author:     opts.Author,
		Comment:    opts.Comment,
		EmptyLayer: !changed,
	})
	b, err := json.Marshal(cfg)
	if err != nil {
		return Image{}, fmt.Errorf("committing: encoding config: %w", err)
	}
	id := digest.FromBytes(b)
	relCfg := s.lease(id)
	defer relCfg()
	if err := s.content.Ingest(ctx, id, int64(len(b)), strings.NewReader(string(b))); err != nil {
		return Image{}, fmt.Errorf("committing: %w", err)
	}
	var parentID digest.Digest
	if parent != nil {
		parentID = parent.ID
	}
	rec, err := s.newRecord(ctx, id, int64(len(b)), &created, configPlatform(cfg), layers, parentID)
	if err != nil {
		return Image{}, fmt.Errorf("committing: %w", err)
	}
	defer rec.release()
	var tags []reference.Reference
	if tag != nil {
		tags = append(tags, *tag)
	}
	if _, err := s.commitImage(rec.record, tags, nil); err != nil {
		return Image{}, err
	}
	return s.Resolve(ctx, id.String())
}

// diffLayer turns an upper dir into a stored gzip layer on top of below
// and makes its snapshot. The returned func releases their leases.
func (s *Store) diffLayer(ctx context.Context, upper string, below []layerRecord) (layerRecord, func(), error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(layer.WriteDiff(ctx, upper, pw)) }()
	blob, diffID, tarSize, relBlob, err := s.compressToBlob(ctx, pr)
	pr.CloseWithError(err)
	if err != nil {
		return layerRecord{}, nil, err
	}
	diffIDs := make([]digest.Digest, 0, len(below)+1)
	for _, l := range below {
		diffIDs = append(diffIDs, l.DiffID)
	}
	diffIDs = append(diffIDs, diffID)
	chain := chainIDs(diffIDs)[len(diffIDs)-1]
	relChain := s.lease(chain)
	release := func() { relChain(); relBlob() }
	l := layerRecord{DiffID: diffID, ChainID: chain, Blob: blob, TarSize: tarSize}
	if err := s.unpack(ctx, l, nil, ""); err != nil {
		release()
		return layerRecord{}, nil, err
	}
	info, err := s.snapshots.Info(chain)
	if err != nil {
		release()
		return layerRecord{}, nil, err
	}
	l.Size = info.Size
	return l, release, nil
}

func dirHasEntries(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err == io.EOF {
		return false, nil
	}
	return len(names) > 0, err
}

// Changes lists what a container's upper dir changes over its image's
// lower dirs (LowerDirs order), as `docker diff` shows it.
func Changes(upperDir string, lowerDirs []string) ([]container.FilesystemChange, error) {
	return layer.Changes(upperDir, lowerDirs)
}
