package qemu

import "os"

// kvmUsable reports whether this user may run KVM guests. /dev/kvm often
// exists but belongs to a group the user is not in, so only opening it
// read-write, as QEMU will, tells.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
