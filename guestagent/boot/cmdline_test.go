package boot

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Cmdline
		wantErr string
	}{
		{
			name: "full",
			in:   "console=ttyS0 berth.transport=serial berth.ip=192.168.127.2/24 berth.gw=192.168.127.1 berth.dns=192.168.127.1 berth.hostname=berth berth.debug=1 panic=-1\n",
			want: Cmdline{
				Transport: "serial",
				IP:        netip.MustParsePrefix("192.168.127.2/24"),
				Gateway:   netip.MustParseAddr("192.168.127.1"),
				DNS:       []netip.Addr{netip.MustParseAddr("192.168.127.1")},
				Hostname:  "berth",
				Debug:     true,
			},
		},
		{name: "empty", in: "", want: Cmdline{}},
		{name: "others only", in: "quiet root=/dev/vda init=/init", want: Cmdline{}},
		{name: "vsock", in: "berth.transport=vsock", want: Cmdline{Transport: "vsock"}},
		{name: "bare debug", in: "berth.debug", want: Cmdline{Debug: true}},
		{name: "debug off", in: "berth.debug=1 berth.debug=0", want: Cmdline{}},
		{name: "last wins", in: "berth.transport=vsock berth.transport=serial", want: Cmdline{Transport: "serial"}},
		{name: "two dns", in: "berth.dns=10.0.0.1,fd00::1", want: Cmdline{DNS: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}}},
		{name: "quoted", in: `x="a b" "berth.hostname=h1" berth.gw="10.0.0.1"`, want: Cmdline{Hostname: "h1", Gateway: netip.MustParseAddr("10.0.0.1")}},
		{name: "tabs", in: "\tberth.hostname=a-b.c\t", want: Cmdline{Hostname: "a-b.c"}},
		{name: "bad transport", in: "berth.transport=tcp berth.hostname=ok", want: Cmdline{Hostname: "ok"}, wantErr: "berth.transport"},
		{name: "ip without prefix", in: "berth.ip=192.168.127.2", wantErr: "berth.ip"},
		{name: "bad gw", in: "berth.gw=1.2.3", wantErr: "berth.gw"},
		{name: "bad dns keeps none", in: "berth.dns=1.1.1.1,nope", wantErr: "berth.dns"},
		{name: "empty dns", in: "berth.dns=", wantErr: "berth.dns"},
		{name: "bad hostname", in: "berth.hostname=-bad", wantErr: "berth.hostname"},
		{name: "hostname underscore", in: "berth.hostname=a_b", wantErr: "berth.hostname"},
		{name: "long hostname", in: "berth.hostname=" + strings.Repeat("a", 65), wantErr: "berth.hostname"},
		{name: "bad debug", in: "berth.debug=maybe", wantErr: "berth.debug"},
		{name: "unknown", in: "berth.colour=blue", wantErr: "unknown kernel parameter berth.colour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.in)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSplitCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"a b  c", []string{"a", "b", "c"}},
		{`a="x y" b`, []string{"a=x y", "b"}},
		{`""`, []string{""}},
		{`"unterminated x`, []string{"unterminated x"}},
		{"  ", nil},
	}
	for _, tt := range tests {
		if got := splitCmdline(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitCmdline(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParseCmdline checks that no input panics and that whatever is
// returned is valid: the boot code uses the fields without re-checking.
func FuzzParseCmdline(f *testing.F) {
	for _, s := range []string{
		"console=ttyS0 berth.transport=serial berth.ip=192.168.127.2/24 berth.gw=192.168.127.1 berth.dns=192.168.127.1 berth.hostname=berth berth.debug=1",
		`berth.hostname="a b" berth.dns=::1,1.2.3.4`,
		"berth.ip=fe80::1%eth0/64 berth.gw=fe80::1%eth0",
		"berth.transport=vsock\x00berth.debug",
		"\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, _ := ParseCmdline(s)
		switch c.Transport {
		case "", TransportSerial, TransportVsock:
		default:
			t.Errorf("transport %q", c.Transport)
		}
		if c.IP.IsValid() && c.IP.Addr().Zone() != "" {
			t.Errorf("ip %v has a zone", c.IP)
		}
		if c.Gateway.IsValid() && c.Gateway.Zone() != "" {
			t.Errorf("gateway %v has a zone", c.Gateway)
		}
		for _, a := range c.DNS {
			if !a.IsValid() {
				t.Errorf("invalid dns address in %v", c.DNS)
			}
		}
		if c.Hostname != "" && !validHostname(c.Hostname) {
			t.Errorf("hostname %q", c.Hostname)
		}
		if strings.ContainsAny(c.Hostname, " \t\n\"") {
			t.Errorf("hostname %q has separators", c.Hostname)
		}
	})
}
