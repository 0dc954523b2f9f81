//go:build !linux

package volumes

import (
	"context"
	"errors"
)

func copyTree(ctx context.Context, src, dst string) (bool, error) {
	return false, errors.New("not supported on this system")
}
