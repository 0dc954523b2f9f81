package modules

import (
	"fmt"
	"strings"
)

// Want is one module the guest asks for.
type Want struct {
	// Name is the module name ("-" and "_" are the same).
	Name string
	// Config is the Kconfig symbol that builds it, e.g. "CONFIG_VIRTIO_PCI".
	// When set, the kernel config decides: "=y" means built in (nothing to
	// load), "=m" means the module must be in the tree. When empty,
	// modules.builtin decides.
	Config string
	// Optional wants are skipped, not failed, when the kernel lacks them.
	Optional bool
}

// Plan is the outcome of resolving a list of wants.
type Plan struct {
	// Load holds the modules to load, in order: every module comes after
	// everything it depends on.
	Load []Module
	// Builtin lists wanted modules that need no loading.
	Builtin []string
	// Missing lists optional wants the kernel lacks, and soft
	// dependencies nothing provides; neither is an error.
	Missing []string
	// After maps each module in Load to the modules in Load that must be
	// loaded before it: its loadable hard dependencies, the providers of
	// its soft "pre" dependencies, and the modules that name it as a soft
	// "post" dependency. Every one of them comes earlier in Load, so a
	// loader may load modules in parallel once their After set is in.
	After map[string][]string
}

// Plan resolves wants against the index and the kernel config (which may
// be nil when no want names a Config symbol).
func (ix *Index) Plan(wants []Want, cfg Config) (*Plan, error) {
	p := &Plan{}
	var names []string
	for _, w := range wants {
		name := Normalize(w.Name)
		load, err := ix.classify(w, name, cfg)
		if err != nil {
			return nil, err
		}
		switch load {
		case loadModule:
			names = append(names, name)
		case builtIn:
			p.Builtin = append(p.Builtin, name)
		case absent:
			p.Missing = append(p.Missing, name)
		}
	}
	r, err := ix.resolve(names)
	if err != nil {
		return nil, err
	}
	p.Load = r.order
	p.After = r.after
	p.Missing = append(p.Missing, r.missingSoft...)
	return p, nil
}

type verdict int

const (
	loadModule verdict = iota
	builtIn
	absent
)

func (ix *Index) classify(w Want, name string, cfg Config) (verdict, error) {
	_, loadable := ix.mods[name]
	if w.Config != "" {
		switch v := cfg[w.Config]; v {
		case "y":
			return builtIn, nil
		case "m":
			if !loadable {
				return 0, fmt.Errorf("module %s: %s=m but the module is not in the tree", name, w.Config)
			}
			return loadModule, nil
		case "", "n":
			if w.Optional {
				return absent, nil
			}
			return 0, fmt.Errorf("module %s: %s is not set in the kernel config", name, w.Config)
		default:
			return 0, fmt.Errorf("module %s: %s=%s is not a tristate", name, w.Config, v)
		}
	}
	switch {
	case ix.builtin[name]:
		return builtIn, nil
	case loadable:
		return loadModule, nil
	case w.Optional:
		return absent, nil
	}
	return 0, fmt.Errorf("module %s: neither built in nor in the tree", name)
}

// Resolve returns the named modules and everything they depend on, hard
// and soft, in load order. Modules appear once, in the order the names
// were given, each after its dependencies and soft "pre" dependencies and
// before its soft "post" ones. Built-in names are skipped. A missing or
// cyclic hard dependency is an error; a soft dependency that nothing
// provides is reported in missingSoft, and one that would close a cycle is
// dropped, as modprobe does.
func (ix *Index) Resolve(names []string) (order []Module, missingSoft []string, err error) {
	r, err := ix.resolve(names)
	if err != nil {
		return nil, nil, err
	}
	return r.order, r.missingSoft, nil
}

func (ix *Index) resolve(names []string) (*resolver, error) {
	r := &resolver{ix: ix, state: map[string]int{}, after: map[string][]string{}}
	for _, n := range names {
		n = Normalize(n)
		if ix.builtin[n] {
			continue
		}
		if _, ok := ix.mods[n]; !ok {
			return nil, fmt.Errorf("resolving modules: %s is neither built in nor in the tree", n)
		}
		if err := r.visit(n, nil); err != nil {
			return nil, fmt.Errorf("resolving modules: %w", err)
		}
	}
	pos := make(map[string]int, len(r.order))
	for i, m := range r.order {
		pos[m.Name] = i
	}
	for name, deps := range r.after {
		kept := deps[:0]
		for _, d := range deps {
			if pos[d] < pos[name] {
				kept = append(kept, d)
			}
		}
		r.after[name] = kept
	}
	return r, nil
}

const (
	unvisited = iota
	visiting
	done
)

type resolver struct {
	ix          *Index
	state       map[string]int
	order       []Module
	missingSoft []string
	// after holds the direct load-order edges: module -> modules placed
	// before it that it must follow.
	after map[string][]string
}

// edge records that name must load after dep, once.
func (r *resolver) edge(name, dep string) {
	for _, d := range r.after[name] {
		if d == dep {
			return
		}
	}
	r.after[name] = append(r.after[name], dep)
}

// visit places name after its dependencies. stack is the chain of hard
// dependencies that led here, for the cycle message.
func (r *resolver) visit(name string, stack []string) error {
	switch r.state[name] {
	case done:
		return nil
	case visiting:
		return fmt.Errorf("dependency cycle: %s", strings.Join(append(stack, name), " -> "))
	}
	m := r.ix.mods[name]
	if m == nil {
		return fmt.Errorf("%s is neither built in nor in the tree", name)
	}
	r.state[name] = visiting
	stack = append(stack, name)
	pre, err := r.soft(name, m.SoftPre, stack)
	if err != nil {
		return err
	}
	for _, p := range pre {
		r.edge(name, p)
	}
	for _, d := range m.Depends {
		if r.ix.builtin[d] {
			continue
		}
		if _, ok := r.ix.mods[d]; !ok {
			return fmt.Errorf("%s (%s) depends on %s, which is neither built in nor in the tree", name, m.Path, d)
		}
		if err := r.visit(d, stack); err != nil {
			return err
		}
		r.edge(name, d)
	}
	r.state[name] = done
	r.order = append(r.order, *m)
	if _, ok := r.after[name]; !ok {
		r.after[name] = nil
	}
	post, err := r.soft(name, m.SoftPost, stack)
	for _, p := range post {
		r.edge(p, name)
	}
	return err
}

// soft visits the providers of soft dependency targets and returns them,
// except those on the chain that led here (a cycle). Callers order name
// against them; resolve drops the edges that point the wrong way (a soft
// "post" provider that was placed before name).
func (r *resolver) soft(name string, targets []string, stack []string) ([]string, error) {
	var placed []string
	for _, t := range targets {
		provs, found := r.ix.lookupSoft(t)
		if !found {
			r.missingSoft = append(r.missingSoft, fmt.Sprintf("%s (soft dependency of %s)", t, name))
			continue
		}
		for _, p := range provs {
			if r.state[p] == visiting {
				continue // a soft edge back into the chain: drop it
			}
			if err := r.visit(p, stack); err != nil {
				return nil, err
			}
			placed = append(placed, p)
		}
	}
	return placed, nil
}
