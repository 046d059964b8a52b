package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Running unprivileged. Started as root with `user` set, the daemon opens
// its sockets (privileged ports, directories only root may write), gives
// them to that user, makes sure the Badger directory is the user's, and
// then drops to the user's uid and gids for good, before it reads a list
// file, opens the store or serves a connection. Started as root without
// `user` it warns. Started as anyone else, `user` may only name the
// account it already runs as (a systemd unit's User=): a process cannot
// become someone else.

// identity is the account the daemon runs as after the drop.
type identity struct {
	name   string // as configured, for messages
	uid    int
	gid    int
	groups []int // supplementary groups: the user's, as login(1) and systemd give them
}

// privileges is what start needs to know about users before it listens.
type privileges struct {
	// drop is the identity to switch to; nil when the daemon stays as it
	// is (not root, or root without user).
	drop *identity
	// sockUID and sockGID are the owner and group given to unix sockets;
	// -1 leaves them as created.
	sockUID, sockGID int
}

// lookupUser resolves a user name or a numeric uid.
func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err == nil {
		return u, nil
	}
	if _, nerr := strconv.ParseUint(name, 10, 31); nerr == nil {
		if u, ierr := user.LookupId(name); ierr == nil {
			return u, nil
		}
	}
	return nil, fmt.Errorf("no such user %q", name)
}

// lookupGroup resolves a group name or a numeric gid.
func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, nerr := strconv.ParseUint(name, 10, 31); nerr == nil {
			if g, ierr := user.LookupGroupId(name); ierr == nil {
				return strconv.Atoi(g.Gid)
			}
		}
		return 0, fmt.Errorf("no such group %q", name)
	}
	return strconv.Atoi(g.Gid)
}

// resolveIdentity resolves user and group (the user's primary group when
// group is ""); nil when user is "". An error comes with the key it is
// about.
func resolveIdentity(userName, groupName string) (*identity, string, error) {
	if userName == "" {
		return nil, "", nil
	}
	u, err := lookupUser(userName)
	if err != nil {
		return nil, "user", err
	}
	id := &identity{name: userName}
	if id.uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, "user", fmt.Errorf("user %q: uid %q is not a number", userName, u.Uid)
	}
	if id.gid, err = strconv.Atoi(u.Gid); err != nil {
		return nil, "user", fmt.Errorf("user %q: gid %q is not a number", userName, u.Gid)
	}
	if groupName != "" {
		if id.gid, err = lookupGroup(groupName); err != nil {
			return nil, "group", err
		}
	}
	id.groups = []int{id.gid}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, "user", fmt.Errorf("user %q: its groups: %w", userName, err)
	}
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil && !slices.Contains(id.groups, n) {
			id.groups = append(id.groups, n)
		}
	}
	return id, "", nil
}

// checkAccounts resolves user, group and socket_group, for check-config
// and start: a name that does not resolve is an error that names its key.
func (c *config) checkAccounts() (*identity, int, error) {
	id, key, err := resolveIdentity(c.User, c.Group)
	if err != nil {
		return nil, 0, &configError{path: c.path, line: keyLine(c.data, []string{key}), key: key, err: err}
	}
	sockGID := -1
	if c.SocketGroup != "" {
		if sockGID, err = lookupGroup(c.SocketGroup); err != nil {
			return nil, 0, &configError{path: c.path, line: keyLine(c.data, []string{"socket_group"}), key: "socket_group", err: err}
		}
	}
	return id, sockGID, nil
}

// preparePrivileges resolves the accounts and decides what start does
// with them. euid and egid are the process's (parameters for tests).
func preparePrivileges(c *config, euid, egid int, log *slog.Logger) (*privileges, error) {
	id, sockGID, err := c.checkAccounts()
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
		if id.uid == 0 {
			log.Warn("running as root: user names root; set user to an unprivileged account", "user", id.name)
			break
		}
		p.drop, p.sockUID = id, id.uid
	case id.uid != euid:
		return nil, &configError{path: c.path, line: keyLine(c.data, []string{"user"}), key: "user",
			err: fmt.Errorf("%q is uid %d, but milter-grey runs as uid %d and only root can change user "+
				"(start it as root, or as %s, or remove user)", c.User, id.uid, euid, c.User)}
	case c.Group != "" && id.gid != egid:
		return nil, &configError{path: c.path, line: keyLine(c.data, []string{"group"}), key: "group",
			err: fmt.Errorf("%q is gid %d, but milter-grey runs as gid %d and only root can change group "+
				"(start it as root, or with that group, or remove group)", c.Group, id.gid, egid)}
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
	if p == nil || p.drop == nil || isRedis(spec) {
		return nil
	}
	id := p.drop
	dir := strings.TrimPrefix(spec, "badger:")
	err := os.Mkdir(dir, 0o700)
	switch {
	case err == nil:
		// Lchown: if someone swapped the new directory for a symlink, do
		// not follow it.
		if err := os.Lchown(dir, id.uid, id.gid); err != nil {
			return fmt.Errorf("store %s: give it to %s: %w", dir, id.name, err)
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
		if !ok || int(st.Uid) == id.uid {
			return nil
		}
		return fmt.Errorf("store %s: %s is owned by uid %d, not by %s (uid %d), which milter-grey runs as; "+
			"milter-grey does not change the owner of an existing database: run chown -R %s: %s",
			dir, path, st.Uid, id.name, id.uid, id.name, dir)
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
	if err := syscall.Setgroups(id.groups); err != nil {
		return fmt.Errorf("drop privileges: setgroups %v: %w", id.groups, err)
	}
	if err := syscall.Setgid(id.gid); err != nil {
		return fmt.Errorf("drop privileges: setgid %d: %w", id.gid, err)
	}
	if err := syscall.Setuid(id.uid); err != nil {
		return fmt.Errorf("drop privileges: setuid %d: %w", id.uid, err)
	}
	if os.Getuid() != id.uid || os.Geteuid() != id.uid || os.Getgid() != id.gid || os.Getegid() != id.gid {
		return fmt.Errorf("drop privileges: still uid %d/%d gid %d/%d after switching to %s",
			os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid(), id.name)
	}
	if syscall.Setuid(0) == nil {
		return errors.New("drop privileges: could become root again after the switch")
	}
	log.Info("dropped privileges", "user", id.name, "uid", id.uid, "gid", id.gid, "groups", fmt.Sprint(id.groups))
	return nil
}
