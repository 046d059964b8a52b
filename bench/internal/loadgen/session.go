package loadgen

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// Macros as Postfix 3.7 sends them with its default milter_*_macros
// (docs/libraries.md): empty macros are not sent, {auth_*} only after SASL,
// and the queue ID i only once the queue file is open, that is from the
// first recipient after one was accepted.
const (
	daemonName = "mx.bench.test"
	mtaVersion = "Postfix 3.7.11"
)

// msgHeaders are the fields of a message that reached DATA, in the order
// Postfix passes them (its own Received: hidden).
var msgHeaders = [][2]string{
	{"From", "<%s>"},
	{"To", "<%s>"},
	{"Subject", "load test message"},
	{"Date", "Sat, 28 Nov 2026 12:00:00 +0000"},
	{"Message-Id", "<%s@bench.test>"},
	{"MIME-Version", "1.0"},
	{"Content-Type", "text/plain; charset=us-ascii"},
}

// msgBody is the body of such a message (CRLF lines, about 1 KiB).
var msgBody = []byte(strings.Repeat("The quick brown fox jumps over the lazy dog, again and again.\r\n", 16))

// plan is one SMTP session: who connects, and which recipients are new.
type plan struct {
	client   netip.Addr
	hostname string // Postfix's verified name, or "[addr]"
	helo     string
	sender   string
	rcpts    []string
	isNew    []bool
}

// stage names, for error counts.
const (
	stageDial   = "dial+optneg"
	stageConn   = "connect"
	stageHelo   = "helo"
	stageMail   = "mail"
	stageRcpt   = "rcpt"
	stageData   = "data"
	stageEnd    = "eom"
	stageAbort  = "abort"
	stageQuit   = "quit"
	stageVerify = "unexpected-reply"
)

// replyName classifies a milter reply for the counts.
func replyName(a *gomilter.Action) string {
	switch a.Code {
	case gomilter.ActContinue:
		return "continue"
	case gomilter.ActAccept:
		return "accept"
	case gomilter.ActTempFail:
		return "tempfail"
	case gomilter.ActReject:
		return "reject"
	case gomilter.ActDiscard:
		return "discard"
	case gomilter.ActReplyCode:
		return fmt.Sprintf("replycode-%d", a.SMTPCode)
	case gomilter.ActSkip:
		return "skip"
	}
	return "other"
}

// passed reports whether a reply at RCPT lets the recipient through.
func passed(a *gomilter.Action) bool {
	return a.Code == gomilter.ActContinue || a.Code == gomilter.ActAccept
}

// trackingDialer keeps the connection it dialled, so that a session that
// failed half-way can be closed even when go-milter's Close cannot write
// its QUIT (it then returns without closing).
type trackingDialer struct {
	d    net.Dialer
	conn net.Conn
}

func (t *trackingDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := t.d.Dial(network, addr)
	t.conn = c
	return c, err
}

// sessionResult is what one session did.
type sessionResult struct {
	rcptLatency []time.Duration // per recipient, in order
	rcptStart   []time.Time
	rcptReply   []string
	knownGrey   int
	newPassed   int
	dataReply   string // the reply that ended the message, "" if none
	end         time.Time
	errStage    string
	err         error
}

// worker runs sessions; one per concurrent session.
type worker struct {
	cfg    *Config
	client *gomilter.Client
	dialer *trackingDialer
	r      *rand.Rand
	res    sessionResult
	qid    [12]byte
}

func newWorker(cfg *Config, network, address string, seed uint64, id int) *worker {
	td := &trackingDialer{d: net.Dialer{Timeout: cfg.Timeout}}
	return &worker{
		cfg:    cfg,
		dialer: td,
		client: gomilter.NewClientWithOptions(network, address, gomilter.ClientOptions{
			Dialer:       td,
			ReadTimeout:  cfg.Timeout,
			WriteTimeout: cfg.Timeout,
			// go-milter servers answer protocol version 2; the client
			// only downgrades for masks within version 2's
			// (docs/libraries.md). Postfix offers more; what matters is
			// that the milter asks for nothing beyond it.
			ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader | gomilter.OptQuarantine,
		}),
		r: rand.New(rand.NewPCG(seed, uint64(id))),
	}
}

