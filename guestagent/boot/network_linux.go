package boot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// resolvConf is where the agent writes the name servers; /etc/resolv.conf
// links to it so the root can stay a plain copy of the bundle.
const resolvConf = "/run/resolv.conf"

func setHostname(name string) error {
	if name == "" {
		return nil
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("setting host name: %w", err)
	}
	if err := os.WriteFile("/etc/hostname", []byte(name+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing /etc/hostname: %w", err)
	}
	return nil
}

// setupNetwork waits for virtio_net when the host chose an address, then
// configures the links (see configureLinks), giving eth0 a second to show up.
func (s *System) setupNetwork(ctx context.Context) error {
	if s.Cmdline.IP.IsValid() {
		if err := s.modules.waitDevice(ctx, "virtio_net"); err != nil {
			s.log.Warn("virtio_net did not load; looking for eth0 anyway", "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return configureLinks(ctx, s.Cmdline)
}

// configureLinks brings up lo and, when the host chose an address, eth0
// with that address and a default route. The device may still be
// registering when the driver module just loaded, so eth0 gets a short
// wait.
func configureLinks(ctx context.Context, c Cmdline) error {
	if err := linkUp("lo"); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	if !c.IP.IsValid() {
		return nil
	}
	var eth netlink.Link
	var err error
	for {
		eth, err = netlink.LinkByName("eth0")
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for eth0: %w", errors.Join(err, ctx.Err()))
		case <-time.After(5 * time.Millisecond):
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{
		IP:   c.IP.Addr().AsSlice(),
		Mask: net.CIDRMask(c.IP.Bits(), c.IP.Addr().BitLen()),
	}}
	if err := netlink.AddrReplace(eth, addr); err != nil {
		return fmt.Errorf("setting %v on eth0: %w", c.IP, err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bringing up eth0: %w", err)
	}
	if c.Gateway.IsValid() {
		route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: c.Gateway.AsSlice()}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("adding default route via %v: %w", c.Gateway, err)
		}
	}
	return nil
}

// linkUp sets IFF_UP on a link with the classic ioctl: for lo, that is all
// there is to do, and it costs a fraction of a netlink round (a visible
// one under emulation, where every new code path is translated first).
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening a socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading the flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("setting %s up: %w", name, err)
	}
	return nil
}

// writeResolv writes the name servers and links /etc/resolv.conf to them.
func writeResolv(dns []netip.Addr) error {
	if len(dns) == 0 {
		return nil
	}
	if err := os.WriteFile(resolvConf, []byte(resolvContents(dns)), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", resolvConf, err)
	}
	if target, err := os.Readlink("/etc/resolv.conf"); err == nil && target == resolvConf {
		return nil
	}
	if err := os.MkdirAll("/etc", 0o755); err != nil {
		return fmt.Errorf("creating /etc: %w", err)
	}
	_ = os.Remove("/etc/resolv.conf")
	if err := os.Symlink(resolvConf, "/etc/resolv.conf"); err != nil {
		return fmt.Errorf("linking /etc/resolv.conf: %w", err)
	}
	return nil
}

func resolvContents(dns []netip.Addr) string {
	var b strings.Builder
	b.WriteString("# written by berth-guestagent from the kernel command line\n")
	for _, a := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return b.String()
}

// hostsContents is /etc/hosts: localhost, the guest's own name, and the
// host's loopback, which gvisor-tap-vsock answers at .254 of the guest's
// IPv4 subnet.
func hostsContents(c Cmdline) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if c.Hostname != "" {
		if c.IP.IsValid() {
			fmt.Fprintf(&b, "%s\t%s\n", c.IP.Addr(), c.Hostname)
		} else {
			fmt.Fprintf(&b, "127.0.1.1\t%s\n", c.Hostname)
		}
	}
	if h, ok := hostLoopback(c.IP); ok {
		fmt.Fprintf(&b, "%s\thost.docker.internal host.berth.internal\n", h)
	}
	return b.String()
}

func hostLoopback(p netip.Prefix) (netip.Addr, bool) {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() > 24 {
		return netip.Addr{}, false
	}
	a := p.Masked().Addr().As4()
	a[3] = 254
	return netip.AddrFrom4(a), true
}

func writeHosts(c Cmdline) error {
	if err := os.WriteFile("/etc/hosts", []byte(hostsContents(c)), 0o644); err != nil {
		return fmt.Errorf("writing /etc/hosts: %w", err)
	}
	return nil
}
