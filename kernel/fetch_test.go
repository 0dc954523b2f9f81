package kernel

import (
	"strings"
	"testing"
)

func TestBumpAdvice(t *testing.T) {
	arm, _ := LookupArch("aarch64")
	pkg := arm.KernelPackage() + ":arm64"
	for _, tc := range []struct {
		name       string
		candidates map[string]string
		depends    map[string][]string
		want       string
	}{
		{
			name:       "same ABI rebuilt",
			candidates: map[string]string{pkg: "6.1.200-1"},
			want:       `set PackageVersion = "6.1.200-1" in kernel/version.go`,
		},
		{
			name:       "new ABI",
			candidates: map[string]string{"linux-image-6.1.0-60-arm64:arm64": "6.1.210-1"},
			depends:    map[string][]string{"linux-image-arm64:arm64": {"linux-image-6.1.0-60-arm64:arm64"}},
			want:       `set ABI = "6.1.0-60" and PackageVersion = "6.1.210-1" in kernel/version.go`,
		},
		{
			name: "apt knows nothing",
			want: "bump ABI and PackageVersion in kernel/version.go",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bumpAdvice(arm,
				func(spec string) string { return tc.candidates[spec] },
				func(spec string) []string { return tc.depends[spec] })
			if !strings.Contains(got, tc.want) || !strings.Contains(got, "gone from the mirror") {
				t.Errorf("advice:\n%s\nwant it to contain %q", got, tc.want)
			}
		})
	}
}

func TestDebFileName(t *testing.T) {
	if got, want := debFileName("busybox-static", "1:1.35.0-4", "arm64"), "busybox-static_1%3a1.35.0-4_arm64.deb"; got != want {
		t.Errorf("debFileName = %s, want %s", got, want)
	}
}
