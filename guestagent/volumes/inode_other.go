//go:build !unix

package volumes

import "io/fs"

type fileKey struct{ dev, ino uint64 }

func keyOf(fs.FileInfo) (fileKey, bool) { return fileKey{}, false }
