//go:build darwin

package vz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/Code-Hex/vz/v3"

	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/vm"
)

var (
	_ vm.Driver      = (*Driver)(nil)
	_ vm.PowerButton = (*Driver)(nil)
)

// dialRetry is how often a guest port is retried while the guest agent is
// not listening yet.
const dialRetry = 100 * time.Millisecond

// Driver runs one instance's VM in this process under Virtualization.framework.
type Driver struct {
	cfg     vm.Config
	log     *slog.Logger
	netFile *os.File // the VM's end of the network socket pair (cfg.NetFile); nil: no NIC

	mu      sync.Mutex
	machine *vz.VirtualMachine
	socket  *vz.VirtioSocketDevice
	done    chan struct{}
}

// New returns a driver for cfg. It starts nothing. vz runs only guests of
// the host's architecture. A NIC is attached when cfg.NetFile is set (the
// VM end of netpair.New); cfg.NetSocket is for QEMU and ignored here.
func New(cfg vm.Config, log *slog.Logger) (*Driver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Arch.GoArch() != runtime.GOARCH {
		return nil, fmt.Errorf("vz runs %s guests on this host, not %s: use the qemu driver", runtime.GOARCH, cfg.Arch)
	}
	if cfg.CPUs < 1 || cfg.MemoryBytes == 0 {
		return nil, fmt.Errorf("vz vm %s: needs cpus and memory", cfg.Name)
	}
	return &Driver{cfg: cfg, log: log.With("vm", "vz"), netFile: cfg.NetFile, done: make(chan struct{})}, nil
}

// Name is "vz".
func (d *Driver) Name() string { return "vz" }

// Done is closed when the VM stops.
func (d *Driver) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.done
}

// Running reports whether the VM is started and not yet stopped.
func (d *Driver) Running() bool {
	d.mu.Lock()
	m := d.machine
	d.mu.Unlock()
	if m == nil {
		return false
	}
	return !stopped(m.State())
}

func stopped(s vz.VirtualMachineState) bool {
	return s == vz.VirtualMachineStateStopped || s == vz.VirtualMachineStateError
}

// Start boots the VM and returns once vz reports it started.
func (d *Driver) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.machine != nil {
		return fmt.Errorf("starting vm %s: already started", d.cfg.Name)
	}
	config, err := d.configuration()
	if err != nil {
		return fmt.Errorf("starting vm %s: %w", d.cfg.Name, err)
	}
	machine, err := vz.NewVirtualMachine(config)
	if err != nil {
		return fmt.Errorf("starting vm %s: %w", d.cfg.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("starting vm %s: %w", d.cfg.Name, err)
	}
	if err := machine.Start(); err != nil {
		return fmt.Errorf("starting vm %s: %w", d.cfg.Name, err)
	}
	sockets := machine.SocketDevices()
	if len(sockets) == 0 {
		machine.Stop()
		return fmt.Errorf("starting vm %s: vz made no vsock device", d.cfg.Name)
	}
	if isClosed(d.done) {
		d.done = make(chan struct{})
	}
	d.machine, d.socket = machine, sockets[0]
	go d.watch(machine, d.done)
	d.log.Info("vz vm started")
	return nil
}

// watch closes done when machine stops, and forgets it.
func (d *Driver) watch(machine *vz.VirtualMachine, done chan struct{}) {
	for state := range machine.StateChangedNotify() {
		d.log.Debug("vz vm state", "state", state.String())
		// A queued Stopped from before the start is not the end: trust the
		// machine's state now.
		if stopped(state) && stopped(machine.State()) {
			break
		}
	}
	d.log.Info("vz vm stopped", "state", machine.State().String())
	d.mu.Lock()
	if d.machine == machine {
		d.machine, d.socket = nil, nil
	}
	d.mu.Unlock()
	close(done)
}

