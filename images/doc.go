// Package images is berth's OCI image store: what `docker pull`, `images`,
// `image inspect`, `history`, `tag`, `rmi`, `image prune`, `save`, `load`,
// `push`, `commit` and `diff` call, and what container creation asks for
// an image's config and overlayfs lower dirs.
//
// It owns image metadata (records, tags, digests) and ties together its
// sub-packages: content (blobs by digest), snapshot (unpacked layer dirs by
// chain ID), layer (safe unpacking, diff tars, changes) and reference
// (docker reference parsing). It does not own containers, mounts or the
// HTTP API: the engine mounts LowerDirs with overlayfs, tells the store
// which images containers use (InUse callbacks), and the API server
// encodes the Docker types this package returns.
//
// # Layout under Options.Root
//
//	lock                      flock held while a Store is open
//	content/blobs/sha256/HEX  manifests, configs, compressed layers
//	content/ingest/           downloads in progress (cleared at Open)
//	snapshots/HEX/fs          a layer unpacked for overlayfs (HEX = chain ID)
//	snapshots/HEX/info.json   its diff ID and sizes
//	snapshots/.tmp-*          unpacks in progress (cleared at Open)
//	meta/images/HEX.json      image records (HEX = image ID = config digest)
//	meta/refs.json            normalised reference -> image ID
//	tmp/                      docker load spooling (cleared at Open)
//
// Every file is written to a temporary name, synced and renamed, and a
// pull writes blobs, then snapshots, then the record, then references: a
// crash (even SIGKILL) leaves what was stored before intact, and Open
// removes what a half-done operation left.
//
// # API for the engine
//
//	st, err := images.Open(ctx, images.Options{Root: dir})
//	img, err := st.Pull(ctx, "busybox", images.PullOptions{
//		Auth: images.Authenticator(cfg), // cfg from images.DecodeRegistryAuth(r.Header.Get("X-Registry-Auth"))
//		Progress: images.JSONProgress(w), // Docker's JSON stream; the CLI draws its bars
//	})
//	img, err := st.Resolve(ctx, "busybox")        // ID, short ID or reference
//	cfg, err := st.Config(ctx, img.ID)            // Entrypoint, Cmd, Env, ... (a copy)
//	lowers, err := st.LowerDirs(ctx, img.ID)      // overlay lowerdir=, top-most first
//	list, err := st.List(ctx, images.ListOptions{Filters: f})      // []image.Summary
//	insp, err := st.Inspect(ctx, "busybox")                        // image.InspectResponse
//	hist, err := st.History(ctx, "busybox")                        // []image.HistoryResponseItem
//	err = st.Tag(ctx, "busybox", "localhost:5000/bb:1")
//	del, err := st.Remove(ctx, "busybox", images.RemoveOptions{InUse: inUse}) // []image.DeleteResponse
//	rep, err := st.Prune(ctx, images.PruneOptions{Filters: f, InUse: inUse}) // image.PruneReport
//	err = st.Save(ctx, []string{"busybox"}, w)    // docker-archive tar
//	names, err := st.Load(ctx, r, images.LoadOptions{Progress: p})
//	dgst, err := st.Push(ctx, "localhost:5000/bb:1", images.PushOptions{Auth: a, Progress: p})
//	img, err := st.Commit(ctx, images.CommitOptions{Parent: id, UpperDir: upper, Config: &c})
//	changes, err := images.Changes(upper, lowers) // docker diff
//
// Errors wrap ErrNotFound, ErrConflict, ErrInvalid or ErrUnauthorized
// where one applies (404, 409, 400, 401 in the API); their text is what
// dockerd says.
//
// Garbage collection is mark-and-sweep: blobs and snapshots that no image
// record and no running operation (a lease) uses are deleted when an
// image is removed or pruned, and at Open. An image a container uses must
// never be removed: the engine answers InUse for the image before it
// calls LowerDirs and mounts, and Remove/Prune keep such images (a forced
// rmi only untags them).
//
// Layers are refused (layer.ErrUnsafe) when they could write outside their
// directory; device nodes are refused unless Options.AllowDeviceNodes.
//
// Overlay mounts of images with many layers can exceed the page-size limit
// of mount data with absolute paths; mount from SnapshotRoot() with paths
// relative to it (snapshot.Dir(chainID)) then. Mount containers' upper
// dirs with redirect_dir=off,index=off so Commit and Changes see only
// files, whiteouts and opaque dirs.
package images
