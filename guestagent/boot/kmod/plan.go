package kmod

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// ListPath is the bundle's list of kernel modules (written by mkguest, see
// kernel.ModuleListPath). Each line is "path: path...": a module, relative
// to /lib/modules/<release>/, then the modules it must be loaded after,
// all listed earlier. A line without a colon follows the line before it,
// so a plain list of paths loads one by one, in order.
const ListPath = "/etc/berth/modules"

// Core lists the modules every berth guest needs before its agent can
// answer, whatever the kernel command line says: the virtio buses, the
// console driver (the serial transport's port, and the console under vz),
// the data disk with its file system, and the RNG that lets mke2fs start
// at once. Their dependencies come along.
var Core = []string{"virtio_pci", "virtio_mmio", "virtio_console", "virtio_blk", "ext4", "virtio_rng"}

// module is one line of the module list.
type module struct {
	// name is the module name as the kernel spells it: the file name
	// without its extensions, "-" folded to "_".
	name string
	path string
	// after holds the indexes of the modules to load first.
	after []int
	// cost estimates the time loading takes, in any unit (the file size):
	// the loader starts the costliest chains first. Zero counts as one.
	cost int64
}

// plan is the parsed module list.
type plan struct {
	mods   []module
	byName map[string]int
}

// parsePlan reads a module list. Blank lines and #-comments are
// skipped; relative paths are resolved against dir (slash-separated: these
// are guest paths, and path/filepath would delay the early start, see
// Early). A dependency must be
// listed before the module that names it, which also rules out cycles.
func parsePlan(r io.Reader, dir string) (*plan, error) {
	p := &plan{byName: map[string]int{}}
	byPath := map[string]int{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, deps, explicit := strings.Cut(line, ":")
		file = strings.TrimSpace(file)
		if file == "" {
			return nil, fmt.Errorf("module list line %d: no module path", n)
		}
		if _, dup := byPath[file]; dup {
			return nil, fmt.Errorf("module list line %d: %s is listed twice", n, file)
		}
		m := module{name: moduleName(file), path: file}
		if !path.IsAbs(m.path) {
			m.path = path.Join(dir, m.path)
		}
		if explicit {
			for _, d := range strings.Fields(deps) {
				i, ok := byPath[d]
				if !ok {
					return nil, fmt.Errorf("module list line %d: %s must follow %s, which is not listed before it", n, file, d)
				}
				m.after = append(m.after, i)
			}
		} else if len(p.mods) > 0 {
			m.after = []int{len(p.mods) - 1}
		}
		byPath[file] = len(p.mods)
		p.byName[m.name] = len(p.mods)
		p.mods = append(p.mods, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading module list: %w", err)
	}
	return p, nil
}

// moduleName derives the kernel's name for a module from its file name.
func moduleName(file string) string {
	base := path.Base(file)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(base, ".ko"), "-", "_")
}

// closure returns the indexes of the named modules and of all they load
// after, in list order. Names that are not listed (built into the kernel,
// or not in this bundle) are skipped.
func (p *plan) closure(names ...string) []int {
	in := make([]bool, len(p.mods))
	var add func(int)
	add = func(i int) {
		if in[i] {
			return
		}
		in[i] = true
		for _, d := range p.mods[i].after {
			add(d)
		}
	}
	for _, n := range names {
		if i, ok := p.byName[strings.ReplaceAll(n, "-", "_")]; ok {
			add(i)
		}
	}
	var out []int
	for i, ok := range in {
		if ok {
			out = append(out, i)
		}
	}
	return out
}
