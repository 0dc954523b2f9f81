package modules

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// fakeMod describes one module of a fake tree.
type fakeMod struct {
	path    string
	depends []string // names
	pre     []string
	post    []string
	aliases []string
}

// fakeKO returns a minimal relocatable ELF object holding only a .modinfo
// section, which is all the scanner reads.
func fakeKO(t *testing.T, info []string) []byte {
	t.Helper()
	modinfo := []byte(strings.Join(info, "\x00") + "\x00")
	shstrtab := []byte("\x00.modinfo\x00.shstrtab\x00")
	const hdrLen, shLen = 64, 64
	modinfoOff := uint64(hdrLen)
	shstrOff := modinfoOff + uint64(len(modinfo))
	shOff := (shstrOff + uint64(len(shstrtab)) + 7) &^ 7

	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: shOff, Ehsize: hdrLen, Shentsize: shLen, Shnum: 3, Shstrndx: 2,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	must(t, binary.Write(&b, binary.LittleEndian, h))
	b.Write(modinfo)
	b.Write(shstrtab)
	b.Write(make([]byte, shOff-uint64(b.Len())))
	for _, s := range []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: modinfoOff, Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: shstrOff, Size: uint64(len(shstrtab)), Addralign: 1},
	} {
		must(t, binary.Write(&b, binary.LittleEndian, s))
	}
	return b.Bytes()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, 0o644))
}

// writeTree lays out mods under a new release dir, either as depmod would
// leave it (format "depmod") or as Debian ships it, with only the objects
// ("modinfo", "modinfo-xz" with xz-compressed objects).
func writeTree(t *testing.T, format string, mods []fakeMod, builtin []string) string {
	t.Helper()
	root := t.TempDir()
	var bl []string
	for _, b := range builtin {
		bl = append(bl, "kernel/builtin/"+b+".ko")
	}
	writeFile(t, filepath.Join(root, "modules.builtin"), []byte(strings.Join(bl, "\n")+"\n"))

	pathOf := map[string]string{}
	for _, m := range mods {
		pathOf[NameFromPath(m.path)] = m.path
	}
	var dep, soft, alias strings.Builder
	for _, m := range mods {
		p := m.path
		switch format {
		case "depmod":
			dep.WriteString(p + ":")
			for _, d := range m.depends {
				p, ok := pathOf[d]
				if !ok {
					p = "kernel/missing/" + d + ".ko" // a file depmod saw, since deleted
				}
				dep.WriteString(" " + p)
			}
			dep.WriteString("\n")
			if len(m.pre)+len(m.post) > 0 {
				soft.WriteString("softdep " + NameFromPath(p))
				if len(m.pre) > 0 {
					soft.WriteString(" pre: " + strings.Join(m.pre, " "))
				}
				if len(m.post) > 0 {
					soft.WriteString(" post: " + strings.Join(m.post, " "))
				}
				soft.WriteString("\n")
			}
			for _, a := range m.aliases {
				alias.WriteString("alias " + a + " " + NameFromPath(p) + "\n")
			}
			writeFile(t, filepath.Join(root, p), []byte("not read"))
		case "modinfo", "modinfo-xz":
			info := []string{"license=GPL", "depends=" + strings.Join(m.depends, ",")}
			if len(m.pre)+len(m.post) > 0 {
				v := "softdep="
				if len(m.pre) > 0 {
					v += "pre: " + strings.Join(m.pre, " ") + " "
				}
				if len(m.post) > 0 {
					v += "post: " + strings.Join(m.post, " ")
				}
				info = append(info, v)
			}
			for _, a := range m.aliases {
				info = append(info, "alias="+a)
			}
			info = append(info, "name="+NameFromPath(p))
			obj := fakeKO(t, info)
			if format == "modinfo-xz" {
				var z bytes.Buffer
				zw, err := xz.WriterConfig{DictCap: 1 << 16}.NewWriter(&z)
				must(t, err)
				_, err = zw.Write(obj)
				must(t, err)
				must(t, zw.Close())
				obj, p = z.Bytes(), p+".xz"
			}
			writeFile(t, filepath.Join(root, p), obj)
		default:
			t.Fatalf("unknown format %q", format)
		}
	}
	if format == "depmod" {
		writeFile(t, filepath.Join(root, "modules.dep"), []byte(dep.String()))
		writeFile(t, filepath.Join(root, "modules.softdep"), []byte(soft.String()))
		writeFile(t, filepath.Join(root, "modules.alias"), []byte(alias.String()))
	}
	return root
}

