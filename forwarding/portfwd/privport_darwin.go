package portfwd

func privilegedPortHint(int) string {
	return "macOS lets unprivileged programs listen on ports below 1024 only on all interfaces: " +
		"set \"ports: {bindAll: true}\" in the instance's config.yaml, or publish a host port of 1024 or more"
}
