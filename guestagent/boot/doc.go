// Package boot turns the guest agent into the VM's init (PID 1). Boot
// reads the berth.* kernel parameters, starts loading the kernel modules
// the agent needs before it can answer (in parallel, in dependency order,
// from the bundle's /etc/berth/modules), moves the root off the initramfs
// (a bind mount, so containers can pivot_root later; nothing is copied),
// mounts the kernel filesystems, and brings up the network and the data
// disk at /var/lib/berth, formatting it on first boot. It returns while
// the slow parts still run: Booted waits for them. The rest of the modules
// load, and the cgroup controllers are delegated, in the background once
// the agent serves (StartBackground, Settled).
// The System it returns owns the shutdown path: hooks, killing what is
// left, syncing, unmounting and the final reboot(2); it also turns the
// ACPI power button and signals to PID 1 into power requests.
//
// The package does not serve anything, start the engine or pick the
// transport: cmd/berth-guestagent wires those. The code is Linux-only; the
// kernel command line parser and the module list and scheduler build
// everywhere, so that they can be tested and fuzzed anywhere.
package boot