var linuxLike = []fakeMod{
	{path: "kernel/fs/ext4/ext4.ko", depends: []string{"jbd2", "mbcache", "crc16"}, pre: []string{"crypto-crc32c"}, aliases: []string{"fs-ext4"}},
	{path: "kernel/fs/jbd2/jbd2.ko"},
	{path: "kernel/fs/mbcache.ko"},
	{path: "kernel/lib/crc16.ko"},
	{path: "kernel/crypto/crc32c_generic.ko", aliases: []string{"crypto-crc32c", "crc32c"}},
	{path: "kernel/arch/x86/crypto/crc32c-intel.ko", aliases: []string{"crypto-crc32c"}},
	{path: "kernel/drivers/virtio/virtio_pci.ko", depends: []string{"virtio", "virtio_ring"}},
	{path: "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko", depends: []string{"vmw_vsock_virtio_transport_common", "vsock", "virtio"}},
	{path: "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko", depends: []string{"vsock"}},
	{path: "kernel/net/vmw_vsock/vsock.ko"},
	{path: "kernel/net/bridge/br_netfilter.ko", depends: []string{"bridge"}},
	{path: "kernel/net/bridge/bridge.ko", depends: []string{"stp", "llc"}, post: []string{"br_netfilter", "no-such-thing"}},
	{path: "kernel/net/802/stp.ko", depends: []string{"llc"}},
	{path: "kernel/net/llc/llc.ko"},
	{path: "kernel/net/a.ko", depends: []string{"b"}},
	{path: "kernel/net/b.ko", depends: []string{"c"}},
	{path: "kernel/net/c.ko", depends: []string{"a"}},
	{path: "kernel/net/needs_ghost.ko", depends: []string{"ghost"}},
	{path: "kernel/net/soft_loop.ko", pre: []string{"soft_back"}},
	{path: "kernel/net/soft_back.ko", pre: []string{"soft_loop"}},
	{path: "kernel/net/uses_builtin_alias.ko", pre: []string{"crypto-sha256"}},
}

var linuxBuiltin = []string{"virtio", "virtio_ring", "af_packet"}

