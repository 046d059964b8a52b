package greylist_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/envelope"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/testutil/memstore"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var errStoreDown = errors.New("store is down")

// failStore fails every call.
type failStore struct{}

func (failStore) Update(context.Context, string, UpdateFunc) error { return errStoreDown }
func (failStore) Get(context.Context, string) (*Record, time.Time, error) {
	return nil, time.Time{}, errStoreDown
}
func (failStore) Put(context.Context, string, *Record, time.Duration) error { return errStoreDown }
func (failStore) Delete(context.Context, string) error                      { return errStoreDown }
func (failStore) Scan(context.Context, string, func(string, *Record, time.Time) error) error {
	return errStoreDown
}
func (failStore) Close() error { return errStoreDown }

// flakyStore is a memstore.Store that fails while down is set, and fails writes
// only while readOnly is set (a Redis replica after failover, a full disk).
type flakyStore struct {
	*memstore.Store
	down, readOnly atomic.Bool
}

func (s *flakyStore) Update(ctx context.Context, key string, fn UpdateFunc) error {
	if s.down.Load() || s.readOnly.Load() {
		return errStoreDown
	}
	return s.Store.Update(ctx, key, fn)
}

func (s *flakyStore) Get(ctx context.Context, key string) (*Record, time.Time, error) {
	if s.down.Load() {
		return nil, time.Time{}, errStoreDown
	}
	return s.Store.Get(ctx, key)
}

// t0 is an arbitrary instant at millisecond precision, as records keep it
// (the same as the internal tests').
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

// Addresses used across the engine tests.
var (
	mx1      = netip.MustParseAddr("192.0.2.1")
	mx1b     = netip.MustParseAddr("192.0.2.200") // same /24 as mx1
	mx2      = netip.MustParseAddr("192.0.3.1")   // another /24
	mx6      = netip.MustParseAddr("2001:db8:1:2::1")
	mx6b     = netip.MustParseAddr("2001:db8:1:2:ffff::9") // same /64 as mx6
	mx6other = netip.MustParseAddr("2001:db8:1:3::1")      // another /64
)

// Request is one recipient of one message, as the tables write it.
type Request struct {
	Client     netip.Addr
	ClientName string
	Sender     string
	Recipient  string
	AuthUser   string
	// SPF is the message's SPF result; nil: no SPF checker.
	SPF *auth.SPFResult
	// Stage is when the recipient is decided; at AtEndOfMessage, DKIM is
	// the message's evidence (nil: not verified).
	Stage Stage
	DKIM  *DKIMEvidence
}

// message builds the engine's view of r's message and recipient.
func (r Request) message() (*Message, envelope.Address) {
	m := &Message{Client: r.Client, ClientName: r.ClientName, AuthUser: r.AuthUser, Sender: envelope.Parse(r.Sender)}
	if r.SPF != nil {
		SetSPF(m, *r.SPF)
	}
	if r.DKIM != nil {
		m.SetDKIM(*r.DKIM)
	}
	return m, envelope.Parse(r.Recipient)
}

func decide(e *Engine, ctx context.Context, r Request) Decision {
	m, rcpt := r.message()
	return e.Decide(ctx, m, rcpt, r.Stage)
}

func explain(e *Engine, ctx context.Context, r Request) Decision {
	m, rcpt := r.message()
	return e.Explain(ctx, m, rcpt)
}

func exemptReq(e *Engine, r Request) (Decision, bool) {
	m, rcpt := r.message()
	return Exemption(e.Lists(), m, RecipientKey(rcpt, e.Config().Delimiters))
}

// req is an ordinary request from mx1; options change it.
func req(opts ...func(*Request)) Request {
	r := Request{Client: mx1, Sender: "alice@example.net", Recipient: "bob@example.org"}
	for _, o := range opts {
		o(&r)
	}
	return r
}

func from(ip netip.Addr) func(*Request) { return func(r *Request) { r.Client = ip } }
func named(name string) func(*Request)  { return func(r *Request) { r.ClientName = name } }
func sender(s string) func(*Request)    { return func(r *Request) { r.Sender = s } }
func rcpt(s string) func(*Request)      { return func(r *Request) { r.Recipient = s } }
func authUser(u string) func(*Request)  { return func(r *Request) { r.AuthUser = u } }
func at(stage Stage) func(*Request)     { return func(r *Request) { r.Stage = stage } }

