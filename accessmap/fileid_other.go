//go:build !unix

package accessmap

import "io/fs"

// fileID is not available here: fingerprints use size and time only.
func fileID(fs.FileInfo) (dev, ino uint64) { return 0, 0 }
