package boot

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestBootModules(t *testing.T) {
	tests := []struct {
		name string
		c    Cmdline
		want []string
	}{
		{"serial, no NIC", Cmdline{Transport: TransportSerial}, nil},
		{"NIC", Cmdline{IP: netip.MustParsePrefix("192.168.127.2/24")}, []string{"virtio_net"}},
		{"vsock and NIC", Cmdline{Transport: TransportVsock, IP: netip.MustParsePrefix("10.0.0.2/8")}, []string{"virtio_net", "vmw_vsock_virtio_transport"}},
	}
	for _, tt := range tests {
		if got := bootModules(tt.c); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: bootModules = %v, want %v", tt.name, got, tt.want)
		}
	}
}
