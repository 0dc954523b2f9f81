package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/berthvm/berth/kernel/initramfs"
	"github.com/berthvm/berth/kernel/modules"
)

// Guest paths that are contracts with the guest agent.
const (
	// ModuleListPath lists the modules to load, one per line, in an order
	// that works when followed one by one: "path: dep-path...", each path
	// relative to /lib/modules/<release>/. The paths after the colon are
	// the modules that must be in before this one (hard and soft
	// dependencies, all listed earlier), so the guest may load the others
	// in parallel.
	ModuleListPath = "/etc/berth/modules"
	// InitPath is where the guest agent goes; the kernel runs it as PID 1.
	InitPath = "/init"
)

// Options configures Build.
type Options struct {
	Arch Arch
	// Agent is the static guest agent binary for Arch; it becomes /init.
	Agent string
	// WorkDir caches downloads and extracted trees between runs
	// (out/build/<arch>).
	WorkDir string
	// OutDir receives kernel and initrd (out/share/berth/guest/<arch>).
	OutDir string
	// Compression of the initrd; None by default, because decompressing
	// costs seconds under TCG.
	Compression initramfs.Compression
	// Log gets progress; nil discards it.
	Log *slog.Logger
}

// Result describes a built bundle.
type Result struct {
	Kernel, Initrd string
	KernelSize     int64
	InitrdSize     int64
	Release        string
	// Modules holds the /etc/berth/modules lines, without the comment.
	Modules []string
}

// Build downloads what it needs with apt-get (Linux with Debian's apt
// only), and writes OutDir/kernel and OutDir/initrd.
func Build(ctx context.Context, o Options) (*Result, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := o.Arch
	log = log.With("arch", a.Name)
	if _, err := LookupArch(a.Name); err != nil {
		return nil, err
	}
	if o.Agent == "" || o.WorkDir == "" || o.OutDir == "" {
		return nil, errors.New("building guest bundle: agent, work and out directories are all required")
	}
	if err := checkStatic(o.Agent, a); err != nil {
		return nil, fmt.Errorf("checking guest agent: %w", err)
	}
	d := &debs{dir: filepath.Join(o.WorkDir, "debs"), log: log}

	log.Info("fetching kernel", "package", a.KernelPackage(), "version", PackageVersion)
	ktree, err := fetchKernel(ctx, d, a, o.WorkDir)
	if err != nil {
		return nil, err
	}
	vmlinuz, err := os.ReadFile(filepath.Join(ktree, "boot", "vmlinuz-"+a.Release()))
	if err != nil {
		return nil, fmt.Errorf("reading kernel image: %w", err)
	}
	img, err := BootImage(a, vmlinuz)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", a.KernelPackage(), err)
	}

	arc := initramfs.New()
	if err := addBase(arc, o.Agent); err != nil {
		return nil, err
	}
	list, err := addModules(ctx, log, arc, a, ktree)
	if err != nil {
		return nil, err
	}

	log.Info("fetching mke2fs", "packages", strings.Join(mke2fsPackages, " "))
	var userDebs []string
	for _, p := range mke2fsPackages {
		f, err := d.download(ctx, p, "", a.Deb)
		if err != nil {
			return nil, err
		}
		userDebs = append(userDebs, f)
	}
	utree := filepath.Join(o.WorkDir, "userland")
	if err := d.extract(ctx, utree, userDebs...); err != nil {
		return nil, err
	}
	if err := stageMke2fs(utree, a, arc); err != nil {
		return nil, err
	}

	log.Info("fetching busybox")
	bb, applets, err := fetchBusybox(ctx, d, a, o.WorkDir)
	if err != nil {
		return nil, err
	}
	links, err := stageBusybox(arc, bb, applets)
	if err != nil {
		return nil, err
	}
	log.Info("staged busybox", "applets", links)

	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating output directory: %w", err)
	}
	res := &Result{
		Kernel:  filepath.Join(o.OutDir, KernelFile),
		Initrd:  filepath.Join(o.OutDir, InitrdFile),
		Release: a.Release(),
		Modules: list,
	}
	if err := writeAtomic(res.Kernel, func(f *os.File) error {
		_, err := f.Write(img)
		return err
	}); err != nil {
		return nil, fmt.Errorf("writing kernel: %w", err)
	}
	if err := writeAtomic(res.Initrd, func(f *os.File) error {
		return arc.Write(f, o.Compression)
	}); err != nil {
		return nil, fmt.Errorf("writing initrd: %w", err)
	}
	for _, f := range []struct {
		path string
		size *int64
	}{{res.Kernel, &res.KernelSize}, {res.Initrd, &res.InitrdSize}} {
		st, err := os.Stat(f.path)
		if err != nil {
			return nil, err
		}
		*f.size = st.Size()
	}
	log.Info("guest bundle ready", "kernel", res.Kernel, "kernel_bytes", res.KernelSize,
		"initrd", res.Initrd, "initrd_bytes", res.InitrdSize, "entries", arc.Len())
	return res, nil
}

