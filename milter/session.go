package milter

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/greylist"
)

// keep wraps a final response (accept) so that go-milter sends it but keeps
// the session object: go-milter replaces the object after any response
// whose Continue() is false, and with it the connection's client address,
// HELO and the next message's context (LIBRARIES.md G1).
type keep struct{ r gomilter.Response }

func (k keep) Response() *gomilter.Message { return k.r.Response() }
func (keep) Continue() bool                { return true }

var respAccept = keep{gomilter.RespAccept}

// session is the state of one milter connection, that is one SMTP session:
// the client, then per message the sender and what was decided.
type session struct {
	srv *Server

	// Connection.
	ip       netip.Addr
	name     string // forward-confirmed client name, or ""
	hostArg  string // the name as the MTA gave it, for logs
	helo     string
	clientID string // address for logs

	// Message; reset by MailFrom, Abort and end of message.
	sender   string
	null     bool
	authUser string
	queueID  string
	deferred []string      // null-sender recipients, decided after the envelope
	waited   time.Duration // longest delay of a retried recipient
	envDone  bool          // the envelope has been decided
}

func (s *session) resetMessage() {
	s.sender, s.null, s.authUser, s.queueID = "", false, "", ""
	s.deferred = s.deferred[:0]
	s.waited = 0
	s.envDone = false
}

// Connect starts a new SMTP session. After XCLIENT Postfix sends a second
// connect on the same milter connection, with the presented client: each
// connect therefore starts from scratch.
func (s *session) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	s.resetMessage()
	s.helo = ""
	s.hostArg = host
	s.ip = clientAddr(family, addr, host, m.Macros)
	s.name = confirmedName(host, m.Macros)
	s.clientID = host
	if s.ip.IsValid() {
		s.clientID = s.ip.String()
	}
	return gomilter.RespContinue, nil
}

// clientAddr finds the client's IP address. go-milter parses the connect
// address with net.ParseIP, which fails on Sendmail's "IPv6:" form, so the
// {client_addr} macro and the bracketed host name are fallbacks.
func clientAddr(family string, addr net.IP, host string, macros map[string]string) netip.Addr {
	if family != "tcp4" && family != "tcp6" {
		return netip.Addr{} // unix socket or unknown: a local client
	}
	if ip, ok := netip.AddrFromSlice(addr); ok {
		return ip.Unmap()
	}
	if ip := greylist.ParseClientAddr(macros["{client_addr}"]); ip.IsValid() {
		return ip
	}
	if strings.HasPrefix(host, "[") {
		if ip := greylist.ParseClientAddr(host); ip.IsValid() {
			return ip
		}
	}
	// Sendmail's "_" macro: "name [addr]" (possibly "(may be forged)").
	if v := macros["_"]; v != "" {
		if i := strings.LastIndexByte(v, '['); i >= 0 {
			if j := strings.IndexByte(v[i:], ']'); j > 0 {
				return greylist.ParseClientAddr(v[i : i+j+1])
			}
		}
	}
	return netip.Addr{}
}

// confirmedName returns the client's host name if the MTA vouches for it.
// Postfix passes its verified name (forward-confirmed) or "[addr]" when it
// has none; Sendmail says how it resolved the name in {client_resolve}.
func confirmedName(host string, macros map[string]string) string {
	if host == "" || strings.HasPrefix(host, "[") || strings.EqualFold(host, "unknown") {
		return ""
	}
	if r, ok := macros["{client_resolve}"]; ok && r != "OK" {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

func (s *session) Helo(name string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.helo = name
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.resetMessage()
	s.sender = from
	s.null = strings.TrimSpace(from) == ""
	s.authUser = m.Macros["{auth_authen}"]
	s.queueID = m.Macros["i"]
	return gomilter.RespContinue, nil
}

func (s *session) request(rcpt string) greylist.Request {
	return greylist.Request{
		Client:     s.ip,
		ClientName: s.name,
		Sender:     s.sender,
		Recipient:  rcpt,
		AuthUser:   s.authUser,
	}
}

// RcptTo decides one recipient. A greylisted recipient gets its own 451
// reply; the transaction goes on for the others.
func (s *session) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	if s.queueID == "" {
		s.queueID = m.Macros["i"] // Postfix opens the queue file after the first accepted recipient
	}
	req := s.request(rcpt)
	if s.null {
		// The null sender is decided after the envelope: address
		// verification probes (MAIL FROM:<> RCPT TO:<x> QUIT) must
		// not be greylisted, and a bounce is only kept waiting when
		// it is really sent.
		if d, ok := s.srv.cfg.Engine.Exempt(req); ok {
			s.logDecision(req, d)
			return gomilter.RespContinue, nil
		}
		s.deferred = append(s.deferred, rcpt)
		return gomilter.RespContinue, nil
	}
	d := s.decide(req)
	if d.Action == greylist.Greylist {
		return s.reply(d), nil
	}
	return gomilter.RespContinue, nil
}

func (s *session) decide(req greylist.Request) greylist.Decision {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.DecisionTimeout)
	defer cancel()
	d := s.srv.cfg.Engine.Decide(ctx, req)
	if d.Reason == greylist.ReasonRetried && d.Waited > s.waited {
		s.waited = d.Waited
	}
	s.logDecision(req, d)
	return d
}

