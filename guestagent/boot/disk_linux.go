package boot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// StateDir holds all the guest's persistent state: the data disk is
	// mounted here (or it stays on the tmpfs root when there is none).
	StateDir = "/var/lib/berth"
	// dataDisk is the first virtio-blk disk: the instance's data.img.
	dataDisk = "/dev/vda"
	mke2fs   = "/sbin/mke2fs"
	// ext4 (and ext2/3) keep s_magic 56 bytes into the superblock, which
	// starts at byte 1024.
	extMagicOffset = 1024 + 56
	extMagic       = 0xEF53
)

// hasExtSuperblock reads the ext2/3/4 magic straight from the device; a
// device too small to hold one has none.
func hasExtSuperblock(r io.ReaderAt) (bool, error) {
	var b [2]byte
	_, err := r.ReadAt(b[:], extMagicOffset)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading superblock: %w", err)
	}
	return binary.LittleEndian.Uint16(b[:]) == extMagic, nil
}

// waitForFile waits until path exists or the timeout passes.
func waitForFile(ctx context.Context, path string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// virtioBlkBound tells whether the virtio_blk driver has a device: then
// the disk's node is coming, if it is not there yet.
func virtioBlkBound() bool {
	m, _ := filepath.Glob("/sys/bus/virtio/drivers/virtio_blk/virtio*")
	return len(m) > 0
}

// mke2fsArgs format the data disk. The disk is a fresh sparse file, all
// zeros: lazy_itable_init and lazy_journal_init skip zeroing what already
// reads as zeros (the kernel finishes the inode tables in the background
// after the mount), and nodiscard skips discarding blocks that were never
// written. The journal stays.
var mke2fsArgs = []string{"-t", "ext4", "-F", "-q", "-L", "berth-data",
	"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"}

// setupDisk mounts the data disk at StateDir, formatting it first when it
// has no ext superblock: a fresh data.img is all zeros. A disk with a
// superblock is never formatted, even when mounting it fails. Without a
// disk the state lives on the tmpfs root and is lost at power-off. It
// returns the mounted device, or "".
func (s *System) setupDisk(ctx context.Context) (string, error) {
	log := s.log
	if err := os.MkdirAll(StateDir, 0o711); err != nil {
		return "", fmt.Errorf("creating %s: %w", StateDir, err)
	}
	if err := s.modules.waitDevice(ctx, "virtio_blk"); err != nil {
		log.Warn("virtio_blk did not load; looking for the disk anyway", "err", err)
	}
	// virtio_blk probes its devices while it loads, so a disk that is not
	// there by now is only worth waiting for when the driver has one.
	wait := 50 * time.Millisecond
	if virtioBlkBound() {
		wait = 2 * time.Second
	}
	if !waitForFile(ctx, dataDisk, wait) {
		log.Warn("no data disk; state lives in memory and is lost at power-off", "device", dataDisk)
		return "", nil
	}
	f, err := os.Open(dataDisk)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", dataDisk, err)
	}
	formatted, err := hasExtSuperblock(f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("checking %s: %w", dataDisk, err)
	}
	if !formatted {
		start := time.Now()
		if err := s.modules.waitDevice(ctx, "virtio_rng"); err != nil {
			log.Debug("virtio_rng did not load", "err", err)
		}
		seedRandom(ctx, log)
		cmd := exec.Command(mke2fs, append(append([]string(nil), mke2fsArgs...), dataDisk)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		if err := s.Reaper.Start(cmd); err != nil {
			return "", fmt.Errorf("starting mke2fs: %w", err)
		}
		st, err := s.Reaper.Wait(ctx, cmd)
		if err != nil {
			return "", fmt.Errorf("waiting for mke2fs: %w", err)
		}
		if st.Code != 0 {
			return "", fmt.Errorf("formatting %s: mke2fs: %v", dataDisk, st)
		}
		s.formatted = true
		log.Info("formatted data disk", "device", dataDisk, "took", since(start))
	}
	if err := s.modules.wait(ctx, "ext4"); err != nil {
		log.Warn("ext4 did not load; mounting anyway", "err", err)
	}
	if err := unix.Mount(dataDisk, StateDir, "ext4", unix.MS_NOATIME, ""); err != nil {
		return "", fmt.Errorf("mounting %s on %s: %w", dataDisk, StateDir, err)
	}
	return dataDisk, nil
}

// seedRandom waits until the kernel's random generator is initialized.
// With virtio-rng that is at once. Without a hardware source (no
// virtio-rng, no RDRAND under TCG) the kernel may stay uninitialized for
// minutes, and programs that ask without blocking, like mke2fs's libuuid,
// fall back to slow paths: about a second per UUID, three seconds per
// mke2fs. One blocking getrandom makes the kernel gather jitter entropy
// instead, about a second under TCG. It is only done before mke2fs,
// because that spinning competes with the rest of the boot.
func seedRandom(ctx context.Context, log *slog.Logger) {
	var b [1]byte
	if _, err := unix.Getrandom(b[:], unix.GRND_NONBLOCK); err == nil {
		return
	}
	t := time.Now()
	done := make(chan error, 1)
	go func() {
		for {
			_, err := unix.Getrandom(b[:], 0)
			if !errors.Is(err, unix.EINTR) {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			log.Warn("waiting for the kernel random generator", "err", err)
			return
		}
		log.Info("kernel random generator ready", "waited", since(t))
	case <-time.After(10 * time.Second):
		log.Warn("kernel random generator still not ready; going on")
	case <-ctx.Done():
	}
}