// addBase lays out the directories, device nodes and /etc files every
// guest has, and the agent as /init.
func addBase(arc *initramfs.Archive, agent string) error {
	dirs := []struct {
		p    string
		mode fs.FileMode
	}{
		{"/dev", 0o755}, {"/proc", 0o555}, {"/sys", 0o555}, {"/run", 0o755},
		{"/tmp", fs.ModeSticky | 0o777}, {"/etc", 0o755}, {"/mnt", 0o755}, {"/var/lib/berth", 0o755},
		{"/bin", 0o755}, {"/sbin", 0o755}, {"/lib", 0o755}, {"/usr/bin", 0o755},
		{"/usr/sbin", 0o755}, {"/root", 0o700},
	}
	var errs []error
	for _, d := range dirs {
		errs = append(errs, arc.AddDir(d.p, d.mode))
	}
	errs = append(errs,
		// The kernel opens /dev/console for /init's stdio before anything
		// could mount devtmpfs.
		arc.AddCharDev("/dev/console", 0o600, 5, 1),
		arc.AddCharDev("/dev/null", 0o666, 1, 3),
		arc.AddFile(InitPath, 0o755, agent),
		arc.AddBytes("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")),
		arc.AddBytes("/etc/group", 0o644, []byte("root:x:0:\n")),
		arc.AddBytes("/etc/os-release", 0o644, []byte(osRelease)),
		// The agent writes the real file once it knows the network.
		arc.AddSymlink("/etc/resolv.conf", "/run/resolv.conf"),
	)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("laying out initrd: %w", err)
	}
	return nil
}

const osRelease = `NAME="berth"
ID=berth
PRETTY_NAME="berth guest"
HOME_URL="https://github.com/berthvm/berth"
`

// addModules picks the guest's modules from the kernel tree, adds them
// uncompressed and unsigned under /lib/modules/<release>/, and writes the
// load list and a matching modules.dep. It returns the load list.
func addModules(ctx context.Context, log *slog.Logger, arc *initramfs.Archive, a Arch, ktree string) ([]string, error) {
	release := a.Release()
	cfgFile := filepath.Join(ktree, "boot", "config-"+release)
	cf, err := os.Open(cfgFile)
	if err != nil {
		return nil, fmt.Errorf("opening kernel config: %w", err)
	}
	cfg, err := modules.ParseConfig(cf)
	cf.Close()
	if err != nil {
		return nil, err
	}
	modRoot := filepath.Join(ktree, "lib", "modules", release)
	log.Info("reading module graph", "dir", modRoot)
	ix, err := modules.Load(ctx, modRoot)
	if err != nil {
		return nil, fmt.Errorf("reading modules of %s: %w", release, err)
	}
	plan, err := ix.Plan(Wants(a), cfg)
	if err != nil {
		return nil, fmt.Errorf("choosing modules for %s: %w", release, err)
	}
	log.Info("modules chosen", "load", len(plan.Load), "builtin", strings.Join(plan.Builtin, " "))
	if len(plan.Missing) > 0 {
		log.Warn("modules not available (skipped)", "missing", strings.Join(plan.Missing, ", "))
	}

	guestPath := func(p string) string { return strings.TrimSuffix(p, ".xz") }
	unsigned := 0
	for _, m := range plan.Load {
		dst := path.Join("/lib/modules", release, guestPath(m.Path))
		// Decompressed now so the guest needs no decompressor, and
		// unsigned because checking signatures is a good part of the load
		// time under TCG and the guest kernel does not require them.
		data, err := modules.ReadFile(filepath.Join(modRoot, filepath.FromSlash(m.Path)))
		if err != nil {
			return nil, err
		}
		data, stripped, err := modules.StripSignature(data)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", m.Path, err)
		}
		if stripped {
			unsigned++
		}
		if err := arc.AddBytes(dst, 0o644, data); err != nil {
			return nil, err
		}
	}
	log.Debug("module signatures stripped", "modules", unsigned)
	list, lines := moduleList(plan, guestPath)
	if err := errors.Join(
		arc.AddBytes(ModuleListPath, 0o644, list),
		arc.AddBytes(path.Join("/lib/modules", release, "modules.dep"), 0o644, modules.DepFile(plan.Load, guestPath)),
	); err != nil {
		return nil, err
	}
	return lines, nil
}

// moduleList renders the ModuleListPath file for a plan, with each path
// passed through rename (the name the module has in the guest), and
// returns it with its lines, comment left out.
func moduleList(plan *modules.Plan, rename func(string) string) ([]byte, []string) {
	byName := make(map[string]string, len(plan.Load))
	for _, m := range plan.Load {
		byName[m.Name] = rename(m.Path)
	}
	var b bytes.Buffer
	b.WriteString("# Written by mkguest. \"module: modules to load before it\", in an order that\n")
	b.WriteString("# also works one by one. Paths are relative to /lib/modules/<release>/.\n")
	lines := make([]string, 0, len(plan.Load))
	for _, m := range plan.Load {
		line := byName[m.Name] + ":"
		for _, d := range plan.After[m.Name] {
			line += " " + byName[d]
		}
		b.WriteString(line + "\n")
		lines = append(lines, line)
	}
	return b.Bytes(), lines
}

// writeAtomic writes a file through a temporary name, so readers never see
// a half-written kernel or initrd.
func writeAtomic(dst string, write func(*os.File) error) error {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := write(f); err != nil {
		return errors.Join(err, f.Close(), os.Remove(tmp))
	}
	if err := f.Chmod(0o644); err != nil {
		return errors.Join(err, f.Close(), os.Remove(tmp))
	}
	if err := f.Close(); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	if err := os.Rename(tmp, dst); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}
