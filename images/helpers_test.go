package images

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/api/types/jsonstream"

	"github.com/berthvm/berth/images/imagetest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func openStore(t testing.TB, root string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Root: root, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newStore(t testing.TB) *Store {
	t.Helper()
	return openStore(t, filepath.Join(t.TempDir(), "images"))
}

// recorder collects progress messages.
type recorder struct {
	mu   sync.Mutex
	msgs []jsonstream.Message
}

func (r *recorder) fn(m jsonstream.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
}

// statuses returns "id: status" for each message (just the status when
// there is no id).
func (r *recorder) statuses() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.msgs {
		s := m.Status
		if m.Stream != "" {
			s = strings.TrimSpace(m.Stream)
		}
		if m.ID != "" {
			s = m.ID + ": " + s
		}
		out = append(out, s)
	}
	return out
}

func (r *recorder) has(t testing.TB, want string) bool {
	t.Helper()
	for _, s := range r.statuses() {
		if s == want || strings.HasSuffix(s, ": "+want) && !strings.Contains(want, ": ") {
			return true
		}
	}
	return false
}

func (r *recorder) count(status string) int {
	n := 0
	for _, s := range r.statuses() {
		if s == status || strings.HasSuffix(s, ": "+status) {
			n++
		}
	}
	return n
}

// pushed holds a registry with the standard test images.
type pushed struct {
	reg      *imagetest.Registry
	layered  string // ref of imagetest.Layered
	busybox  string // ref of imagetest.Busybox for the host arch
	multi    string // ref of imagetest.MultiArch
	layeredD string // manifest digest of layered
	multiD   string
}

func pushTestImages(t testing.TB, opts imagetest.RegistryOptions) *pushed {
	t.Helper()
	reg := imagetest.StartRegistry(t, opts)
	p := &pushed{reg: reg, layered: reg.Ref("test/layered:v1"), busybox: reg.Ref("test/busybox:latest"), multi: reg.Ref("test/multi:latest")}
	p.layeredD = reg.Push(t, p.layered, imagetest.Layered(t)).String()
	reg.Push(t, p.busybox, imagetest.Busybox(t, hostArch()))
	p.multiD = reg.PushIndex(t, p.multi, imagetest.MultiArch(t)).String()
	return p
}

func readLayerFile(t testing.TB, s *Store, ref string, rel string) (string, bool) {
	t.Helper()
	lowers, err := s.LowerDirs(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	// The merged view without mounting: top-most layer that has it wins
	// (enough for files no whiteout hides).
	for _, l := range lowers {
		if b, err := os.ReadFile(filepath.Join(l, rel)); err == nil {
			return string(b), true
		}
	}
	return "", false
}

func writeFile(dir, name, body string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
}
