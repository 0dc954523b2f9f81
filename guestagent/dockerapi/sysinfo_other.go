//go:build !linux

package dockerapi

// hostFacts has nothing to read off Linux: the API server runs in the
// guest (or natively on Linux); this keeps host builds compiling.
func hostFacts() facts { return facts{cgroupVersion: "2"} }
