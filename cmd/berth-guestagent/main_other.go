//go:build !linux

// Command berth-guestagent is the berth guest agent; it runs only on
// Linux (as the VM's init, or in native mode on a Linux host).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "berth-guestagent runs only on Linux")
	os.Exit(1)
}
