// Package portfwd forwards published ports from the host to the guest over
// guest port 1025 (transport.PortForward).
//
// The host side is a Forwarder: for each Port it listens on the host (TCP
// or UDP) and carries every connection, or every UDP client, over its own
// transport stream. The guest side is ServeGuest: it reads the stream's
// header, dials the guest or container address it names, answers with a
// status, and copies bytes both ways.
//
// Wire format of one stream (all integers big-endian):
//
//	host → guest  version(1)=1  proto(1): 1 tcp, 2 udp  len(1)  address (len bytes, "ip:port")
//	guest → host  status(1): 0 ok, 1 failed; when failed: len(1) message
//	then          TCP: raw bytes both ways, half-closes passed on
//	              UDP: datagrams, each len(2) payload, both ways
//
// One UDP stream serves one host client address (ip:port), so replies go
// back to the client that asked; it ends after an idle timeout.
//
// The package decides which host addresses a Port listens on (see
// HostAddrs) and says why a listen failed in words a user can act on. It
// does not learn which ports exist: the host agent feeds it the guest's
// port events, and the guest agent publishes them.
package portfwd
