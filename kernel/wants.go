package kernel

import "github.com/berthvm/berth/kernel/modules"

// guestModules lists what the guest needs, for both arches unless noted.
// Each entry names the Kconfig symbol that builds it, so a kernel where it
// is built in (=y) simply skips it. Dependencies (virtio core, jbd2,
// nf_conntrack, llc...) are pulled in automatically.
var guestModules = []struct {
	modules.Want
	arch string // "" for every arch
}{
	// Devices: virtio over PCI (QEMU q35/virt, vz) and MMIO (QEMU microvm and
	// -device virtio-*-device on arm64 virt).
	{Want: modules.Want{Name: "virtio_pci", Config: "CONFIG_VIRTIO_PCI"}},
	{Want: modules.Want{Name: "virtio_mmio", Config: "CONFIG_VIRTIO_MMIO", Optional: true}},
	{Want: modules.Want{Name: "virtio_blk", Config: "CONFIG_VIRTIO_BLK"}},
	{Want: modules.Want{Name: "virtio_net", Config: "CONFIG_VIRTIO_NET"}},
	{Want: modules.Want{Name: "virtio_console", Config: "CONFIG_VIRTIO_CONSOLE"}},
	{Want: modules.Want{Name: "virtio_rng", Config: "CONFIG_HW_RANDOM_VIRTIO"}},
	// Lets the host take back memory the guest freed (vz and QEMU balloons).
	{Want: modules.Want{Name: "virtio_balloon", Config: "CONFIG_VIRTIO_BALLOON", Optional: true}},
	{Want: modules.Want{Name: "vsock", Config: "CONFIG_VSOCKETS"}},
	{Want: modules.Want{Name: "vmw_vsock_virtio_transport", Config: "CONFIG_VIRTIO_VSOCKETS"}},

	// Host folder sharing.
	{Want: modules.Want{Name: "9p", Config: "CONFIG_9P_FS"}},
	{Want: modules.Want{Name: "9pnet_virtio", Config: "CONFIG_NET_9P_VIRTIO"}},
	{Want: modules.Want{Name: "fuse", Config: "CONFIG_FUSE_FS"}},
	{Want: modules.Want{Name: "virtiofs", Config: "CONFIG_VIRTIO_FS"}},

	// Storage: the data disk and image layers.
	{Want: modules.Want{Name: "ext4", Config: "CONFIG_EXT4_FS"}},
	{Want: modules.Want{Name: "crc32c_generic", Config: "CONFIG_CRYPTO_CRC32C"}},
	{Want: modules.Want{Name: "overlay", Config: "CONFIG_OVERLAY_FS"}},

	// Container networking: bridge + veth, NAT with nftables, and the
	// xtables bits that iptables-nft inside containers (kind, dind) use.
	{Want: modules.Want{Name: "af_packet", Config: "CONFIG_PACKET"}},
	{Want: modules.Want{Name: "bridge", Config: "CONFIG_BRIDGE"}},
	{Want: modules.Want{Name: "br_netfilter", Config: "CONFIG_BRIDGE_NETFILTER"}},
	{Want: modules.Want{Name: "veth", Config: "CONFIG_VETH"}},
	{Want: modules.Want{Name: "tun", Config: "CONFIG_TUN"}},
	{Want: modules.Want{Name: "nf_tables", Config: "CONFIG_NF_TABLES"}},
	{Want: modules.Want{Name: "nf_conntrack", Config: "CONFIG_NF_CONNTRACK"}},
	{Want: modules.Want{Name: "nf_nat", Config: "CONFIG_NF_NAT"}},
	{Want: modules.Want{Name: "nft_chain_nat", Config: "CONFIG_NFT_NAT"}},
	{Want: modules.Want{Name: "nft_nat", Config: "CONFIG_NFT_NAT"}},
	{Want: modules.Want{Name: "nft_masq", Config: "CONFIG_NFT_MASQ"}},
	{Want: modules.Want{Name: "nft_redir", Config: "CONFIG_NFT_REDIR"}},
	{Want: modules.Want{Name: "nft_ct", Config: "CONFIG_NFT_CT"}},
	{Want: modules.Want{Name: "nft_fib_inet", Config: "CONFIG_NFT_FIB_INET", Optional: true}},
	{Want: modules.Want{Name: "nft_reject_inet", Config: "CONFIG_NFT_REJECT_INET", Optional: true}},
	{Want: modules.Want{Name: "nft_compat", Config: "CONFIG_NFT_COMPAT"}},
	{Want: modules.Want{Name: "xt_MASQUERADE", Config: "CONFIG_NETFILTER_XT_TARGET_MASQUERADE"}},
	{Want: modules.Want{Name: "xt_nat", Config: "CONFIG_NETFILTER_XT_NAT"}},
	{Want: modules.Want{Name: "xt_conntrack", Config: "CONFIG_NETFILTER_XT_MATCH_CONNTRACK"}},
	{Want: modules.Want{Name: "xt_addrtype", Config: "CONFIG_NETFILTER_XT_MATCH_ADDRTYPE"}},
	{Want: modules.Want{Name: "iptable_nat", Config: "CONFIG_IP_NF_NAT", Optional: true}},
	{Want: modules.Want{Name: "iptable_filter", Config: "CONFIG_IP_NF_FILTER", Optional: true}},
	{Want: modules.Want{Name: "ip6table_nat", Config: "CONFIG_IP6_NF_NAT", Optional: true}},
	{Want: modules.Want{Name: "ip6table_filter", Config: "CONFIG_IP6_NF_FILTER", Optional: true}},

	// Socket diagnostics, for finding the services that listen in the VM
	// (guestagent/portwatch) without walking /proc/net.
	{Want: modules.Want{Name: "tcp_diag", Config: "CONFIG_INET_TCP_DIAG", Optional: true}},
	{Want: modules.Want{Name: "udp_diag", Config: "CONFIG_INET_UDP_DIAG", Optional: true}},

	// Power button, so the host can ask for a clean shutdown: ACPI on x86
	// (and on arm64 under ACPI firmware), gpio-keys on arm64 virt.
	{Want: modules.Want{Name: "button", Config: "CONFIG_ACPI_BUTTON"}},
	{Want: modules.Want{Name: "evdev", Config: "CONFIG_INPUT_EVDEV"}},
	{Want: modules.Want{Name: "gpio_pl061", Config: "CONFIG_GPIO_PL061"}, arch: "aarch64"},
	{Want: modules.Want{Name: "gpio_keys", Config: "CONFIG_KEYBOARD_GPIO"}, arch: "aarch64"},
}

// Wants returns the modules the guest asks for on arch a.
func Wants(a Arch) []modules.Want {
	var out []modules.Want
	for _, w := range guestModules {
		if w.arch == "" || w.arch == a.Name {
			out = append(out, w.Want)
		}
	}
	return out
}
