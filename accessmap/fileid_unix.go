//go:build unix

package accessmap

import (
	"io/fs"
	"syscall"
)

// fileID returns the device and inode of a file, so that a file replaced
// by rename (as editors and configuration managers do) is noticed even
// when its size and time are the same.
func fileID(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
