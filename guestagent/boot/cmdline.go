package boot

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Cmdline holds the berth.* parameters of the kernel command line: the
// only configuration the host gives the guest.
type Cmdline struct {
	// Transport is how the host reaches the agent: "serial" or "vsock".
	// Empty means not given.
	Transport string
	// IP is the guest's address on eth0, with its prefix length.
	IP netip.Prefix
	// Gateway is the default route's next hop.
	Gateway netip.Addr
	// DNS lists the name servers, from a comma-separated berth.dns.
	DNS []netip.Addr
	// Hostname is a valid RFC 1123 host name, or empty.
	Hostname string
	// Debug turns on debug logging.
	Debug bool
}

// Transports the guest agent knows.
const (
	TransportSerial = "serial"
	TransportVsock  = "vsock"
)

// ParseCmdline reads the berth.* parameters out of the contents of
// /proc/cmdline. Other parameters are ignored. A malformed value leaves its
// field at the zero value and is reported in the error, which joins every
// problem: the caller logs it and boots with what was valid, since a guest
// that stops at a typo helps nobody.
func ParseCmdline(s string) (Cmdline, error) {
	var c Cmdline
	var errs []error
	for _, p := range splitCmdline(s) {
		key, val, hasVal := strings.Cut(p, "=")
		if !strings.HasPrefix(key, "berth.") {
			continue
		}
		bad := func(why string) {
			errs = append(errs, fmt.Errorf("kernel parameter %s=%q: %s", key, val, why))
		}
		switch key {
		case "berth.transport":
			switch val {
			case TransportSerial, TransportVsock:
				c.Transport = val
			default:
				bad("want serial or vsock")
			}
		case "berth.ip":
			pfx, err := netip.ParsePrefix(val)
			if err != nil || !pfx.Addr().Is4() && !pfx.Addr().Is6() || pfx.Addr().Zone() != "" {
				bad("want an address with a prefix length, like 192.168.127.2/24")
				continue
			}
			c.IP = pfx
		case "berth.gw":
			a, err := netip.ParseAddr(val)
			if err != nil || a.Zone() != "" {
				bad("want an IP address")
				continue
			}
			c.Gateway = a
		case "berth.dns":
			var dns []netip.Addr
			ok := true
			for _, f := range strings.Split(val, ",") {
				a, err := netip.ParseAddr(f)
				if err != nil || a.Zone() != "" {
					ok = false
					break
				}
				dns = append(dns, a)
			}
			if !ok {
				bad("want comma-separated IP addresses")
				continue
			}
			c.DNS = dns
		case "berth.hostname":
			if !validHostname(val) {
				bad("not a valid host name")
				continue
			}
			c.Hostname = val
		case "berth.debug":
			switch {
			case !hasVal, val == "1", val == "true", val == "yes", val == "on":
				c.Debug = true
			case val == "0", val == "false", val == "no", val == "off":
				c.Debug = false
			default:
				bad("want 1 or 0")
			}
		default:
			errs = append(errs, fmt.Errorf("unknown kernel parameter %s", key))
		}
	}
	return c, errors.Join(errs...)
}

// splitCmdline splits like the kernel's next_arg: parameters are separated
// by whitespace, and double quotes group spaces into one parameter; the
// quotes themselves are dropped.
func splitCmdline(s string) []string {
	var out []string
	var b strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == 0):
			if have {
				out = append(out, b.String())
				b.Reset()
				have = false
			}
		default:
			b.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, b.String())
	}
	return out
}

// validHostname checks RFC 1123: dot-separated labels of letters, digits
// and inner hyphens, at most 63 bytes each, 64 bytes in all (the kernel's
// limit for a UTS node name).
func validHostname(h string) bool {
	if h == "" || len(h) > 64 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
