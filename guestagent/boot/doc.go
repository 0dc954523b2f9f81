// Package boot turns the guest agent into the VM's init (PID 1). Boot
// mounts the kernel filesystems, leaves the initramfs for a tmpfs root (so
// containers can pivot_root later), loads the kernel modules the bundle
// lists, reads the berth.* kernel parameters, sets the host name and the
// network, and mounts the data disk at /var/lib/berth, formatting it on
// first boot. The System it returns owns the shutdown path: hooks, killing
// what is left, syncing, unmounting and the final reboot(2); it also turns
// the ACPI power button and signals to PID 1 into power requests.
//
// The package does not serve anything, start the engine or pick the
// transport: cmd/berth-guestagent wires those. The code is Linux-only; the
// kernel command line parser builds everywhere so that it can be fuzzed.
package boot
