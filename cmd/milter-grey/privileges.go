package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/milter-grey/milter-grey/config"
)

// Running unprivileged. Started as root with `user` set, the daemon opens
// its sockets (privileged ports, directories only root may write), gives
// them to that user, makes sure the Badger directory is the user's, and
// then drops to the user's uid and gids for good, before it reads a list
// file, opens the store or serves a connection. Started as root without
// `user` it warns. Started as anyone else, `user` may only name the
// account it already runs as (a systemd unit's User=): a process cannot
// become someone else.

// privileges is what start needs to know about users before it listens.
type privileges struct {
	// drop is the account to switch to; nil when the daemon stays as it
	// is (not root, or root without user).
	drop *config.Account
	// sockUID and sockGID are the owner and group given to unix sockets;
	// -1 leaves them as created.
	sockUID, sockGID int
}

// preparePrivileges resolves the accounts and decides what start does
// with them. euid and egid are the process's (parameters for tests).
func preparePrivileges(c *config.Config, euid, egid int, log *slog.Logger) (*privileges, error) {
	id, sockGID, err := c.LookupAccounts()
	if err != nil {
		return nil, err
	}
	p := &privileges{sockUID: -1, sockGID: sockGID}
	switch {
	case id == nil:
		if euid == 0 {
			log.Warn("running as root; set user (and start as root) or run milter-grey as an unprivileged user: " +
				"it parses mail from anyone")
		}
	case euid == 0:
		if id.UID == 0 {
			log.Warn("running as root: user names root; set user to an unprivileged account", "user", id.Name)
			break
		}
		p.drop, p.sockUID = id, id.UID
	case id.UID != euid:
		return nil, c.KeyError("user", fmt.Errorf("%q is uid %d, but milter-grey runs as uid %d and only root can change user "+
			"(start it as root, or as %s, or remove user)", c.User, id.UID, euid, c.User))
	case c.Group != "" && id.GID != egid:
		return nil, c.KeyError("group", fmt.Errorf("%q is gid %d, but milter-grey runs as gid %d and only root can change group "+
			"(start it as root, or with that group, or remove group)", c.Group, id.GID, egid))
	}
	return p, nil
}

// ownSocket gives a unix socket its configured owner and group.
func (p *privileges) ownSocket(key, path string) error {
	if p == nil || (p.sockUID < 0 && p.sockGID < 0) {
		return nil
	}
	if err := os.Lchown(path, p.sockUID, p.sockGID); err != nil {
		return fmt.Errorf("%s: give the socket to uid %d gid %d: %w", key, p.sockUID, p.sockGID, err)
	}
	return nil
}

// prepareStore makes sure the user the daemon drops to can open a Badger
// store. A missing directory is created (its parent must exist) and given
// to the user. An existing one must already be the user's, and so must
// the files in it: the daemon never changes the owner of data it did not
// create (a mistyped store path must not turn /srv over to the daemon),
// so the error says what to run.
func (p *privileges) prepareStore(spec string) error {
	if p == nil || p.drop == nil || config.IsRedis(spec) {
		return nil
	}
	id := p.drop
	dir := strings.TrimPrefix(spec, "badger:")
	err := os.Mkdir(dir, 0o700)
	switch {
	case err == nil:
		// Lchown: if someone swapped the new directory for a symlink, do
		// not follow it.
		if err := os.Lchown(dir, id.UID, id.GID); err != nil {
			return fmt.Errorf("store %s: give it to %s: %w", dir, id.Name, err)
		}
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("store %s: its parent directory does not exist (create it, or the store directory, first): %w", dir, err)
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("store %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("store %s: not a directory", dir)
	}
	notOwned := func(path string, fi fs.FileInfo) error {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || int(st.Uid) == id.UID {
			return nil
		}
		return fmt.Errorf("store %s: %s is owned by uid %d, not by %s (uid %d), which milter-grey runs as; "+
			"milter-grey does not change the owner of an existing database: run chown -R %s: %s",
			dir, path, st.Uid, id.Name, id.UID, id.Name, dir)
	}
	if err := notOwned(dir, fi); err != nil {
		return err
	}
	// Badger keeps its files in the directory itself.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	for _, e := range entries {
		efi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if err := notOwned(filepath.Join(dir, e.Name()), efi); err != nil {
			return err
		}
	}
	return nil
}

// dropPrivileges switches the whole process (every thread: Go applies
// these calls to all of them on Linux) to the identity for good, and
// checks that there is no way back.
func (p *privileges) dropPrivileges(log *slog.Logger) error {
	if p == nil || p.drop == nil {
		return nil
	}
	id := p.drop
	if err := syscall.Setgroups(id.Groups); err != nil {
		return fmt.Errorf("drop privileges: setgroups %v: %w", id.Groups, err)
	}
	if err := syscall.Setgid(id.GID); err != nil {
		return fmt.Errorf("drop privileges: setgid %d: %w", id.GID, err)
	}
	if err := syscall.Setuid(id.UID); err != nil {
		return fmt.Errorf("drop privileges: setuid %d: %w", id.UID, err)
	}
	if os.Getuid() != id.UID || os.Geteuid() != id.UID || os.Getgid() != id.GID || os.Getegid() != id.GID {
		return fmt.Errorf("drop privileges: still uid %d/%d gid %d/%d after switching to %s",
			os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid(), id.Name)
	}
	if syscall.Setuid(0) == nil {
		return errors.New("drop privileges: could become root again after the switch")
	}
	log.Info("dropped privileges", "user", id.Name, "uid", id.UID, "gid", id.GID, "groups", fmt.Sprint(id.Groups))
	return nil
}
