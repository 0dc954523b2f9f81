package modules

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/ulikunitz/xz"
)

// Config is a parsed kernel .config: symbol to value ("y", "m", a string...).
// Symbols that are "not set" are absent.
type Config map[string]string

// ParseConfig reads a kernel config file (boot/config-<release>).
func ParseConfig(r io.Reader) (Config, error) {
	cfg := Config{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(k, "CONFIG_") {
			return nil, fmt.Errorf("parsing kernel config: bad line %q", line)
		}
		cfg[k] = strings.Trim(v, `"`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading kernel config: %w", err)
	}
	return cfg, nil
}

// Load reads the module graph of the release directory root
// (/lib/modules/<release>). It uses modules.dep when present and
// otherwise reads every module's .modinfo.
func Load(ctx context.Context, root string) (*Index, error) {
	builtin, err := readBuiltin(filepath.Join(root, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	builtinAliases, err := readBuiltinModinfo(filepath.Join(root, "modules.builtin.modinfo"))
	if err != nil {
		return nil, err
	}
	var mods []Module
	f, err := os.Open(filepath.Join(root, "modules.dep"))
	switch {
	case err == nil:
		defer f.Close()
		mods, err = fromDepmod(f, root)
	case errors.Is(err, fs.ErrNotExist):
		mods, err = Scan(ctx, root)
	}
	if err != nil {
		return nil, err
	}
	return NewIndex(mods, builtin, builtinAliases)
}

// fromDepmod reads modules.dep plus the optional modules.softdep and
// modules.alias next to it.
func fromDepmod(dep io.Reader, root string) ([]Module, error) {
	mods, err := ParseDep(dep)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*Module, len(mods))
	for i := range mods {
		byName[mods[i].Name] = &mods[i]
	}
	if f, err := os.Open(filepath.Join(root, "modules.softdep")); err == nil {
		defer f.Close()
		soft, err := ParseSoftdep(f)
		if err != nil {
			return nil, err
		}
		for name, s := range soft {
			if m := byName[name]; m != nil {
				m.SoftPre = append(m.SoftPre, s[0]...)
				m.SoftPost = append(m.SoftPost, s[1]...)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("opening modules.softdep: %w", err)
	}
	if f, err := os.Open(filepath.Join(root, "modules.alias")); err == nil {
		defer f.Close()
		aliases, err := ParseAlias(f)
		if err != nil {
			return nil, err
		}
		for pattern, names := range aliases {
			for _, n := range names {
				if m := byName[n]; m != nil {
					m.Aliases = append(m.Aliases, pattern)
				}
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("opening modules.alias: %w", err)
	}
	return mods, nil
}

// ParseDep parses depmod's modules.dep: "path: dep-path dep-path...".
func ParseDep(r io.Reader) ([]Module, error) {
	var mods []Module
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		p, deps, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("parsing modules.dep line %d: want \"path: deps\", got %q", n, line)
		}
		m := Module{Name: NameFromPath(p), Path: strings.TrimSpace(p)}
		for _, d := range strings.Fields(deps) {
			m.Depends = append(m.Depends, NameFromPath(d))
		}
		mods = append(mods, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	return mods, nil
}

// ParseSoftdep parses modules.softdep ("softdep NAME pre: A B post: C"),
// returning per module its pre and post lists.
func ParseSoftdep(r io.Reader) (map[string][2][]string, error) {
	out := map[string][2][]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "softdep" || len(f) < 2 {
			return nil, fmt.Errorf("parsing modules.softdep: bad line %q", sc.Text())
		}
		name := Normalize(f[1])
		pre, post := parseSoftdepValue(strings.Join(f[2:], " "))
		cur := out[name]
		cur[0] = append(cur[0], pre...)
		cur[1] = append(cur[1], post...)
		out[name] = cur
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.softdep: %w", err)
	}
	return out, nil
}

// parseSoftdepValue parses "pre: a b post: c", the value of a modinfo
// softdep= field and the tail of a modules.softdep line. Words before any
// "pre:" or "post:" are ignored, as kmod does: some modules (cifs in 6.1)
// declare MODULE_SOFTDEP("gcm") without one.
func parseSoftdepValue(v string) (pre, post []string) {
	var cur *[]string
	for _, w := range strings.Fields(v) {
		switch w {
		case "pre:":
			cur = &pre
		case "post:":
			cur = &post
		default:
			if cur != nil {
				*cur = append(*cur, w)
			}
		}
	}
	return pre, post
}

// ParseAlias parses modules.alias ("alias PATTERN NAME"), pattern to names.
func ParseAlias(r io.Reader) (map[string][]string, error) {
	out := map[string][]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "alias" || len(f) != 3 {
			return nil, fmt.Errorf("parsing modules.alias: bad line %q", sc.Text())
		}
		out[f[1]] = append(out[f[1]], Normalize(f[2]))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.alias: %w", err)
	}
	return out, nil
}

// readBuiltin reads modules.builtin (one path per line); a missing file
// means nothing is listed as built in.
func readBuiltin(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading modules.builtin: %w", err)
	}
	var names []string
	for _, l := range strings.Fields(string(data)) {
		names = append(names, NameFromPath(l))
	}
	return names, nil
}

// readBuiltinModinfo collects the aliases of built-in modules from
// modules.builtin.modinfo: NUL-separated "module.key=value" records.
func readBuiltinModinfo(file string) (map[string][]string, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading modules.builtin.modinfo: %w", err)
	}
	out := map[string][]string{}
	for _, rec := range bytes.Split(data, []byte{0}) {
		mod, kv, ok := strings.Cut(string(rec), ".")
		if !ok {
			continue
		}
		if k, v, ok := strings.Cut(kv, "="); ok && k == "alias" {
			out[v] = append(out[v], Normalize(mod))
		}
	}
	return out, nil
}

// Scan reads the .modinfo section of every module under root (.ko and
// .ko.xz files), using all CPUs since xz-compressed trees are slow to read.
func Scan(ctx context.Context, root string) ([]Module, error) {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".ko") || strings.HasSuffix(p, ".ko.xz")) {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing modules under %s: %w", root, err)
	}
	sort.Strings(paths)

	mods := make([]Module, len(paths))
	errs := make([]error, len(paths))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				rel, _ := filepath.Rel(root, paths[i])
				mods[i], errs[i] = ReadModule(paths[i], filepath.ToSlash(rel))
			}
		}()
	}