// configuration is the vz machine for d.cfg.
func (d *Driver) configuration() (*vz.VirtualMachineConfiguration, error) {
	cfg := d.cfg
	cmdline := append([]string{"loglevel=4", "panic=-1"}, cfg.Cmdline...)
	cmdline = append(cmdline, "console=hvc0", "berth.transport=vsock")
	boot, err := vz.NewLinuxBootLoader(cfg.Kernel, vz.WithCommandLine(strings.Join(cmdline, " ")), vz.WithInitrd(cfg.Initrd))
	if err != nil {
		return nil, fmt.Errorf("loading the guest kernel: %w", err)
	}
	config, err := vz.NewVirtualMachineConfiguration(boot, uint(cfg.CPUs), cfg.MemoryBytes)
	if err != nil {
		return nil, err
	}

	serialLog := cfg.SerialLog
	if serialLog == "" {
		serialLog = cfg.Dir + "/serial.log"
	}
	if err := appendLine(serialLog, "\n=== berth: vz boot "+time.Now().Format(time.RFC3339)+" ===\n"); err != nil {
		return nil, fmt.Errorf("marking the serial log: %w", err)
	}
	console, err := vz.NewFileSerialPortAttachment(serialLog, true)
	if err != nil {
		return nil, fmt.Errorf("opening the serial log: %w", err)
	}
	serial, err := vz.NewVirtioConsoleDeviceSerialPortConfiguration(console)
	if err != nil {
		return nil, fmt.Errorf("making the console: %w", err)
	}
	config.SetSerialPortsVirtualMachineConfiguration([]*vz.VirtioConsoleDeviceSerialPortConfiguration{serial})

	// Cached with fsync: the host page cache absorbs the guest's small
	// writes, and a guest flush still reaches the disk.
	diskAtt, err := vz.NewDiskImageStorageDeviceAttachmentWithCacheAndSync(cfg.DataDisk, false,
		vz.DiskImageCachingModeCached, vz.DiskImageSynchronizationModeFsync)
	if err != nil {
		return nil, fmt.Errorf("attaching the data disk: %w", err)
	}
	disk, err := vz.NewVirtioBlockDeviceConfiguration(diskAtt)
	if err != nil {
		return nil, fmt.Errorf("attaching the data disk: %w", err)
	}
	config.SetStorageDevicesVirtualMachineConfiguration([]vz.StorageDeviceConfiguration{disk})

	entropy, err := vz.NewVirtioEntropyDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("making the entropy device: %w", err)
	}
	config.SetEntropyDevicesVirtualMachineConfiguration([]*vz.VirtioEntropyDeviceConfiguration{entropy})

	balloon, err := vz.NewVirtioTraditionalMemoryBalloonDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("making the memory balloon: %w", err)
	}
	config.SetMemoryBalloonDevicesVirtualMachineConfiguration([]vz.MemoryBalloonDeviceConfiguration{balloon})

	vsock, err := vz.NewVirtioSocketDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("making the vsock device: %w", err)
	}
	config.SetSocketDevicesVirtualMachineConfiguration([]vz.SocketDeviceConfiguration{vsock})

	var shares []vz.DirectorySharingDeviceConfiguration
	for _, s := range cfg.Shares {
		dev, err := virtiofsShare(s)
		if err != nil {
			return nil, err
		}
		shares = append(shares, dev)
	}
	if dev, err := rosettaShare(d.log); err != nil {
		d.log.Warn("rosetta is not shared", "err", err)
	} else if dev != nil {
		shares = append(shares, dev)
	}
	config.SetDirectorySharingDevicesVirtualMachineConfiguration(shares)

	if d.netFile != nil {
		att, err := vz.NewFileHandleNetworkDeviceAttachment(d.netFile)
		if err != nil {
			return nil, fmt.Errorf("attaching the NIC: %w", err)
		}
		nic, err := vz.NewVirtioNetworkDeviceConfiguration(att)
		if err != nil {
			return nil, fmt.Errorf("attaching the NIC: %w", err)
		}
		mac, err := macAddress(cfg.MAC)
		if err != nil {
			return nil, err
		}
		nic.SetMACAddress(mac)
		config.SetNetworkDevicesVirtualMachineConfiguration([]*vz.VirtioNetworkDeviceConfiguration{nic})
	}

	ok, err := config.Validate()
	if err != nil {
		return nil, fmt.Errorf("validating the vz configuration: %w", err)
	}
	if !ok {
		return nil, errors.New("validating the vz configuration: rejected")
	}
	return config, nil
}

