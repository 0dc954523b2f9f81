package daemon

import (
	"context"
	"log/slog"

	"github.com/berthvm/berth/guestagent/engine"
	"github.com/berthvm/berth/guestagent/netctl"
	"github.com/berthvm/berth/guestagent/shim"
	"github.com/berthvm/berth/guestagent/volumes"
	"github.com/berthvm/berth/images"
)

// Network is what the daemon needs of container networking;
// *netctl.Manager implements it.
type Network interface {
	Attach(ctx context.Context, id string, opts netctl.AttachOptions) (*netctl.Endpoint, error)
	Publish(ctx context.Context, id string, bindings []netctl.PortBinding) ([]netctl.PublishedPort, error)
	Detach(ctx context.Context, id string) error
	Endpoints() []*netctl.Endpoint
}

// Config is what the daemon is made of.
type Config struct {
	// Root holds one directory per container (required).
	Root string
	// Images is the image store (required).
	Images *images.Store
	// Volumes is the named volume store (required).
	Volumes *volumes.Store
	// Net is container networking; nil leaves only --network none and
	// host. (Do not pass a nil *netctl.Manager: leave the field nil.)
	Net Network
	// Shims creates and restores the containers' shims (required).
	Shims shim.Manager
	// Events receives container events; a private hub when nil.
	Events *engine.Events
	// HostGatewayIP, when set, is what host.docker.internal and
	// host.berth.internal resolve to in containers' /etc/hosts, and what
	// --add-host NAME:host-gateway means.
	HostGatewayIP string
	// DNS are the name servers of bridge containers without --dns; when
	// empty the guest's /etc/resolv.conf is used (loopback servers
	// dropped), with 8.8.8.8 as the last resort, as dockerd.
	DNS []string
	// UsernsRemap runs every container in a private user namespace (its
	// root is an unprivileged uid on the host), as dockerd's
	// userns-remap: the docker CLI can only ask for --userns=host, which
	// opts a container out, as --privileged does.
	UsernsRemap bool
	// Log defaults to slog.Default().
	Log *slog.Logger
}
