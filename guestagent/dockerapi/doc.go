// Package dockerapi serves the Docker Engine REST API that the stock docker
// CLI and docker-compose drive, on guest port 2375 (transport.PortDocker)
// or a unix socket in native mode.
//
// It owns HTTP: routing (with and without /vX.Y prefixes and version
// negotiation), request decoding (bounded, strict, fuzzed), the wire types
// (github.com/moby/moby/api, so the JSON matches dockerd's), streaming of
// progress and events, and the mapping of error kinds to status codes in
// one place (errors.go), and the streams of attach and exec (connection
// hijacking, multiplexed framing, detach keys, half-close). Handlers are
// thin: decode, call the backend, encode. It serves the three predefined
// networks itself, read-only. It does not own images (images.Store),
// containers (engine.Containers), volumes (engine.Volumes) or the events
// hub (engine.Events); it publishes the image and volume events its
// handlers cause, and the engine publishes container events.
//
//	h := dockerapi.New(dockerapi.Config{Images: st, Events: hub, RootDir: root})
//	err := dockerapi.Serve(ctx, listener, h)
package dockerapi
