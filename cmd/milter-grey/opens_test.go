package main

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"
)

// openCounter counts how often files are opened, by anyone, through
// inotify: the kernel queues an IN_OPEN event at each open(2), so a count
// read after the code under test returned is exact, whatever library read
// the file.
type openCounter struct {
	fd    int
	paths map[int32]string // by watch descriptor
}

func countOpens(t *testing.T, paths ...string) *openCounter {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	oc := &openCounter{fd: fd, paths: map[int32]string{}}
	for _, p := range paths {
		// Closes are watched too, only so that two opens in a row are
		// two events: inotify merges identical events that follow each
		// other unread.
		wd, err := syscall.InotifyAddWatch(fd, p, syscall.IN_OPEN|syscall.IN_CLOSE)
		if err != nil {
			t.Fatalf("inotify watch %s: %v", p, err)
		}
		oc.paths[int32(wd)] = p
	}
	return oc
}

// take returns the opens of each watched file since the last call.
func (oc *openCounter) take(t *testing.T) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, p := range oc.paths {
		n[p] = 0
	}
	buf := make([]byte, 64<<10)
	for {
		r, err := syscall.Read(oc.fd, buf)
		if errors.Is(err, syscall.EAGAIN) {
			return n
		}
		if err != nil {
			t.Fatalf("inotify read: %v", err)
		}
		// struct inotify_event: wd, mask, cookie, len, then len bytes
		// of name (empty for a watched file).
		for b := buf[:r]; len(b) >= syscall.SizeofInotifyEvent; {
			wd := int32(binary.NativeEndian.Uint32(b[0:]))
			mask := binary.NativeEndian.Uint32(b[4:])
			if mask&syscall.IN_Q_OVERFLOW != 0 {
				t.Fatal("inotify queue overflow: counts lost")
			}
			if mask&syscall.IN_OPEN != 0 {
				n[oc.paths[wd]]++
			}
			b = b[syscall.SizeofInotifyEvent+int(binary.NativeEndian.Uint32(b[12:])):]
		}
	}
}
