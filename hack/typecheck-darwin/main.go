// Command typecheck-darwin type-checks berth's darwin-only code from any
// host. vm/vz uses cgo and Objective-C, so `GOOS=darwin go vet` cannot build
// it off a Mac; this checker asks `go list` for the darwin file sets, parses
// them, and runs go/types over them with `import "C"` faked. Go-level
// mistakes in our code and in its use of the vz API are caught; C-level ones
// are not (a Mac build catches those).
//
// It checks the packages matching -pkg and every package of the main module
// that imports one of them, for each -arch. Errors in dependencies outside
// the main module (vz's own C-heavy code) are not reported.
//
//	go run ./hack/typecheck-darwin                 # ./vm/vz/... for arm64 and amd64
//	go run ./hack/typecheck-darwin -pkg ./cmd/...  # other anchors
//
// It does not build, link or vet.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	pkgs := flag.String("pkg", "./vm/vz/...", "comma-separated package patterns to check, with their importers in the main module")
	archs := flag.String("arch", "arm64,amd64", "comma-separated GOARCH values")
	goos := flag.String("os", "darwin", "GOOS")
	dir := flag.String("C", ".", "module directory")
	verbose := flag.Bool("v", false, "list the packages checked and dependency errors")
	flag.Parse()

	ctx := context.Background()
	failed := false
	for _, arch := range strings.Split(*archs, ",") {
		res, err := check(ctx, *dir, strings.Split(*pkgs, ","), *goos, arch)
		if err != nil {
			fmt.Fprintf(os.Stderr, "typecheck-darwin %s/%s: %v\n", *goos, arch, err)
			os.Exit(2)
		}
		if *verbose {
			for _, p := range res.Checked {
				fmt.Printf("%s/%s: checked %s\n", *goos, arch, p)
			}
			for _, e := range res.DepErrors {
				fmt.Printf("%s/%s: in a dependency, ignored: %v\n", *goos, arch, e)
			}
		}
		for _, e := range res.Errors {
			fmt.Printf("%s/%s: %v\n", *goos, arch, e)
			failed = true
		}
		if len(res.Checked) == 0 {
			fmt.Fprintf(os.Stderr, "typecheck-darwin %s/%s: no package matched %s\n", *goos, arch, *pkgs)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// listedPackage is the part of `go list -json` output the checker uses.
type listedPackage struct {
	Dir        string
	ImportPath string
	Name       string
	Standard   bool
	DepOnly    bool
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
	ImportMap  map[string]string
	Deps       []string
	Module     *struct {
		Main      bool
		GoVersion string
	}
	Error *struct{ Err string }
}

// result is what check found.
type result struct {
	Checked   []string // import paths of the packages whose errors count
	Errors    []error  // type errors in those packages
	DepErrors []error  // type errors elsewhere, ignored
}

// check type-checks, for goos/goarch with cgo on, the packages matching
// patterns and the main module's packages that import them.
func check(ctx context.Context, dir string, patterns []string, goos, goarch string) (*result, error) {
	env := append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=1")
	anchors, err := goList(ctx, dir, env, false, patterns...)
	if err != nil {
		return nil, err
	}
	all, err := goList(ctx, dir, env, true, "./...")
	if err != nil {
		return nil, err
	}

	isAnchor := make(map[string]bool)
	for _, p := range anchors {
		if p.Error != nil {
			return nil, fmt.Errorf("%s: %s", p.ImportPath, p.Error.Err)
		}
		isAnchor[p.ImportPath] = true
	}
	// The packages whose errors count: the anchors, and main-module packages
	// that depend on one.
	targets := make(map[string]bool)
	for _, p := range all {
		if p.DepOnly && !isAnchor[p.ImportPath] {
			continue
		}
		if isAnchor[p.ImportPath] || slices.ContainsFunc(p.Deps, func(d string) bool { return isAnchor[d] }) {
			targets[p.ImportPath] = true
		}
	}
	// What must be type-checked: the targets and their dependencies.
	byPath := make(map[string]*listedPackage, len(all))
	for _, p := range all {
		byPath[p.ImportPath] = p
	}
	needed := make(map[string]bool)
	for t := range targets {
		needed[t] = true
		for _, d := range byPath[t].Deps {
			needed[d] = true
		}
	}

	fset := token.NewFileSet()
	checked := map[string]*types.Package{"unsafe": types.Unsafe}
	res := &result{}
	// go list -deps prints dependencies before their importers.
	for _, p := range all {
		if !needed[p.ImportPath] || p.ImportPath == "unsafe" {
			continue
		}
		if p.Error != nil && targets[p.ImportPath] {
			res.Errors = append(res.Errors, fmt.Errorf("%s: %s", p.ImportPath, p.Error.Err))
			continue
		}
		pkg, errs := checkPackage(fset, p, checked, goarch)
		checked[p.ImportPath] = pkg
		if targets[p.ImportPath] {
			res.Checked = append(res.Checked, p.ImportPath)
			res.Errors = append(res.Errors, errs...)
		} else {
			res.DepErrors = append(res.DepErrors, errs...)
		}
	}
	slices.Sort(res.Checked)
	return res, nil
}

func goList(ctx context.Context, dir string, env []string, deps bool, patterns ...string) ([]*listedPackage, error) {
	args := []string{"list", "-e", "-json"}
	if deps {
		args = append(args, "-deps")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, patterns...)...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w: %s", strings.Join(patterns, " "), err, stderr.Bytes())
	}
	var pkgs []*listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(listedPackage)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decoding go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// checkPackage parses and type-checks one package against the packages
// checked before it. It returns the package even when it has errors, as
// go/types does, so importers can still be checked.
func checkPackage(fset *token.FileSet, p *listedPackage, checked map[string]*types.Package, goarch string) (*types.Package, []error) {
	var errs []error
	var files []*ast.File
	for _, name := range append(slices.Clone(p.GoFiles), p.CgoFiles...) {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, f)
	}
	conf := types.Config{
		FakeImportC: true,
		Importer: importerFunc(func(path string) (*types.Package, error) {
			if mapped, ok := p.ImportMap[path]; ok {
				path = mapped
			}
			if pkg, ok := checked[path]; ok {
				return pkg, nil
			}
			return nil, fmt.Errorf("package %s was not checked before %s", path, p.ImportPath)
		}),
		Sizes: types.SizesFor("gc", goarch),
		Error: func(err error) { errs = append(errs, err) },
	}
	if p.Module != nil && p.Module.GoVersion != "" {
		conf.GoVersion = "go" + p.Module.GoVersion
	}
	pkg, _ := conf.Check(p.ImportPath, fset, files, nil)
	return pkg, errs
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }
