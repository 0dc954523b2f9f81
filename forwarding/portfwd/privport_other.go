//go:build !linux && !darwin

package portfwd

func privilegedPortHint(int) string {
	return "the host OS lets only privileged programs listen on ports below 1024; publish a host port of 1024 or more"
}
