// Package milter connects the greylist engine to MTAs: it speaks the milter
// protocol (through go-milter) with Postfix and Sendmail, keeps one session
// per SMTP connection, turns go-milter's callbacks into engine calls (a
// greylist.Message per transaction, each recipient decided at its stage),
// and the engine's decisions into SMTP replies, headers and log lines. It
// holds no policy: which recipient passes is the engine's rule.
//
// What it works around in go-milter is in docs/libraries.md: a final
// reply replaces the session object (so sessions never send one), there
// is no DATA callback, nothing is called when the MTA drops a connection
// mid-message, and the server has no idle deadline, session bound or
// graceful shutdown (conn.go's listener adds them).
package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/greylist"
)

// Config configures a Server.
type Config struct {
	Engine *greylist.Engine
	// Reply is the greylist reply template (DefaultReply when empty).
	Reply string
	// AddHeader adds "X-Greylist: delayed N seconds by milter-grey on
	// HOST" to messages that were delayed.
	AddHeader bool
	// Hostname names this host in the header (os.Hostname when empty).
	Hostname string
	// DecisionTimeout bounds the store work for one recipient, well inside
	// the MTA's milter_command_timeout (default 5s).
	DecisionTimeout time.Duration
	// IdleTimeout closes a milter connection silent for this long (default
	// 10 minutes: longer than an SMTP server waits for its client).
	IdleTimeout time.Duration
	// MaxSessions bounds the milter connections open at once (0: no
	// bound). Beyond it new connections wait to be accepted.
	MaxSessions int
	// Log receives one line per decision; nil discards them.
	Log *slog.Logger

	// NewDKIM returns a verifier for one message whose listed sender SPF
	// did not prove; nil means no DKIM (such senders are greylisted).
	NewDKIM func() *auth.DKIMVerifier
	// DKIMTimeout bounds the wait for DKIM results at end of message.
	DKIMTimeout time.Duration

	// DryRun decides and records everything but never refuses: a
	// greylisted recipient is logged (dry_run=true) and accepted. Admins
	// use it to fill the database before turning greylisting on.
	DryRun bool
	// OnDecision, when set, is called with every decision logged (for
	// metrics).
	OnDecision func(d greylist.Decision)
}

// Server serves milter connections.
type Server struct {
	cfg Config

	mu        sync.Mutex
	closed    bool
	listeners []*trackingListener
}

// NewServer returns a Server; cfg.Engine is required.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("milter: no engine")
	}
	if cfg.Reply == "" {
		cfg.Reply = DefaultReply
	}
	if err := ValidateReply(cfg.Reply); err != nil {
		return nil, fmt.Errorf("milter: %w", err)
	}
	if cfg.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			h = "localhost"
		}
		cfg.Hostname = h
	}
	if cfg.DecisionTimeout == 0 {
		cfg.DecisionTimeout = 5 * time.Second
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.DKIMTimeout == 0 {
		cfg.DKIMTimeout = auth.DefaultTimeout
	}
	return &Server{cfg: cfg}, nil
}

// newSession is go-milter's NewMilter, called right after Accept for the
// connection just accepted. go-milter also calls it after every final
// response, which would lose the connection's state (docs/libraries.md);
// sessions therefore never give a final response: see keep.
func (s *Server) newSession(tc *trackedConn) gomilter.Milter {
	sess := &session{srv: s}
	if tc != nil {
		tc.onClose = sess.connClosed
	}
	return sess
}

// Serve accepts milter connections on ln until Shutdown, which closes ln.
func (s *Server) Serve(ln net.Listener) error {
	tl := newTrackingListener(ln, s.cfg.IdleTimeout, s.cfg.MaxSessions)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners = append(s.listeners, tl)
	s.mu.Unlock()
	gm := &gomilter.Server{
		NewMilter: func() gomilter.Milter {
			tc := tl.accepted
			tl.accepted = nil // claimed once; later calls get none
			return s.newSession(tc)
		},
		Actions: gomilter.OptAddHeader,
		// No unknown-command events: go-milter closes the session on
		// SMFIC_UNKNOWN (docs/libraries.md). Header values keep the space
		// after the colon, so DKIM's simple header canonicalization
		// sees each field exactly as sent.
		Protocol: gomilter.OptNoUnknown | gomilter.OptHeaderLeadingSpace,
	}
	err := gm.Serve(tl)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil // Accept failed because Shutdown closed the listener
	}
	return err
}

// Shutdown stops accepting connections and waits for open sessions to
// end. When ctx is done first it closes them (the MTA then applies its
// milter_default_action to what was in flight) and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	// The listeners are closed here, not by go-milter's Close, whose flag
	// is unsynchronised and which misses a listener that Serve has not
	// handed over yet.
	s.mu.Lock()
	s.closed = true
	ls := append([]*trackingListener(nil), s.listeners...)
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	done := make(chan struct{})
	go func() {
		for _, l := range ls {
			l.wg.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, l := range ls {
			l.closeAll()
		}
		<-done
		return ctx.Err()
	}
}

// OpenSessions is the number of milter connections open now.
func (s *Server) OpenSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.listeners {
		n += l.open()
	}
	return n
}
