// Package modules chooses the kernel modules the guest needs from a
// kernel's /lib/modules/<release> tree and puts them in load order,
// dependencies first.
//
// It reads the dependency graph from modules.dep, modules.softdep and
// modules.alias when depmod has produced them, and otherwise (Debian's
// linux-image packages ship no modules.dep; depmod runs at install time)
// straight from each module's .modinfo ELF section. It owns only the
// choosing and ordering; copying the files into the initrd is package
// kernel's job, and loading them is the guest agent's.
package modules

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Module is one loadable module in the tree.
type Module struct {
	// Name is the module name with "-" folded to "_", as the kernel spells it.
	Name string
	// Path is the file relative to /lib/modules/<release>/, as on disk
	// (it may end in .ko.xz).
	Path string
	// Depends lists modules that must be loaded first (symbol dependencies).
	Depends []string
	// SoftPre and SoftPost are module names or aliases to load before and
	// after this one when present ("softdep" in modinfo).
	SoftPre, SoftPost []string
	// Aliases are the alias patterns the module answers to.
	Aliases []string
}

// Index is the module graph of one kernel release.
type Index struct {
	mods    map[string]*Module
	builtin map[string]bool
	// aliases maps a glob pattern to the modules (loadable or built in)
	// that declare it.
	aliases map[string][]string
}

// NewIndex builds an index from loadable modules, the names of built-in
// modules, and the aliases of built-in modules (pattern to name).
func NewIndex(mods []Module, builtin []string, builtinAliases map[string][]string) (*Index, error) {
	ix := &Index{
		mods:    make(map[string]*Module, len(mods)),
		builtin: make(map[string]bool, len(builtin)),
		aliases: map[string][]string{},
	}
	for _, b := range builtin {
		ix.builtin[Normalize(b)] = true
	}
	for pattern, names := range builtinAliases {
		for _, n := range names {
			n = Normalize(n)
			ix.builtin[n] = true // modinfo of a built-in: built in even if modules.builtin lags
			ix.addAlias(pattern, n)
		}
	}
	for i := range mods {
		m := mods[i]
		m.Name = Normalize(m.Name)
		if m.Name == "" {
			return nil, fmt.Errorf("module %s has no name", m.Path)
		}
		if old, dup := ix.mods[m.Name]; dup {
			return nil, fmt.Errorf("module %s is both %s and %s", m.Name, old.Path, m.Path)
		}
		for j, d := range m.Depends {
			m.Depends[j] = Normalize(d)
		}
		ix.mods[m.Name] = &m
		for _, a := range m.Aliases {
			ix.addAlias(a, m.Name)
		}
	}
	return ix, nil
}

func (ix *Index) addAlias(pattern, name string) {
	for _, n := range ix.aliases[pattern] {
		if n == name {
			return
		}
	}
	ix.aliases[pattern] = append(ix.aliases[pattern], name)
}

// Normalize folds "-" to "_": the kernel treats them as the same in module
// names, and file names use either.
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// NameFromPath derives a module name from its file name.
func NameFromPath(p string) string {
	base := path.Base(p)
	for _, ext := range []string{".xz", ".gz", ".zst"} {
		base = strings.TrimSuffix(base, ext)
	}
	return Normalize(strings.TrimSuffix(base, ".ko"))
}

// Module returns the loadable module called name.
func (ix *Index) Module(name string) (Module, bool) {
	m, ok := ix.mods[Normalize(name)]
	if !ok {
		return Module{}, false
	}
	return *m, true
}

// Builtin reports whether name is built into the kernel image.
func (ix *Index) Builtin(name string) bool { return ix.builtin[Normalize(name)] }

// Len is the number of loadable modules.
func (ix *Index) Len() int { return len(ix.mods) }

// lookupSoft resolves a softdep target: a module name first, then any
// alias pattern matching it. It returns the loadable modules to pull in and
// whether the target is satisfied at all (built in counts).
func (ix *Index) lookupSoft(target string) (names []string, found bool) {
	n := Normalize(target)
	if ix.builtin[n] {
		return nil, true
	}
	if _, ok := ix.mods[n]; ok {
		return []string{n}, true
	}
	set := map[string]bool{}
	for pattern, mods := range ix.aliases {
		if ok, _ := path.Match(pattern, target); !ok {
			continue
		}
		for _, m := range mods {
			found = true
			if ix.builtin[m] {
				// A built-in provider satisfies the alias already.
				return nil, true
			}
			set[m] = true
		}
	}
	for m := range set {
		names = append(names, m)
	}
	sort.Strings(names)
	return names, found
}
