package daemon

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/moby/moby/api/types/container"

	"github.com/berthvm/berth/guestagent/netctl"
)

// Names that containers resolve to the host through HostGatewayIP.
var hostGatewayNames = []string{"host.docker.internal", "host.berth.internal"}

// fallbackDNS is dockerd's last resort when the guest has no name server a
// container can reach.
const fallbackDNS = "8.8.8.8"

// hostsFileContent is a container's /etc/hosts as dockerd writes it for a
// container with its own network: loopback, the IPv6 defaults, its own
// address (when it has one) under its hostname, then --add-host entries
// and the host gateway names.
func hostsFileContent(hostname, domain string, ip netip.Addr, extra []string, gatewayIP string) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::\tip6-localnet\n")
	b.WriteString("ff00::\tip6-mcastprefix\n")
	b.WriteString("ff02::1\tip6-allnodes\n")
	b.WriteString("ff02::2\tip6-allrouters\n")
	b.Write(extraHostsLines(extra, gatewayIP))
	if ip.IsValid() {
		names := hostname
		if domain != "" {
			names = hostname + "." + domain + " " + hostname
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, names)
	}
	return b.Bytes()
}

// extraHostsLines are the --add-host entries and the host gateway names.
func extraHostsLines(extra []string, gatewayIP string) []byte {
	var b bytes.Buffer
	for _, h := range extra {
		name, addr, err := parseExtraHost(h)
		if err != nil {
			continue
		}
		if addr == "host-gateway" {
			if gatewayIP == "" {
				continue
			}
			addr = gatewayIP
		}
		fmt.Fprintf(&b, "%s\t%s\n", addr, name)
	}
	if gatewayIP != "" {
		fmt.Fprintf(&b, "%s\t%s\n", gatewayIP, strings.Join(hostGatewayNames, " "))
	}
	return b.Bytes()
}

// resolvConfContent is a container's /etc/resolv.conf: --dns and friends,
// else the daemon's DNS, else the guest's servers.
func resolvConfContent(hc *container.HostConfig, daemonDNS []string, guestConf []byte) []byte {
	var dns []string
	for _, a := range hc.DNS {
		dns = append(dns, a.String())
	}
	if len(dns) == 0 {
		dns = daemonDNS
	}
	return netctl.ResolvConf(guestConf, dns, hc.DNSSearch, hc.DNSOptions, fallbackDNS)
}

// writeRunFiles writes hostname, hosts and resolv.conf into the
// container's directory for a run.
func (d *Daemon) writeRunFiles(c *ctr, rec *record, hc *container.HostConfig, hostname string, ip netip.Addr) error {
	guestResolv, _ := os.ReadFile("/etc/resolv.conf")
	var hosts, resolv []byte
	if hc.NetworkMode == "host" {
		// The guest's own files, as dockerd does for --network host,
		// plus --add-host and the gateway names.
		hosts, _ = os.ReadFile("/etc/hosts")
		if len(hosts) > 0 && hosts[len(hosts)-1] != '\n' {
			hosts = append(hosts, '\n')
		}
		hosts = append(hosts, extraHostsLines(hc.ExtraHosts, d.cfg.HostGatewayIP)...)
		resolv = guestResolv
		if len(hc.DNS) > 0 || len(hc.DNSSearch) > 0 || len(hc.DNSOptions) > 0 {
			resolv = netctl.ResolvConf(guestResolv, dnsStrings(hc), hc.DNSSearch, hc.DNSOptions, "")
		}
	} else {
		hosts = hostsFileContent(hostname, rec.Config.Domainname, ip, hc.ExtraHosts, d.cfg.HostGatewayIP)
		resolv = resolvConfContent(hc, d.cfg.DNS, guestResolv)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{hostnameFile, []byte(hostname + "\n")}, {hostsFile, hosts}, {resolvFile, resolv}} {
		if err := writeFileAtomic(c.path(f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("writing the container's %s: %w", f.name, err)
		}
	}
	return nil
}

func dnsStrings(hc *container.HostConfig) []string {
	var out []string
	for _, a := range hc.DNS {
		out = append(out, a.String())
	}
	return out
}
