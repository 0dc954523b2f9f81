//go:build !linux

package imagetest

import (
	"context"
	"errors"
	"net"
	"os/exec"
)

var errNoNetNS = errors.New("network namespaces need Linux")

func startIn(cmd *exec.Cmd, nsPath string) error {
	if nsPath != "" {
		return errNoNetNS
	}
	return cmd.Start()
}

func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	if nsPath != "" {
		return nil, errNoNetNS
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
