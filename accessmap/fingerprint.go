package accessmap

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// Fingerprint identifies the state of a list of files: for each file its
// device, inode, size and modification time. Two fingerprints are equal
// when no file was replaced, resized or touched in between. It is cheap
// (one stat per file, no reading) and not a content hash: an edit that
// keeps the size within the file system's timestamp resolution can go
// unnoticed until the next change.
type Fingerprint string

// Stat returns the current fingerprint of paths (given as to Load, table
// types allowed). A caller polls it and calls Load again when it differs
// from the Table's Fingerprint. The error is Load's for a missing or
// unreadable file; a missing file still counts in the fingerprint, as
// absent, so that one that may be missing (an optional list) is noticed
// when it appears.
func Stat(paths ...string) (Fingerprint, error) {
	var fp fingerprintBuilder
	var first error
	for _, p := range paths {
		_, path, err := tableSource(p)
		if err != nil {
			return "", err
		}
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			fp.absent(path)
		} else if err == nil {
			fp.add(path, fi)
		} else {
			return "", err
		}
		if first == nil {
			first = err
		}
	}
	return fp.fingerprint(), first
}

type fingerprintBuilder struct{ b strings.Builder }

func (f *fingerprintBuilder) add(path string, fi fs.FileInfo) {
	dev, ino := fileID(fi)
	f.b.WriteString(strconv.Quote(path))
	for _, n := range []uint64{dev, ino, uint64(fi.Size()), uint64(fi.ModTime().UnixNano())} {
		f.b.WriteByte(' ')
		f.b.WriteString(strconv.FormatUint(n, 16))
	}
	f.b.WriteByte('\n')
}

func (f *fingerprintBuilder) absent(path string) {
	f.b.WriteString(strconv.Quote(path))
	f.b.WriteString(" absent\n")
}

func (f *fingerprintBuilder) fingerprint() Fingerprint { return Fingerprint(f.b.String()) }
