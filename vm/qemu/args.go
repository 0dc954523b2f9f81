package qemu

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/berthvm/berth/vm"
)

// Host describes the machine QEMU runs on. With the guest's architecture it
// decides the binary, the accelerator and the CPU model.
type Host struct {
	GOOS string
	Arch vm.Arch // the host CPU's architecture
	KVM  bool    // /dev/kvm opens read-write (Linux only)
}

// files are a QEMU instance's runtime files, all in the instance dir. Their
// names are short because unix socket paths are limited to about 100 bytes.
type files struct {
	QMP     string // QMP control socket
	Serial  string // virtio-serial port berth.0: the guest agent transport
	PID     string // written by QEMU itself
	Log     string // QEMU's own stdout and stderr
	Console string // the guest console, unless the config names another file
	Net     string // QEMU's end of the datagram NIC socket (Unix hosts)
}

// instanceFiles names the files in dir, with goos's path separator, so that
// a command line for another OS can be built (and tested) anywhere.
func instanceFiles(dir, goos string) files {
	join := func(name string) string {
		sep := "/"
		if goos == "windows" {
			sep = `\`
		}
		return strings.TrimRight(dir, sep) + sep + name
	}
	return files{
		QMP:     join("qmp.sock"),
		Serial:  join("serial.sock"),
		PID:     join("qemu.pid"),
		Log:     join("qemu.log"),
		Console: join("serial.log"),
		Net:     join("qnet.sock"),
	}
}

// maxSocketPath is the longest unix socket path the host takes, without the
// terminating NUL: sun_path is 108 bytes on Linux and Windows, 104 on macOS
// and the BSDs.
func maxSocketPath(goos string) int {
	switch goos {
	case "linux", "windows":
		return 107
	}
	return 103
}

// accel is a QEMU accelerator choice.
type accel int

const (
	accelTCG accel = iota
	accelKVM
	accelHVF
	accelWHPX
)

func chooseAccel(guest vm.Arch, h Host) accel {
	if guest != h.Arch {
		return accelTCG
	}
	switch {
	case h.GOOS == "linux" && h.KVM:
		return accelKVM
	case h.GOOS == "darwin":
		return accelHVF
	case h.GOOS == "windows" && guest == vm.X86_64: // WHPX is x86 only
		return accelWHPX
	}
	return accelTCG
}

// tcgCacheMiB is the translated-code cache. QEMU's default (1 GiB, or an
// eighth of host RAM) is sized for big guests; a container VM's hot code
// fits in far less, and the cache is resident once it has been filled.
const tcgCacheMiB = 256

// minMemory is the least memory berth boots a guest with: the kernel, the
// initramfs unpacked into it, and the engine.
const minMemory = 128 << 20

// bootArgs are kernel arguments every QEMU guest gets, before the host
// agent's. loglevel=4 keeps warnings and errors on the console, which stays
// the debugging tool of last resort, but drops the info lines an emulated
// UART prints slowly (0.1-0.2 s of a TCG boot). panic=-1 reboots at once on
// a panic, and -no-reboot turns that into QEMU exiting, so Done fires.
var bootArgs = []string{"loglevel=4", "panic=-1"}

// x86BootArgs keep x86 timekeeping sane under TCG on a loaded host, where
// the clocksource watchdog would otherwise demote the TSC to HPET (an MMIO
// exit per clock read) and the IO-APIC timer check can misfire. They do not
// change boot time measurably.
var x86BootArgs = []string{"tsc=reliable", "no_timer_check"}

// Binary is the QEMU system emulator for a guest architecture.
func Binary(guest vm.Arch) (string, error) {
	switch guest {
	case vm.X86_64:
		return "qemu-system-x86_64", nil
	case vm.AARCH64:
		return "qemu-system-aarch64", nil
	}
	return "", fmt.Errorf("unsupported guest architecture %q", guest)
}

// Args builds QEMU's command line, without the binary, for booting cfg on
// host h. It only validates and formats: it touches no files.
func Args(cfg vm.Config, h Host) ([]string, error) {
	if err := validate(cfg, h); err != nil {
		return nil, err
	}
	f := instanceFiles(cfg.Dir, h.GOOS)
	acc := chooseAccel(cfg.Arch, h)
	var a []string
	add := func(s ...string) { a = append(a, s...) }

	add("-name", opt("berth-"+cfg.Name))
	add("-nodefaults", "-no-user-config", "-nographic")

	switch cfg.Arch {
	case vm.X86_64:
		// q35 over microvm: see the package doc for the numbers. Nothing
		// here needs SMM or VMware's I/O port.
		add("-machine", "q35,smm=off,vmport=off")
	case vm.AARCH64:
		gic := "3"
		if acc == accelKVM {
			gic = "host"
		}
		add("-machine", "virt,gic-version="+gic)
	}
	switch acc {
	case accelKVM:
		add("-accel", "kvm", "-cpu", "host")
	case accelHVF:
		// -cpu max is the host CPU under HVF, and still works when QEMU
		// falls back to TCG (macOS without the hypervisor entitlement,
		// nested VMs), where -cpu host would not.
		add("-accel", "hvf", "-accel", "tcg,thread=multi,tb-size="+strconv.Itoa(tcgCacheMiB), "-cpu", "max")
	case accelWHPX:
		// kernel-irqchip=off: WHPX's in-kernel irqchip loses MSIs on
		// current Windows builds. WHPX takes QEMU's default CPU model.
		add("-accel", "whpx,kernel-irqchip=off", "-accel", "tcg,thread=multi,tb-size="+strconv.Itoa(tcgCacheMiB))
	default:
		add("-accel", "tcg,thread=multi,tb-size="+strconv.Itoa(tcgCacheMiB))
		if cfg.Arch == vm.AARCH64 {
			// pauth-impdef: the architected pointer-authentication hash
			// (QARMA) dominates TCG time in pauth-enabled code.
			add("-cpu", "max,pauth-impdef=on")
		} else {
			// Without ERMS and FSRM the kernel copies and clears memory
			// with rep movsq/stosq, or plain loops, rather than rep
			// movsb/stosb, which TCG runs a byte at a time. Unpacking
			// the initramfs takes half the time, and so does every page
			// the guest clears.
			add("-cpu", "max,-erms,-fsrm")
		}
	}
	add("-smp", strconv.Itoa(cfg.CPUs))
	add("-m", strconv.FormatUint(cfg.MemoryBytes>>20, 10))

	add("-kernel", cfg.Kernel, "-initrd", cfg.Initrd)
	add("-append", strings.Join(cmdline(cfg), " "))
	add("-no-reboot")

	add("-chardev", "file,id=console,path="+opt(serialLog(cfg, f))+",append=on", "-serial", "chardev:console")
	add("-chardev", "socket,id=qmp,path="+opt(f.QMP)+",server=on,wait=off", "-mon", "chardev=qmp,mode=control")
	add("-pidfile", f.PID)

	add("-drive", "if=none,id=data,format=raw,file="+opt(cfg.DataDisk)+",cache=writeback,discard=unmap")
	add("-device", "virtio-blk-pci,drive=data,serial=berth-data")

	add("-device", "virtio-serial-pci,id=vser0")
	add("-chardev", "socket,id=berth0,path="+opt(f.Serial)+",server=on,wait=off")
	add("-device", "virtserialport,bus=vser0.0,chardev=berth0,name=berth.0")

	add("-device", "virtio-rng-pci")

	for i, s := range cfg.Shares {
		// security_model=none: files keep their host owner and mode, and
		// QEMU needs no root. mapped-xattr would hide the real modes behind
		// xattrs; passthrough needs root. multidevs=remap keeps inode
		// numbers unique when a share spans file systems.
		fsdev := "local,id=fs" + strconv.Itoa(i) + ",path=" + opt(s.HostPath) + ",security_model=none,multidevs=remap"
		if s.ReadOnly {
			fsdev += ",readonly=on"
		}
		add("-fsdev", fsdev)
		add("-device", "virtio-9p-pci,fsdev=fs"+strconv.Itoa(i)+",mount_tag="+opt(s.Tag))
	}

	if cfg.NetSocket != "" {
		if h.GOOS == "windows" {
			// Windows has no AF_UNIX datagram sockets: QEMU connects to
			// the host agent's stream socket, and frames carry a length.
			add("-netdev", "stream,id=net0,server=off,addr.type=unix,addr.path="+opt(cfg.NetSocket))
		} else {
			// Datagrams, one Ethernet frame each, sent to the host
			// agent's socket by path. A stream netdev would do, but
			// QEMU 7.2's never reconnects (8.0 adds reconnect=), so a
			// restarted host agent would find the NIC dead until the
			// VM rebooted; a datagram socket needs no connection: the
			// new agent binds the same path and frames flow again.
			add("-netdev", "dgram,id=net0,local.type=unix,local.path="+opt(f.Net)+
				",remote.type=unix,remote.path="+opt(cfg.NetSocket))
		}
		// romfile= leaves out the NIC's iPXE option ROM: the kernel is
		// loaded directly, and the firmware no longer spends a moment
		// of every boot initialising a network boot ROM nobody uses.
		nic := "virtio-net-pci,netdev=net0,romfile="
		if cfg.MAC != "" {
			nic += ",mac=" + cfg.MAC
		}
		add("-device", nic)
	}
	return a, nil
}

// cmdline is the guest kernel's command line: boot speed-ups first, so the
// host agent's arguments override them, then the console and transport this
// backend needs.
func cmdline(cfg vm.Config) []string {
	args := append([]string(nil), bootArgs...)
	console := "console=ttyAMA0"
	if cfg.Arch == vm.X86_64 {
		args = append(args, x86BootArgs...)
		console = "console=ttyS0"
	}
	args = append(args, cfg.Cmdline...)
	return append(args, console, "berth.transport=serial")
}

// serialLog is where the guest console goes: cfg.SerialLog, by default
// serial.log in the instance dir.
func serialLog(cfg vm.Config, f files) string {
	if cfg.SerialLog != "" {
		return cfg.SerialLog
	}
	return f.Console
}

// opt escapes a value inside a QEMU option list, where a comma separates
// options and a doubled comma is a literal one.
func opt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func validate(cfg vm.Config, h Host) error {
	var errs []error
	if _, err := Binary(cfg.Arch); err != nil {
		errs = append(errs, err)
	}
	if cfg.CPUs < 1 {
		errs = append(errs, fmt.Errorf("cpus %d: need at least 1", cfg.CPUs))
	}
	if cfg.MemoryBytes < minMemory {
		errs = append(errs, fmt.Errorf("memory %d MiB: need at least %d MiB", cfg.MemoryBytes>>20, minMemory>>20))
	}
	for _, f := range []struct{ name, value string }{
		{"instance dir", cfg.Dir}, {"kernel", cfg.Kernel}, {"initrd", cfg.Initrd}, {"data disk", cfg.DataDisk},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("no %s", f.name))
		}
	}
	if cfg.MAC != "" && strings.ContainsAny(cfg.MAC, ", ") {
		errs = append(errs, fmt.Errorf("MAC address %q is malformed", cfg.MAC))
	}
	if len(cfg.Shares) > 0 && h.GOOS == "windows" {
		errs = append(errs, errors.New("folder shares need 9p, which QEMU for Windows lacks"))
	}
	tags := make(map[string]bool)
	for _, s := range cfg.Shares {
		switch {
		case s.Tag == "" || s.HostPath == "":
			errs = append(errs, fmt.Errorf("share %q→%q: needs a tag and a host path", s.HostPath, s.Tag))
		case tags[s.Tag]:
			errs = append(errs, fmt.Errorf("share tag %q is used twice", s.Tag))
		}
		tags[s.Tag] = true
	}
	if cfg.Dir != "" {
		f := instanceFiles(cfg.Dir, h.GOOS)
		socks := []string{f.QMP, f.Serial}
		if cfg.NetSocket != "" {
			socks = append(socks, cfg.NetSocket)
			if h.GOOS != "windows" {
				socks = append(socks, f.Net)
			}
		}
		for _, p := range socks {
			if max := maxSocketPath(h.GOOS); len(p) > max {
				errs = append(errs, fmt.Errorf("socket path %s is %d bytes, over the %d a unix socket takes on %s: use a shorter BERTH_HOME", p, len(p), max, h.GOOS))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("building qemu command line: %w", err)
	}
	return nil
}

// NICPeer is the path QEMU binds for its end of the datagram NIC in
// instance directory dir, where the host agent sends the guest's frames.
func NICPeer(dir string) string { return instanceFiles(dir, runtime.GOOS).Net }
