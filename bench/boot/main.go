// Command boot is the boot benchmark: the time from "berth start" to the
// guest agent answering, side by side in one run with the floor, which is
// the same QEMU command line booting the same kernel into a static init
// that powers off at once. It also reports the guest agent's idle RSS and
// the guest's used memory after boot.
//
// Three reference floors boot in the same run: the same init written in
// Go; a Go init that links gRPC and the control API; and a C init that
// loads the kernel modules berth loads before it answers and mounts an
// ext4 data disk. They are not the goal's peer. They show what any agent
// pays, under the same QEMU settings, for the Go runtime, for gRPC's
// packages, and for the modules of Debian's kernel and the disk.
//
//	go run ./bench/boot [-runs 5] [-arch x86_64]
//
// It needs out/bin/berth and the guest bundle (make build guest), gcc (and
// aarch64-linux-gnu-gcc for -arch aarch64) and QEMU.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/berthvm/berth/bench/internal/benchutil"
	"github.com/berthvm/berth/guestagent/boot/kmod"
	"github.com/berthvm/berth/hostagent"
	"github.com/berthvm/berth/hostagent/instance"
	"github.com/berthvm/berth/kernel"
	"github.com/berthvm/berth/kernel/initramfs"
	"github.com/berthvm/berth/vm"
	"github.com/berthvm/berth/vm/qemu"
)

func main() {
	runs := flag.Int("runs", 5, "boots of each kind; the median is reported")
	arch := flag.String("arch", "x86_64", "guest architecture: x86_64 or aarch64")
	memory := flag.String("memory", "1GiB", "guest memory")
	cpus := flag.Int("cpus", 2, "guest CPUs")
	flag.Parse()
	if err := run(*runs, *arch, *memory, *cpus); err != nil {
		fmt.Fprintln(os.Stderr, "boot bench:", err)
		os.Exit(1)
	}
}

