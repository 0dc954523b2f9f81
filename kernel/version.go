// Package kernel builds and finds the guest bundle: the kernel and initrd
// that the host agent boots.
//
// The kernel is Debian's linux-image package, pinned below. Build (Linux
// build hosts only; it runs apt-get and dpkg-deb) downloads it, extracts
// the bootable image, picks the modules the guest needs, and packs them
// into an initramfs with the static guest agent as /init, mke2fs with its
// libraries, and busybox. Find (every host OS) locates a built bundle.
//
// It does not boot anything (package vm does) and does not load the
// modules (the guest agent's init does, from /etc/berth/modules).
package kernel

// The guest kernel, pinned in this one place. When Debian's security
// archive moves on, Build fails and prints the versions to put here.
const (
	// ABI is the kernel ABI in Debian's package name: linux-image-<ABI>-<flavor>.
	ABI = "6.1.0-56"
	// PackageVersion is the Debian version of those packages.
	PackageVersion = "6.1.192-2"

	// FlavorAMD64 and FlavorARM64 are the kernel flavors used per arch.
	FlavorAMD64 = "amd64"
	FlavorARM64 = "arm64"
)
