package greylist

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestListReportRead(t *testing.T) {
	errBad := errors.New("bad entry")
	cases := []struct {
		name    string
		text    string
		want    []string
		skipped []int  // lines reported as skipped
		wantErr string // prefix of the error, "" for none
	}{
		{"one entry a line", "a\nb\nc\n", []string{"a", "b", "c"}, nil, ""},
		{"last line without newline", "a\nb", []string{"a", "b"}, nil, ""},
		{"comment lines skipped", "# header\na\n  # indented comment\nb\n", []string{"a", "b"}, nil, ""},
		{"comment after an entry", "a # the first\nb#tight\n", []string{"a", "b"}, nil, ""},
		{"blank and space-only lines skipped", "\n\na\n \t \nb\n\n", []string{"a", "b"}, nil, ""},
		{"only the first word is used", "a OK\nb   reason words here\n\tc\tx\n", []string{"a", "b", "c"}, nil, ""},
		{"CRLF line ends", "a\r\nb\r\n", []string{"a", "b"}, nil, ""},
		{"empty file", "", nil, nil, ""},
		{"a bad line is skipped, the rest loads", "# comment\n\ngood\nbad\ngood2\n", []string{"good", "good2"}, []int{4}, ""},
		{"every bad line is reported", "bad\nok\nbad # again\n", []string{"ok"}, []int{1, 3}, ""},
		{"line too long is an error", "good\n" + strings.Repeat("x", 70*1024) + "\n", []string{"good"}, nil, "test.list:2: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			var r ListReport
			err := r.Read("test.list", strings.NewReader(c.text), func(e string) error {
				if e == "bad" {
					return errBad
				}
				got = append(got, e)
				return nil
			})
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("Read: %v", err)
			case c.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), c.wantErr)):
				t.Fatalf("Read error = %v, want %q…", err, c.wantErr)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("entries = %q, want %q", got, c.want)
			}
			if len(r.Skipped) != len(c.skipped) {
				t.Fatalf("skipped %v, want lines %v", r.Skipped, c.skipped)
			}
			for i, s := range r.Skipped {
				if s.File != "test.list" || s.Line != c.skipped[i] || s.Value != "bad" || !errors.Is(s, errBad) {
					t.Errorf("skipped[%d] = %+v, want test.list:%d, value bad, wrapping the entry's error", i, s, c.skipped[i])
				}
				if want := fmt.Sprintf("test.list:%d: bad entry", c.skipped[i]); s.Error() != want {
					t.Errorf("skipped[%d].Error() = %q, want %q", i, s.Error(), want)
				}
			}
		})
	}
}

func TestListReportReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "whitelist_clients")
	text := "# Postgrey-style list\n192.0.2.0/24\nexample.com  # a name\n\n999.1.1.1\n198.51.100\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("a bad line is reported with file, line and value; the others load", func(t *testing.T) {
		var l ClientList
		var r ListReport
		if err := r.ReadFile(path, l.Add); err != nil {
			t.Fatalf("ReadFile: %v", err)
		}
		if l.Len() != 3 {
			t.Errorf("loaded %d entries, want 3", l.Len())
		}
		if len(r.Skipped) != 1 {
			t.Fatalf("skipped = %v, want one line", r.Skipped)
		}
		s := r.Skipped[0]
		if s.File != path || s.Line != 5 || s.Value != "999.1.1.1" || !strings.Contains(s.Error(), path+":5: ") || !strings.Contains(s.Error(), `"999.1.1.1"`) {
			t.Errorf("skipped line = %+v (%v), want %s:5 naming 999.1.1.1", s, s, path)
		}
	})
	t.Run("the optional prefix reads a file that exists", func(t *testing.T) {
		var l ClientList
		var r ListReport
		if err := r.ReadFile(OptionalListPrefix+path, l.Add); err != nil {
			t.Fatalf("ReadFile: %v", err)
		}
		if l.Len() != 3 || len(r.Skipped) != 1 || len(r.Absent) != 0 {
			t.Errorf("loaded %d, skipped %v, absent %v; want 3, one, none", l.Len(), r.Skipped, r.Absent)
		}
	})
	t.Run("a missing file is an error", func(t *testing.T) {
		var r ListReport
		err := r.ReadFile(filepath.Join(dir, "absent"), func(string) error { return nil })
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, "absent")) {
			t.Errorf("ReadFile(absent) = %v, want ErrNotExist naming the file", err)
		}
	})
	t.Run("a missing optional file is noted, not an error", func(t *testing.T) {
		var r ListReport
		absent := filepath.Join(dir, "whitelist_clients.local")
		if err := r.ReadFile(OptionalListPrefix+absent, func(string) error { return nil }); err != nil {
			t.Fatalf("ReadFile(?absent) = %v", err)
		}
		if len(r.Absent) != 1 || r.Absent[0] != absent {
			t.Errorf("Absent = %q, want [%q]", r.Absent, absent)
		}
	})
	t.Run("an optional file that cannot be read is still an error", func(t *testing.T) {
		var r ListReport
		err := r.ReadFile(OptionalListPrefix+dir, func(string) error { return nil }) // a directory
		if err == nil || len(r.Absent) != 0 {
			t.Errorf("ReadFile(?directory) = %v, absent %q; want an error", err, r.Absent)
		}
	})
	t.Run("reports accumulate over files", func(t *testing.T) {
		var l ClientList
		var r ListReport
		for _, name := range []string{path, OptionalListPrefix + filepath.Join(dir, "x.local"), path} {
			if err := r.ReadFile(name, l.Add); err != nil {
				t.Fatal(err)
			}
		}
		if len(r.Skipped) != 2 || len(r.Absent) != 1 {
			t.Errorf("skipped %v, absent %q; want two and one", r.Skipped, r.Absent)
		}
	})
}

