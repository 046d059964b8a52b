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

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/envelope"
	"github.com/milter-grey/milter-grey/greylist"
)

// keep wraps a final response (accept) so that go-milter sends it but keeps
// the session object: go-milter replaces the object after any response
// whose Continue() is false, and with it the connection's client address,
// HELO and the next message's context (docs/libraries.md).
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
	msg      greylist.Message
	queueID  string
	deferred []envelope.Address // null-sender recipients, decided after the envelope
	pending  []envelope.Address // listed senders awaiting DKIM at end of message
	waited   time.Duration      // longest delay of a retried recipient
	bypass   string             // how a bypassed recipient's sender was proven
	envDone  bool               // the envelope has been decided
	dkim     *auth.DKIMVerifier

	headerBytes int // of this message, against maxHeaderBytes
	fromFields  int // From header fields seen by the DKIM verifier
	// msgLog logs this message's decisions with the attributes they share
	// (client, HELO, sender) formatted once: a message to ten recipients
	// logs ten lines, and formatting is most of a line's cost.
	msgLog *slog.Logger
}

// Bounds on per-message state, far above what an MTA sends (Postfix's
// smtpd_recipient_limit is 1000, header_size_limit 100 KiB), so that a
// hostile milter client cannot grow it without end.
const (
	maxKeptRecipients = 1000
	maxHeaderBytes    = 4 << 20
)

func (s *session) resetMessage() {
	s.msg = greylist.Message{Client: s.ip, ClientName: s.name, Helo: s.helo}
	s.queueID = ""
	s.msgLog = nil
	s.deferred = s.deferred[:0]
	s.pending = s.pending[:0]
	s.waited = 0
	s.headerBytes, s.fromFields = 0, 0
	s.bypass = ""
	s.envDone = false
	s.stopDKIM()
}

func (s *session) stopDKIM() {
	if s.dkim != nil {
		s.dkim.Abort()
		s.dkim = nil
	}
}

// connClosed runs when the milter connection closes, also when the MTA
// dropped it mid-message without an abort.
func (s *session) connClosed() { s.resetMessage() }

// Connect starts a new SMTP session. After XCLIENT Postfix sends a second
// connect on the same milter connection, with the presented client: each
// connect therefore starts from scratch.
func (s *session) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	s.helo = ""
	s.hostArg = host
	s.ip = clientAddr(family, addr, host, m.Macros)
	s.name = confirmedName(host, m.Macros)
	s.clientID = host
	if s.ip.IsValid() {
		s.clientID = s.ip.String()
	}
	s.resetMessage()
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
	s.msg.Helo = name
	s.msgLog = nil
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.resetMessage()
	s.msg.Sender = envelope.Parse(from)
	s.msg.AuthUser = m.Macros["{auth_authen}"]
	s.queueID = m.Macros["i"]
	return gomilter.RespContinue, nil
}

// RcptTo decides one recipient. A greylisted recipient gets its own 451
// reply; the transaction goes on for the others.
func (s *session) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	if s.queueID == "" {
		s.queueID = m.Macros["i"] // Postfix opens the queue file after the first accepted recipient
	}
	addr := envelope.Parse(rcpt)
	stage := greylist.AtRcpt
	if len(s.pending) >= maxKeptRecipients {
		stage = greylist.AtEndOfMessage // no room to wait for DKIM: decide now, unproven
	}
	d := s.decide(addr, stage)
	if d.Action == greylist.Later {
		if len(s.deferred) < maxKeptRecipients {
			s.deferred = append(s.deferred, addr)
			return gomilter.RespContinue, nil
		}
		d = s.decide(addr, greylist.AfterEnvelope) // beyond the bound (no real MTA gets here): decide now
	}
	return s.answer(addr, d)
}

// answer turns a recipient's decision into the reply at RCPT.
func (s *session) answer(rcpt envelope.Address, d greylist.Decision) (gomilter.Response, error) {
	switch d.Action {
	case greylist.Greylist:
		if r := s.reply(d); r != nil {
			return r, nil
		}
	case greylist.Defer:
		s.pending = append(s.pending, rcpt)
	}
	return gomilter.RespContinue, nil
}

