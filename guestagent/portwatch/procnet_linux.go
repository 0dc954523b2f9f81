package portwatch

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// scanProcNet lists listeners from /proc/net/{tcp,tcp6,udp,udp6}: the
// fallback for kernels without the sock_diag modules (inet_diag,
// tcp_diag, udp_diag). Those files list every socket, connected or not,
// so it costs more than sock_diag on a busy guest.
func scanProcNet(root string) ([]Listener, error) {
	var out []Listener
	for _, f := range []struct {
		name, proto string
		state       uint64
	}{
		{"tcp", "tcp", tcpListen},
		{"tcp6", "tcp", tcpListen},
		{"udp", "udp", tcpClose},
		{"udp6", "udp", tcpClose},
	} {
		file, err := os.Open(root + "/net/" + f.name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(f.name, "6") {
				continue // no IPv6
			}
			return nil, err
		}
		ls, err := parseProcNet(file, f.state)
		file.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s/net/%s: %w", root, f.name, err)
		}
		for _, a := range ls {
			out = append(out, Listener{Proto: f.proto, Addr: a})
		}
	}
	return out, nil
}

// parseProcNet reads a /proc/net/{tcp,udp}[6] table and returns the local
// addresses of the sockets in state that have no remote port.
func parseProcNet(r io.Reader, state uint64) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // the header line
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil || st != state {
			continue
		}
		local, err := parseProcAddr(f[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseProcAddr(f[2])
		if err != nil {
			return nil, err
		}
		if remote.Port() != 0 {
			continue
		}
		out = append(out, local)
	}
	return out, sc.Err()
}

// parseProcAddr reads "0100007F:1F90": the address as 32-bit words in
// host byte order, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	ipHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("malformed address %q", s)
	}
	raw, err := hex.DecodeString(ipHex)
	if err != nil || len(raw) != 4 && len(raw) != 16 {
		return netip.AddrPort{}, fmt.Errorf("malformed address %q", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("malformed port in %q", s)
	}
	// Each 32-bit word was printed as a host-order integer.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(ip, uint16(port)), nil
}