func TestListFilePath(t *testing.T) {
	for _, c := range []struct {
		name     string
		path     string
		optional bool
	}{
		{"/etc/postgrey/whitelist_clients", "/etc/postgrey/whitelist_clients", false},
		{"?/etc/postgrey/whitelist_clients.local", "/etc/postgrey/whitelist_clients.local", true},
		{"?relative.local", "relative.local", true},
		{"??double", "?double", true}, // one prefix is removed: the rest is the path
	} {
		path, optional := ListFilePath(c.name)
		if path != c.path || optional != c.optional {
			t.Errorf("ListFilePath(%q) = %q, %v; want %q, %v", c.name, path, optional, c.path, c.optional)
		}
	}
}

// FuzzListFile: any list text, as a third party might ship it, loads
// without a panic: every entry line is either loaded or skipped with its
// line number and value, and the lists that result can be matched against.
func FuzzListFile(f *testing.F) {
	for _, seed := range []string{
		"# Postgrey's forms\n192.0.2\n10.1\n192.0.2.7\n198.51.100.0/24\n2001:db8::/32\nexample.com\n.example.net\n/^mx\\d+\\.example\\.org$/\n",
		"10\n999.1.1\n192.0.2.\n010.1\n/(/\n/(?=x)/\n*.example.com\n",
		"postmaster@\nuser@example.org\n@\n@example.org\na@b@c\n",
		"a OK\r\nb # comment\n\t\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var lines []int // the numbers of the lines that hold an entry
		for i, l := range strings.Split(text, "\n") {
			if before, _, _ := strings.Cut(l, "#"); len(strings.Fields(before)) > 0 {
				lines = append(lines, i+1)
			}
		}
		var clients ClientList
		var rcpts RecipientList
		for _, l := range []struct {
			name string
			add  func(string) error
		}{{"clients", clients.Add}, {"recipients", rcpts.Add}} {
			loaded := 0
			var r ListReport
			err := r.Read("f", strings.NewReader(text), func(e string) error {
				err := l.add(e)
				if err == nil {
					loaded++
				}
				return err
			})
			if err != nil {
				if !strings.HasPrefix(err.Error(), "f:") {
					t.Fatalf("%s: error %q does not name the file", l.name, err)
				}
				return // a line too long for a list: the whole file is refused
			}
			if loaded+len(r.Skipped) != len(lines) {
				t.Fatalf("%s: %d loaded + %d skipped, but %d entry lines", l.name, loaded, len(r.Skipped), len(lines))
			}
			for _, s := range r.Skipped {
				if !slices.Contains(lines, s.Line) || s.Value == "" || strings.ContainsAny(s.Value, " \t\r\n#") ||
					!strings.HasPrefix(s.Error(), fmt.Sprintf("f:%d: ", s.Line)) {
					t.Fatalf("%s: skipped line %+v (%v) is not an entry line of the file", l.name, s, s)
				}
			}
		}
		for _, ip := range []string{"192.0.2.1", "10.1.2.3", "2001:db8::1", "::ffff:192.0.2.1"} {
			clients.Match(netip.MustParseAddr(ip), "mx1.example.com")
		}
		rcpts.Match("postmaster@example.org")
	})
}
