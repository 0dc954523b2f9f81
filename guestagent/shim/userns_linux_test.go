package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUserNS(t *testing.T) {
	f := newFixture(t)
	s := f.spec(t, "sh", "-c", "id -u; cat /proc/self/uid_map")
	s.UserNS = true
	// The mapped root must reach the rootfs and own the writable layer,
	// as the engine arranges for userns-remapped containers.
	for _, d := range []string{filepath.Dir(s.Rootfs), s.Upper, s.Work, filepath.Dir(f.lower), f.lower} {
		os.Chmod(d, 0o755)
	}
	os.Chown(s.Upper, userNSBase, userNSBase)
	exit, out, errs := f.run(t, s)
	if exit.Code != 0 {
		t.Fatalf("exit %+v: %s", exit, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "0" || !strings.Contains(lines[1], "100000") {
		t.Errorf("output %q, want uid 0 mapped from 100000", out)
	}
}