func names(mods []Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

func TestPlan(t *testing.T) {
	cfg := Config{
		"CONFIG_EXT4_FS":    "m",
		"CONFIG_PACKET":     "y",
		"CONFIG_VIRTIO_PCI": "m",
		"CONFIG_GHOST":      "m",
		"CONFIG_WEIRD":      "yes",
	}
	formats := []string{"depmod", "modinfo", "modinfo-xz"}
	indexes := map[string]*Index{}
	for _, format := range formats {
		root := writeTree(t, format, linuxLike, linuxBuiltin)
		// Built-in aliases come from modules.builtin.modinfo in both layouts.
		writeFile(t, filepath.Join(root, "modules.builtin.modinfo"), []byte("sha256_generic.alias=crypto-sha256\x00sha256_generic.license=GPL\x00"))
		ix, err := Load(context.Background(), root)
		must(t, err)
		indexes[format] = ix
	}
	for _, tc := range []struct {
		name        string
		wants       []Want
		load        []string
		builtin     []string
		missing     []string
		errContains string
	}{
		{
			name:  "ext4 pulls hard and soft deps first",
			wants: []Want{{Name: "ext4", Config: "CONFIG_EXT4_FS"}},
			load:  []string{"crc32c_generic", "crc32c_intel", "jbd2", "mbcache", "crc16", "ext4"},
		},
		{
			name:  "shared deps appear once, built-in deps are skipped",
			wants: []Want{{Name: "vmw_vsock_virtio_transport"}, {Name: "virtio-pci", Config: "CONFIG_VIRTIO_PCI"}, {Name: "vsock"}},
			load:  []string{"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport", "virtio_pci"},
		},
		{
			name:    "built in by config or modules.builtin",
			wants:   []Want{{Name: "af_packet", Config: "CONFIG_PACKET"}, {Name: "virtio"}},
			builtin: []string{"af_packet", "virtio"},
		},
		{
			name:    "soft post after, missing soft dep reported",
			wants:   []Want{{Name: "bridge"}},
			load:    []string{"llc", "stp", "bridge", "br_netfilter"},
			missing: []string{"no-such-thing (soft dependency of bridge)"},
		},
		{
			name:    "optional absent is skipped",
			wants:   []Want{{Name: "gpio_keys", Config: "CONFIG_KEYBOARD_GPIO", Optional: true}, {Name: "nope", Optional: true}},
			missing: []string{"gpio_keys", "nope"},
		},
		{
			name:  "soft cycle is dropped",
			wants: []Want{{Name: "soft_loop"}},
			load:  []string{"soft_back", "soft_loop"},
		},
		{
			name:  "alias of a built-in satisfies a soft dep",
			wants: []Want{{Name: "uses_builtin_alias"}},
			load:  []string{"uses_builtin_alias"},
		},
		{name: "hard cycle", wants: []Want{{Name: "a"}}, errContains: "dependency cycle: a -> b -> c -> a"},
		{name: "missing hard dep", wants: []Want{{Name: "needs_ghost"}}, errContains: "needs_ghost (kernel/net/needs_ghost.ko"},
		{name: "missing want", wants: []Want{{Name: "ghost"}}, errContains: "ghost: neither built in nor in the tree"},
		{name: "config m but no file", wants: []Want{{Name: "ghost", Config: "CONFIG_GHOST"}}, errContains: "CONFIG_GHOST=m but the module is not in the tree"},
		{name: "config not set", wants: []Want{{Name: "tun", Config: "CONFIG_TUN"}}, errContains: "CONFIG_TUN is not set"},
		{name: "config not tristate", wants: []Want{{Name: "x", Config: "CONFIG_WEIRD"}}, errContains: "not a tristate"},
	} {
		for _, format := range formats {
			ix := indexes[format]
			t.Run(tc.name+"/"+format, func(t *testing.T) {
				p, err := ix.Plan(tc.wants, cfg)
				if tc.errContains != "" {
					if err == nil || !strings.Contains(err.Error(), tc.errContains) {
						t.Fatalf("Plan error = %v, want it to contain %q", err, tc.errContains)
					}
					return
				}
				must(t, err)
				if got := names(p.Load); !reflect.DeepEqual(got, tc.load) {
					t.Errorf("load order = %v, want %v", got, tc.load)
				}
				if !reflect.DeepEqual(p.Builtin, tc.builtin) {
					t.Errorf("builtin = %v, want %v", p.Builtin, tc.builtin)
				}
				if !reflect.DeepEqual(p.Missing, tc.missing) {
					t.Errorf("missing = %v, want %v", p.Missing, tc.missing)
				}
				pos := map[string]int{}
				for i, m := range p.Load {
					pos[m.Name] = i
				}
				for _, m := range p.Load {
					if _, ok := p.After[m.Name]; !ok {
						t.Errorf("After has no entry for %s", m.Name)
					}
					for _, d := range p.After[m.Name] {
						if i, ok := pos[d]; !ok || i >= pos[m.Name] {
							t.Errorf("%s must load after %s, which is not earlier in %v", m.Name, d, names(p.Load))
						}
					}
				}
				for _, m := range p.Load {
					suffix := ".ko"
					if format == "modinfo-xz" {
						suffix = ".ko.xz"
					}
					if !strings.HasSuffix(m.Path, suffix) || NameFromPath(m.Path) != m.Name {
						t.Errorf("module %s has path %s", m.Name, m.Path)
					}
				}
			})
		}
	}
}

func TestPlanAfter(t *testing.T) {
	root := writeTree(t, "modinfo", linuxLike, linuxBuiltin)
	ix, err := Load(context.Background(), root)
	must(t, err)
	for _, tc := range []struct {
		name  string
		wants []string
		after map[string][]string
	}{
		{
			name:  "soft pre and hard deps, independents have none",
			wants: []string{"ext4"},
			after: map[string][]string{
				"crc32c_generic": nil, "crc32c_intel": nil, "jbd2": nil, "mbcache": nil, "crc16": nil,
				"ext4": {"crc32c_generic", "crc32c_intel", "jbd2", "mbcache", "crc16"},
			},
		},
		{
			name:  "soft post becomes an edge into the post module",
			wants: []string{"bridge"},
			after: map[string][]string{"llc": nil, "stp": {"llc"}, "bridge": {"stp", "llc"}, "br_netfilter": {"bridge"}},
		},
		{
			name:  "soft post placed earlier is not reversed",
			wants: []string{"br_netfilter"},
			after: map[string][]string{"llc": nil, "stp": {"llc"}, "bridge": {"stp", "llc"}, "br_netfilter": {"bridge"}},
		},
		{
			name:  "soft cycle keeps one direction",
			wants: []string{"soft_loop"},
			after: map[string][]string{"soft_back": nil, "soft_loop": {"soft_back"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wants []Want
			for _, w := range tc.wants {
				wants = append(wants, Want{Name: w})
			}
			p, err := ix.Plan(wants, nil)
			must(t, err)
			got := map[string][]string{}
			for k, v := range p.After {
				if len(v) == 0 {
					v = nil
				}
				got[k] = v
			}
			if !reflect.DeepEqual(got, tc.after) {
				t.Errorf("After = %v, want %v", got, tc.after)
			}
		})
	}
}

func TestNewIndexDuplicate(t *testing.T) {
	_, err := NewIndex([]Module{{Name: "a-b", Path: "x/a-b.ko"}, {Name: "a_b", Path: "y/a_b.ko"}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "both x/a-b.ko and y/a_b.ko") {
		t.Fatalf("err = %v", err)
	}
}

func TestScanBadObject(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "kernel/bad.ko"), []byte("not an ELF file"))
	_, err := Load(context.Background(), root)
	if err == nil || !strings.Contains(err.Error(), "bad.ko") {
		t.Fatalf("err = %v, want one naming bad.ko", err)
	}
}

func TestParseConfig(t *testing.T) {
	in := "#\n# comment\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_D=\"str\"\n\n"
	cfg, err := ParseConfig(strings.NewReader(in))
	must(t, err)
	want := Config{"CONFIG_A": "y", "CONFIG_B": "m", "CONFIG_D": "str"}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %v, want %v", cfg, want)
	}
	if _, err := ParseConfig(strings.NewReader("garbage\n")); err == nil {
		t.Error("garbage line accepted")
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"dep without colon", func() error { _, err := ParseDep(strings.NewReader("kernel/a.ko kernel/b.ko\n")); return err }()},
		{"softdep other keyword", func() error { _, err := ParseSoftdep(strings.NewReader("options a x=1\n")); return err }()},
		{"alias short", func() error { _, err := ParseAlias(strings.NewReader("alias onlyone\n")); return err }()},
	} {
		if tc.err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestParseSoftdep(t *testing.T) {
	got, err := ParseSoftdep(strings.NewReader("# c\nsoftdep ext4 pre: crc32c post: x y\nsoftdep cifs gcm ccm pre: aes\nsoftdep ext4 pre: more\n"))
	must(t, err)
	want := map[string][2][]string{
		"ext4": {{"crc32c", "more"}, {"x", "y"}},
		"cifs": {{"aes"}, nil},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDepFile(t *testing.T) {
	root := writeTree(t, "modinfo-xz", linuxLike, linuxBuiltin)
	ix, err := Load(context.Background(), root)
	must(t, err)
	load, _, err := ix.Resolve([]string{"br_netfilter"})
	must(t, err)
	got := string(DepFile(load, func(p string) string { return strings.TrimSuffix(p, ".xz") }))
	want := "kernel/net/llc/llc.ko:\n" +
		"kernel/net/802/stp.ko: kernel/net/llc/llc.ko\n" +
		"kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko\n" +
		"kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko\n"
	if got != want {
		t.Errorf("DepFile:\n%s\nwant:\n%s", got, want)
	}
}
