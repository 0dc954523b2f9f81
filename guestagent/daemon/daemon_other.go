//go:build !linux

package daemon

import (
	"context"
	"errors"
)

// Daemon is the container engine; it runs only on Linux.
type Daemon struct{}

// New fails outside Linux: containers need its namespaces and cgroups.
func New(ctx context.Context, cfg Config) (*Daemon, error) {
	return nil, errors.New("the container engine runs only on Linux")
}

// Close does nothing outside Linux.
func (d *Daemon) Close() error { return nil }

// Shutdown does nothing outside Linux.
func (d *Daemon) Shutdown(ctx context.Context) error { return nil }