// outcome is the part of a Decision the tables check.
type outcome struct {
	Action  Action
	Reason  Reason
	Match   string
	Waited  time.Duration
	RetryIn time.Duration
}

func outcomeOf(d Decision) outcome {
	return outcome{Action: d.Action, Reason: d.Reason, Match: d.Match, Waited: d.Waited, RetryIn: d.RetryIn}
}

var (
	greylistNew = outcome{Action: Greylist, Reason: ReasonNew, RetryIn: 5 * time.Minute}
	known       = outcome{Action: Pass, Reason: ReasonKnown}
)

func retried(waited time.Duration) outcome {
	return outcome{Action: Pass, Reason: ReasonRetried, Waited: waited}
}

func early(retryIn time.Duration) outcome {
	return outcome{Action: Greylist, Reason: ReasonEarly, RetryIn: retryIn}
}

func exempt(r Reason, match string) outcome { return outcome{Action: Pass, Reason: r, Match: match} }

// step is one recipient decided after advancing the clock by after.
type step struct {
	after time.Duration
	req   Request
	want  outcome
}

// testLists builds exemption lists for the engine tests.
func testLists(t *testing.T) *Lists {
	t.Helper()
	l := &Lists{Trusted: &Networks{}, Clients: &ClientList{}, Recipients: &RecipientList{}}
	add := func(what string, f func(string) error, entries ...string) {
		for _, e := range entries {
			if err := f(e); err != nil {
				t.Fatalf("%s: Add(%q): %v", what, e, err)
			}
		}
	}
	add("trusted", l.Trusted.Add, "10.0.0.0/8", "2001:db8:aaaa::/48")
	add("clients", l.Clients.Add, "198.51.100.25", "203.0.113.0/28", "partner.example")
	add("recipients", l.Recipients.Add, "postmaster@example.org")
	return l
}

func newTestEngine(t *testing.T, cfg Config) (*Engine, *fakeClock, *memstore.Store) {
	t.Helper()
	clock := newFakeClock(t0)
	store := memstore.New(clock.Now)
	cfg.Now = clock.Now
	e := New(store, cfg)
	e.SetLists(testLists(t))
	return e, clock, store
}

