package layer

import "io/fs"

// isWhiteout: Windows has no overlayfs whiteouts.
func isWhiteout(fs.FileInfo) bool { return false }

// isOpaque: Windows has no overlayfs opaque directories.
func isOpaque(string) bool { return false }