func virtiofsShare(s vm.Share) (vz.DirectorySharingDeviceConfiguration, error) {
	dir, err := vz.NewSharedDirectory(s.HostPath, s.ReadOnly)
	if err != nil {
		return nil, fmt.Errorf("sharing %s: %w", s.HostPath, err)
	}
	single, err := vz.NewSingleDirectoryShare(dir)
	if err != nil {
		return nil, fmt.Errorf("sharing %s: %w", s.HostPath, err)
	}
	dev, err := vz.NewVirtioFileSystemDeviceConfiguration(s.Tag)
	if err != nil {
		return nil, fmt.Errorf("sharing %s as %q: %w", s.HostPath, s.Tag, err)
	}
	dev.SetDirectoryShare(single)
	return dev, nil
}

func macAddress(s string) (*vz.MACAddress, error) {
	if s == "" {
		return vz.NewRandomLocallyAdministeredMACAddress()
	}
	hw, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("NIC MAC address: %w", err)
	}
	return vz.NewMACAddress(hw)
}

// Stop pulls the plug. Stopping a stopped VM is not an error.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	machine, done := d.machine, d.done
	d.mu.Unlock()
	if machine == nil {
		return nil
	}
	if machine.CanStop() {
		if err := machine.Stop(); err != nil {
			return fmt.Errorf("stopping vm %s: %w", d.cfg.Name, err)
		}
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping vm %s: %w", d.cfg.Name, ctx.Err())
	}
}

// PressPowerButton asks the guest to shut down.
func (d *Driver) PressPowerButton(ctx context.Context) error {
	d.mu.Lock()
	machine := d.machine
	d.mu.Unlock()
	if machine == nil {
		return vm.ErrNotRunning
	}
	ok, err := machine.RequestStop()
	if err != nil {
		return fmt.Errorf("pressing the power button of vm %s: %w", d.cfg.Name, err)
	}
	if !ok {
		return fmt.Errorf("pressing the power button of vm %s: refused in state %s", d.cfg.Name, machine.State())
	}
	return nil
}

// Transport dials guest ports over virtio-vsock. A dial waits, within its
// context, for the VM to start and the guest agent to listen.
//
// vz's connections have no CloseWrite (their unix socket is not
// exported), so transport.Proxy closes both ways where a half-close
// would do: see the README's known gap on vz.
func (d *Driver) Transport() transport.Dialer {
	return transport.DialerFunc(d.dialPort)
}

func (d *Driver) dialPort(ctx context.Context, port uint32) (net.Conn, error) {
	for {
		d.mu.Lock()
		socket := d.socket
		d.mu.Unlock()
		var err error
		if socket != nil {
			var conn net.Conn
			conn, err = connect(ctx, socket, port)
			if err == nil {
				return conn, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dialing guest port %d: %w", port, errors.Join(ctx.Err(), err))
		case <-time.After(dialRetry):
		}
	}
}

// connect runs vz's Connect, which takes no context, and gives up on it
// when ctx ends; a connection that arrives later is closed.
func connect(ctx context.Context, socket *vz.VirtioSocketDevice, port uint32) (net.Conn, error) {
	type result struct {
		conn *vz.VirtioSocketConnection
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := socket.Connect(port)
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func appendLine(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, s)
	return errors.Join(err, f.Close())
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