func run(runs int, arch, memory string, cpus int) error {
	root, err := benchutil.RepoRoot()
	if err != nil {
		return err
	}
	berth := filepath.Join(root, "out", "bin", "berth")
	if _, err := os.Stat(berth); err != nil {
		return fmt.Errorf("%s is missing: run \"make build guest\"", berth)
	}
	kern, berthInitrd, err := kernel.Find(arch)
	if err != nil {
		return err
	}
	mem, err := instance.ParseSize(memory)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "bboot")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	floorInitrd, err := buildFloor(root, work, arch)
	if err != nil {
		return err
	}
	var refs []refFloor
	for _, r := range []struct{ name, pkg string }{
		{"Go init", "./bench/boot/floor/goinit"},
		{"Go init linking gRPC", "./bench/boot/floor/grpcinit"},
	} {
		initrd, err := buildGoFloor(root, work, arch, r.pkg)
		if err != nil {
			return err
		}
		refs = append(refs, refFloor{name: r.name, initrd: initrd})
	}
	modInitrd, err := buildModFloor(root, work, arch, berthInitrd)
	if err != nil {
		return err
	}
	refs = append(refs, refFloor{name: "C init loading modules", initrd: modInitrd, disk: true})

	// The instance both sides boot with: berth through its CLI, the floor
	// through the same QEMU command line with the floor's initrd.
	home := filepath.Join(work, "home")
	inst, err := instance.New(home, "bench")
	if err != nil {
		return err
	}
	cfg := instance.DefaultConfig()
	cfg.Arch, cfg.CPUs, cfg.Memory, cfg.Disk = arch, cpus, mem, 4<<30
	if err := inst.Create(cfg); err != nil {
		return err
	}
	env := append(os.Environ(), "BERTH_HOME="+home)
	berthCmd := func(args ...string) ([]byte, error) {
		c := exec.Command(berth, args...)
		c.Env = env
		return c.CombinedOutput()
	}
	fmt.Printf("boot benchmark: %s guest, %d CPUs, %s, kernel %s, accelerator %s\n",
		arch, cpus, cfg.Memory, kern, accelName(arch))

	// The first boot formats the data disk: report it, but not in the median.
	t := time.Now()
	if out, err := berthCmd("start", "bench"); err != nil {
		return fmt.Errorf("first start: %v\n%s", err, out)
	}
	firstBoot := time.Since(t)
	berthCmd("stop", "bench")

	var floor, berthT []time.Duration
	for i := 0; i < runs; i++ {
		d, err := bootFloor(work, inst, cfg, kern, floorInitrd, false)
		if err != nil {
			return err
		}
		floor = append(floor, d)
		line := fmt.Sprintf("  run %d: floor %6.2fs", i+1, d.Seconds())
		for j := range refs {
			d, err := bootFloor(work, inst, cfg, kern, refs[j].initrd, refs[j].disk)
			if err != nil {
				return fmt.Errorf("%s: %w", refs[j].name, err)
			}
			refs[j].times = append(refs[j].times, d)
			line += fmt.Sprintf("   %s %6.2fs", refs[j].name, d.Seconds())
		}

		t := time.Now()
		if out, err := berthCmd("start", "bench"); err != nil {
			return fmt.Errorf("start: %v\n%s", err, out)
		}
		berthT = append(berthT, time.Since(t))
		if i < runs-1 {
			berthCmd("stop", "bench")
		}
		fmt.Printf("%s   berth %6.2fs\n", line, berthT[i].Seconds())
	}

	// Idle figures, after the guest settles.
	time.Sleep(5 * time.Second)
	status, _ := berthCmd("exec", "bench", "--", "cat", "/proc/1/status")
	meminfo, _ := berthCmd("exec", "bench", "--", "cat", "/proc/meminfo")
	berthCmd("stop", "bench")

	fm, bm := benchutil.Median(floor), benchutil.Median(berthT)
	rss := field(status, "VmRSS")
	total, avail := field(meminfo, "MemTotal"), field(meminfo, "MemAvailable")
	fmt.Println()
	fmt.Printf("%-42s %10s\n", "measure", "value")
	fmt.Printf("%-42s %9.2fs\n", "floor: kernel to trivial init (median)", fm.Seconds())
	fmt.Printf("%-42s %9.2fs\n", "berth: start to agent answering (median)", bm.Seconds())
	fmt.Printf("%-42s %9.2fs   (goal: at most 0.5s)\n", "berth overhead over the floor", (bm - fm).Seconds())
	fmt.Printf("%-42s %9.2fx   (goal: at most 1.2x)\n", "ratio berth / floor", bm.Seconds()/fm.Seconds())
	for _, r := range refs {
		rm := benchutil.Median(r.times)
		fmt.Printf("%-42s %9.2fs   (+%.2fs over the floor; berth is +%.2fs over it)\n",
			"reference: "+r.name+" (median)", rm.Seconds(), (rm - fm).Seconds(), (bm - rm).Seconds())
	}
	fmt.Printf("%-42s %9.2fs\n", "berth first boot (formats the data disk)", firstBoot.Seconds())
	fmt.Printf("%-42s %8.1fMiB  (goal: under 20 MiB)\n", "guest agent idle RSS", float64(rss)/1024)
	fmt.Printf("%-42s %8.1fMiB of %.0fMiB\n", "guest memory used after boot", float64(total-avail)/1024, float64(total)/1024)
	return nil
}

func accelName(arch string) string {
	a, _ := vm.ArchFromGo(goarch())
	if _, err := os.Stat("/dev/kvm"); err == nil && string(a) == arch {
		return "kvm"
	}
	return "tcg"
}

// buildFloor compiles the trivial init and packs it as an initrd with just
// /init and /dev/console.
func buildFloor(root, work, arch string) (string, error) {
	bin, err := compileInit(root, work, arch, "init.c")
	if err != nil {
		return "", err
	}
	return packFloor(work, bin, "floor.cpio")
}