func TestEngineDecide(t *testing.T) {
	const delay = 5 * time.Minute
	cases := []struct {
		name  string
		cfg   Config
		steps []step
		// stored is the number of records left in the store; -1 skips
		// the check.
		stored int
	}{
		// The triplet state machine through the engine.
		{name: "first sighting is greylisted for the delay", stored: 1, steps: []step{
			{0, req(), greylistNew},
		}},
		{name: "retry before the delay is greylisted as early", stored: 1, steps: []step{
			{0, req(), greylistNew},
			{time.Minute, req(), early(4 * time.Minute)},
			{time.Minute, req(), early(3 * time.Minute)},
		}},
		{name: "retry after the delay passes as retried", stored: 1, steps: []step{
			{0, req(), greylistNew},
			{time.Minute, req(), early(4 * time.Minute)},
			{4 * time.Minute, req(), retried(delay)},
		}},
		{name: "retry late in the window passes", stored: 1, steps: []step{
			{0, req(), greylistNew},
			{47 * time.Hour, req(), retried(47 * time.Hour)},
		}},
		{name: "retry after the window is new again", stored: 1, steps: []step{
			{0, req(), greylistNew},
			{48*time.Hour + time.Second, req(), greylistNew},
		}},
		{name: "passed triplet passes as known", stored: 1, steps: []step{
			{0, req(), greylistNew},
			{delay, req(), retried(delay)},
			{time.Hour, req(), known},
			{20 * 24 * time.Hour, req(), known},
		}},
		{name: "passed triplet unused for max-age is new again", stored: 1, steps: []step{
			{0, req(), greylistNew},
			{delay, req(), retried(delay)},
			{35*24*time.Hour + time.Second, req(), greylistNew},
		}},
		{name: "custom delay", cfg: Config{Policy: Policy{Delay: time.Minute}}, stored: 1, steps: []step{
			{0, req(), outcome{Action: Greylist, Reason: ReasonNew, RetryIn: time.Minute}},
			{time.Minute, req(), retried(time.Minute)},
		}},

		// Exemptions: each passes with its reason and entry, and writes nothing.
		{name: "no client address is exempt", stored: 0, steps: []step{
			{0, req(from(netip.Addr{})), exempt(ReasonNoClientAddr, "")},
		}},
		{name: "no client address comes before SASL", stored: 0, steps: []step{
			{0, req(from(netip.Addr{}), authUser("alice")), exempt(ReasonNoClientAddr, "")},
		}},
		{name: "trusted IPv4 network", stored: 0, steps: []step{
			{0, req(from(netip.MustParseAddr("10.20.30.40"))), exempt(ReasonTrusted, "10.0.0.0/8")},
		}},
		{name: "trusted IPv6 network", stored: 0, steps: []step{
			{0, req(from(netip.MustParseAddr("2001:db8:aaaa:1::5"))), exempt(ReasonTrusted, "2001:db8:aaaa::/48")},
		}},
		{name: "trusted network matches an IPv4-mapped client", stored: 0, steps: []step{
			{0, req(from(netip.MustParseAddr("::ffff:10.1.1.1"))), exempt(ReasonTrusted, "10.0.0.0/8")},
		}},
		{name: "SASL authenticated session", stored: 0, steps: []step{
			{0, req(authUser("alice")), exempt(ReasonSASL, "alice")},
		}},
		{name: "client whitelist by IP", stored: 0, steps: []step{
			{0, req(from(netip.MustParseAddr("198.51.100.25"))), exempt(ReasonClientWhitelist, "198.51.100.25/32")},
		}},
		{name: "client whitelist by CIDR", stored: 0, steps: []step{
			{0, req(from(netip.MustParseAddr("203.0.113.9"))), exempt(ReasonClientWhitelist, "203.0.113.0/28")},
		}},
		{name: "client whitelist by name when the name is confirmed", stored: 0, steps: []step{
			{0, req(named("mx3.partner.example")), exempt(ReasonClientWhitelist, "partner.example")},
		}},
		{name: "client whitelist by name needs a name", stored: 1, steps: []step{
			{0, req(), greylistNew},
		}},
		{name: "recipient whitelist", stored: 0, steps: []step{
			{0, req(rcpt("postmaster@example.org")), exempt(ReasonRcptWhitelist, "postmaster@example.org")},
		}},
		{name: "recipient whitelist ignores case, brackets and extension", stored: 0, steps: []step{
			{0, req(rcpt("<PostMaster+abuse@Example.ORG>")), exempt(ReasonRcptWhitelist, "postmaster@example.org")},
		}},
		{name: "recipient whitelist does not cover other recipients", stored: 1, steps: []step{
			{0, req(rcpt("bob@example.org")), greylistNew},
		}},

		// The client part of the triplet.
		{name: "another host of the same /24 shares the triplet", stored: 1, steps: []step{
			{0, req(from(mx1)), greylistNew},
			{delay, req(from(mx1b)), retried(delay)},
		}},
		{name: "a host of another /24 is another triplet", stored: 2, steps: []step{
			{0, req(from(mx1)), greylistNew},
			{delay, req(from(mx2)), greylistNew},
		}},
		{name: "with a /32 mask another host is another triplet", cfg: Config{Mask: ClientMask{IPv4: 32}}, stored: 2, steps: []step{
			{0, req(from(mx1)), greylistNew},
			{delay, req(from(mx1b)), greylistNew},
		}},
		{name: "another host of the same IPv6 /64 shares the triplet", stored: 1, steps: []step{
			{0, req(from(mx6)), greylistNew},
			{delay, req(from(mx6b)), retried(delay)},
		}},
		{name: "a host of another IPv6 /64 is another triplet", stored: 2, steps: []step{
			{0, req(from(mx6)), greylistNew},
			{delay, req(from(mx6other)), greylistNew},
		}},

		// The sender and recipient parts.
		{name: "VERP and BATV retry passes", stored: 1, steps: []step{
			{0, req(sender("prvs=0123abcdef=bounce-1111-22@lists.example")), greylistNew},
			{delay, req(sender("prvs=9876fedcba=bounce-3333-44@lists.example")), retried(delay)},
		}},
		{name: "SRS retry with a new hash passes", stored: 1, steps: []step{
			{0, req(sender("SRS0=aaaa=T1=orig.example=alice@fwd.example")), greylistNew},
			{delay, req(sender("SRS0=bbbb=T2=orig.example=alice@fwd.example")), retried(delay)},
		}},
		{name: "sender extension and case do not matter", stored: 1, steps: []step{
			{0, req(sender("<Alice+one@Example.NET>")), greylistNew},
			{delay, req(sender("alice+two@example.net")), retried(delay)},
		}},
		{name: "without delimiters the extension is part of the sender", cfg: Config{NoDelimiter: true}, stored: 2, steps: []step{
			{0, req(sender("alice+one@example.net")), greylistNew},
			{delay, req(sender("alice+two@example.net")), greylistNew},
		}},
		{name: "another sender is another triplet", stored: 2, steps: []step{
			{0, req(sender("alice@example.net")), greylistNew},
			{delay, req(sender("carol@example.net")), greylistNew},
		}},
		{name: "recipient extension does not matter", stored: 1, steps: []step{
			{0, req(rcpt("bob+one@example.org")), greylistNew},
			{delay, req(rcpt("Bob+two@example.org")), retried(delay)},
		}},
		{name: "another recipient is another triplet", stored: 2, steps: []step{
			{0, req(rcpt("bob@example.org")), greylistNew},
			{delay, req(rcpt("dave@example.org")), greylistNew},
		}},
		{name: "null sender is greylisted like any sender after the envelope", stored: 1, steps: []step{
			{0, req(sender(""), at(AfterEnvelope)), greylistNew},
			{delay, req(sender("<>"), at(AfterEnvelope)), retried(delay)},
		}},
		{name: "null sender waits at RCPT TO and leaves no record", stored: 0, steps: []step{
			{0, req(sender("")), outcome{Action: Later}},
			{delay, req(sender("<>")), outcome{Action: Later}},
		}},
		{name: "null sender to an exempt recipient passes at RCPT TO", stored: 0, steps: []step{
			{0, req(sender(""), rcpt("postmaster@example.org")), exempt(ReasonRcptWhitelist, "postmaster@example.org")},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, clock, store := newTestEngine(t, c.cfg)
			for i, s := range c.steps {
				clock.Advance(s.after)
				d := decide(e, context.Background(), s.req)
				if got := outcomeOf(d); got != s.want {
					t.Errorf("step %d (+%v): got %+v, want %+v", i, s.after, got, s.want)
				}
				if d.Err != nil {
					t.Errorf("step %d: Err = %v", i, d.Err)
				}
				looked := d.Reason == ReasonNew || d.Reason == ReasonEarly ||
					d.Reason == ReasonRetried || d.Reason == ReasonKnown
				if looked != (d.Key != "") {
					t.Errorf("step %d: reason %s with key %q", i, d.Reason, d.Key)
				}
			}
			if keys := store.Keys(); c.stored >= 0 && len(keys) != c.stored {
				t.Errorf("store holds %d records %q, want %d", len(keys), keys, c.stored)
			}
		})
	}
}

