package boot

// bootModules names the modules the agent needs before it answers, beyond
// kmod.Core (which loads whatever the command line says): the NIC when the
// host configured one, and the vsock transport when it is the one in use.
// Their dependencies come along. Everything else (netfilter, bridge,
// overlay, 9p, fuse...) loads in the background once the agent serves.
func bootModules(c Cmdline) []string {
	var names []string
	if c.IP.IsValid() {
		names = append(names, "virtio_net")
	}
	if c.Transport == TransportVsock {
		names = append(names, "vmw_vsock_virtio_transport")
	}
	return names
}

// transportModules are the modules a transport cannot work without.
func transportModules(transport string) []string {
	if transport == TransportVsock {
		return []string{"vmw_vsock_virtio_transport"}
	}
	return []string{"virtio_console"}
}

// virtioTransports are the buses virtio devices sit on. A virtio driver
// and the bus load in either order; the device is bound by whichever
// comes second, so a device is there once both have been tried.
var virtioTransports = []string{"virtio_pci", "virtio_mmio"}
