package vm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCreateDataDisk(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name     string
		existing int64 // -1: no file yet
		size     int64
		wantSize int64
		wantErr  error
		anyErr   bool
	}{
		{name: "new", existing: -1, size: 64 * mib, wantSize: 64 * mib},
		{name: "new rounds up", existing: -1, size: 64*mib + 1, wantSize: 65 * mib},
		{name: "new tiny", existing: -1, size: 1, wantSize: mib},
		{name: "existing same size kept", existing: 8 * mib, size: 8 * mib, wantSize: 8 * mib},
		{name: "existing grows", existing: 8 * mib, size: 16 * mib, wantSize: 16 * mib},
		{name: "existing shrink refused", existing: 16 * mib, size: 8 * mib, wantSize: 16 * mib, wantErr: ErrDiskShrink},
		{name: "zero refused", existing: -1, size: 0, wantSize: -1, anyErr: true},
		{name: "negative refused", existing: -1, size: -5, wantSize: -1, anyErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "data.img")
			marker := []byte("berth-marker")
			if tt.existing >= 0 {
				if err := os.WriteFile(path, marker, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(path, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			err := CreateDataDisk(path, tt.size)
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("CreateDataDisk: err %v, want %v", err, tt.wantErr)
			case tt.anyErr && err == nil:
				t.Fatal("CreateDataDisk: no error")
			case tt.wantErr == nil && !tt.anyErr && err != nil:
				t.Fatalf("CreateDataDisk: %v", err)
			}
			st, err := os.Stat(path)
			if tt.wantSize < 0 {
				if err == nil {
					t.Fatalf("a disk was left behind: %d bytes", st.Size())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != tt.wantSize {
				t.Errorf("size %d, want %d", st.Size(), tt.wantSize)
			}
			if tt.existing >= 0 {
				got := make([]byte, len(marker))
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, marker) {
					t.Errorf("existing data lost: %q", got)
				}
			}
		})
	}
}

func TestResizeDataDiskMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.img")
	if err := ResizeDataDisk(path, 1<<20); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err %v, want not exist", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("ResizeDataDisk created a disk")
	}
}

func TestResizeDataDiskNotRegular(t *testing.T) {
	dir := t.TempDir()
	if err := ResizeDataDisk(dir, 1<<20); err == nil {
		t.Fatal("resizing a directory: no error")
	}
}
