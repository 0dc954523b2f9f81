package qemu

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berthvm/berth/forwarding/transport"
	"github.com/berthvm/berth/guestagent/api"
)

// TestPowerButtonPowersGuestOff boots the real guest bundle, waits for its
// agent, presses the ACPI power button and expects the guest to shut down
// cleanly by itself: the path the host agent takes when a guest does not
// answer its Shutdown request.
func TestPowerButtonPowersGuestOff(t *testing.T) {
	needQEMU(t)
	kernel, initrd := guestBundle(t)
	cfg := testConfig(t, kernel, initrd)
	cfg.MemoryBytes = 1 << 30
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// Not the test logger: the transport's redial loop may log after the
	// test returns.
	d, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	defer d.Stop(context.Background())
	conn, err := grpc.NewClient("passthrough:///guest",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return d.Transport().DialPort(ctx, transport.PortControl)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := api.NewAgentClient(conn).Info(ctx, &api.InfoRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("the guest agent never answered: %v", err)
	}
	// The button is watched once the background modules (button, evdev)
	// are in; a press before that has no listener, as on real hardware.
	for !strings.Contains(readFile(cfg.SerialLog), "kernel modules loaded") {
		select {
		case <-ctx.Done():
			t.Fatalf("the guest never finished loading modules; console:\n%s", readFile(cfg.SerialLog))
		case <-time.After(200 * time.Millisecond):
		}
	}
	time.Sleep(time.Second)
	if err := d.PressPowerButton(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	case <-time.After(90 * time.Second):
		t.Fatalf("the guest ignored the power button; console:\n%s", readFile(cfg.SerialLog))
	}
	serial, _ := os.ReadFile(cfg.SerialLog)
	if !strings.Contains(string(serial), "reboot: Power down") {
		t.Fatalf("the VM exited without a guest power-down; console:\n%s", serial)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
