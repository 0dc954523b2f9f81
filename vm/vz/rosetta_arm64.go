//go:build darwin

package vz

import (
	"fmt"
	"log/slog"

	"github.com/Code-Hex/vz/v3"
)

// rosettaShare shares Rosetta for Linux under RosettaTag when it is
// installed. It is nil when Rosetta is missing: installing it is the user's
// call (softwareupdate --install-rosetta), not a side effect of a boot.
func rosettaShare(log *slog.Logger) (vz.DirectorySharingDeviceConfiguration, error) {
	switch vz.LinuxRosettaDirectoryShareAvailability() {
	case vz.LinuxRosettaAvailabilityInstalled:
	case vz.LinuxRosettaAvailabilityNotInstalled:
		log.Info("rosetta for linux is not installed; x86_64 containers run without it")
		return nil, nil
	default:
		return nil, nil
	}
	share, err := vz.NewLinuxRosettaDirectoryShare()
	if err != nil {
		return nil, fmt.Errorf("sharing rosetta: %w", err)
	}
	dev, err := vz.NewVirtioFileSystemDeviceConfiguration(RosettaTag)
	if err != nil {
		return nil, fmt.Errorf("sharing rosetta: %w", err)
	}
	dev.SetDirectoryShare(share)
	return dev, nil
}
