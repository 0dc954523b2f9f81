//go:build !linux

package ctrfs

import (
	"context"
	"io"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/moby/moby/api/types/container"
)

// The archive operations need Linux's *at system calls; elsewhere they
// report ErrNotImplemented (the engine runs only on Linux).

func (f FS) CopyFrom(ctx context.Context, p string, stat func(container.PathStat), w io.Writer) error {
	return engine.WithKind(engine.ErrNotImplemented, "docker cp is only supported on Linux")
}

func (f FS) CopyTo(ctx context.Context, p string, r io.Reader, opts engine.CopyToOptions) error {
	return engine.WithKind(engine.ErrNotImplemented, "docker cp is only supported on Linux")
}

func (f FS) Export(ctx context.Context, w io.Writer) error {
	return engine.WithKind(engine.ErrNotImplemented, "docker export is only supported on Linux")
}
