package hostagent

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/guestagent/api"
)

// DialGuest returns a gRPC connection to the guest agent's control service
// through d. The connection redials on its own after the guest or the
// transport restarts, at most a second apart, because a VM that reboots
// should be found again quickly.
func DialGuest(d transport.Dialer) (*grpc.ClientConn, error) {
	bo := backoff.DefaultConfig
	bo.BaseDelay = 50 * time.Millisecond
	bo.MaxDelay = time.Second
	conn, err := grpc.NewClient("passthrough:///berth-guest",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return d.DialPort(ctx, transport.PortControl)
		}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 5 * time.Second}),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to the guest agent: %w", err)
	}
	return conn, nil
}

// WaitGuest calls Info until the guest agent answers, ctx ends, or done is
// closed (the VM exited).
func WaitGuest(ctx context.Context, c api.AgentClient, done <-chan struct{}) (*api.InfoResponse, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		// A VM that dies ends the attempt at once, not after its timeout.
		go func() {
			select {
			case <-done:
				cancel()
			case <-actx.Done():
			}
		}()
		info, err := c.Info(actx, &api.InfoRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			return info, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the guest agent: %w (last error: %v)", ctx.Err(), err)
		case <-done:
			return nil, fmt.Errorf("the VM exited before its guest agent answered")
		case <-time.After(100 * time.Millisecond):
		}
	}
}