// compileInit builds bench/boot/floor/SRC static for arch into work.
func compileInit(root, work, arch, src string) (string, error) {
	cc := "gcc"
	if arch == "aarch64" && goarch() != "arm64" {
		cc = "aarch64-linux-gnu-gcc"
	}
	bin := filepath.Join(work, strings.TrimSuffix(src, ".c"))
	out, err := exec.Command(cc, "-static", "-O2", "-o", bin, filepath.Join(root, "bench", "boot", "floor", src)).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("compiling %s with %s: %v\n%s", src, cc, err, out)
	}
	return bin, nil
}

// packFloor packs bin as an initrd with just /init and /dev/console.
func packFloor(work, bin, name string) (string, error) {
	a := initramfs.New()
	for _, step := range []error{
		a.AddDir("/dev", 0o755),
		a.AddCharDev("/dev/console", 0o600, 5, 1),
		a.AddFile("/init", 0o755, bin),
	} {
		if step != nil {
			return "", step
		}
	}
	return writeInitrd(a, filepath.Join(work, name))
}

// writeInitrd writes a as an uncompressed initrd at path.
func writeInitrd(a *initramfs.Archive, path string) (string, error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := a.Write(f, initramfs.Compression("")); err != nil {
		return "", err
	}
	return path, nil
}

// refFloor is a reference floor and its boot times.
type refFloor struct {
	name   string
	initrd string
	disk   bool // boots with an ext4 data disk, which it mounts
	times  []time.Duration
}

// buildGoFloor builds the Go program pkg static for arch and packs it as
// an initrd the way buildFloor packs the C init.
func buildGoFloor(root, work, arch, pkg string) (string, error) {
	goArch := "amd64"
	if arch == "aarch64" {
		goArch = "arm64"
	}
	bin := filepath.Join(work, filepath.Base(pkg))
	c := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
	c.Dir = root
	c.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goArch)
	if out, err := c.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v\n%s", pkg, err, out)
	}
	return packFloor(work, bin, filepath.Base(pkg)+".cpio")
}

// buildModFloor packs modinit.c with the kernel modules berth loads before
// its agent answers (kmod.Core and virtio_net, with their dependencies),
// taken from berth's own initrd, in the order of its module list.
func buildModFloor(root, work, arch, berthInitrd string) (string, error) {
	bin, err := compileInit(root, work, arch, "modinit.c")
	if err != nil {
		return "", err
	}
	f, err := os.Open(berthInitrd)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var list []byte
	files := map[string][]byte{} // lib/modules/<release>/... -> content
	r := cpio.NewReader(f)
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", berthInitrd, err)
		}
		name := strings.TrimPrefix(h.Name, "/")
		switch {
		case name == strings.TrimPrefix(kmod.ListPath, "/"):
			list, err = io.ReadAll(r)
		case strings.HasPrefix(name, "lib/modules/") && strings.HasSuffix(name, ".ko"):
			files[name], err = io.ReadAll(r)
		}
		if err != nil {
			return "", err
		}
	}
	var release string
	for name := range files {
		release = strings.SplitN(name, "/", 4)[2]
		break
	}
	if list == nil || release == "" {
		return "", fmt.Errorf("%s holds no module list or modules", berthInitrd)
	}
	// Two lists, loaded at once: ext4's chain, and the rest.
	disk, err := moduleClosure(string(list), []string{"ext4"})
	if err != nil {
		return "", err
	}
	all, err := moduleClosure(string(list), append(slices.Clone(kmod.Core), "virtio_net"))
	if err != nil {
		return "", err
	}
	rest := slices.DeleteFunc(all, func(m string) bool { return slices.Contains(disk, m) })
	a := initramfs.New()
	for _, step := range []error{a.AddDir("/dev", 0o755), a.AddCharDev("/dev/console", 0o600, 5, 1), a.AddDir("/mnt", 0o755)} {
		if step != nil {
			return "", step
		}
	}
	for i, mods := range [][]string{disk, rest} {
		var paths strings.Builder
		for _, m := range mods {
			p := path.Join("lib/modules", release, m)
			data, ok := files[p]
			if !ok {
				return "", fmt.Errorf("%s: %s is listed but missing", berthInitrd, p)
			}
			if err := a.AddBytes("/"+p, 0o644, data); err != nil {
				return "", err
			}
			paths.WriteString("/" + p + "\n")
		}
		if err := a.AddBytes(fmt.Sprintf("/modules.%d", i), 0o644, []byte(paths.String())); err != nil {
			return "", err
		}
	}
	if err := a.AddFile("/init", 0o755, bin); err != nil {
		return "", err
	}
	return writeInitrd(a, filepath.Join(work, "modfloor.cpio"))
}

