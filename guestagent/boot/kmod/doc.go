// Package kmod loads the kernel modules of the berth guest bundle into the
// running kernel. It reads the bundle's list (ListPath, written by
// mkguest: each module with the modules it must follow) and loads them
// with finit_module, as many at a time as there are CPUs, each once its
// dependencies have been tried, the costliest chains first. Callers start
// sets of modules by name and wait for single ones; what is left can load
// in the background at a lower priority.
//
// As the VM's init (PID 1) it starts loading Core while the Go runtime is
// still initializing the agent's other packages; Boot takes that Loader
// over with Early. Which modules the boot needs beyond Core, and what to do
// with the devices they bring, is package boot's business. The list and
// the scheduler build everywhere, so they can be tested anywhere; loading
// is Linux-only.
package kmod