// reply is the SMTP reply for a greylisted recipient or message. A custom
// reply code keeps go-milter's session object (it is not a final response).
func (s *session) reply(d greylist.Decision) gomilter.Response {
	text := storeErrorReply
	if d.Reason != greylist.ReasonStoreError {
		text = formatReply(s.srv.cfg.Reply, d.RetryIn)
	}
	return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), text)
}

// afterEnvelope runs at the first event after DATA. It decides deferred
// null-sender recipients and returns the reply if one is greylisted.
// Otherwise, with nothing left to do for this message, it accepts, so the
// MTA stops sending headers and body to us.
func (s *session) afterEnvelope(m *gomilter.Modifier) (r gomilter.Response, greylisted bool) {
	s.envDone = true
	if s.queueID == "" {
		s.queueID = m.Macros["i"]
	}
	var worst *greylist.Decision
	for _, rcpt := range s.deferred {
		d := s.decide(s.request(rcpt))
		if d.Action == greylist.Greylist && (worst == nil || d.RetryIn > worst.RetryIn) {
			worst = &d
		}
	}
	s.deferred = s.deferred[:0]
	if worst != nil {
		// One reply for the whole message: at this stage the MTA can
		// only refuse the message, for all its recipients.
		return s.reply(*worst), true
	}
	if s.wantHeader() {
		return gomilter.RespContinue, false // the header is added at end of message
	}
	return respAccept, false
}

func (s *session) wantHeader() bool { return s.srv.cfg.AddHeader && s.waited > 0 }

func (s *session) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	if !s.envDone {
		r, _ := s.afterEnvelope(m)
		return r, nil
	}
	return gomilter.RespContinue, nil
}

func (s *session) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	if !s.envDone {
		r, _ := s.afterEnvelope(m)
		return r, nil
	}
	return gomilter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

// Body is the end of the message: the only place where headers may be
// added.
func (s *session) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	defer s.resetMessage()
	if !s.envDone {
		if r, greylisted := s.afterEnvelope(m); greylisted {
			return r, nil
		}
	}
	if s.wantHeader() {
		secs := int64(s.waited / time.Second)
		v := fmt.Sprintf("delayed %d seconds by milter-grey on %s", secs, s.srv.cfg.Hostname)
		if err := m.AddHeader("X-Greylist", v); err != nil {
			// The connection is broken; the MTA will apply its own
			// default. Say so and keep the session alive.
			s.srv.cfg.Log.Warn("cannot add X-Greylist header", "client", s.clientID, "qid", s.queueID, "err", err)
		}
	}
	return respAccept, nil
}

func (s *session) Abort(m *gomilter.Modifier) error {
	s.resetMessage()
	return nil
}

// logDecision writes the decision log line, a stable interface for admins.
func (s *session) logDecision(req greylist.Request, d greylist.Decision) {
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("action", d.Action.String()),
		slog.String("reason", string(d.Reason)),
		slog.String("client", s.clientID),
	)
	if s.name != "" {
		attrs = append(attrs, slog.String("client_name", s.name))
	}
	sender := req.Sender
	if s.null {
		sender = greylist.NullSender
	}
	attrs = append(attrs, slog.String("helo", s.helo), slog.String("sender", sender), slog.String("rcpt", req.Recipient))
	if d.Match != "" {
		attrs = append(attrs, slog.String("match", d.Match))
	}
	if d.Key != "" {
		attrs = append(attrs, slog.String("key", d.Key))
	}
	attrs = append(attrs, slog.Int64("delay", int64(d.Waited/time.Second)))
	if d.Action == greylist.Greylist && d.Reason != greylist.ReasonStoreError {
		attrs = append(attrs, slog.Int64("retry_in", int64((d.RetryIn+time.Second-1)/time.Second)))
	}
	if s.queueID != "" {
		attrs = append(attrs, slog.String("qid", s.queueID))
	}
	if d.Err != nil {
		attrs = append(attrs, slog.String("err", d.Err.Error()))
	}
	s.srv.cfg.Log.LogAttrs(context.Background(), slog.LevelInfo, "decision", attrs...)
}
