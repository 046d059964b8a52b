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
	ip         netip.Addr
	name       string // forward-confirmed client name, or ""
	hostArg    string // the name as the MTA gave it, for logs
	helo       string
	clientID   string                                   // address for logs
	spfFunc    func(context.Context) greylist.SPFResult // checkSPF, or nil without SPF
	stackGrown bool                                     // growStack has run on this connection's goroutine

	// Message; reset by MailFrom, Abort and end of message.
	sender   string
	null     bool
	authUser string
	queueID  string
	deferred []string      // null-sender recipients, decided after the envelope
	pending  []pendingRcpt // listed senders awaiting DKIM at end of message
	waited   time.Duration // longest delay of a retried recipient
	bypass   string        // how a bypassed recipient's sender was proven
	envDone  bool          // the envelope has been decided
	spfDone  bool
	spf      auth.SPFResult
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

// pendingRcpt is a recipient whose listed sender DKIM may still prove.
type pendingRcpt struct {
	rcpt  string
	match string // the bypass list entry
}

func (s *session) resetMessage() {
	s.sender, s.null, s.authUser, s.queueID = "", false, "", ""
	s.msgLog = nil
	s.deferred = s.deferred[:0]
	s.pending = s.pending[:0]
	s.waited = 0
	s.headerBytes, s.fromFields = 0, 0
	s.bypass = ""
	s.envDone = false
	s.spfDone, s.spf = false, auth.SPFResult{}
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
	if !s.stackGrown {
		growStack()
		s.stackGrown = true
	}
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
	s.msgLog = nil
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
	req := greylist.Request{
		Client:     s.ip,
		ClientName: s.name,
		Sender:     s.sender,
		Recipient:  rcpt,
		AuthUser:   s.authUser,
	}
	req.SPF = s.spfFunc
	return req
}

// checkSPF evaluates SPF once per message, when a decision first needs it.
func (s *session) checkSPF(ctx context.Context) greylist.SPFResult {
	if !s.spfDone {
		s.spf = s.srv.cfg.SPF.Check(ctx, s.ip, s.helo, s.sender)
		s.spfDone = true
	}
	return greylist.SPFResult{
		Proven: s.spf.Proven(),
		Domain: s.spf.Domain,
		Result: strings.TrimPrefix(s.spf.String(), "spf="),
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
			s.logDecision(req, d, "")
			return gomilter.RespContinue, nil
		}
		if len(s.deferred) < maxKeptRecipients {
			s.deferred = append(s.deferred, rcpt)
			return gomilter.RespContinue, nil
		}
		// Beyond the bound (no real MTA gets here): decide now.
	}
	if len(s.pending) >= maxKeptRecipients {
		req.DKIMChecked = true // no room to wait for DKIM: greylist as usual
	}
	return s.answer(rcpt, s.decide(req, ""))
}

// answer turns a recipient's decision into the reply at RCPT.
func (s *session) answer(rcpt string, d greylist.Decision) (gomilter.Response, error) {
	switch d.Action {
	case greylist.Greylist:
		if r := s.reply(d); r != nil {
			return r, nil
		}
	case greylist.Defer:
		s.pending = append(s.pending, pendingRcpt{rcpt: rcpt, match: d.Match})
	}
	return gomilter.RespContinue, nil
}

// decide decides one recipient and logs it; dkim is the message's DKIM
// verdict for the log, once known.
func (s *session) decide(req greylist.Request, dkim string) greylist.Decision {
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.DecisionTimeout)
	defer cancel()
	d := s.srv.cfg.Engine.Decide(ctx, req)
	s.note(d)
	s.logDecision(req, d, dkim)
	return d
}

// note remembers what the header at end of message must say.
func (s *session) note(d greylist.Decision) {
	switch d.Reason {
	case greylist.ReasonRetried:
		s.waited = max(s.waited, d.Waited)
	case greylist.ReasonBypassSPF:
		s.bypass = "spf=" + d.SPF
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
	var worst *greylist.Decision
	for _, rcpt := range s.deferred {
		d := s.decide(s.request(rcpt), "")
		switch {
		case d.Action == greylist.Greylist && (worst == nil || d.RetryIn > worst.RetryIn):
			worst = &d
		case d.Action == greylist.Defer:
			s.pending = append(s.pending, pendingRcpt{rcpt: rcpt, match: d.Match})
		}
	}
	s.deferred = s.deferred[:0]
	if worst != nil {
		// One reply for the whole message: at this stage the MTA can
		// only refuse the message, for all its recipients.
		return s.reply(*worst)
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

// decidePending decides the recipients of a listed sender that SPF did not
// prove: an aligned DKIM signature passes them all; otherwise each is
// greylisted or passed on its triplet, and the message is refused if any
// is greylisted.
func (s *session) decidePending() (r gomilter.Response, refused bool) {
	if len(s.pending) == 0 {
		return nil, false
	}
	verdict := auth.DKIMVerdict{Result: auth.ResultNone}
	if s.dkim != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.srv.cfg.DKIMTimeout)
		results, err := s.dkim.Close(ctx)
		cancel()
		verdict = auth.EvaluateDKIM(results, auth.SenderDomain(s.sender), s.srv.cfg.StrictAlignment)
		if verdict.Err == nil {
			verdict.Err = err
		}
	}
	dkim := strings.TrimPrefix(verdict.String(), "dkim=")
	proven := verdict.Proven()
	if proven && s.fromFields > 1 {
		// RFC 5322 allows one From field. With two, a valid signature
		// may cover one while readers see the other (RFC 6376 §8.15):
		// such a message proves nothing.
		proven = false
		dkim += fmt.Sprintf(" (not a proof: %d From fields)", s.fromFields)
	}
	if proven {
		s.bypass = "dkim=" + dkim
		for _, p := range s.pending {
			req := s.request(p.rcpt)
			s.logDecision(req, greylist.Decision{Action: greylist.Pass, Reason: greylist.ReasonBypassDKIM,
				Match: p.match, SPF: s.spfResult()}, dkim)
		}
		return nil, false
	}
	var worst *greylist.Decision
	for _, p := range s.pending {
		req := s.request(p.rcpt)
		req.DKIMChecked = true
		d := s.decide(req, dkim)
		if d.Action == greylist.Greylist && (worst == nil || d.RetryIn > worst.RetryIn) {
			worst = &d
		}
	}
	if worst != nil {
		if r := s.reply(*worst); r != nil {
			return r, true
		}
	}
	return nil, false
}

// spfResult is the message's SPF result for logs, "" if not evaluated.
func (s *session) spfResult() string {
	if !s.spfDone {
		return ""
	}
	return strings.TrimPrefix(s.spf.String(), "spf=")
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
func (s *session) logDecision(req greylist.Request, d greylist.Decision, dkim string) {
	if s.srv.cfg.OnDecision != nil {
		s.srv.cfg.OnDecision(d, dkim)
	}
	ctx := context.Background()
	if !s.srv.cfg.Log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	if s.msgLog == nil {
		sender := req.Sender
		if s.null {
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
		slog.String("rcpt", req.Recipient),
	)
	if d.Match != "" {
		attrs = append(attrs, slog.String("match", d.Match))
	}
	if d.SPF != "" {
		attrs = append(attrs, slog.String("spf", d.SPF))
	}
	if dkim != "" {
		attrs = append(attrs, slog.String("dkim", dkim))
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
