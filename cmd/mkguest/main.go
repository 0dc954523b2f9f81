// Command mkguest builds the guest bundle (kernel and initrd) for one
// architecture. It is a build tool run by kernel/guest.mk on a Debian
// build host; all the logic lives in package kernel.
//
//	mkguest -arch x86_64 -agent out/build/x86_64/berth-guestagent \
//	        -work out/build/x86_64 -out out/share/berth/guest/x86_64
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"

	"github.com/berthvm/berth/kernel"
	"github.com/berthvm/berth/kernel/initramfs"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkguest:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("mkguest", flag.ExitOnError)
	archName := fs.String("arch", "", "guest architecture: x86_64 or aarch64 (required)")
	agent := fs.String("agent", "", "static guest agent binary for -arch, installed as /init (required)")
	work := fs.String("work", "", "cache for downloaded packages and extracted trees, e.g. out/build/x86_64 (required)")
	out := fs.String("out", "", "directory to write kernel and initrd to, e.g. out/share/berth/guest/x86_64 (required)")
	compress := fs.String("compress", "none", "initrd compression: none or gzip")
	verbose := fs.Bool("v", false, "log debug detail")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: mkguest -arch ARCH -agent PATH -work DIR -out DIR [-compress gzip]

Builds the berth guest bundle: Debian's kernel %s (package %s) as DIR/kernel
(an uncompressed Image on aarch64), and DIR/initrd, a cpio holding the agent
as /init, the modules listed in /etc/berth/modules, mke2fs and busybox.
Packages are fetched with apt-get download and cached in the -work directory.

`, kernel.ABI, kernel.PackageVersion)
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:]) // ExitOnError: Parse exits on bad flags and -help
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *archName == "" || *agent == "" || *work == "" || *out == "" {
		fs.Usage()
		return fmt.Errorf("-arch, -agent, -work and -out are required")
	}
	a, err := kernel.LookupArch(*archName)
	if err != nil {
		return err
	}
	comp, err := initramfs.ParseCompression(*compress)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // progress lines, not a log file
			}
			return a
		},
	}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	_, err = kernel.Build(ctx, kernel.Options{
		Arch:        a,
		Agent:       *agent,
		WorkDir:     *work,
		OutDir:      *out,
		Compression: comp,
		Log:         log,
	})
	return err
}
