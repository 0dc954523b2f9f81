package netctl

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

// ResolvConf builds a container's /etc/resolv.conf from the guest's own
// (guestConf) and the container's --dns, --dns-search and --dns-option
// settings, as Docker does: explicit settings win; otherwise the guest's
// nameservers are kept, except loopback ones, which a container in its
// own namespace cannot reach. When none remains, fallback (the VM's
// gateway DNS, 192.168.127.1 under gvisor-tap-vsock) is used.
func ResolvConf(guestConf []byte, dns, search, options []string, fallback string) []byte {
	var servers, searches, opts []string
	sc := bufio.NewScanner(bytes.NewReader(guestConf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil && !a.IsLoopback() {
				servers = append(servers, f[1])
			}
		case "search", "domain":
			searches = f[1:]
		case "options":
			opts = append(opts, f[1:]...)
		}
	}
	if len(dns) > 0 {
		servers = dns
	}
	if len(servers) == 0 && fallback != "" {
		servers = []string{fallback}
	}
	if len(search) > 0 {
		searches = search
		if len(search) == 1 && search[0] == "." {
			searches = nil // Docker's "--dns-search ." clears the list
		}
	}
	if len(options) > 0 {
		opts = options
	}
	var b bytes.Buffer
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(searches, " "))
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(opts, " "))
	}
	return b.Bytes()
}
