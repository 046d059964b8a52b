package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"syscall"

	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/internal/sockspec"
)

// parseListen reads a socket specification (sockspec.Parse).
func parseListen(spec string) (network, address string, err error) { return sockspec.Parse(spec) }

// isLoopback reports whether a TCP listen address stays on this host.
func isLoopback(address string) bool { return sockspec.IsLoopback(address) }

// listen opens the milter socket. The milter protocol has no
// authentication, so a non-loopback TCP address needs allow_public_listen.
// A stale unix socket left by a crash is removed; a live one is not.
func listen(c *config.Config) (net.Listener, error) {
	return listenSpec(c, c.Listen, "listen", milterExposure, nil, nil)
}

// listenAll opens the milter socket and, when admin_listen is set, the
// admin socket (else nil), giving unix sockets the owner and group p says.
func listenAll(c *config.Config, p *privileges, log *slog.Logger) (milterLn, adminLn net.Listener, err error) {
	milterLn, err = listenSpec(c, c.Listen, "listen", milterExposure, p, log)
	if err != nil || c.AdminListen == "" {
		return milterLn, nil, err
	}
	adminLn, err = listenSpec(c, c.AdminListen, "admin_listen", adminExposure, p, log)
	if err != nil {
		milterLn.Close()
		return nil, nil, err
	}
	return milterLn, adminLn, nil
}

// What a stranger who reaches each listener could do, for the messages.
const (
	milterExposure = "use the milter"
	adminExposure  = "read the greylist and the metrics"
)

// listenTCP binds a TCP address (a variable for the tests, which may not
// bind a public one).
var listenTCP = func(address string) (net.Listener, error) { return net.Listen("tcp", address) }

// exposure checks a TCP listen address against allow_public_listen: a
// non-loopback address is an error without it, and a warning to log with
// it ("" for loopback).
func exposure(c *config.Config, key, address, what string) (warning string, err error) {
	if isLoopback(address) {
		return "", nil
	}
	if !c.AllowPublic {
		return "", fmt.Errorf("%s %s: not a loopback address; anyone who reaches it can %s (set allow_public_listen = true if a firewall protects it)", key, address, what)
	}
	return fmt.Sprintf("%s %s is not a loopback address (allow_public_listen = true): "+
		"anyone who reaches it can %s; make sure a firewall protects it", key, address, what), nil
}

// listenSpec opens the socket spec names for the config key key (listen
// or admin_listen); what says what a stranger could do with it. A unix
// socket gets socket_mode, and the owner and group p says (p may be nil);
// a public TCP address is logged as a warning on log (may be nil).
func listenSpec(c *config.Config, spec, key, what string, p *privileges, log *slog.Logger) (net.Listener, error) {
	network, address, err := parseListen(spec)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		warning, err := exposure(c, key, address, what)
		if err != nil {
			return nil, err
		}
		ln, err := listenTCP(address)
		if err == nil && warning != "" && log != nil {
			log.Warn(warning, "key", key, "address", ln.Addr().String())
		}
		return ln, err
	}
	if err := removeStaleSocket(address); err != nil {
		return nil, err
	}
	mode, _ := config.ParseMode(c.SocketMode) // validated with the config
	// Create the socket with no more than its final mode, so that it is
	// never open to others between creation and chmod. The umask is the
	// process's; nothing else creates files at start-up.
	old := syscall.Umask(0o777 &^ int(mode))
	ln, err := net.Listen("unix", address)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(address, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", address, err)
	}
	// Owner and group after the mode: until then only the creator (root,
	// or the daemon's user) and its group may connect.
	if err := p.ownSocket(key, address); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s: another process is listening on it", path)
	}
	// Only a refused connection proves nobody listens: a busy live
	// socket may fail otherwise (EAGAIN) and must not be removed.
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s: cannot tell whether it is in use: %w", path, err)
	}
	return os.Remove(path)
}
