package milter

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
	"github.com/milter-grey/milter-grey/testutil/testlog"
)

// clock is a settable clock shared by the engine and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	addr   string
	clock  *clock
	log    *testlog.Buffer
	store  greylist.Store
	engine *greylist.Engine
}

const delay = 5 * time.Minute

// newFixture serves a milter on a loopback port with an in-memory store
// and a fake clock.
func newFixture(t *testing.T, lists *greylist.Lists, mod func(*Config)) *fixture {
	t.Helper()
	store, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	return newFixtureOn(t, store, lists, mod)
}

func newFixtureOn(t *testing.T, store greylist.Store, lists *greylist.Lists, mod func(*Config), onError ...greylist.OnError) *fixture {
	t.Helper()
	f := &fixture{clock: &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}, log: &testlog.Buffer{}, store: store}
	log := slog.New(slog.NewTextHandler(f.log, nil))
	ec := greylist.Config{Policy: greylist.Policy{Delay: delay}, Now: f.clock.Now, Logger: log}
	if len(onError) > 0 {
		ec.OnError = onError[0]
	}
	f.engine = greylist.New(store, ec)
	if lists != nil {
		f.engine.SetLists(lists)
	}
	cfg := Config{
		Engine:    f.engine,
		AddHeader: true,
		Hostname:  "mx.test",
		Log:       log,
	}
	if mod != nil {
		mod(&cfg)
	}
	f.addr = serve(t, cfg, store)
	return f
}

// serve runs a Server with cfg on a loopback port until the test ends, then
// shuts it down and closes store; it returns the address.
func serve(t *testing.T, cfg Config, store greylist.Store) string {
	t.Helper()
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		store.Close()
	})
	return ln.Addr().String()
}

// mta is one SMTP session as an MTA drives it over the milter protocol.
type mta struct {
	t *testing.T
	s *gomilter.ClientSession
}

