package kernel

import (
	"reflect"
	"strings"
	"testing"

	"github.com/berthvm/berth/kernel/modules"
)

func TestModuleList(t *testing.T) {
	plan := &modules.Plan{
		Load: []modules.Module{
			{Name: "jbd2", Path: "kernel/fs/jbd2/jbd2.ko.xz"},
			{Name: "crc32c_intel", Path: "kernel/arch/x86/crypto/crc32c-intel.ko.xz"},
			{Name: "ext4", Path: "kernel/fs/ext4/ext4.ko.xz"},
			{Name: "overlay", Path: "kernel/fs/overlayfs/overlay.ko"},
		},
		After: map[string][]string{"ext4": {"crc32c_intel", "jbd2"}},
	}
	data, lines := moduleList(plan, func(p string) string { return strings.TrimSuffix(p, ".xz") })
	want := []string{
		"kernel/fs/jbd2/jbd2.ko:",
		"kernel/arch/x86/crypto/crc32c-intel.ko:",
		"kernel/fs/ext4/ext4.ko: kernel/arch/x86/crypto/crc32c-intel.ko kernel/fs/jbd2/jbd2.ko",
		"kernel/fs/overlayfs/overlay.ko:",
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	var body []string
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if !strings.HasPrefix(l, "#") {
			body = append(body, l)
		}
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("file body %q, want the lines", body)
	}
}
