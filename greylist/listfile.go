package greylist

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// OptionalListPrefix marks a list file that may be absent:
// "?/etc/postgrey/whitelist_clients.local" is read when it exists and
// skipped when it does not, as Postgrey skips its ".local" files. Any other
// missing list file is an error.
const OptionalListPrefix = "?"

// ListFilePath splits a list file as the configuration names it into its
// path and whether it is optional.
func ListFilePath(name string) (path string, optional bool) {
	return strings.CutPrefix(name, OptionalListPrefix)
}

// A LineError is a line of a list file whose entry cannot be parsed. Such
// a line is skipped, not fatal: one bad line in a list a third party
// maintains must not stop the daemon, and with it the mail.
type LineError struct {
	File  string
	Line  int
	Value string // the entry as written
	Err   error  // why it was refused; it names the value
}

func (e LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

func (e LineError) Unwrap() error { return e.Err }

// ListReport collects, over the list files read into it, what the admin
// must be told although the lists loaded: the lines skipped because they
// cannot be parsed, and the optional files that do not exist. The daemon
// logs it and runs; check-config fails on a skipped line.
type ListReport struct {
	Skipped []LineError
	Absent  []string // paths of optional files that do not exist
}

// ReadFile reads the list file the configuration names as name (a path,
// or OptionalListPrefix and a path) and passes each entry to add. An entry
// add refuses is skipped and recorded in r.Skipped; an optional file that
// does not exist is recorded in r.Absent. The error is for a file that
// cannot be read: missing (unless optional), unreadable, or with a line
// too long to be a list entry.
//
// The format is Postgrey's: one entry per line, '#' starts a comment,
// blank lines are skipped. Only the first word of a line is read, so
// "example.com OK" copied from a Postfix access table loads too.
func (r *ListReport) ReadFile(name string, add func(entry string) error) error {
	path, optional := ListFilePath(name)
	f, err := os.Open(path)
	if optional && errors.Is(err, fs.ErrNotExist) {
		r.Absent = append(r.Absent, path)
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	return r.Read(path, f, add)
}

// Read is ReadFile on an open reader; name is the file name it reports.
func (r *ListReport) Read(name string, rd io.Reader, add func(entry string) error) error {
	return eachLine(name, rd, func(line int, text string) error {
		entry := strings.Fields(text)[0]
		if err := add(entry); err != nil {
			r.Skipped = append(r.Skipped, LineError{File: name, Line: line, Value: entry, Err: err})
		}
		return nil
	})
}

// eachLine calls fn with the number and the text of each line of r that
// holds more than a '#' comment, the comment cut off and the spaces
// trimmed, until fn returns an error, which eachLine returns. A read error
// (a line longer than 64 KiB, say) names the file and the line.
func eachLine(name string, r io.Reader, fn func(line int, text string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	line := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		if err := fn(line, text); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return nil
}
