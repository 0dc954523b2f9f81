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
	"time"

	"github.com/berthvm/berth/guestagent/reaper"
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
		time.Sleep(10 * time.Millisecond)
	}
}

// setupDisk mounts the data disk at StateDir, formatting it first when it
// has no ext superblock: a fresh data.img is all zeros. A disk with a
// superblock is never formatted, even when mounting it fails. Without a
// disk the state lives on the tmpfs root and is lost at power-off. It
// returns the mounted device, or "".
func setupDisk(ctx context.Context, log *slog.Logger, r *reaper.Reaper) (string, error) {
	if err := os.MkdirAll(StateDir, 0o711); err != nil {
		return "", fmt.Errorf("creating %s: %w", StateDir, err)
	}
	if !waitForFile(ctx, dataDisk, 2*time.Second) {
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
		seedRandom(ctx, log)
		cmd := exec.Command(mke2fs, "-t", "ext4", "-F", "-q", "-L", "berth-data",
			"-E", "lazy_itable_init=1,lazy_journal_init=1", dataDisk)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		if err := r.Start(cmd); err != nil {
			return "", fmt.Errorf("starting mke2fs: %w", err)
		}
		st, err := r.Wait(ctx, cmd)
		if err != nil {
			return "", fmt.Errorf("waiting for mke2fs: %w", err)
		}
		if st.Code != 0 {
			return "", fmt.Errorf("formatting %s: mke2fs: %v", dataDisk, st)
		}
		log.Info("formatted data disk", "device", dataDisk, "took", time.Since(start).Round(time.Millisecond))
	}
	if err := unix.Mount(dataDisk, StateDir, "ext4", unix.MS_NOATIME, ""); err != nil {
		return "", fmt.Errorf("mounting %s on %s: %w", dataDisk, StateDir, err)
	}
	return dataDisk, nil
}
