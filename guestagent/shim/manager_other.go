//go:build !linux

package shim

import (
	"context"
	"errors"
	"log/slog"
)

// Options configure a Manager.
type Options struct {
	Executable string
	Log        *slog.Logger
}

var errNotLinux = errors.New("containers run only on Linux")

type manager struct{}

// NewManager returns a Manager that fails: containers need Linux.
func NewManager(Options) Manager { return manager{} }

func (manager) Create(context.Context, Spec) (Container, error)    { return nil, errNotLinux }
func (manager) Restore(context.Context, string) (Container, error) { return nil, errNotLinux }

// Warnings returns nothing off Linux.
func Warnings(Container) []string { return nil }

// HandleReexec does nothing off Linux.
func HandleReexec() {}
