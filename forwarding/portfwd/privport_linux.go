package portfwd

import "fmt"

func privilegedPortHint(port int) string {
	return fmt.Sprintf("the host OS lets only privileged programs listen on ports below 1024; "+
		"allow it with \"sudo sysctl net.ipv4.ip_unprivileged_port_start=%d\" "+
		"(add it to /etc/sysctl.d/ to keep it after a reboot), or publish a host port of 1024 or more", port)
}