func TestEngineDecisionKey(t *testing.T) {
	e, _, _ := newTestEngine(t, Config{})
	d := decide(e, context.Background(), req(
		from(mx1b), sender("<Alice+News@Example.NET>"), rcpt("<Bob+x@Example.ORG.>")))
	want := "t:192.0.2.0/24 alice@example.net bob@example.org"
	if d.Key != want {
		t.Errorf("Key = %q, want %q", d.Key, want)
	}
}

func TestEngineExemptMatchesDecide(t *testing.T) {
	e, _, _ := newTestEngine(t, Config{})
	for _, r := range []Request{
		req(from(netip.Addr{})),
		req(from(netip.MustParseAddr("10.0.0.1"))),
		req(authUser("alice")),
		req(named("partner.example")),
		req(rcpt("postmaster@example.org")),
	} {
		d, ok := exemptReq(e, r)
		if !ok {
			t.Errorf("Exempt(%+v) = false", r)
			continue
		}
		if got := decide(e, context.Background(), r); got != d {
			t.Errorf("Decide(%+v) = %+v, Exempt said %+v", r, got, d)
		}
	}
	if d, ok := exemptReq(e, req()); ok {
		t.Errorf("ordinary request exempt: %+v", d)
	}
}

func TestEngineAutoWhitelist(t *testing.T) {
	const delay = 5 * time.Minute
	other := func(r *Request) { r.Sender, r.Recipient = "carol@example.com", "dave@example.org" }
	third := func(r *Request) { r.Sender, r.Recipient = "frank@example.com", "grace@example.org" }
	never := func(t *testing.T, e *Engine) {
		l := testLists(t)
		l.NeverAutoWhitelist = &ClientList{}
		if err := l.NeverAutoWhitelist.Add("192.0.2.0/24"); err != nil {
			t.Fatal(err)
		}
		e.SetLists(l)
	}
	cases := []struct {
		name  string
		awl   int
		setup func(*testing.T, *Engine)
		steps []step
	}{
		{name: "two triplets passed an hour apart whitelist the client", awl: 2, steps: []step{
			{0, req(), greylistNew},
			{delay, req(), retried(delay)}, // counted: 1
			{time.Hour, req(other), greylistNew},
			{delay, req(other), retried(delay)}, // counted: 2
			{time.Minute, req(third), exempt(ReasonAutoWhitelist, "192.0.2.0/24")},
			{time.Minute, req(third, from(mx1b)), exempt(ReasonAutoWhitelist, "192.0.2.0/24")},
		}},
		{name: "the auto-whitelist covers only the client's network", awl: 2, steps: []step{
			{0, req(), greylistNew},
			{delay, req(), retried(delay)},
			{time.Hour, req(other), greylistNew},
			{delay, req(other), retried(delay)},
			{time.Minute, req(third, from(mx2)), greylistNew},
		}},
		{name: "two triplets passed within the hour count once", awl: 2, steps: []step{
			{0, req(), greylistNew},
			{0, req(other), greylistNew},
			{delay, req(), retried(delay)},  // counted: 1
			{0, req(other), retried(delay)}, // within the hour: not counted
			{time.Minute, req(third), greylistNew},
		}},
		{name: "repeated deliveries of one triplet never whitelist the client", awl: 2, steps: []step{
			{0, req(), greylistNew},
			{delay, req(), retried(delay)},
			{time.Hour, req(), known},
			{2 * time.Hour, req(), known},
			{time.Minute, req(other), greylistNew},
		}},
		{name: "greylisted attempts are not counted", awl: 1, steps: []step{
			{0, req(), greylistNew},
			{time.Minute, req(), early(4 * time.Minute)},
			{time.Minute, req(other), greylistNew},
		}},
		{name: "a client in never-auto-whitelist is never whitelisted", awl: 1, setup: never, steps: []step{
			{0, req(), greylistNew},
			{delay, req(), retried(delay)},
			{time.Minute, req(other), greylistNew},
		}},
		{name: "auto-whitelist off by default", awl: 0, steps: []step{
			{0, req(), greylistNew},
			{delay, req(), retried(delay)},
			{time.Hour, req(), known},
			{2 * time.Hour, req(), known},
			{time.Minute, req(other), greylistNew},
		}},
		{name: "auto-whitelist lapses after max-age without passes", awl: 1, steps: []step{
			{0, req(), greylistNew},
			{delay, req(), retried(delay)},
			{time.Minute, req(other), exempt(ReasonAutoWhitelist, "192.0.2.0/24")},
			{35*24*time.Hour + time.Second, req(other, sender("erin@example.com")), greylistNew},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, clock, _ := newTestEngine(t, Config{AutoWhitelist: c.awl})
			if c.setup != nil {
				c.setup(t, e)
			}
			for i, s := range c.steps {
				clock.Advance(s.after)
				if got := outcomeOf(decide(e, context.Background(), s.req)); got != s.want {
					t.Errorf("step %d (+%v): got %+v, want %+v", i, s.after, got, s.want)
				}
			}
		})
	}
}

