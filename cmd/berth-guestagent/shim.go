//go:build linux

package main

import "github.com/berthvm/berth/guestagent/shim"

// The agent re-executes itself as a container's shim ("shim --state-dir
// DIR") and as libcontainer's container init ("init"); both roles must
// run before main parses its own flags.
func init() {
	shim.HandleReexec()
}