// decide decides one recipient at stage and logs it (a recipient left for
// later is logged when it is decided).
func (s *session) decide(rcpt envelope.Address, stage greylist.Stage) greylist.Decision {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.DecisionTimeout)
	defer cancel()
	d := s.srv.cfg.Engine.Decide(ctx, &s.msg, rcpt, stage)
	if d.Action != greylist.Later {
		s.note(d)
		s.logDecision(rcpt, d)
	}
	return d
}

// note remembers what the header at end of message must say.
func (s *session) note(d greylist.Decision) {
	switch d.Reason {
	case greylist.ReasonRetried:
		s.waited = max(s.waited, d.Waited)
	case greylist.ReasonBypassSPF:
		s.bypass = "spf=" + d.SPF
	case greylist.ReasonBypassDKIM:
		s.bypass = "dkim=" + d.DKIM
	}
}

// reply is the SMTP reply for a greylisted recipient or message. A custom
// reply code keeps go-milter's session object (it is not a final response).
// In dry-run mode there is none: nil.
func (s *session) reply(d greylist.Decision) gomilter.Response {
	if s.srv.cfg.DryRun {
		return nil // logged with dry_run=true
	}
	text := storeErrorReply
	if d.Reason != greylist.ReasonStoreError {
		text = formatReply(s.srv.cfg.Reply, d.RetryIn)
	}
	return gomilter.NewResponseStr(byte(gomilter.ActReplyCode), text)
}

// afterEnvelope runs at the first event after DATA. It decides deferred
// null-sender recipients and returns the reply if one is greylisted (nil
// otherwise), and starts DKIM verification for recipients pending it.
func (s *session) afterEnvelope(m *gomilter.Modifier) gomilter.Response {
	s.envDone = true
	if s.queueID == "" {
		s.queueID = m.Macros["i"]
	}
	ds := make([]greylist.Decision, 0, len(s.deferred))
	for _, rcpt := range s.deferred {
		d := s.decide(rcpt, greylist.AfterEnvelope)
		if d.Action == greylist.Defer {
			s.pending = append(s.pending, rcpt)
		}
		ds = append(ds, d)
	}
	s.deferred = s.deferred[:0]
	if d, refused := greylist.Refusal(ds); refused {
		return s.reply(d)
	}
	if len(s.pending) > 0 && s.srv.cfg.NewDKIM != nil {
		s.dkim = s.srv.cfg.NewDKIM()
	}
	return nil
}

// needMessage says whether the rest of the message matters: recipients are
// decided, or a header is added, at its end. Otherwise the message is
// accepted early, so the MTA stops sending it to us.
func (s *session) needMessage() bool { return len(s.pending) > 0 || s.wantHeader() }

// startOfData runs afterEnvelope at the first event after DATA and gives
// the reply that ends the message early, if any.
func (s *session) startOfData(m *gomilter.Modifier) gomilter.Response {
	if s.envDone {
		return nil
	}
	if r := s.afterEnvelope(m); r != nil {
		return r
	}
	if !s.needMessage() {
		return respAccept
	}
	return nil
}

func (s *session) wantHeader() bool {
	return s.srv.cfg.AddHeader && (s.waited > 0 || s.bypass != "")
}

func (s *session) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	// go-milter keeps every header of a message in memory, even those sent
	// after we accepted it: a client that never stops is cut off.
	s.headerBytes += len(name) + len(value)
	if s.headerBytes > maxHeaderBytes {
		return nil, fmt.Errorf("milter: more than %d bytes of headers from %s; closing the connection", maxHeaderBytes, s.clientID)
	}
	if r := s.startOfData(m); r != nil {
		return r, nil
	}
	if s.dkim != nil {
		// An error means the verifier gave up (too large, aborted): the
		// verdict at end of message says so.
		s.dkim.Header(name, value)
		if strings.EqualFold(name, "From") {
			s.fromFields++
		}
	}
	return gomilter.RespContinue, nil
}

