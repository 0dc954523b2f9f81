package kmod

import (
	"reflect"
	"strings"
	"testing"
)

func TestParsePlan(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		names       []string
		after       [][]int
		errContains string
	}{
		{
			name: "explicit dependencies",
			in: "# written by mkguest\n" +
				"kernel/virtio_ring.ko:\n" +
				"kernel/virtio.ko: kernel/virtio_ring.ko\n\n" +
				"  kernel/crc32c-intel.ko:  \n" +
				"kernel/ext4.ko.xz: kernel/crc32c-intel.ko kernel/virtio.ko\n",
			names: []string{"virtio_ring", "virtio", "crc32c_intel", "ext4"},
			after: [][]int{nil, {0}, nil, {2, 1}},
		},
		{
			name:  "plain list loads in order",
			in:    "kernel/a.ko\nkernel/b.ko\n/abs/c.ko\n",
			names: []string{"a", "b", "c"},
			after: [][]int{nil, {0}, {1}},
		},
		{name: "dependency listed later", in: "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n", errContains: "line 1: kernel/a.ko must follow kernel/b.ko"},
		{name: "listed twice", in: "kernel/a.ko:\nkernel/a.ko:\n", errContains: "line 2: kernel/a.ko is listed twice"},
		{name: "no path", in: ": kernel/a.ko\n", errContains: "line 1: no module path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePlan(strings.NewReader(tt.in), "/lib/modules/6.1.0")
			if tt.errContains != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errContains) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.errContains)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			var after [][]int
			for _, m := range p.mods {
				names = append(names, m.name)
				after = append(after, m.after)
				if !strings.HasPrefix(m.path, "/lib/modules/6.1.0/kernel/") && !strings.HasPrefix(m.path, "/abs/") {
					t.Errorf("%s: path %s not resolved", m.name, m.path)
				}
			}
			if !reflect.DeepEqual(names, tt.names) || !reflect.DeepEqual(after, tt.after) {
				t.Errorf("got names %v after %v, want %v %v", names, after, tt.names, tt.after)
			}
		})
	}
}

// testPlan builds a plan from "name: dep dep" lines.
func testPlan(t *testing.T, lines ...string) *plan {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		name, deps, _ := strings.Cut(l, ":")
		b.WriteString(name + ".ko:")
		for _, d := range strings.Fields(deps) {
			b.WriteString(" " + d + ".ko")
		}
		b.WriteString("\n")
	}
	p, err := parsePlan(strings.NewReader(b.String()), "/m")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestClosure(t *testing.T) {
	p := testPlan(t, "ring:", "virtio: ring", "virtio_pci: virtio ring", "virtio_blk: virtio", "jbd2:", "ext4: jbd2", "overlay:")
	names := func(idx []int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, p.mods[i].name)
		}
		return out
	}
	boot := p.closure("virtio-blk", "ext4", "not_a_module")
	if got, want := names(boot), []string{"ring", "virtio", "virtio_blk", "jbd2", "ext4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("closure = %v, want %v", got, want)
	}
}
