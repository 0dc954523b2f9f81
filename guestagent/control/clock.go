//go:build unix

package control

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berthvm/berth/guestagent/api"
)

// Clock is the guest's wall clock.
type Clock interface {
	Now() time.Time
	Set(time.Time) error
}

// SystemClock is the kernel's CLOCK_REALTIME. Setting it needs
// CAP_SYS_TIME.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// Set steps the clock.
func (SystemClock) Set(t time.Time) error { return setClock(t) }

// maxDrift is how far the guest clock may be off before it is stepped. A
// VM's clock drifts after the host sleeps; below this, stepping would do
// more harm (time going backwards for running programs) than good.
const maxDrift = 100 * time.Millisecond

// SyncTime compares the host's time with the guest clock and steps the
// guest clock when they are more than maxDrift apart. Native mode reports
// the drift and never sets the host's own clock.
func (s *Server) SyncTime(ctx context.Context, req *api.SyncTimeRequest) (*api.SyncTimeResponse, error) {
	if req.GetHostUnixNs() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "host_unix_ns must be set")
	}
	host := time.Unix(0, req.GetHostUnixNs())
	drift := s.cfg.Clock.Now().Sub(host)
	resp := &api.SyncTimeResponse{DriftNs: int64(drift)}
	if s.cfg.Native || drift.Abs() <= maxDrift {
		return resp, nil
	}
	if err := s.cfg.Clock.Set(host); err != nil {
		return nil, status.Errorf(codes.Internal, "setting the guest clock (drift %v): %v", drift, err)
	}
	s.log.Info("guest clock stepped", "drift", drift)
	resp.Stepped = true
	return resp, nil
}
