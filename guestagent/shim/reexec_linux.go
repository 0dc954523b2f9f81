package shim

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's C constructor sets up namespaces in libcontainer's
	// "init" re-exec before the Go runtime starts.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"golang.org/x/sys/unix"
)

// HandleReexec serves the roles this binary is re-executed in, and
// returns only when os.Args names none of them. Call it first thing, from
// an init function of package main (and of a test binary using the
// package):
//
//   - "init" with libcontainer's environment: the container's init,
//     which becomes the container's process;
//   - "shim --state-dir DIR": a container's shim.
func HandleReexec() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case "init":
		if os.Getenv("_LIBCONTAINER_INITPIPE") != "" {
			libcontainer.Init() // does not return
		}
	case "shim":
		os.Exit(shimMain(os.Args[2:]))
	}
}

func shimMain(args []string) int {
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	dir := fs.String("state-dir", "", "the container's state directory")
	debug := fs.Bool("debug", false, "log debug messages")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("shim", *dir)
	if *dir == "" {
		log.Error("shim needs --state-dir")
		return 2
	}
	var ready *os.File
	if v := os.Getenv("BERTH_SHIM_READY_FD"); v != "" {
		if fd, err := strconv.Atoi(v); err == nil {
			ready = os.NewFile(uintptr(fd), "ready")
		}
		os.Unsetenv("BERTH_SHIM_READY_FD")
	}
	// The shim lives until Delete: the engine's signals and hangups are
	// not its business.
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGPIPE)
	ctx := context.Background()
	if err := serveShim(ctx, log, *dir, ready); err != nil {
		log.Error("shim failed", "err", err)
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