func TestEngineStoreError(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		req    Request
		want   outcome
		hasKey bool
	}{
		{"on_error accept passes", Config{OnError: ErrorAccept}, req(),
			outcome{Action: Pass, Reason: ReasonStoreError}, true},
		{"on_error tempfail greylists", Config{OnError: ErrorTempfail}, req(),
			outcome{Action: Greylist, Reason: ReasonStoreError}, true},
		{"auto-whitelist lookup failure follows on_error", Config{OnError: ErrorTempfail, AutoWhitelist: 5}, req(),
			outcome{Action: Greylist, Reason: ReasonStoreError}, false},
		{"exemptions do not need the store", Config{OnError: ErrorTempfail}, req(authUser("alice")),
			exempt(ReasonSASL, "alice"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			c.cfg.Now = clock.Now
			e := New(failStore{}, c.cfg)
			d := decide(e, context.Background(), c.req)
			if got := outcomeOf(d); got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
			if c.want.Reason == ReasonStoreError {
				if !errors.Is(d.Err, errStoreDown) {
					t.Errorf("Err = %v, want the store's error", d.Err)
				}
				if e.StoreHealthy() {
					t.Error("StoreHealthy after a failure")
				}
			} else if d.Err != nil || !e.StoreHealthy() {
				t.Errorf("exempt decision: Err = %v, StoreHealthy = %v", d.Err, e.StoreHealthy())
			}
			if (d.Key != "") != c.hasKey {
				t.Errorf("Key = %q, want key: %v", d.Key, c.hasKey)
			}
		})
	}
}

