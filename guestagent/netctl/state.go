package netctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
)

// stateFile is the manager's persistent state under Config.StateDir.
const stateFile = "state.json"

// state is what survives an engine restart: the IPAM (every endpoint's
// address) and the published ports. It is rewritten whole, atomically, on
// each change, so a crash leaves either the old or the new state.
type state struct {
	Subnet string `json:"subnet"`
	// Last is the address handed out last; allocation continues after it
	// so a freed address is not reused soon (stale ARP, late packets).
	Last      netip.Addr          `json:"last,omitzero"`
	Endpoints map[string]*epState `json:"endpoints"`
	Ports     []PublishedPort     `json:"ports"`
}

type epState struct {
	Mode     Mode       `json:"mode"`
	NetNS    string     `json:"netns,omitempty"`
	IP       netip.Addr `json:"ip,omitzero"`
	MAC      string     `json:"mac,omitempty"`
	HostVeth string     `json:"host_veth,omitempty"`
}

func newState(subnet string) *state {
	return &state{Subnet: subnet, Endpoints: map[string]*epState{}}
}

// loadState reads dir/state.json; a missing file is an empty state.
func loadState(dir, subnet string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return newState(subnet), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading network state: %w", err)
	}
	st := newState(subnet)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("decoding network state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if st.Endpoints == nil {
		st.Endpoints = map[string]*epState{}
	}
	if st.Subnet != subnet {
		// Addresses from another subnet are useless; keep nothing that
		// refers to them, but keep endpoints so Detach still cleans up.
		for _, ep := range st.Endpoints {
			ep.IP = netip.Addr{}
		}
		st.Ports = nil
		st.Last = netip.Addr{}
		st.Subnet = subnet
	}
	return st, nil
}

// save writes the state atomically (temp file, fsync, rename).
func (st *state) save(dir string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding network state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, stateFile+".tmp*")
	if err != nil {
		return fmt.Errorf("saving network state: %w", err)
	}
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("saving network state: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, stateFile)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("saving network state: %w", err)
	}
	return nil
}

// allocateIP returns the next free address in subnet after last, skipping
// the network and broadcast addresses, the gateway and every used address.
func allocateIP(subnet netip.Prefix, gateway, last netip.Addr, used map[netip.Addr]bool) (netip.Addr, error) {
	subnet = subnet.Masked()
	first := subnet.Addr().Next()
	bcast := lastAddr(subnet)
	start := first
	if last.IsValid() && subnet.Contains(last) && last != bcast {
		start = last.Next()
	}
	a := start
	// Visit every address of the subnet once, wrapping after broadcast.
	for range uint64(1) << (32 - subnet.Bits()) {
		if a == bcast || !subnet.Contains(a) {
			a = first
		}
		if a != gateway && !used[a] {
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, fmt.Errorf("allocating an address in %s: %w", subnet, ErrExhausted)
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	return netip.AddrFrom4(b)
}

// macFor derives a locally administered MAC from an IPv4 address, as
// Docker does (02:42:a.b.c.d), so it is stable and unique per address.
func macFor(ip netip.Addr) []byte {
	b := ip.As4()
	return []byte{0x02, 0x42, b[0], b[1], b[2], b[3]}
}
