package migrate

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/testutil/testci"
)

// A Berkeley DB file written by db_load (Debian's db-util, as Postgrey's
// are written by the same library) reads back through DBDump.
func TestDBDumpReadsABerkeleyDBFile(t *testing.T) {
	load, err := exec.LookPath("db_load")
	if err != nil {
		testci.SkipOrFail(t, "db_load not found (Debian: apt-get install db-util)")
	}
	file := filepath.Join(t.TempDir(), PostgreyTriplets)
	// db_load -T reads key and value lines; a backslash escapes.
	in := "192.0.2.0/alice@sender.test/bob@dest.test\n" + seen(ago(3*day), ago(2*day)) + "\n" +
		"192.0.2.0//carol@dest.test\n" + seen(ago(time.Hour), ago(time.Hour)) + "\n"
	cmd := exec.Command(load, "-T", "-t", "btree", file)
	cmd.Stdin = strings.NewReader(in)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("db_load: %v\n%s", err, out)
	}
	im := NewImporter(opts())
	err = DBDump(context.Background(), file, func(r io.Reader) error { return im.ReadPostgrey(r, file) })
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, im, map[string]greylist.Record{
		"t:192.0.2.0/24 alice@sender.test bob@dest.test": passed(ago(3*day), ago(2*day), 1),
		"t:192.0.2.0/24 <> carol@dest.test":              pending(ago(time.Hour), ago(time.Hour)),
	})
}

func TestDBDumpErrors(t *testing.T) {
	t.Run("not installed: names the Debian package", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		err := DBDump(context.Background(), "postgrey.db", func(io.Reader) error { return nil })
		if !errors.Is(err, ErrNoDBDump) || !strings.Contains(err.Error(), "db-util") {
			t.Errorf("err %v, want ErrNoDBDump naming db-util", err)
		}
	})
	t.Run("not a database: db_dump's own message", func(t *testing.T) {
		if _, err := exec.LookPath("db_dump"); err != nil {
			testci.SkipOrFail(t, "db_dump not found (Debian: apt-get install db-util)")
		}
		file := filepath.Join(t.TempDir(), "postgrey.db")
		if err := os.WriteFile(file, []byte("not a database\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := DBDump(context.Background(), file, func(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err })
		if err == nil || !strings.Contains(err.Error(), "db_dump -p "+file) {
			t.Errorf("err %v, want db_dump's failure naming the command", err)
		}
	})
}

func TestPostgreyFiles(t *testing.T) {
	both, one, none := t.TempDir(), t.TempDir(), t.TempDir()
	for _, f := range []string{filepath.Join(both, PostgreyTriplets), filepath.Join(both, PostgreyClients), filepath.Join(one, PostgreyTriplets)} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name, path string
		want       []string
	}{
		{"a dbdir with both files", both, []string{filepath.Join(both, PostgreyTriplets), filepath.Join(both, PostgreyClients)}},
		{"a dbdir without the clients (auto-whitelist off)", one, []string{filepath.Join(one, PostgreyTriplets)}},
		{"a file", filepath.Join(both, PostgreyClients), []string{filepath.Join(both, PostgreyClients)}},
		{"a directory without them", none, nil},
		{"nothing there", filepath.Join(none, "gone"), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := PostgreyFiles(c.path)
			if !slices.Equal(got, c.want) || (err != nil) != (c.want == nil) {
				t.Errorf("PostgreyFiles = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}
