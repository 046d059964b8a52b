package accessmap

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	b := filepath.Join(dir, "b")
	writeFile(t, a, "example.com OK\n")
	writeFile(t, b, "example.org OK\n")
	tb, _, err := Load(DefaultOptions(), a, "hash:"+b)
	if err != nil {
		t.Fatal(err)
	}
	stat := func() Fingerprint {
		t.Helper()
		fp, err := Stat(a, "hash:"+b)
		if err != nil {
			t.Fatal(err)
		}
		return fp
	}
	if tb.Fingerprint() == "" || stat() != tb.Fingerprint() {
		t.Fatalf("Stat after Load = %q, table has %q", stat(), tb.Fingerprint())
	}

	steps := []struct {
		name   string
		change func()
	}{
		{"an edit in place that changes the size", func() { writeFile(t, b, "example.org OK\nexample.net OK\n") }},
		{"a touch", func() {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(a, later, later); err != nil {
				t.Fatal(err)
			}
		}},
		{"a replacement by rename with the same size and time", func() {
			fi, err := os.Stat(a)
			if err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(dir, "a.new")
			writeFile(t, tmp, "example.net OK\n")
			if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, a); err != nil {
				t.Fatal(err)
			}
		}},
	}
	prev := stat()
	for _, s := range steps {
		t.Run(s.name+" changes the fingerprint", func(t *testing.T) {
			s.change()
			if now := stat(); now == prev {
				t.Errorf("fingerprint unchanged: %q", now)
			} else {
				prev = now
			}
		})
	}
	t.Run("no change keeps the fingerprint", func(t *testing.T) {
		if stat() != stat() {
			t.Error("fingerprint changed without a change")
		}
	})
	t.Run("a missing file is an error", func(t *testing.T) {
		if _, err := Stat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("a missing file counts as absent: the others' changes and its appearance are seen", func(t *testing.T) {
		missing := filepath.Join(dir, "appears")
		fp1, _ := Stat(a, missing)
		if fp1 == "" {
			t.Fatal("no fingerprint with a missing file")
		}
		if fp2, _ := Stat(a, missing); fp2 != fp1 {
			t.Errorf("fingerprint changed without a change: %q, %q", fp1, fp2)
		}
		later := time.Now().Add(2 * time.Hour)
		if err := os.Chtimes(a, later, later); err != nil {
			t.Fatal(err)
		}
		fp2, _ := Stat(a, missing)
		if fp2 == fp1 {
			t.Errorf("a change to %s went unseen beside a missing file", a)
		}
		writeFile(t, missing, "example.net OK\n")
		fp3, err := Stat(a, missing)
		if err != nil || fp3 == fp2 {
			t.Errorf("after the file appeared: %q, %v; want a new fingerprint, no error", fp3, err)
		}
	})
	t.Run("tables from Parse have none", func(t *testing.T) {
		if tb, _ := parse(t, DefaultOptions(), "a.test OK"); tb.Fingerprint() != "" {
			t.Errorf("fingerprint %q", tb.Fingerprint())
		}
	})
}
