//go:build !linux

package netctl

import (
	"context"
	"errors"
	"fmt"
)

// errUnsupported: container networking exists only in a Linux guest.
var errUnsupported = errors.New("container networking needs Linux")

// Manager is only implemented on Linux.
type Manager struct{}

// New fails outside Linux.
func New(context.Context, Config) (*Manager, error) {
	return nil, fmt.Errorf("setting up container networking: %w", errUnsupported)
}

// Attach fails outside Linux.
func (m *Manager) Attach(context.Context, string, AttachOptions) (*Endpoint, error) {
	return nil, errUnsupported
}

// Endpoint fails outside Linux.
func (m *Manager) Endpoint(string) (*Endpoint, error) { return nil, errUnsupported }

// Endpoints is empty outside Linux.
func (m *Manager) Endpoints() []*Endpoint { return nil }

// Detach fails outside Linux.
func (m *Manager) Detach(context.Context, string) error { return errUnsupported }

// Publish fails outside Linux.
func (m *Manager) Publish(context.Context, string, []PortBinding) ([]PublishedPort, error) {
	return nil, errUnsupported
}

// Unpublish fails outside Linux.
func (m *Manager) Unpublish(context.Context, string) error { return errUnsupported }

// Ports is empty outside Linux.
func (m *Manager) Ports() []PublishedPort { return nil }

// Close does nothing outside Linux.
func (m *Manager) Close() error { return nil }