func (s *session) Headers(h textproto.MIMEHeader, m *gomilter.Modifier) (gomilter.Response, error) {
	if r := s.startOfData(m); r != nil {
		return r, nil
	}
	if s.dkim != nil {
		s.dkim.EndHeaders()
	}
	return gomilter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, m *gomilter.Modifier) (gomilter.Response, error) {
	if s.dkim != nil {
		s.dkim.Body(chunk)
	}
	return gomilter.RespContinue, nil
}

// Body is the end of the message: recipients pending DKIM are decided, and
// headers may be added (the only place where they may).
func (s *session) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	defer s.resetMessage()
	if !s.envDone {
		if r := s.afterEnvelope(m); r != nil {
			return r, nil
		}
	}
	if r, refused := s.decidePending(); refused {
		return r, nil
	}
	if s.wantHeader() {
		if err := m.AddHeader("X-Greylist", s.headerValue()); err != nil {
			// The connection is broken; the MTA applies its own
			// default. Say so and keep the session alive.
			s.srv.cfg.Log.Warn("cannot add X-Greylist header", "client", s.clientID, "qid", s.queueID, "err", err)
		}
	}
	return respAccept, nil
}

// decidePending decides, with the message's DKIM evidence, the recipients
// of a listed sender that SPF did not prove, and refuses the message if
// any is greylisted.
func (s *session) decidePending() (r gomilter.Response, refused bool) {
	if len(s.pending) == 0 {
		return nil, false
	}
	ev := greylist.DKIMEvidence{FromFields: s.fromFields}
	if s.dkim != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.DKIMTimeout)
		ev.Results, ev.Err = s.dkim.Close(ctx)
		cancel()
	}
	s.msg.SetDKIM(ev)
	ds := make([]greylist.Decision, 0, len(s.pending))
	for _, rcpt := range s.pending {
		ds = append(ds, s.decide(rcpt, greylist.AtEndOfMessage))
	}
	if d, ok := greylist.Refusal(ds); ok {
		if r := s.reply(d); r != nil {
			return r, true
		}
	}
	return nil, false
}

func (s *session) headerValue() string {
	if s.waited > 0 {
		return fmt.Sprintf("delayed %d seconds by milter-grey on %s", int64(s.waited/time.Second), s.srv.cfg.Hostname)
	}
	return fmt.Sprintf("not delayed, sender proven (%s) by milter-grey on %s", s.bypass, s.srv.cfg.Hostname)
}

func (s *session) Abort(m *gomilter.Modifier) error {
	s.resetMessage()
	return nil
}

// logDecision writes the decision log line, a stable interface for admins:
// the message's attributes (client, client_name, helo, sender), then the
// recipient's.
func (s *session) logDecision(rcpt envelope.Address, d greylist.Decision) {
	if s.srv.cfg.OnDecision != nil {
		s.srv.cfg.OnDecision(d)
	}
	ctx := context.Background()
	if !s.srv.cfg.Log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	if s.msgLog == nil {
		sender := s.msg.Sender.Raw()
		if s.msg.Sender.IsNull() {
			sender = greylist.NullSender
		}
		if s.name != "" {
			s.msgLog = s.srv.cfg.Log.With(slog.String("client", s.clientID), slog.String("client_name", s.name),
				slog.String("helo", s.helo), slog.String("sender", sender))
		} else {
			s.msgLog = s.srv.cfg.Log.With(slog.String("client", s.clientID),
				slog.String("helo", s.helo), slog.String("sender", sender))
		}
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("action", d.Action.String()),
		slog.String("reason", string(d.Reason)),
		slog.String("rcpt", rcpt.Raw()),
	)
	if d.Match != "" {
		attrs = append(attrs, slog.String("match", d.Match))
	}
	if d.SPF != "" {
		attrs = append(attrs, slog.String("spf", d.SPF))
	}
	if d.DKIM != "" {
		attrs = append(attrs, slog.String("dkim", d.DKIM))
	}
	if d.Trigger != "" {
		attrs = append(attrs, slog.String("trigger", string(d.Trigger)))
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
	if s.srv.cfg.DryRun && d.Action == greylist.Greylist {
		attrs = append(attrs, slog.Bool("dry_run", true))
	}
	s.msgLog.LogAttrs(ctx, slog.LevelInfo, "decision", attrs...)
}