feed:
	for i := range paths {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("scanning modules: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return mods, nil
}

// ReadModule reads the module file at file (.ko or .ko.xz); rel is its path
// relative to the release directory.
func ReadModule(file, rel string) (Module, error) {
	var obj io.ReaderAt
	if strings.HasSuffix(file, ".xz") {
		data, err := ReadFile(file)
		if err != nil {
			return Module{}, err
		}
		obj = bytes.NewReader(data)
	} else {
		// Read only the ELF headers and .modinfo, not the whole object.
		f, err := os.Open(file)
		if err != nil {
			return Module{}, fmt.Errorf("opening module: %w", err)
		}
		defer f.Close()
		obj = f
	}
	info, err := modinfo(obj)
	if err != nil {
		return Module{}, fmt.Errorf("reading modinfo of %s: %w", file, err)
	}
	return fromModinfo(info, rel), nil
}

// ReadFile returns a module's contents, decompressed when it ends in .xz.
func ReadFile(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("opening module: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(file, ".xz") {
		xr, err := xz.NewReader(bufio.NewReader(f))
		if err != nil {
			return nil, fmt.Errorf("decompressing %s: %w", file, err)
		}
		r = xr
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return data, nil
}

// modinfo returns the NUL-separated key=value records of .modinfo.
func modinfo(obj io.ReaderAt) ([]string, error) {
	ef, err := elf.NewFile(obj)
	if err != nil {
		return nil, fmt.Errorf("parsing ELF: %w", err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo: %w", err)
	}
	var recs []string
	for _, r := range bytes.Split(data, []byte{0}) {
		if len(r) > 0 {
			recs = append(recs, string(r))
		}
	}
	return recs, nil
}

func fromModinfo(info []string, rel string) Module {
	m := Module{Path: rel}
	for _, rec := range info {
		k, v, ok := strings.Cut(rec, "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			m.Name = Normalize(v)
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					m.Depends = append(m.Depends, Normalize(d))
				}
			}
		case "softdep":
			pre, post := parseSoftdepValue(v)
			m.SoftPre = append(m.SoftPre, pre...)
			m.SoftPost = append(m.SoftPost, post...)
		case "alias":
			m.Aliases = append(m.Aliases, v)
		}
	}
	if m.Name == "" {
		m.Name = NameFromPath(rel)
	}
	return m
}

// DepFile renders a modules.dep for the given modules (in load order) so
// that tools like busybox modprobe work in the guest. rename maps each
// on-disk path to the path it has in the guest (e.g. without .xz). As with
// depmod, each line lists every module the first one needs, directly or
// not, ordered so that loading them from the end of the line backwards
// works.
func DepFile(load []Module, rename func(string) string) []byte {
	pos := make(map[string]int, len(load))
	for i, m := range load {
		pos[m.Name] = i
	}
	var b bytes.Buffer
	for _, m := range load {
		need := map[string]bool{}
		var walk func(string)
		walk = func(n string) {
			for _, d := range load[pos[n]].Depends {
				if _, ok := pos[d]; ok && !need[d] {
					need[d] = true
					walk(d)
				}
			}
		}
		walk(m.Name)
		deps := make([]int, 0, len(need))
		for d := range need {
			deps = append(deps, pos[d])
		}
		sort.Sort(sort.Reverse(sort.IntSlice(deps)))
		b.WriteString(rename(m.Path) + ":")
		for _, i := range deps {
			b.WriteString(" " + rename(load[i].Path))
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}
