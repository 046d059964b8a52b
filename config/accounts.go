package config

import (
	"fmt"
	"os/user"
	"slices"
	"strconv"
)

// Account is a user the daemon can run as: its ids, resolved from the
// names of the configuration.
type Account struct {
	Name   string // as configured, for messages
	UID    int
	GID    int
	Groups []int // supplementary groups: the user's, as login(1) and systemd give them
}

// LookupAccounts resolves user, group and socket_group in the system's
// account database: user (nil when unset) with group or its primary group,
// and the gid for unix sockets (-1 when socket_group is unset). A name
// that does not resolve is an error that names its key. It is not part of
// Load: a configuration is valid anywhere, its user exists on this host or
// not.
func (c *Config) LookupAccounts() (u *Account, socketGID int, err error) {
	u, key, err := resolveAccount(c.User, c.Group)
	if err != nil {
		return nil, 0, c.KeyError(key, err)
	}
	socketGID = -1
	if c.SocketGroup != "" {
		if socketGID, err = lookupGroup(c.SocketGroup); err != nil {
			return nil, 0, c.KeyError("socket_group", err)
		}
	}
	return u, socketGID, nil
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

// resolveAccount resolves user and group (the user's primary group when
// group is ""); nil when user is "". An error comes with the key it is
// about.
func resolveAccount(userName, groupName string) (*Account, string, error) {
	if userName == "" {
		return nil, "", nil
	}
	u, err := lookupUser(userName)
	if err != nil {
		return nil, "user", err
	}
	a := &Account{Name: userName}
	if a.UID, err = strconv.Atoi(u.Uid); err != nil {
		return nil, "user", fmt.Errorf("user %q: uid %q is not a number", userName, u.Uid)
	}
	if a.GID, err = strconv.Atoi(u.Gid); err != nil {
		return nil, "user", fmt.Errorf("user %q: gid %q is not a number", userName, u.Gid)
	}
	if groupName != "" {
		if a.GID, err = lookupGroup(groupName); err != nil {
			return nil, "group", err
		}
	}
	a.Groups = []int{a.GID}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, "user", fmt.Errorf("user %q: its groups: %w", userName, err)
	}
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil && !slices.Contains(a.Groups, n) {
			a.Groups = append(a.Groups, n)
		}
	}
	return a, "", nil
}
