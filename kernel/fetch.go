package kernel

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// fetchKernel downloads and extracts the pinned linux-image package and
// returns the extracted tree.
func fetchKernel(ctx context.Context, d *debs, a Arch, workDir string) (string, error) {
	deb, err := d.download(ctx, a.KernelPackage(), PackageVersion, a.Deb)
	if errors.Is(err, errNotOnMirror) {
		return "", fmt.Errorf("%w\n%s", err, bumpAdvice(a,
			func(spec string) string { return aptPolicyCandidate(ctx, spec) },
			func(spec string) []string { return aptDepends(ctx, spec) }))
	}
	if err != nil {
		return "", err
	}
	dir := filepath.Join(workDir, "kernel")
	if err := d.extract(ctx, dir, deb); err != nil {
		return "", err
	}
	return dir, nil
}

// bumpAdvice says which constant to change when the pinned kernel left the
// mirror: Debian security updates either rebuild the same ABI (a new
// PackageVersion) or move to a new ABI (a new package name). candidate and
// depends answer like apt-cache policy and apt-cache depends.
func bumpAdvice(a Arch, candidate func(spec string) string, depends func(spec string) []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "the pinned kernel %s=%s is gone from the mirror (try apt-get update first).\n", a.KernelPackage(), PackageVersion)
	if c := candidate(a.KernelPackage() + ":" + a.Deb); c != "" {
		fmt.Fprintf(&b, "apt-cache policy %s: candidate %s; set PackageVersion = %q in kernel/version.go", a.KernelPackage(), c, c)
		return b.String()
	}
	meta := "linux-image-" + a.Flavor + ":" + a.Deb
	for _, dep := range depends(meta) {
		pkg := strings.TrimSuffix(dep, ":"+a.Deb)
		abi, ok := strings.CutPrefix(pkg, "linux-image-")
		if !ok || !strings.HasSuffix(abi, "-"+a.Flavor) {
			continue
		}
		abi = strings.TrimSuffix(abi, "-"+a.Flavor)
		c := candidate(pkg + ":" + a.Deb)
		fmt.Fprintf(&b, "%s now depends on %s (candidate %s); set ABI = %q and PackageVersion = %q in kernel/version.go", meta, pkg, c, abi, c)
		return b.String()
	}
	fmt.Fprintf(&b, "apt knows no %s; check apt-cache policy 'linux-image-*-%s' and bump ABI and PackageVersion in kernel/version.go", a.KernelPackage(), a.Flavor)
	return b.String()
}