// newPlan draws the next session: each recipient is new with probability
// NewFraction; when none is known the whole session is new (a client and
// sender never seen), otherwise it is a known envelope with its new
// recipients replaced by fresh addresses.
func (w *worker) newPlan(known []Envelope, rcpts int, newFrac float64) plan {
	p := plan{isNew: make([]bool, rcpts), rcpts: make([]string, rcpts)}
	allNew := true
	for i := range p.isNew {
		p.isNew[i] = len(known) == 0 || w.r.Float64() < newFrac
		allNew = allNew && p.isNew[i]
	}
	if allNew {
		p.client = w.cfg.Pools.RandomClient(w.r)
		p.sender = RandomSender(w.r)
		p.hostname = "[" + p.client.String() + "]"
		p.helo = word(w.r, 'h') + ".example.com"
		for i := range p.rcpts {
			p.rcpts[i] = RandomRcpt(w.r)
		}
		return p
	}
	env := &known[w.r.IntN(len(known))]
	p.client, p.sender = env.Client, env.Sender
	domain := p.sender[strings.LastIndexByte(p.sender, '@')+1:]
	p.hostname = "mail." + domain
	p.helo = p.hostname
	off := w.r.IntN(len(env.Rcpts))
	for i := range p.rcpts {
		switch {
		case p.isNew[i]:
			p.rcpts[i] = RandomRcpt(w.r)
		case i < len(env.Rcpts):
			p.rcpts[i] = env.Rcpts[(off+i)%len(env.Rcpts)]
		default:
			// More recipients than the envelope has: the rest are new.
			p.isNew[i] = true
			p.rcpts[i] = RandomRcpt(w.r)
		}
	}
	return p
}

func (w *worker) queueID() string {
	const alphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"
	for i := range w.qid {
		w.qid[i] = alphabet[w.r.IntN(len(alphabet))]
	}
	return string(w.qid[:])
}

// run plays one SMTP session over a new milter connection, as Postfix's
// smtpd does: connect, HELO, MAIL, each RCPT; then, if no recipient was
// accepted, ABORT (the client gives up after the 451s) and QUIT; else
// the message's headers, end of headers, body and end of message (or
// less, when the milter accepts early), then QUIT.
func (w *worker) run(p plan) *sessionResult {
	res := &w.res
	*res = sessionResult{
		rcptLatency: res.rcptLatency[:0],
		rcptStart:   res.rcptStart[:0],
		rcptReply:   res.rcptReply[:0],
	}
	fail := func(stage string, err error) *sessionResult {
		res.errStage, res.err, res.end = stage, err, time.Now()
		if w.dialer.conn != nil {
			w.dialer.conn.Close()
		}
		return res
	}
	w.dialer.conn = nil
	s, err := w.client.Session()
	if err != nil {
		return fail(stageDial, err)
	}
	defer w.dialer.conn.Close() // after Close's QUIT; harmless twice

	family := gomilter.FamilyInet
	if p.client.Is6() {
		family = gomilter.FamilyInet6
	}
	addr := p.client.String()
	client := p.hostname
	if strings.HasPrefix(client, "[") {
		client = "unknown"
	}
	if err := s.Macros(gomilter.CodeConn, "j", daemonName, "{daemon_name}", daemonName,
		"{daemon_addr}", "127.0.0.1", "v", mtaVersion, "_", client+" ["+addr+"]"); err != nil {
		return fail(stageConn, err)
	}
	if err := expectContinue(s.Conn(p.hostname, family, uint16(1024+w.r.IntN(60000)), addr)); err != nil {
		return fail(stageConn, err)
	}
	// No HELO macros: Postfix's defaults are TLS ones, empty without TLS.
	if err := expectContinue(s.Helo(p.helo)); err != nil {
		return fail(stageHelo, err)
	}
	if err := s.Macros(gomilter.CodeMail, "{mail_addr}", p.sender, "{mail_mailer}", "smtp"); err != nil {
		return fail(stageMail, err)
	}
	if err := expectContinue(s.Mail(p.sender, nil)); err != nil {
		return fail(stageMail, err)
	}
	qid := ""
	milterDone := false
	for i, rcpt := range p.rcpts {
		domain := rcpt[strings.LastIndexByte(rcpt, '@')+1:]
		start := time.Now()
		if qid != "" {
			err = s.Macros(gomilter.CodeRcpt, "i", qid, "{rcpt_addr}", rcpt, "{rcpt_host}", domain, "{rcpt_mailer}", "smtp")
		} else {
			err = s.Macros(gomilter.CodeRcpt, "{rcpt_addr}", rcpt, "{rcpt_host}", domain, "{rcpt_mailer}", "smtp")
		}
		if err != nil {
			return fail(stageRcpt, err)
		}
		act, err := s.Rcpt(rcpt, nil)
		if err != nil {
			return fail(stageRcpt, err)
		}
		res.rcptLatency = append(res.rcptLatency, time.Since(start))
		res.rcptStart = append(res.rcptStart, start)
		res.rcptReply = append(res.rcptReply, replyName(act))
		ok := passed(act)
		if ok && qid == "" {
			qid = w.queueID() // the queue file opens
		}
		if ok && p.isNew[i] {
			res.newPassed++
		}
		if !ok && !p.isNew[i] {
			res.knownGrey++
		}
		if act.Code == gomilter.ActAccept {
			// Accept at RCPT covers the whole transaction: Postfix
			// sends this milter nothing more for the message.
			milterDone = true
			break
		}
	}
	if milterDone {
		if err := s.Close(); err != nil {
			return fail(stageQuit, err)
		}
		res.dataReply = "rcpt-accept"
		res.end = time.Now()
		return res
	}
	if qid == "" {
		// Every recipient refused: the client quits; Postfix aborts the
		// milter transaction and then quits the milter connection.
		if err := s.Abort(); err != nil {
			return fail(stageAbort, err)
		}
		if err := s.Close(); err != nil {
			return fail(stageQuit, err)
		}
		res.end = time.Now()
		return res
	}
	reply, stage, err := w.message(s, p, qid)
	if err != nil {
		return fail(stage, err)
	}
	res.dataReply = reply
	if err := s.Close(); err != nil {
		return fail(stageQuit, err)
	}
	res.end = time.Now()
	return res
}

