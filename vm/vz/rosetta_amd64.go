//go:build darwin

package vz

import (
	"log/slog"

	"github.com/Code-Hex/vz/v3"
)

// rosettaShare is nil on Intel Macs: Rosetta for Linux is Apple Silicon only.
func rosettaShare(*slog.Logger) (vz.DirectorySharingDeviceConfiguration, error) {
	return nil, nil
}