func TestEngineStoreOutageLog(t *testing.T) {
	var buf bytes.Buffer
	clock := newFakeClock(t0)
	store := &flakyStore{Store: memstore.New(clock.Now)}
	e := New(store, Config{Now: clock.Now, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	decide := func(n int) {
		for i := 0; i < n; i++ {
			clock.Advance(time.Second)
			decide(e, context.Background(), req(sender(fmt.Sprintf("user%d@example.net", i))))
		}
	}
	count := func(msg string) int { return strings.Count(buf.String(), "msg=\""+msg) }

	decide(3)
	if !e.StoreHealthy() || buf.Len() != 0 {
		t.Fatalf("healthy store: StoreHealthy = %v, log %q", e.StoreHealthy(), buf.String())
	}

	store.down.Store(true)
	decide(20)
	if n := count("store failing"); n != 1 {
		t.Errorf("an outage of 20 failures logged %d times, want once:\n%s", n, buf.String())
	}
	if count("store recovered") != 0 {
		t.Errorf("recovery logged during the outage:\n%s", buf.String())
	}
	if e.StoreHealthy() {
		t.Error("StoreHealthy during the outage")
	}

	store.down.Store(false)
	decide(5)
	if n := count("store recovered"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "failed_decisions=20") {
		t.Errorf("recovery does not report the 20 failed decisions:\n%s", buf.String())
	}
	if !e.StoreHealthy() {
		t.Error("not StoreHealthy after recovery")
	}

	store.down.Store(true)
	decide(2)
	if n := count("store failing"); n != 2 {
		t.Errorf("a second outage: %d failure lines in all, want 2:\n%s", n, buf.String())
	}
	if lines := strings.Count(buf.String(), "\n"); lines != 3 {
		t.Errorf("%d log lines, want 3:\n%s", lines, buf.String())
	}
}

// TestEngineAutoWhitelistCountFailure: an auto-whitelisted client passes
// on a successful lookup even when counting its pass fails, but the failed
// write is an outage like any other: reported once, not "recovered" at once.
func TestEngineAutoWhitelistCountFailure(t *testing.T) {
	var buf bytes.Buffer
	clock := newFakeClock(t0)
	store := &flakyStore{Store: memstore.New(clock.Now)}
	e := New(store, Config{Now: clock.Now, AutoWhitelist: 1, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	ctx := context.Background()
	decide(e, ctx, req())
	clock.Advance(5 * time.Minute)
	if d := decide(e, ctx, req()); d.Reason != ReasonRetried {
		t.Fatalf("retry: %+v", d)
	}

	store.readOnly.Store(true)
	clock.Advance(2 * time.Hour) // the next pass is counted: a write
	d := decide(e, ctx, req(sender("carol@example.com")))
	if got, want := outcomeOf(d), exempt(ReasonAutoWhitelist, "192.0.2.0/24"); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if e.StoreHealthy() {
		t.Error("StoreHealthy after a failed write")
	}
	if strings.Count(buf.String(), "store failing") != 1 || strings.Contains(buf.String(), "store recovered") {
		t.Errorf("want one failure report and no recovery:\n%s", buf.String())
	}
}

func TestEngineConcurrentNewTriplet(t *testing.T) {
	e, _, _ := newTestEngine(t, Config{})
	const n = 50
	reasons := make(chan Reason, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			reasons <- decide(e, context.Background(), req()).Reason
		}()
	}
	start.Done()
	done.Wait()
	close(reasons)
	counts := map[Reason]int{}
	for r := range reasons {
		counts[r]++
	}
	if counts[ReasonNew] != 1 || counts[ReasonEarly] != n-1 {
		t.Errorf("reasons = %v, want exactly one %s and %d %s", counts, ReasonNew, n-1, ReasonEarly)
	}
}

func TestEngineDefaults(t *testing.T) {
	e := New(memstore.New(time.Now), Config{})
	cfg := e.Config()
	if cfg.Policy != DefaultPolicy || cfg.Mask != DefaultClientMask || cfg.Delimiters != "+" || cfg.Now == nil {
		t.Errorf("defaults not filled in: %+v", cfg)
	}
	if cfg := New(nil, Config{NoDelimiter: true}).Config(); cfg.Delimiters != "" {
		t.Errorf("NoDelimiter: Delimiters = %q", cfg.Delimiters)
	}
	// Without SetLists nothing is exempt but nothing fails either.
	if d := decide(e, context.Background(), req(named("partner.example"))); d.Reason != ReasonNew {
		t.Errorf("without lists: %+v", d)
	}
}

// MergeRecord writes the merge only when it adds something, with the
// lifetime the policy gives the merged record.
func TestEngineMergeRecord(t *testing.T) {
	p := Policy{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxAge: 35 * 24 * time.Hour}
	e, clock, store := newTestEngine(t, Config{Policy: p})
	ctx := context.Background()
	now := clock.Now()
	const key = "t:192.0.2.0/24 a@example.org b@example.net"
	learned := &Record{State: Passed, First: now.Add(-time.Hour), Last: now.Add(-time.Minute), Count: 3}
	store.Put(ctx, key, learned, p.Lifetime(learned, now))

	for _, c := range []struct {
		name  string
		rec   *Record
		wrote bool
		want  *Record
	}{
		{"a first attempt does not undo a pass", &Record{State: Pending, First: now.Add(-2 * time.Hour), Last: now.Add(-2 * time.Hour), Count: 1}, false, learned},
		{"an older pass adds nothing", &Record{State: Passed, First: now.Add(-time.Hour), Last: now.Add(-time.Hour), Count: 1}, false, learned},
		{"an earlier first sighting is kept", &Record{State: Passed, First: now.Add(-30 * 24 * time.Hour), Last: now.Add(-20 * 24 * time.Hour), Count: 1}, true,
			&Record{State: Passed, First: now.Add(-30 * 24 * time.Hour), Last: now.Add(-time.Minute), Count: 3}},
	} {
		t.Run(c.name, func(t *testing.T) {
			wrote, err := e.MergeRecord(ctx, key, c.rec)
			if err != nil || wrote != c.wrote {
				t.Fatalf("MergeRecord = %v, %v; want %v", wrote, err, c.wrote)
			}
			got, expires, err := store.Get(ctx, key)
			if err != nil || !SameRecord(got, c.want) {
				t.Fatalf("stored %s, %v; want %s", FmtRecord(got), err, FmtRecord(c.want))
			}
			if want := now.Add(p.Lifetime(c.want, now)); !expires.Equal(want) {
				t.Errorf("expires %v, want %v", expires, want)
			}
		})
	}
	t.Run("a record past max-age is not written", func(t *testing.T) {
		gone := &Record{State: Passed, First: now.Add(-40 * 24 * time.Hour), Last: now.Add(-36 * 24 * time.Hour), Count: 1}
		const other = "t:198.51.100.0/24 a@example.org b@example.net"
		if wrote, err := e.MergeRecord(ctx, other, gone); err != nil || wrote {
			t.Errorf("MergeRecord = %v, %v; want nothing written", wrote, err)
		}
		if _, _, err := store.Get(ctx, other); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get: %v, want not found", err)
		}
	})
}
