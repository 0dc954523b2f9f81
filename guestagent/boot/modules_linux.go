package boot

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/berthvm/berth/guestagent/boot/kmod"
)

// modules is the System's module loading: the boot set first, the rest
// when asked.
type modules struct {
	ld *kmod.Loader // nil when the list could not be read
	// bootDone is closed once the boot set has been tried.
	bootDone <-chan struct{}

	restOnce sync.Once
	// restDone is closed once every module has been tried.
	restDone chan struct{}
}

// startModules takes over the Loader kmod started at program start (or
// opens one) and adds the rest of the boot set for this command line.
func startModules(ctx context.Context, log *slog.Logger, c Cmdline) (*modules, error) {
	m := &modules{restDone: make(chan struct{})}
	ld, err := kmod.Early()
	if ld == nil && err == nil {
		ld, err = kmod.Open(log)
	}
	if err != nil {
		close(m.restDone)
		m.bootDone = m.restDone
		return m, err
	}
	ld.SetLogger(log)
	m.ld = ld
	m.bootDone = ld.Start(ctx, append(slices.Clone(kmod.Core), bootModules(c)...)...)
	return m, nil
}

// wait waits for the named modules to have been tried (see kmod.Loader.Wait).
func (m *modules) wait(ctx context.Context, names ...string) error {
	if m.ld == nil {
		return nil
	}
	return m.ld.Wait(ctx, names...)
}

// waitDevice waits for a virtio driver and the virtio buses.
func (m *modules) waitDevice(ctx context.Context, driver string) error {
	return m.wait(ctx, append([]string{driver}, virtioTransports...)...)
}

// loadRest starts loading every module the boot set left out, once.
func (m *modules) loadRest(ctx context.Context) {
	m.restOnce.Do(func() {
		if m.ld == nil {
			return
		}
		done := m.ld.StartRest(ctx)
		go func() {
			<-done
			m.ld.LogSummary("kernel modules loaded")
			close(m.restDone)
		}()
	})
}