// message sends the message as Postfix does after DATA, and returns the
// name of the reply that ended it ("accept" at the first header when the
// milter needs nothing more, "eom-accept" after end of message).
func (w *worker) message(s *gomilter.ClientSession, p plan, qid string) (string, string, error) {
	lead := ""
	if s.ProtocolOption(gomilter.OptHeaderLeadingSpace) {
		lead = " " // Postfix then keeps the space after the colon
	}
	for _, h := range msgHeaders {
		v := h[1]
		switch h[0] {
		case "From":
			v = fmt.Sprintf(v, p.sender)
		case "To":
			v = fmt.Sprintf(v, p.rcpts[0])
		case "Message-Id":
			v = fmt.Sprintf(v, qid)
		}
		if err := s.Macros(gomilter.CodeHeader, "i", qid); err != nil {
			return "", stageData, err
		}
		act, err := s.HeaderField(h[0], lead+v)
		if err != nil {
			return "", stageData, err
		}
		if act.Code != gomilter.ActContinue {
			return "header-" + replyName(act), "", nil
		}
	}
	if err := s.Macros(gomilter.CodeEOH, "i", qid); err != nil {
		return "", stageData, err
	}
	act, err := s.HeaderEnd()
	if err != nil {
		return "", stageData, err
	}
	if act.Code != gomilter.ActContinue {
		return "eoh-" + replyName(act), "", nil
	}
	act, err = s.BodyChunk(msgBody)
	if err != nil {
		return "", stageData, err
	}
	if act.Code != gomilter.ActContinue && act.Code != gomilter.ActSkip {
		return "body-" + replyName(act), "", nil
	}
	if err := s.Macros(gomilter.CodeEOB, "i", qid); err != nil {
		return "", stageEnd, err
	}
	mods, act, err := s.End()
	if err != nil {
		return "", stageEnd, err
	}
	name := "eom-" + replyName(act)
	if len(mods) > 0 {
		name += "+modified"
	}
	return name, "", nil
}

var errNotContinue = errors.New("milter did not answer continue")

func expectContinue(a *gomilter.Action, err error) error {
	if err != nil {
		return err
	}
	if a.Code != gomilter.ActContinue {
		return fmt.Errorf("%w: %s", errNotContinue, replyName(a))
	}
	return nil
}