func (f *fixture) connect(t *testing.T, family gomilter.ProtoFamily, host, addr string, macros ...string) *mta {
	t.Helper()
	c := gomilter.NewClientWithOptions("tcp", f.addr, gomilter.ClientOptions{
		ReadTimeout:  5 * time.Second,
		WriteTimeout: 5 * time.Second,
		// A subset of what go-milter's server offers (docs/libraries.md).
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatalf("milter session: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	m := &mta{t: t, s: s}
	if len(macros) > 0 {
		m.must(s.Macros(gomilter.CodeConn, macros...))
	}
	m.want("connect", m.act(s.Conn(host, family, 25, addr)), gomilter.ActContinue)
	m.want("helo", m.act(s.Helo("mail.sender.example")), gomilter.ActContinue)
	return m
}

func (m *mta) must(err error) {
	m.t.Helper()
	if err != nil {
		m.t.Fatal(err)
	}
}

func (m *mta) act(a *gomilter.Action, err error) *gomilter.Action {
	m.t.Helper()
	if err != nil {
		m.t.Fatal(err)
	}
	return a
}

func (m *mta) want(step string, a *gomilter.Action, code gomilter.ActionCode) *gomilter.Action {
	m.t.Helper()
	if a.Code != code {
		m.t.Fatalf("%s: got action %q (%d %s), want %q", step, a.Code, a.SMTPCode, a.SMTPText, code)
	}
	return a
}

func (m *mta) mail(from string, macros ...string) {
	m.t.Helper()
	if len(macros) > 0 {
		m.must(m.s.Macros(gomilter.CodeMail, macros...))
	}
	m.want("mail", m.act(m.s.Mail(from, nil)), gomilter.ActContinue)
}

func (m *mta) rcpt(to string) *gomilter.Action {
	m.t.Helper()
	return m.act(m.s.Rcpt(to, nil))
}

// greylisted asserts a 451 4.7.1 reply for one recipient.
func (m *mta) greylisted(to string) {
	m.t.Helper()
	a := m.want("rcpt "+to, m.rcpt(to), gomilter.ActReplyCode)
	if a.SMTPCode != 451 || !strings.HasPrefix(a.SMTPText, "4.7.1 Greylisted, please try again in ") {
		m.t.Fatalf("rcpt %s: reply %d %q", to, a.SMTPCode, a.SMTPText)
	}
}

func (m *mta) passes(to string) { m.t.Helper(); m.want("rcpt "+to, m.rcpt(to), gomilter.ActContinue) }

// data sends a small message and returns the header modifications and the
// final action; stop is the action at which the milter ended the message.
func (m *mta) data() (mods []gomilter.ModifyAction, final *gomilter.Action) {
	m.t.Helper()
	for _, h := range [][2]string{{"From", "a@sender.example"}, {"Subject", "test"}} {
		a := m.act(m.s.HeaderField(h[0], h[1]))
		if a.Code != gomilter.ActContinue {
			return nil, a
		}
	}
	a := m.act(m.s.HeaderEnd())
	if a.Code != gomilter.ActContinue {
		return nil, a
	}
	a = m.act(m.s.BodyChunk([]byte("hello\r\n")))
	if a.Code != gomilter.ActContinue {
		return nil, a
	}
	mods, final, err := m.s.End()
	m.must(err)
	return mods, final
}

func xGreylist(mods []gomilter.ModifyAction) string {
	for _, mod := range mods {
		if mod.Code == gomilter.ActAddHeader && mod.HeaderName == "X-Greylist" {
			return mod.HeaderValue
		}
	}
	return ""
}

func TestGreylistThenRetryThenKnown(t *testing.T) {
	f := newFixture(t, nil, nil)

	m := f.connect(t, gomilter.FamilyInet, "mail.sender.example", "192.0.2.10")
	m.mail("alice@sender.example")
	a := m.want("rcpt", m.rcpt("bob@rcpt.example"), gomilter.ActReplyCode)
	if a.SMTPCode != 451 || a.SMTPText != "4.7.1 Greylisted, please try again in 300 seconds" {
		t.Fatalf("first attempt: %d %q", a.SMTPCode, a.SMTPText)
	}

	f.clock.Add(time.Minute)
	m2 := f.connect(t, gomilter.FamilyInet, "mail.sender.example", "192.0.2.10")
	m2.mail("alice@sender.example")
	a = m2.want("early rcpt", m2.rcpt("bob@rcpt.example"), gomilter.ActReplyCode)
	if a.SMTPText != "4.7.1 Greylisted, please try again in 240 seconds" {
		t.Fatalf("early retry: %q", a.SMTPText)
	}

	f.clock.Add(5 * time.Minute)
	m3 := f.connect(t, gomilter.FamilyInet, "mail.sender.example", "192.0.2.10")
	m3.mail("alice@sender.example")
	m3.passes("bob@rcpt.example")
	mods, final := m3.data()
	m3.want("eom", final, gomilter.ActAccept)
	if got, want := xGreylist(mods), "delayed 360 seconds by milter-grey on mx.test"; got != want {
		t.Fatalf("X-Greylist = %q, want %q", got, want)
	}

	// The next message of the known triplet passes without a header and
	// the milter stops the message at the first header.
	f.clock.Add(time.Hour)
	m3.mail("alice@sender.example")
	m3.passes("bob@rcpt.example")
	_, final = m3.data()
	m3.want("first header of a known message", final, gomilter.ActAccept)

	for _, want := range []string{"reason=new", "reason=early", "reason=retried", "reason=known", "delay=360"} {
		if !strings.Contains(f.log.String(), want) {
			t.Errorf("decision log lacks %q:\n%s", want, f.log.String())
		}
	}
}

func TestStateSurvivesGreylistedRecipient(t *testing.T) {
	// A 451 for one recipient must not make go-milter forget the client:
	// the next recipient of the same transaction is still decided on it.
	f := newFixture(t, nil, nil)
	m := f.connect(t, gomilter.FamilyInet, "[192.0.2.10]", "192.0.2.10")
	m.mail("alice@sender.example")
	m.greylisted("bob@rcpt.example")
	m.greylisted("carol@rcpt.example")
	if n := strings.Count(f.log.String(), "client=192.0.2.10"); n != 2 {
		t.Fatalf("want 2 decisions for client 192.0.2.10, log:\n%s", f.log.String())
	}
	// A second message on the same connection, after an accepted one.
	f.clock.Add(delay)
	m.mail("alice@sender.example")
	m.passes("bob@rcpt.example")
	_, final := m.data()
	m.want("eom", final, gomilter.ActAccept)
	m.mail("alice@sender.example")
	m.passes("carol@rcpt.example")
	m.greylisted("dave@rcpt.example")
}

func TestPerRecipientDecisions(t *testing.T) {
	lists := &greylist.Lists{Recipients: &greylist.RecipientList{}}
	if err := lists.Recipients.Add("postmaster@"); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, lists, nil)
	m := f.connect(t, gomilter.FamilyInet, "[198.51.100.7]", "198.51.100.7")
	m.mail("alice@sender.example")
	m.greylisted("bob@rcpt.example")
	m.passes("postmaster@rcpt.example")
	_, final := m.data()
	m.want("message to the whitelisted recipient", final, gomilter.ActAccept)
	if !strings.Contains(f.log.String(), "reason=rcpt-whitelist") {
		t.Fatalf("log:\n%s", f.log.String())
	}
}

func TestClientAddressForms(t *testing.T) {
	f := newFixture(t, nil, nil)
	tests := []struct {
		name       string
		family     gomilter.ProtoFamily
		host, addr string
		macros     []string
		wantClient string // "" means no address: passes as no-client-address
	}{
		{"IPv4", gomilter.FamilyInet, "[192.0.2.1]", "192.0.2.1", nil, "192.0.2.1"},
		{"IPv6", gomilter.FamilyInet6, "[2001:db8::1]", "2001:db8::1", nil, "2001:db8::1"},
		{"Sendmail IPv6 form", gomilter.FamilyInet6, "[IPv6:2001:db8::2]", "IPv6:2001:db8::2", nil, "2001:db8::2"},
		{"Sendmail IPv6 via client_addr macro", gomilter.FamilyInet6, "mx.example", "IPv6:2001:db8::3", []string{"{client_addr}", "IPv6:2001:db8::3"}, "2001:db8::3"},
		{"unix socket", gomilter.FamilyUnix, "localhost", "/var/run/x", nil, ""},
		{"unknown family", gomilter.FamilyUnknown, "localhost", "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := f.connect(t, tt.family, tt.host, tt.addr, tt.macros...)
			m.mail("x-" + strings.ReplaceAll(tt.name, " ", "_") + "@sender.example")
			if tt.wantClient == "" {
				m.passes("bob@rcpt.example")
				if !strings.Contains(f.log.String(), "reason=no-client-address") {
					t.Fatalf("log:\n%s", f.log.String())
				}
				return
			}
			m.greylisted("bob@rcpt.example")
			if !strings.Contains(f.log.String(), "client="+tt.wantClient+" ") {
				t.Fatalf("no decision for client %s:\n%s", tt.wantClient, f.log.String())
			}
		})
	}
}

func TestNullSenderIsDecidedAfterEnvelope(t *testing.T) {
	f := newFixture(t, nil, nil)

	// An address verification probe: MAIL FROM:<> RCPT TO, no DATA.
	m := f.connect(t, gomilter.FamilyInet, "[203.0.113.5]", "203.0.113.5")
	m.mail("")
	m.passes("bob@rcpt.example")
	m.must(m.s.Abort())
	if strings.Contains(f.log.String(), "action=greylist") {
		t.Fatalf("probe was greylisted:\n%s", f.log.String())
	}

	// A real bounce: greylisted at the first header, for the message.
	m.mail("")
	m.passes("bob@rcpt.example")
	_, final := m.data()
	if final.Code != gomilter.ActReplyCode || final.SMTPCode != 451 {
		t.Fatalf("bounce: got %q %d %q", final.Code, final.SMTPCode, final.SMTPText)
	}
	if !strings.Contains(f.log.String(), "sender=<> action=greylist reason=new rcpt=bob@rcpt.example") {
		t.Fatalf("log:\n%s", f.log.String())
	}
	m.must(m.s.Abort())

	// Its retry after the delay passes and is marked.
	f.clock.Add(delay + time.Second)
	m.mail("")
	m.passes("bob@rcpt.example")
	mods, final := m.data()
	m.want("bounce retry eom", final, gomilter.ActAccept)
	if xGreylist(mods) == "" {
		t.Fatal("retried bounce has no X-Greylist header")
	}
}

func TestHeaderCanBeTurnedOff(t *testing.T) {
	f := newFixture(t, nil, func(c *Config) { c.AddHeader = false })
	m := f.connect(t, gomilter.FamilyInet, "[192.0.2.20]", "192.0.2.20")
	m.mail("alice@sender.example")
	m.greylisted("bob@rcpt.example")
	f.clock.Add(delay)
	m.mail("alice@sender.example")
	m.passes("bob@rcpt.example")
	_, final := m.data()
	m.want("first header: nothing left to do", final, gomilter.ActAccept)
}

func TestCustomReply(t *testing.T) {
	f := newFixture(t, nil, func(c *Config) { c.Reply = "450 4.2.0 Come back in {seconds}s (100% normal)" })
	m := f.connect(t, gomilter.FamilyInet, "[192.0.2.30]", "192.0.2.30")
	m.mail("alice@sender.example")
	a := m.want("rcpt", m.rcpt("bob@rcpt.example"), gomilter.ActReplyCode)
	// '%' is doubled for Postfix, which reads replies as format strings.
	if a.SMTPCode != 450 || a.SMTPText != "4.2.0 Come back in 300s (100%% normal)" {
		t.Fatalf("reply %d %q", a.SMTPCode, a.SMTPText)
	}
}

func TestNewServerRejectsMalformedReply(t *testing.T) {
	for _, r := range []string{"", "550 5.7.1 no", "451 5.7.1 class mismatch", "451 4.7.1 two\nlines", "451 4.7.1"} {
		if r == "" {
			continue // empty means the default
		}
		if _, err := NewServer(Config{Engine: greylist.New(nil, greylist.Config{}), Reply: r}); err == nil {
			t.Errorf("reply %q accepted", r)
		}
	}
}

// failingStore fails every call, like a dead database.
type failingStore struct{ greylist.Store }

var errDown = errors.New("store down")

func (failingStore) Update(context.Context, string, greylist.UpdateFunc) error { return errDown }
func (failingStore) Get(context.Context, string) (*greylist.Record, time.Time, error) {
	return nil, time.Time{}, errDown
}
func (failingStore) Close() error { return nil }

func TestStoreFailureFollowsOnError(t *testing.T) {
	t.Run("accept", func(t *testing.T) {
		f := newFixtureOn(t, failingStore{}, nil, nil)
		m := f.connect(t, gomilter.FamilyInet, "[192.0.2.40]", "192.0.2.40")
		m.mail("alice@sender.example")
		m.passes("bob@rcpt.example")
		m.passes("carol@rcpt.example")
		if !strings.Contains(f.log.String(), "reason=store-error") || strings.Count(f.log.String(), "store failing") != 1 {
			t.Fatalf("log:\n%s", f.log.String())
		}
	})
	t.Run("tempfail", func(t *testing.T) {
		f := newFixtureOn(t, failingStore{}, nil, nil, greylist.ErrorTempfail)
		m := f.connect(t, gomilter.FamilyInet, "[192.0.2.41]", "192.0.2.41")
		m.mail("alice@sender.example")
		a := m.want("rcpt", m.rcpt("bob@rcpt.example"), gomilter.ActReplyCode)
		if a.SMTPCode != 451 || !strings.HasPrefix(a.SMTPText, "4.3.0 ") {
			t.Fatalf("reply %d %q", a.SMTPCode, a.SMTPText)
		}
	})
}

func TestShutdownWaitsForSessions(t *testing.T) {
	store, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := NewServer(Config{Engine: greylist.New(store, greylist.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	f := &fixture{addr: ln.Addr().String()}
	m := f.connect(t, gomilter.FamilyInet, "[192.0.2.50]", "192.0.2.50")
	if n := srv.OpenSessions(); n != 1 {
		t.Fatalf("OpenSessions = %d, want 1", n)
	}
	// The open session keeps Shutdown waiting until its context ends,
	// then it is closed.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with an open session: %v", err)
	}
	if n := srv.OpenSessions(); n != 0 {
		t.Fatalf("OpenSessions after forced shutdown = %d", n)
	}
	if _, err := m.s.Mail("alice@sender.example", nil); err == nil {
		t.Fatal("session still usable after shutdown")
	}
}