// moduleClosure returns the modules of a module list (see kmod.ListPath)
// that the named ones need, themselves included, in the list's order.
func moduleClosure(list string, names []string) ([]string, error) {
	var order []string
	deps := map[string][]string{}
	byName := map[string]string{}
	prev := ""
	for _, line := range strings.Split(list, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, after, explicit := strings.Cut(line, ":")
		file = strings.TrimSpace(file)
		if explicit {
			deps[file] = strings.Fields(after)
		} else if prev != "" {
			deps[file] = []string{prev}
		}
		order = append(order, file)
		byName[strings.ReplaceAll(strings.TrimSuffix(path.Base(file), ".ko"), "-", "_")] = file
		prev = file
	}
	need := map[string]bool{}
	var visit func(string)
	visit = func(f string) {
		if need[f] {
			return
		}
		need[f] = true
		for _, d := range deps[f] {
			visit(d)
		}
	}
	for _, n := range names {
		f, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("module %s is not in the guest bundle's list", n)
		}
		visit(f)
	}
	var out []string
	for _, f := range order {
		if need[f] {
			out = append(out, f)
		}
	}
	return out, nil
}

// bootFloor runs QEMU with berth's command line and the floor initrd until
// the floor init powers it off.
func bootFloor(work string, inst *instance.Instance, cfg *instance.Config, kern, floorInitrd string, ext4 bool) (time.Duration, error) {
	dir, err := os.MkdirTemp(work, "f")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	vcfg := hostagent.VMConfig(inst, cfg, kern, floorInitrd)
	vcfg.Dir = dir
	vcfg.DataDisk = filepath.Join(dir, "data.img")
	vcfg.SerialLog = filepath.Join(dir, "serial.log")
	// The same NIC as berth's, attached to a socket nobody serves: the
	// command line stays the same, and the floor never uses the network.
	vcfg.NetSocket = filepath.Join(dir, "net.sock")
	if err := vm.CreateDataDisk(vcfg.DataDisk, 1<<30); err != nil {
		return 0, err
	}
	if ext4 {
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", vcfg.DataDisk).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("formatting the floor's data disk: %v\n%s", err, out)
		}
	}
	args, err := qemu.Args(vcfg, qemu.DetectHost())
	if err != nil {
		return 0, err
	}
	bin, err := qemu.Binary(vcfg.Arch)
	if err != nil {
		return 0, err
	}
	// A floor boots in seconds even under TCG; one that has not powered
	// off after a minute never will.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	t := time.Now()
	if err := c.Run(); err != nil {
		serial, _ := os.ReadFile(vcfg.SerialLog)
		return 0, fmt.Errorf("floor boot after %.1fs: %v\n%s\nits console:\n%s", time.Since(t).Seconds(), err, stderr.String(), serial)
	}
	d := time.Since(t)
	serial, _ := os.ReadFile(vcfg.SerialLog)
	if !bytes.Contains(serial, []byte("reboot: Power down")) {
		return 0, fmt.Errorf("the floor VM exited without powering down; its console:\n%s", serial)
	}
	if ext4 && !bytes.Contains(serial, []byte("floor: data disk mounted")) {
		return 0, fmt.Errorf("the floor VM did not mount its data disk; its console:\n%s", serial)
	}
	return d, nil
}

// field reads "Name:   123 kB" from /proc-style text, in kB.
func field(text []byte, name string) int64 {
	for _, l := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(l, name+":") {
			f := strings.Fields(l[len(name)+1:])
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
