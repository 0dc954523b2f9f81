//go:build !linux

package qemu

// kvmUsable is false off Linux: other hosts have their own accelerators.
func kvmUsable() bool { return false }
