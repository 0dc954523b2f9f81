// Package engine is berth's container engine as the Docker API server sees
// it: the interfaces the API calls for containers, the error kinds every
// backend error carries, and the events hub behind `docker events`.
//
// It owns those contracts and the hub. It does not own HTTP (that is
// guestagent/dockerapi), images (images.Store, used directly by the API),
// or running containers (guestagent/shim, which an implementation of
// Containers drives).
package engine
