// Command goinit is a reference floor of the boot benchmark: the C floor's
// init written in Go, so the bench shows what the Go runtime alone costs
// a VM's init under the same QEMU settings.
package main

import "syscall"

func main() {
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
