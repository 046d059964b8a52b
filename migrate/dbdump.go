package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Postgrey's database files in its --dbdir.
const (
	PostgreyTriplets = "postgrey.db"
	PostgreyClients  = "postgrey_clients.db"
)

// ErrNoDBDump is returned by DBDump when no db_dump program is installed.
var ErrNoDBDump = errors.New("db_dump not found: install Debian's db-util package, which reads Postgrey's Berkeley DB files")

// dbDumpNames are the names of db_dump, generic first (db-util), then
// the versioned one (db5.3-util).
var dbDumpNames = []string{"db_dump", "db5.3_dump"}

// PostgreyFiles expands a path an admin names into Postgrey database
// files: a directory (Postgrey's --dbdir) gives those of its two files it
// holds, a file itself.
func PostgreyFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	var files []string
	for _, name := range []string{PostgreyTriplets, PostgreyClients} {
		p := filepath.Join(path, name)
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: no %s or %s: not a Postgrey database directory", path, PostgreyTriplets, PostgreyClients)
	}
	return files, nil
}

// DBDump runs db_dump -p on a Berkeley DB file and hands its output to
// read. When the file's directory holds a Berkeley DB environment, as
// Postgrey's --dbdir does (__db.001 and transaction logs), db_dump joins it
// (-h): what Postgrey has not yet written back into the file lives in the
// environment, and a plain read of the file can miss all of it.
func DBDump(ctx context.Context, file string, read func(io.Reader) error) error {
	bin := ""
	for _, name := range dbDumpNames {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		return ErrNoDBDump
	}
	args := []string{"-p", file}
	dir := filepath.Dir(file)
	if _, err := os.Stat(filepath.Join(dir, "__db.001")); err == nil {
		args = []string{"-p", "-h", dir, filepath.Base(file)}
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("db_dump %s: %w", file, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("db_dump %s: %w", file, err)
	}
	readErr := read(out)
	io.Copy(io.Discard, out) // let db_dump finish if read stopped early
	waitErr := cmd.Wait()
	if waitErr != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = waitErr.Error()
		}
		return fmt.Errorf("%s %s: %s", filepath.Base(bin), strings.Join(args, " "), msg)
	}
	return readErr
}
