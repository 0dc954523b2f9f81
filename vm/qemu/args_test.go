package qemu

import (
	"strings"
	"testing"

	"github.com/berthvm/berth/vm"
)

// argLines groups an argv as one option per line: "-flag value".
func argLines(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			if strings.HasPrefix(a, "-") {
				b.WriteByte('\n')
			} else {
				b.WriteByte(' ')
			}
		}
		b.WriteString(a)
	}
	return b.String()
}

func baseConfig(arch vm.Arch) vm.Config {
	return vm.Config{
		Name:        "default",
		Dir:         "/home/u/.berth/default",
		Arch:        arch,
		CPUs:        2,
		MemoryBytes: 2 << 30,
		DataDisk:    "/home/u/.berth/default/data.img",
		Kernel:      "/usr/share/berth/guest/kernel",
		Initrd:      "/usr/share/berth/guest/initrd",
		Cmdline:     []string{"berth.ip=192.168.127.2/24"},
		SerialLog:   "/home/u/.berth/default/serial.log",
	}
}

func TestArgsGolden(t *testing.T) {
	withExtras := func(c vm.Config) vm.Config {
		c.Shares = []vm.Share{
			{Tag: "home", HostPath: "/home/u"},
			{Tag: "ro,tag", HostPath: "/srv/a,b", ReadOnly: true},
		}
		c.NetSocket = "/home/u/.berth/default/net.sock"
		c.MAC = "52:54:00:aa:bb:cc"
		return c
	}
	amd64Linux := Host{GOOS: "linux", Arch: vm.X86_64}
	tests := []struct {
		name string
		cfg  vm.Config
		host Host
		want string
	}{
		{
			name: "x86_64 tcg",
			cfg:  baseConfig(vm.X86_64),
			host: amd64Linux,
			want: `-name berth-default
-nodefaults
-no-user-config
-nographic
-machine q35,smm=off,vmport=off
-accel tcg,thread=multi,tb-size=256
-cpu max,-erms,-fsrm
-smp 2
-m 2048
-kernel /usr/share/berth/guest/kernel
-initrd /usr/share/berth/guest/initrd
-append loglevel=4 panic=-1 tsc=reliable no_timer_check berth.ip=192.168.127.2/24 console=ttyS0 berth.transport=serial
-no-reboot
-chardev file,id=console,path=/home/u/.berth/default/serial.log,append=on
-serial chardev:console
-chardev socket,id=qmp,path=/home/u/.berth/default/qmp.sock,server=on,wait=off
-mon chardev=qmp,mode=control
-pidfile /home/u/.berth/default/qemu.pid
-drive if=none,id=data,format=raw,file=/home/u/.berth/default/data.img,cache=writeback,discard=unmap
-device virtio-blk-pci,drive=data,serial=berth-data
-device virtio-serial-pci,id=vser0
-chardev socket,id=berth0,path=/home/u/.berth/default/serial.sock,server=on,wait=off
-device virtserialport,bus=vser0.0,chardev=berth0,name=berth.0
-device virtio-rng-pci`,
		},
		{
			name: "x86_64 kvm with shares and nic",
			cfg:  withExtras(baseConfig(vm.X86_64)),
			host: Host{GOOS: "linux", Arch: vm.X86_64, KVM: true},
			want: `-name berth-default
-nodefaults
-no-user-config
-nographic
-machine q35,smm=off,vmport=off
-accel kvm
-cpu host
-smp 2
-m 2048
-kernel /usr/share/berth/guest/kernel
-initrd /usr/share/berth/guest/initrd
-append loglevel=4 panic=-1 tsc=reliable no_timer_check berth.ip=192.168.127.2/24 console=ttyS0 berth.transport=serial
-no-reboot
-chardev file,id=console,path=/home/u/.berth/default/serial.log,append=on
-serial chardev:console
-chardev socket,id=qmp,path=/home/u/.berth/default/qmp.sock,server=on,wait=off
-mon chardev=qmp,mode=control
-pidfile /home/u/.berth/default/qemu.pid
-drive if=none,id=data,format=raw,file=/home/u/.berth/default/data.img,cache=writeback,discard=unmap
-device virtio-blk-pci,drive=data,serial=berth-data
-device virtio-serial-pci,id=vser0
-chardev socket,id=berth0,path=/home/u/.berth/default/serial.sock,server=on,wait=off
-device virtserialport,bus=vser0.0,chardev=berth0,name=berth.0
-device virtio-rng-pci
-fsdev local,id=fs0,path=/home/u,security_model=none,multidevs=remap
-device virtio-9p-pci,fsdev=fs0,mount_tag=home
-fsdev local,id=fs1,path=/srv/a,,b,security_model=none,multidevs=remap,readonly=on
-device virtio-9p-pci,fsdev=fs1,mount_tag=ro,,tag
-netdev dgram,id=net0,local.type=unix,local.path=/home/u/.berth/default/qnet.sock,remote.type=unix,remote.path=/home/u/.berth/default/net.sock
-device virtio-net-pci,netdev=net0,romfile=,mac=52:54:00:aa:bb:cc`,
		},
		{
			name: "aarch64 tcg on amd64 (kvm does not apply)",
			cfg:  baseConfig(vm.AARCH64),
			host: Host{GOOS: "linux", Arch: vm.X86_64, KVM: true},
			want: `-name berth-default
-nodefaults
-no-user-config
-nographic
-machine virt,gic-version=3
-accel tcg,thread=multi,tb-size=256
-cpu max,pauth-impdef=on
-smp 2
-m 2048
-kernel /usr/share/berth/guest/kernel
-initrd /usr/share/berth/guest/initrd
-append loglevel=4 panic=-1 berth.ip=192.168.127.2/24 console=ttyAMA0 berth.transport=serial
-no-reboot
-chardev file,id=console,path=/home/u/.berth/default/serial.log,append=on
-serial chardev:console
-chardev socket,id=qmp,path=/home/u/.berth/default/qmp.sock,server=on,wait=off
-mon chardev=qmp,mode=control
-pidfile /home/u/.berth/default/qemu.pid
-drive if=none,id=data,format=raw,file=/home/u/.berth/default/data.img,cache=writeback,discard=unmap
-device virtio-blk-pci,drive=data,serial=berth-data
-device virtio-serial-pci,id=vser0
-chardev socket,id=berth0,path=/home/u/.berth/default/serial.sock,server=on,wait=off
-device virtserialport,bus=vser0.0,chardev=berth0,name=berth.0
-device virtio-rng-pci`,
		},
		{
			name: "aarch64 kvm on arm64 linux",
			cfg:  baseConfig(vm.AARCH64),
			host: Host{GOOS: "linux", Arch: vm.AARCH64, KVM: true},
			want: `-name berth-default
-nodefaults
-no-user-config
-nographic
-machine virt,gic-version=host
-accel kvm
-cpu host
-smp 2
-m 2048
-kernel /usr/share/berth/guest/kernel
-initrd /usr/share/berth/guest/initrd
-append loglevel=4 panic=-1 berth.ip=192.168.127.2/24 console=ttyAMA0 berth.transport=serial
-no-reboot
-chardev file,id=console,path=/home/u/.berth/default/serial.log,append=on
-serial chardev:console
-chardev socket,id=qmp,path=/home/u/.berth/default/qmp.sock,server=on,wait=off
-mon chardev=qmp,mode=control
-pidfile /home/u/.berth/default/qemu.pid
-drive if=none,id=data,format=raw,file=/home/u/.berth/default/data.img,cache=writeback,discard=unmap
-device virtio-blk-pci,drive=data,serial=berth-data
-device virtio-serial-pci,id=vser0
-chardev socket,id=berth0,path=/home/u/.berth/default/serial.sock,server=on,wait=off
-device virtserialport,bus=vser0.0,chardev=berth0,name=berth.0
-device virtio-rng-pci`,
		},
		{
			name: "aarch64 hvf on darwin arm64 with shares and nic",
			cfg: func() vm.Config {
				c := withExtras(baseConfig(vm.AARCH64))
				c.Dir = "/Users/u/.berth/default"
				c.DataDisk = "/Users/u/.berth/default/data.img"
				c.SerialLog = ""
				c.NetSocket = "/Users/u/.berth/default/net.sock"
				c.CPUs = 4
				c.MemoryBytes = 4 << 30
				return c
			}(),
			host: Host{GOOS: "darwin", Arch: vm.AARCH64},
			want: `-name berth-default
-nodefaults
-no-user-config
-nographic
-machine virt,gic-version=3
-accel hvf
-accel tcg,thread=multi,tb-size=256
-cpu max
-smp 4
-m 4096
-kernel /usr/share/berth/guest/kernel
-initrd /usr/share/berth/guest/initrd
-append loglevel=4 panic=-1 berth.ip=192.168.127.2/24 console=ttyAMA0 berth.transport=serial
-no-reboot
-chardev file,id=console,path=/Users/u/.berth/default/serial.log,append=on
-serial chardev:console
-chardev socket,id=qmp,path=/Users/u/.berth/default/qmp.sock,server=on,wait=off
-mon chardev=qmp,mode=control
-pidfile /Users/u/.berth/default/qemu.pid
-drive if=none,id=data,format=raw,file=/Users/u/.berth/default/data.img,cache=writeback,discard=unmap
-device virtio-blk-pci,drive=data,serial=berth-data
-device virtio-serial-pci,id=vser0
-chardev socket,id=berth0,path=/Users/u/.berth/default/serial.sock,server=on,wait=off
-device virtserialport,bus=vser0.0,chardev=berth0,name=berth.0
-device virtio-rng-pci
-fsdev local,id=fs0,path=/home/u,security_model=none,multidevs=remap
-device virtio-9p-pci,fsdev=fs0,mount_tag=home
-fsdev local,id=fs1,path=/srv/a,,b,security_model=none,multidevs=remap,readonly=on
-device virtio-9p-pci,fsdev=fs1,mount_tag=ro,,tag
-netdev dgram,id=net0,local.type=unix,local.path=/Users/u/.berth/default/qnet.sock,remote.type=unix,remote.path=/Users/u/.berth/default/net.sock
-device virtio-net-pci,netdev=net0,romfile=,mac=52:54:00:aa:bb:cc`,
		},
		{
			name: "x86_64 whpx on windows with nic",
			cfg: func() vm.Config {
				c := baseConfig(vm.X86_64)
				c.Name = "dev"
				c.Dir = `C:\Users\u\.berth\dev`
				c.DataDisk = `C:\Users\u\.berth\dev\data.img`
				c.Kernel = `C:\Program Files\berth\share\berth\guest\x86_64\kernel`
				c.Initrd = `C:\Program Files\berth\share\berth\guest\x86_64\initrd`
				c.SerialLog = `C:\Users\u\.berth\dev\serial.log`
				c.Cmdline = nil
				c.NetSocket = `C:\Users\u\.berth\dev\net.sock`
				return c
			}(),
			host: Host{GOOS: "windows", Arch: vm.X86_64},
			want: `-name berth-dev
-nodefaults
-no-user-config
-nographic
-machine q35,smm=off,vmport=off
-accel whpx,kernel-irqchip=off
-accel tcg,thread=multi,tb-size=256
-smp 2
-m 2048
-kernel C:\Program Files\berth\share\berth\guest\x86_64\kernel
-initrd C:\Program Files\berth\share\berth\guest\x86_64\initrd
-append loglevel=4 panic=-1 tsc=reliable no_timer_check console=ttyS0 berth.transport=serial
-no-reboot
-chardev file,id=console,path=C:\Users\u\.berth\dev\serial.log,append=on
-serial chardev:console
-chardev socket,id=qmp,path=C:\Users\u\.berth\dev\qmp.sock,server=on,wait=off
-mon chardev=qmp,mode=control
-pidfile C:\Users\u\.berth\dev\qemu.pid
-drive if=none,id=data,format=raw,file=C:\Users\u\.berth\dev\data.img,cache=writeback,discard=unmap
-device virtio-blk-pci,drive=data,serial=berth-data
-device virtio-serial-pci,id=vser0
-chardev socket,id=berth0,path=C:\Users\u\.berth\dev\serial.sock,server=on,wait=off
-device virtserialport,bus=vser0.0,chardev=berth0,name=berth.0
-device virtio-rng-pci
-netdev stream,id=net0,server=off,addr.type=unix,addr.path=C:\Users\u\.berth\dev\net.sock
-device virtio-net-pci,netdev=net0,romfile=`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, err := Args(tt.cfg, tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if got := argLines(args); got != tt.want {
				t.Errorf("argv differs.\ngot:\n%s\n\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestArgsInvalid(t *testing.T) {
	long := "/home/u/" + strings.Repeat("d", 100)
	tests := []struct {
		name   string
		mutate func(*vm.Config)
		host   Host
		want   string
	}{
		{name: "no cpus", mutate: func(c *vm.Config) { c.CPUs = 0 }, want: "cpus 0"},
		{name: "little memory", mutate: func(c *vm.Config) { c.MemoryBytes = 64 << 20 }, want: "memory 64 MiB"},
		{name: "bad arch", mutate: func(c *vm.Config) { c.Arch = "riscv64" }, want: "riscv64"},
		{name: "no kernel", mutate: func(c *vm.Config) { c.Kernel = "" }, want: "no kernel"},
		{name: "no disk", mutate: func(c *vm.Config) { c.DataDisk = "" }, want: "no data disk"},
		{name: "no dir", mutate: func(c *vm.Config) { c.Dir = "" }, want: "no instance dir"},
		{name: "socket path too long", mutate: func(c *vm.Config) { c.Dir = long }, want: "over the 107 a unix socket takes on linux"},
		{
			name:   "socket path too long for macOS only",
			mutate: func(c *vm.Config) { c.Dir = "/Users/" + strings.Repeat("d", 85) },
			host:   Host{GOOS: "darwin", Arch: vm.AARCH64},
			want:   "over the 103 a unix socket takes on darwin",
		},
		{name: "net socket too long", mutate: func(c *vm.Config) { c.NetSocket = long + "/net.sock" }, want: "net.sock is"},
		{name: "duplicate tag", mutate: func(c *vm.Config) {
			c.Shares = []vm.Share{{Tag: "a", HostPath: "/x"}, {Tag: "a", HostPath: "/y"}}
		}, want: `tag "a" is used twice`},
		{name: "empty tag", mutate: func(c *vm.Config) { c.Shares = []vm.Share{{HostPath: "/x"}} }, want: "needs a tag"},
		{name: "shares on windows", mutate: func(c *vm.Config) {
			c.Shares = []vm.Share{{Tag: "a", HostPath: `C:\x`}}
		}, host: Host{GOOS: "windows", Arch: vm.X86_64}, want: "9p"},
		{name: "bad mac", mutate: func(c *vm.Config) { c.NetSocket, c.MAC = "/n.sock", "52:54,id=x" }, want: "MAC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(vm.X86_64)
			tt.mutate(&cfg)
			host := tt.host
			if host.GOOS == "" {
				host = Host{GOOS: "linux", Arch: vm.X86_64}
			}
			_, err := Args(cfg, host)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestSocketPathLimitIsExact(t *testing.T) {
	// serial.sock is the longest socket name: a dir that makes it exactly
	// 107 bytes passes on Linux, one byte more fails.
	for _, extra := range []int{0, 1} {
		dir := "/" + strings.Repeat("d", 107-len("/serial.sock")-1+extra)
		cfg := baseConfig(vm.X86_64)
		cfg.Dir = dir
		_, err := Args(cfg, Host{GOOS: "linux", Arch: vm.X86_64})
		if (err != nil) != (extra == 1) {
			t.Errorf("serial.sock path of %d bytes: err %v", len(dir)+len("/serial.sock"), err)
		}
	}
}

func TestChooseAccel(t *testing.T) {
	tests := []struct {
		guest vm.Arch
		host  Host
		want  accel
	}{
		{vm.X86_64, Host{GOOS: "linux", Arch: vm.X86_64, KVM: true}, accelKVM},
		{vm.X86_64, Host{GOOS: "linux", Arch: vm.X86_64}, accelTCG},
		{vm.AARCH64, Host{GOOS: "linux", Arch: vm.X86_64, KVM: true}, accelTCG},
		{vm.AARCH64, Host{GOOS: "linux", Arch: vm.AARCH64, KVM: true}, accelKVM},
		{vm.AARCH64, Host{GOOS: "darwin", Arch: vm.AARCH64}, accelHVF},
		{vm.X86_64, Host{GOOS: "darwin", Arch: vm.AARCH64}, accelTCG},
		{vm.X86_64, Host{GOOS: "darwin", Arch: vm.X86_64}, accelHVF},
		{vm.X86_64, Host{GOOS: "windows", Arch: vm.X86_64}, accelWHPX},
		{vm.AARCH64, Host{GOOS: "windows", Arch: vm.AARCH64}, accelTCG},
		{vm.X86_64, Host{GOOS: "freebsd", Arch: vm.X86_64}, accelTCG},
	}
	for _, tt := range tests {
		if got := chooseAccel(tt.guest, tt.host); got != tt.want {
			t.Errorf("%s guest on %+v: accel %d, want %d", tt.guest, tt.host, got, tt.want)
		}
	}
}

func TestCmdlineOrder(t *testing.T) {
	cfg := baseConfig(vm.X86_64)
	cfg.Cmdline = []string{"loglevel=7", "console=hvc0"}
	got := strings.Join(cmdline(cfg), " ")
	// The host agent's loglevel must come after ours to win; our console
	// and transport come last.
	if !strings.Contains(got, "loglevel=4") || strings.Index(got, "loglevel=7") < strings.Index(got, "loglevel=4") {
		t.Errorf("host agent arguments do not override boot args: %s", got)
	}
	if !strings.HasSuffix(got, "console=ttyS0 berth.transport=serial") {
		t.Errorf("console and transport are not last: %s", got)
	}
}
