package e2e

import (
	"fmt"
	"net"
	"time"

	"github.com/emersion/go-milter"
)

// envelope is what an MTA tells a milter about one message up to RCPT TO.
type envelope struct {
	ClientIP   string // IPv4 or IPv6 literal
	ClientName string // the name Postfix verified; "" for none ("unknown")
	Helo       string
	From       string
	Rcpt       string
}

// milterRcpt plays an MTA with go-milter's client: one milter session with
// connect, HELO, MAIL FROM and RCPT TO (macros as Postfix sends them), and
// returns the milter's action at RCPT. The session is then aborted.
func milterRcpt(addr string, env envelope) (*milter.Action, error) {
	c := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		Dialer:       &net.Dialer{Timeout: 5 * time.Second},
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		// go-milter servers answer protocol version 2; the client only
		// downgrades for masks within version 2's (docs/libraries.md).
		ActionMask:   milter.OptAddHeader | milter.OptChangeHeader,
		ProtocolMask: 0,
	})
	s, err := c.Session()
	if err != nil {
		return nil, err
	}
	defer s.Close()

	family := milter.FamilyInet
	if ip := net.ParseIP(env.ClientIP); ip != nil && ip.To4() == nil {
		family = milter.FamilyInet6
	}
	name := env.ClientName
	if name == "" {
		name = "unknown"
	}
	if err := s.Macros(milter.CodeConn, "j", "mx.e2e.test", "{daemon_name}", "mx.e2e.test",
		"{client_addr}", env.ClientIP, "{client_name}", name); err != nil {
		return nil, err
	}
	if err := wantContinue("connect")(s.Conn(name, family, 25, env.ClientIP)); err != nil {
		return nil, err
	}
	if err := wantContinue("helo")(s.Helo(env.Helo)); err != nil {
		return nil, err
	}
	if err := s.Macros(milter.CodeMail, "{mail_addr}", env.From); err != nil {
		return nil, err
	}
	if err := wantContinue("mail")(s.Mail(env.From, nil)); err != nil {
		return nil, err
	}
	if err := s.Macros(milter.CodeRcpt, "{rcpt_addr}", env.Rcpt); err != nil {
		return nil, err
	}
	act, err := s.Rcpt(env.Rcpt, nil)
	if err != nil {
		return nil, fmt.Errorf("rcpt: %w", err)
	}
	return act, nil
}

// wantContinue checks the milter's answer to one stage before RCPT.
func wantContinue(stage string) func(*milter.Action, error) error {
	return func(act *milter.Action, err error) error {
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", stage, err)
		case act.Code != milter.ActContinue:
			return fmt.Errorf("%s: milter answered %q, want continue", stage, rune(act.Code))
		}
		return nil
	}
}
