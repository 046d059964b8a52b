package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/milter-grey/milter-grey/envelope"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
	"github.com/milter-grey/milter-grey/metrics"
)

// fakeClock is the policy clock of the tests: it starts now (the stores
// measure lifetimes on the wall clock) and moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// flakyStore is a store whose reads can be made to fail.
type flakyStore struct {
	greylist.Store
	mu     sync.Mutex
	broken error
}

func (s *flakyStore) breakWith(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken = err
}

func (s *flakyStore) Get(ctx context.Context, key string) (*greylist.Record, time.Time, error) {
	s.mu.Lock()
	err := s.broken
	s.mu.Unlock()
	if err != nil {
		return nil, time.Time{}, err
	}
	return s.Store.Get(ctx, key)
}

// testAPI is an admin API over an in-memory Badger store and an engine on
// a fake clock, served on loopback.
type testAPI struct {
	store   *flakyStore
	engine  *greylist.Engine
	clock   *fakeClock
	handler http.Handler
	srv     *httptest.Server
	client  *Client
	log     *bytes.Buffer
}

var policy = greylist.Policy{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxAge: 35 * 24 * time.Hour}

func newTestAPI(t *testing.T, tweak func(*Config)) *testAPI {
	t.Helper()
	bs, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	store := &flakyStore{Store: bs}
	t.Cleanup(func() { store.Close() })
	clock := &fakeClock{now: time.Now().Truncate(time.Millisecond)}
	engine := greylist.New(store, greylist.Config{
		Policy:        policy,
		AutoWhitelist: 1,
		Now:           clock.Now,
	})
	engine.SetLists(&greylist.Lists{
		Trusted:            &greylist.Networks{},
		Clients:            &greylist.ClientList{},
		Recipients:         &greylist.RecipientList{},
		NeverAutoWhitelist: &greylist.ClientList{},
	})
	logBuf := &bytes.Buffer{}
	cfg := Config{
		Store:    store,
		Engine:   engine,
		Metrics:  metrics.New("test"),
		Sessions: func() int { return 2 },
		Log:      slog.New(slog.NewTextHandler(&lockedWriter{w: logBuf}, nil)),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	h := NewHandler(cfg)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testAPI{store: store, engine: engine, clock: clock, handler: h, srv: srv,
		client: NewClient(srv.Listener.Addr().String()), log: logBuf}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// decide decides one recipient from client as the milter would.
func (a *testAPI) decide(t *testing.T, client, from, to string) greylist.Decision {
	t.Helper()
	msg := &greylist.Message{Client: netip.MustParseAddr(client), Sender: envelope.Parse(from)}
	d := a.engine.Decide(context.Background(), msg, envelope.Parse(to), greylist.AtRcpt)
	if d.Action == greylist.Later { // the null sender, decided after the envelope
		d = a.engine.Decide(context.Background(), msg, envelope.Parse(to), greylist.AfterEnvelope)
	}
	if d.Err != nil {
		t.Fatalf("Decide: %v", d.Err)
	}
	return d
}

// records lists the records f selects, sorted by key.
func (a *testAPI) records(t *testing.T, f Filter) []Entry {
	t.Helper()
	var es []Entry
	if err := a.client.Records(context.Background(), f, func(e Entry) error {
		es = append(es, e)
		return nil
	}); err != nil {
		t.Fatalf("Records(%+v): %v", f, err)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Key < es[j].Key })
	return es
}

func keys(es []Entry) []string {
	var ks []string
	for _, e := range es {
		ks = append(ks, e.Key)
	}
	return ks
}

const (
	keyPending = "t:192.0.2.0/24 alice@sender.example bob@example.net"
	keyPassed  = "t:198.51.100.0/24 carol@partner.example bob@example.net"
	keyNever   = "t:203.0.113.0/24 spam@spam.example dave@example.org"
	keyClient  = "c:198.51.100.0/24"
)

// scenario makes one triplet of each state: keyNever greylisted three days
// ago and never retried, keyPassed retried after the delay (which also
// counts its client for the auto-whitelist), keyPending greylisted now.
func (a *testAPI) scenario(t *testing.T) {
	t.Helper()
	a.decide(t, "203.0.113.5", "<spam@spam.example>", "<dave@example.org>")
	a.clock.Advance(72 * time.Hour)
	a.decide(t, "198.51.100.7", "<carol+news@partner.example>", "<bob@example.net>")
	a.clock.Advance(10 * time.Minute)
	if d := a.decide(t, "198.51.100.8", "<carol@partner.example>", "<bob@example.net>"); d.Reason != greylist.ReasonRetried {
		t.Fatalf("retry: %v/%v", d.Action, d.Reason)
	}
	a.decide(t, "192.0.2.7", "<Alice@Sender.Example>", "<bob+x@example.net>")
}

func TestListFiltersByClientSenderRecipientStateAndKind(t *testing.T) {
	a := newTestAPI(t, nil)
	a.scenario(t)
	for _, tc := range []struct {
		name   string
		filter Filter
		want   []string
	}{
		{"everything", Filter{}, []string{keyClient, keyPending, keyPassed, keyNever}},
		{"triplets", Filter{Kind: KindTriplet}, []string{keyPending, keyPassed, keyNever}},
		{"clients", Filter{Kind: KindClient}, []string{keyClient}},
		{"pending", Filter{State: StatePending}, []string{keyPending}},
		{"passed", Filter{State: StatePassed}, []string{keyPassed}},
		{"never retried", Filter{State: StateNeverRetried}, []string{keyNever}},
		{"auto-whitelisted clients", Filter{State: StateAutoWhitelisted}, []string{keyClient}},
		{"a client address matches its network", Filter{Client: "192.0.2.200"}, []string{keyPending}},
		{"a wider prefix matches the networks in it", Filter{Client: "198.51.0.0/16"}, []string{keyClient, keyPassed}},
		{"a sender address is normalised", Filter{Sender: "<CAROL+tag@partner.example>"}, []string{keyPassed}},
		{"a sender domain", Filter{Sender: "spam.example"}, []string{keyNever}},
		{"a sender @domain", Filter{Sender: "@sender.example"}, []string{keyPending}},
		{"a recipient", Filter{Rcpt: "bob+y@example.net"}, []string{keyPending, keyPassed}},
		{"a recipient and a state", Filter{Rcpt: "example.net", State: StatePassed}, []string{keyPassed}},
		{"nothing matches", Filter{Sender: "nobody@nowhere.example"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := keys(a.records(t, tc.filter))
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
	t.Run("limit", func(t *testing.T) {
		if got := a.records(t, Filter{Limit: 2}); len(got) != 2 {
			t.Errorf("%d entries, want 2", len(got))
		}
	})
	t.Run("entries carry the key's parts, state, times and lifetime", func(t *testing.T) {
		es := a.records(t, Filter{State: StatePending})
		if len(es) != 1 {
			t.Fatalf("%d entries", len(es))
		}
		e := es[0]
		if e.Kind != KindTriplet || e.Client != "192.0.2.0/24" || e.Sender != "alice@sender.example" || e.Rcpt != "bob@example.net" {
			t.Errorf("parts: %+v", e)
		}
		if !e.First.Equal(a.clock.Now()) || e.Count != 1 {
			t.Errorf("first %v count %d, want %v 1", e.First, e.Count, a.clock.Now())
		}
		want := int64((policy.RetryWindow + greylist.NeverRetriedGrace) / time.Second)
		if e.Expires == nil || e.TTLSeconds < want-5 || e.TTLSeconds > want+1 {
			t.Errorf("ttl %d, want about %d", e.TTLSeconds, want)
		}
	})
	t.Run("bad filters are refused", func(t *testing.T) {
		for _, f := range []Filter{
			{State: "asleep"}, {Kind: "robot"}, {Kind: KindClient, Sender: "a@b"},
			{Kind: KindClient, State: StatePending}, {Client: "not an address"},
		} {
			err := a.client.Records(context.Background(), f, func(Entry) error { return nil })
			var ae *Error
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest {
				t.Errorf("%+v: %v, want a 400", f, err)
			}
		}
	})
}

func TestNeverRetriedListsTripletsPastTheirWindow(t *testing.T) {
	a := newTestAPI(t, nil)
	a.scenario(t)
	var got []string
	err := a.client.NeverRetried(context.Background(), Filter{}, func(e Entry) error {
		got = append(got, e.Key)
		if e.State != StateNeverRetried {
			t.Errorf("%s: state %s", e.Key, e.State)
		}
		return nil
	})
	if err != nil || len(got) != 1 || got[0] != keyNever {
		t.Errorf("never-retried: %q, %v; want [%s]", got, err, keyNever)
	}
}

func TestShowAndDeleteOneRecord(t *testing.T) {
	a := newTestAPI(t, nil)
	a.scenario(t)
	ctx := context.Background()
	e, err := a.client.Record(ctx, keyPassed)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != StatePassed || e.Sender != "carol@partner.example" || e.Count != 1 {
		t.Errorf("show: %+v", e)
	}
	if _, err := a.client.Record(ctx, "t:absent x y"); !IsNotFound(err) {
		t.Errorf("show of an absent key: %v, want not found", err)
	}
	if err := a.client.Delete(ctx, keyPassed); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := a.client.Record(ctx, keyPassed); !IsNotFound(err) {
		t.Errorf("show after delete: %v, want not found", err)
	}
	if err := a.client.Delete(ctx, keyPassed); !IsNotFound(err) {
		t.Errorf("second delete: %v, want not found", err)
	}
	if !strings.Contains(a.log.String(), "admin: record deleted") {
		t.Errorf("the deletion is not logged:\n%s", a.log)
	}
	// Deleted, the triplet is new again.
	if d := a.decide(t, "198.51.100.9", "carol@partner.example", "bob@example.net"); d.Reason != greylist.ReasonAutoWhitelist {
		// Its client is still auto-whitelisted: delete that too.
		t.Fatalf("after delete: %v", d.Reason)
	}
	if err := a.client.Delete(ctx, keyClient); err != nil {
		t.Fatal(err)
	}
	if d := a.decide(t, "198.51.100.9", "carol@partner.example", "bob@example.net"); d.Reason != greylist.ReasonNew {
		t.Errorf("after deleting triplet and client: %v, want new", d.Reason)
	}
}

func TestDeleteByFilter(t *testing.T) {
	a := newTestAPI(t, nil)
	a.scenario(t)
	ctx := context.Background()
	if _, err := a.client.DeleteMatching(ctx, Filter{}); err == nil || !strings.Contains(err.Error(), `"all": true`) {
		t.Errorf("an empty filter: %v, want refused", err)
	}
	n, err := a.client.DeleteMatching(ctx, Filter{Rcpt: "bob@example.net"})
	if err != nil || n != 2 {
		t.Errorf("delete rcpt=bob@example.net: %d, %v; want 2", n, err)
	}
	if got := keys(a.records(t, Filter{})); strings.Join(got, "|") != keyClient+"|"+keyNever {
		t.Errorf("left: %q", got)
	}
	n, err = a.client.DeleteMatching(ctx, Filter{All: true})
	if err != nil || n != 2 {
		t.Errorf("delete all: %d, %v; want 2", n, err)
	}
	if got := a.records(t, Filter{}); len(got) != 0 {
		t.Errorf("left after deleting all: %q", keys(got))
	}
}

// A deletion larger than a batch is done in several scans.
func TestDeleteByFilterInBatches(t *testing.T) {
	a := newTestAPI(t, nil)
	ctx := context.Background()
	now := a.clock.Now()
	for i := range deleteBatch + 7 {
		key := greylist.TripletKey("192.0.2.0/24", "s@x.example", "r"+string(rune('a'+i%26))+strings.Repeat("z", i/26)+"@y.example")
		if err := a.store.Put(ctx, key, &greylist.Record{State: greylist.Pending, First: now, Last: now, Count: 1}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	n, err := a.client.DeleteMatching(ctx, Filter{Client: "192.0.2.1"})
	if err != nil || n != deleteBatch+7 {
		t.Errorf("deleted %d, %v; want %d", n, err, deleteBatch+7)
	}
}

func TestPassMarksATripletPassed(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  PassRequest
		key  string
	}{
		{"by address, masked and normalised", PassRequest{Client: "192.0.2.77", Sender: "<Alice+x@Sender.Example>", Rcpt: "bob+y@example.net"}, keyPending},
		{"by key", PassRequest{Key: keyPending}, keyPending},
		{"by network", PassRequest{Client: "192.0.2.9/24", Sender: "alice@sender.example", Rcpt: "bob@example.net"}, keyPending},
		{"by SPF domain", PassRequest{Client: "SPF:Sender.Example", Sender: "alice@sender.example", Rcpt: "bob@example.net"},
			"t:spf:sender.example alice@sender.example bob@example.net"},
		{"the null sender", PassRequest{Client: "192.0.2.1", Rcpt: "bob@example.net"}, "t:192.0.2.0/24 <> bob@example.net"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestAPI(t, nil)
			e, err := a.client.Pass(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if e.Key != tc.key || e.State != StatePassed || !e.First.Equal(a.clock.Now()) || !e.Last.Equal(a.clock.Now()) {
				t.Errorf("pass: %+v, want %s passed now", e, tc.key)
			}
			if want := int64(policy.MaxAge / time.Second); e.TTLSeconds < want-5 || e.TTLSeconds > want+1 {
				t.Errorf("ttl %d, want max_age %d", e.TTLSeconds, want)
			}
			if tc.key == keyPending {
				// The milter now passes it at once.
				if d := a.decide(t, "192.0.2.7", "alice@sender.example", "bob@example.net"); d.Action != greylist.Pass || d.Reason != greylist.ReasonKnown {
					t.Errorf("decision after pass: %v/%v, want pass/known", d.Action, d.Reason)
				}
			}
		})
	}
	t.Run("bad requests", func(t *testing.T) {
		a := newTestAPI(t, nil)
		for _, req := range []PassRequest{
			{}, {Client: "192.0.2.1"}, {Client: "mail.example.com", Rcpt: "b@x"},
			{Key: "c:192.0.2.0/24"}, {Key: keyPending, Client: "192.0.2.1"},
		} {
			var ae *Error
			if _, err := a.client.Pass(ctx, req); !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest {
				t.Errorf("%+v: %v, want a 400", req, err)
			}
		}
	})
}

// explain says what Decide then does, step after step of a triplet's
// life, and writes nothing.
func TestExplainAgreesWithWhatTheEngineThenDoes(t *testing.T) {
	a := newTestAPI(t, nil)
	ctx := context.Background()
	req := ExplainRequest{Client: "192.0.2.7", Helo: "mail.sender.example", From: "<alice@sender.example>", To: "<bob@example.net>"}
	for _, step := range []struct {
		after  time.Duration
		action string
		reason string
	}{
		{0, "greylist", "new"},
		{time.Minute, "greylist", "early"},
		{5 * time.Minute, "pass", "retried"},
		// auto_whitelist = 1: the retried triplet whitelisted its client.
		{2 * time.Hour, "pass", "auto-whitelist"},
	} {
		a.clock.Advance(step.after)
		before := snapshot(t, a)
		ex, err := a.client.Explain(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if after := snapshot(t, a); !reflect.DeepEqual(after, before) {
			t.Fatalf("explain changed the store:\n%v\n->\n%v", before, after)
		}
		d := a.decide(t, req.Client, req.From, req.To)
		if ex.Action != d.Action.String() || ex.Reason != string(d.Reason) || ex.Key != d.Key {
			t.Errorf("explain %s/%s %q, decide %v/%v %q", ex.Action, ex.Reason, ex.Key, d.Action, d.Reason, d.Key)
		}
		if ex.Action != step.action || ex.Reason != step.reason {
			t.Errorf("explain %s/%s, want %s/%s", ex.Action, ex.Reason, step.action, step.reason)
		}
		switch ex.Reason {
		case "new":
			if ex.RetryInSeconds != 300 || ex.Record != nil {
				t.Errorf("new: retry in %d, record %+v", ex.RetryInSeconds, ex.Record)
			}
		case "early":
			if ex.RetryInSeconds != 240 || ex.Record == nil || ex.Record.State != StatePending {
				t.Errorf("early: retry in %d, record %+v", ex.RetryInSeconds, ex.Record)
			}
		case "retried":
			if ex.WaitedSeconds != 360 {
				t.Errorf("retried: waited %d, want 360", ex.WaitedSeconds)
			}
		case "auto-whitelist":
			if ex.Match != "192.0.2.0/24" {
				t.Errorf("auto-whitelist: match %q", ex.Match)
			}
		}
	}
	t.Run("an exempt client says which entry matched", func(t *testing.T) {
		l := *a.engine.Lists()
		l.Trusted = &greylist.Networks{}
		l.Trusted.Add("10.0.0.0/8")
		a.engine.SetLists(&l)
		ex, err := a.client.Explain(ctx, ExplainRequest{Client: "10.1.2.3", From: "x@y", To: "z@w"})
		if err != nil || ex.Action != "pass" || ex.Reason != "trusted" || ex.Match != "10.0.0.0/8" {
			t.Errorf("trusted: %+v, %v", ex, err)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		for _, req := range []ExplainRequest{{Client: "mail.example.com", To: "a@b"}, {Client: "192.0.2.1"}} {
			var ae *Error
			if _, err := a.client.Explain(ctx, req); !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest {
				t.Errorf("%+v: %v, want a 400", req, err)
			}
		}
	})
}

// With SPF configured, explain evaluates it as the milter does: here no
// DNS server answers, so SPF is a temperror and the triplet is keyed by
// the client network.
func TestExplainEvaluatesSPF(t *testing.T) {
	resolver := auth.NewResolver(auth.ResolverConfig{Server: "127.0.0.1:9", Timeout: time.Second})
	a := newTestAPI(t, nil)
	// An engine keying by SPF domain, on the same store.
	a2 := greylist.New(a.store, greylist.Config{Policy: policy, KeyBySPFDomain: true, Now: a.clock.Now,
		SPF: auth.NewSPF(resolver, auth.SPFOptions{Timeout: time.Second})})
	a2.SetLists(a.engine.Lists())
	h := NewHandler(Config{Store: a.store, Engine: a2})
	srv := httptest.NewServer(h)
	defer srv.Close()
	ex, err := NewClient(srv.Listener.Addr().String()).Explain(context.Background(),
		ExplainRequest{Client: "192.0.2.7", Helo: "mail.sender.example", From: "alice@sender.example", To: "bob@example.net"})
	if err != nil {
		t.Fatal(err)
	}
	if ex.SPF != "temperror" || ex.Key != keyPending || ex.Reason != "new" {
		t.Errorf("explain with SPF: %+v", ex)
	}
}

func TestStats(t *testing.T) {
	a := newTestAPI(t, nil)
	a.scenario(t)
	s, err := a.client.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Triplets.Pending != 1 || s.Triplets.Passed != 1 || s.Triplets.NeverRetried != 1 ||
		s.Clients.AutoWhitelisted != 1 || s.Clients.Counting != 0 || s.Other != 0 {
		t.Errorf("stats: %+v", s)
	}
	if !s.StoreUp || s.SessionsOpen == nil || *s.SessionsOpen != 2 {
		t.Errorf("store_up %v, sessions %v", s.StoreUp, s.SessionsOpen)
	}
}

// stored is a record as the store holds it.
type stored struct {
	rec greylist.Record
	exp time.Time
}

// snapshot reads every record of the store directly.
func snapshot(t *testing.T, a *testAPI) map[string]stored {
	t.Helper()
	m := map[string]stored{}
	if err := a.store.Scan(context.Background(), "", func(k string, r *greylist.Record, exp time.Time) error {
		m[k] = stored{*r, exp}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// A dump restored into an emptied database gives back the same records
// with the same lifetimes.
func TestDumpDeleteAllRestoreGivesTheSameDatabase(t *testing.T) {
	a := newTestAPI(t, nil)
	a.scenario(t)
	ctx := context.Background()
	now := a.clock.Now()
	// A record without expiry, and one whose key needs escaping in a URL.
	a.store.Put(ctx, "t:2001:db8::/64 <> post%master@example.net", &greylist.Record{State: greylist.Passed, First: now, Last: now, Count: 3}, 0)

	before := snapshot(t, a)
	if len(before) != 5 {
		t.Fatalf("%d records before", len(before))
	}
	var d bytes.Buffer
	n, err := a.client.Dump(ctx, &d)
	if err != nil || n != 5 {
		t.Fatalf("dump: %d, %v", n, err)
	}
	if deleted, err := a.client.DeleteMatching(ctx, Filter{All: true}); err != nil || deleted != 5 {
		t.Fatalf("delete all: %d, %v", deleted, err)
	}
	if len(snapshot(t, a)) != 0 {
		t.Fatal("records left after deleting all")
	}
	time.Sleep(1100 * time.Millisecond) // lifetimes are restored as remaining, so they must not drift
	restored, err := a.client.Restore(ctx, bytes.NewReader(d.Bytes()))
	if err != nil || restored != 5 {
		t.Fatalf("restore: %d, %v", restored, err)
	}
	after := snapshot(t, a)
	for k, b := range before {
		got, ok := after[k]
		switch {
		case !ok:
			t.Errorf("%s: missing after restore", k)
		case got.rec.State != b.rec.State || !got.rec.First.Equal(b.rec.First) || !got.rec.Last.Equal(b.rec.Last) || got.rec.Count != b.rec.Count:
			t.Errorf("%s: record %+v, was %+v", k, got.rec, b.rec)
		case got.exp.IsZero() != b.exp.IsZero():
			t.Errorf("%s: expiry %v, was %v", k, got.exp, b.exp)
		case !b.exp.IsZero() && (got.exp.Sub(b.exp) < -time.Second || got.exp.Sub(b.exp) > 3*time.Second):
			// The dump holds remaining lifetimes: restored 1.1 s later,
			// a record expires that much later (plus rounding).
			t.Errorf("%s: expires %v, was %v", k, got.exp, b.exp)
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d records after restore, %d before", len(after), len(before))
	}
}

func TestRestoreStopsAtABadLine(t *testing.T) {
	a := newTestAPI(t, nil)
	good := `{"key":"t:192.0.2.0/24 a@b c@d","state":"pending","first":"2026-01-02T03:04:05.678Z","last":"2026-01-02T03:04:05.678Z","count":1,"ttl_seconds":3600}`
	for _, tc := range []struct {
		name, body string
		n          int
		err        string
	}{
		{"not JSON", good + "\nnonsense\n", 1, "line 2"},
		{"unknown state", strings.Replace(good, "pending", "asleep", 1), 0, `unknown state "asleep"`},
		{"no key", `{"state":"pending","first":"2026-01-02T03:04:05Z","last":"2026-01-02T03:04:05Z"}`, 0, "no key"},
		{"negative ttl", strings.Replace(good, "3600", "-1", 1), 0, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := a.client.Restore(context.Background(), strings.NewReader(tc.body))
			if n != tc.n || err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("restore: %d, %v; want %d and %q", n, err, tc.n, tc.err)
			}
		})
	}
}

// Writes are refused to peers off loopback; reads are not.
func TestWritesOnlyFromLoopbackOrTheUnixSocket(t *testing.T) {
	a := newTestAPI(t, nil)
	a.scenario(t)
	type request struct {
		method, path, body string
	}
	writes := []request{
		{http.MethodDelete, "/v1/records/" + escapeKey(keyPending), ""},
		{http.MethodPost, "/v1/delete", `{"all":true}`},
		{http.MethodPost, "/v1/pass", `{"key":"` + keyPending + `"}`},
		{http.MethodPost, "/v1/restore", ``},
	}
	reads := []request{
		{http.MethodGet, "/v1/records", ""},
		{http.MethodGet, "/v1/records/" + escapeKey(keyPending), ""},
		{http.MethodGet, "/v1/stats", ""},
		{http.MethodGet, "/v1/dump", ""},
		{http.MethodGet, "/v1/never-retried", ""},
		{http.MethodPost, "/v1/explain", `{"client":"192.0.2.1","to":"a@b"}`},
		{http.MethodGet, "/healthz", ""},
		{http.MethodGet, "/metrics", ""},
	}
	serve := func(r request, remote, host string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
		req.RemoteAddr = remote
		if host != "" {
			req.Host = host
		}
		if r.method == http.MethodPost {
			req.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, req)
		return w
	}
	for _, tc := range []struct {
		name, remote, host string
		ok                 bool
	}{
		{"another host", "192.0.2.1:40000", "", false},
		{"another host over IPv6", "[2001:db8::1]:40000", "", false},
		{"loopback naming a rebound host", "127.0.0.1:40000", "evil.example:10092", false},
		{"loopback", "127.0.0.1:40000", "127.0.0.1:10092", true},
		{"IPv6 loopback", "[::1]:40000", "[::1]:10092", true},
		{"loopback by name", "127.0.0.1:40000", "localhost:10092", true},
		{"a unix socket peer", "@", "", true},
		{"an unnamed unix socket peer", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range writes {
				w := serve(r, tc.remote, tc.host)
				if got := w.Code != http.StatusForbidden; got != tc.ok {
					t.Errorf("%s %s: %d %s", r.method, r.path, w.Code, w.Body)
				}
				if !tc.ok && !strings.Contains(w.Body.String(), `"error":`) {
					t.Errorf("%s %s: body %q is not a JSON error", r.method, r.path, w.Body)
				}
			}
		})
	}
	for _, r := range reads {
		if w := serve(r, "192.0.2.1:40000", ""); w.Code != http.StatusOK {
			t.Errorf("read %s %s from another host: %d %s", r.method, r.path, w.Code, w.Body)
		}
	}
	t.Run("a POST that is not JSON is refused", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/v1/pass", strings.NewReader(`{"key":"`+keyPending+`"}`))
		req.RemoteAddr, req.Host = "127.0.0.1:40000", "127.0.0.1:10092"
		req.Header.Set("Content-Type", "text/plain")
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, req)
		if w.Code != http.StatusUnsupportedMediaType {
			t.Errorf("text/plain POST: %d", w.Code)
		}
	})
	t.Run("wrong methods and paths", func(t *testing.T) {
		for _, r := range []struct {
			method, path string
			code         int
		}{
			{http.MethodPost, "/v1/records", http.StatusMethodNotAllowed},
			{http.MethodGet, "/v1/pass", http.StatusMethodNotAllowed},
			{http.MethodGet, "/v2/anything", http.StatusNotFound},
		} {
			w := serve(request{method: r.method, path: r.path}, "127.0.0.1:1", "")
			if w.Code != r.code || !strings.Contains(w.Body.String(), `"error":`) {
				t.Errorf("%s %s: %d %s, want %d", r.method, r.path, w.Code, w.Body, r.code)
			}
		}
	})
}

func escapeKey(k string) string {
	return strings.NewReplacer("/", "%2F", " ", "%20").Replace(k)
}

// Over a unix socket, the client writes (its peer has no address).
func TestClientOverUnixSocket(t *testing.T) {
	a := newTestAPI(t, nil)
	// A short path: unix socket names are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "mg-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: a.handler}
	go srv.Serve(ln)
	defer srv.Close()
	c := NewClient("unix:" + sock)
	e, err := c.Pass(context.Background(), PassRequest{Client: "192.0.2.1", Sender: "a@b.example", Rcpt: "c@d.example"})
	if err != nil || e.State != StatePassed {
		t.Fatalf("pass over the unix socket: %+v, %v", e, err)
	}
	if err := c.Health(context.Background()); err != nil {
		t.Errorf("health: %v", err)
	}
}

func TestHealthz(t *testing.T) {
	a := newTestAPI(t, nil)
	ctx := context.Background()
	if err := a.client.Health(ctx); err != nil {
		t.Fatalf("healthy daemon: %v", err)
	}
	a.store.breakWith(errors.New("disk on fire"))
	err := a.client.Health(ctx)
	var ae *Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "store unreachable: disk on fire") {
		t.Errorf("failing store: %v, want 503 store unreachable", err)
	}
	a.store.breakWith(nil)
	if err := a.client.Health(ctx); err != nil {
		t.Errorf("recovered store: %v", err)
	}

	t.Run("lists not loaded", func(t *testing.T) {
		e := greylist.New(a.store, greylist.Config{})
		srv := httptest.NewServer(NewHandler(Config{Store: a.store, Engine: e}))
		defer srv.Close()
		err := NewClient(srv.Listener.Addr().String()).Health(ctx)
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable || !strings.Contains(ae.Message, "lists not loaded") {
			t.Errorf("no lists: %v", err)
		}
	})
	t.Run("Ready says why not", func(t *testing.T) {
		b := newTestAPI(t, func(c *Config) { c.Ready = func() error { return errors.New("shutting down") } })
		if err := b.client.Health(ctx); err == nil || !strings.Contains(err.Error(), "shutting down") {
			t.Errorf("not ready: %v", err)
		}
	})
}

func TestMetricsEndpoint(t *testing.T) {
	a := newTestAPI(t, nil)
	resp, err := http.Get(a.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "milter_grey_build_info") {
		t.Errorf("/metrics: %d\n%s", resp.StatusCode, body)
	}
	b := newTestAPI(t, func(c *Config) { c.Metrics = nil })
	resp, err = http.Get(b.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics without metrics: %d, want 404", resp.StatusCode)
	}
}

func TestClientReportsAnUnreachableDaemon(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = NewClient(addr).Stats(context.Background())
	if err == nil || !strings.Contains(err.Error(), "admin API at "+addr) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("unreachable: %v", err)
	}
}

// A proven domain's trust record is listed, filtered, counted, passed and
// deleted like the other records.
func TestDomainRecords(t *testing.T) {
	bs, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bs.Close() })
	clock := &fakeClock{now: time.Now().Truncate(time.Millisecond)}
	engine := greylist.New(bs, greylist.Config{Policy: policy, DomainTrust: 3, Now: clock.Now})
	srv := httptest.NewServer(NewHandler(Config{Store: bs, Engine: engine}))
	defer srv.Close()
	c := NewClient(srv.Listener.Addr().String())
	ctx := context.Background()

	e, err := c.Pass(ctx, PassRequest{Key: "d:Partner.Example"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Key != "d:partner.example" || e.Kind != KindDomain || e.Domain != "partner.example" || e.State != StateTrusted {
		t.Errorf("pass d:Partner.Example: %+v", e)
	}
	var listed []Entry
	if err := c.Records(ctx, Filter{State: StateTrusted}, func(e Entry) error { listed = append(listed, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].Key != "d:partner.example" {
		t.Errorf("state=trusted lists %+v", listed)
	}
	if err := c.Records(ctx, Filter{Kind: KindDomain, Rcpt: "a@b.example"}, func(Entry) error { return nil }); err == nil {
		t.Error("kind=domain with a recipient filter: no error")
	}
	s, err := c.Stats(ctx)
	if err != nil || s.Domains.Trusted != 1 {
		t.Errorf("stats: %+v, %v", s.Domains, err)
	}
	if err := c.Delete(ctx, "d:partner.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Record(ctx, "d:partner.example"); err == nil {
		t.Error("show after delete: found")
	}
}

// A merge (an import) adds what the store lacks and never undoes what the
// store learned; what it writes lives as the daemon's policy says.
func TestRestoreMergeKeepsWhatTheStoreLearned(t *testing.T) {
	a := newTestAPI(t, nil)
	ctx := context.Background()
	now := a.clock.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const (
		kPassed  = "t:192.0.2.0/24 a@example.org b@example.net"
		kPending = "t:192.0.2.0/24 c@example.org b@example.net"
		kNew     = "t:198.51.100.0/24 d@example.org b@example.net"
		kGone    = "t:198.51.100.0/24 e@example.org b@example.net"
		kClient  = "c:192.0.2.0/24"
	)
	put := func(key string, rec greylist.Record) {
		if err := a.store.Put(ctx, key, &rec, policy.Lifetime(&rec, now)); err != nil {
			t.Fatal(err)
		}
	}
	put(kPassed, greylist.Record{State: greylist.Passed, First: ago(time.Hour), Last: ago(time.Minute), Count: 4})
	put(kPending, greylist.Record{State: greylist.Pending, First: ago(time.Minute), Last: ago(time.Minute), Count: 1})
	put(kClient, greylist.Record{State: greylist.Passed, First: ago(48 * time.Hour), Last: ago(time.Hour), Count: 2})

	var dump bytes.Buffer
	line := func(key string, rec greylist.Record) {
		// A lifetime of a minute: merge must not use it.
		e := DumpEntry(key, &rec, time.Minute, now)
		if err := json.NewEncoder(&dump).Encode(e); err != nil {
			t.Fatal(err)
		}
	}
	line(kPassed, greylist.Record{State: greylist.Pending, First: ago(10 * time.Minute), Last: ago(10 * time.Minute), Count: 1})
	line(kPending, greylist.Record{State: greylist.Pending, First: ago(4 * time.Minute), Last: ago(4 * time.Minute), Count: 1})
	line(kNew, greylist.Record{State: greylist.Passed, First: ago(20 * 24 * time.Hour), Last: ago(10 * 24 * time.Hour), Count: 1})
	line(kGone, greylist.Record{State: greylist.Passed, First: ago(40 * 24 * time.Hour), Last: ago(36 * 24 * time.Hour), Count: 1})
	line(kClient, greylist.Record{State: greylist.Passed, First: ago(24 * time.Hour), Last: ago(2 * time.Hour), Count: 7})

	res, err := a.client.Merge(ctx, &dump)
	if err != nil {
		t.Fatal(err)
	}
	if res.Restored != 3 || res.Unchanged != 2 {
		t.Errorf("merge: %+v, want 3 restored (pending, new, client) and 2 unchanged (passed, gone)", res)
	}
	got := snapshot(t, a)
	want := map[string]greylist.Record{
		// The store's pass stands against an imported first attempt.
		kPassed: {State: greylist.Passed, First: ago(time.Hour), Last: ago(time.Minute), Count: 4},
		// The earlier first attempt counts: the retry passes sooner.
		kPending: {State: greylist.Pending, First: ago(4 * time.Minute), Last: ago(time.Minute), Count: 1},
		kNew:     {State: greylist.Passed, First: ago(20 * 24 * time.Hour), Last: ago(10 * 24 * time.Hour), Count: 1},
		// The most passes counted in either.
		kClient: {State: greylist.Passed, First: ago(48 * time.Hour), Last: ago(time.Hour), Count: 7},
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		if !greylist.Same(&g.rec, &w) {
			t.Errorf("%s: %+v, want %+v", k, g.rec, w)
		}
		// Lifetimes follow the policy from the record's times, not the
		// minute the lines carried.
		if exp := now.Add(policy.Lifetime(&w, now)); g.exp.Sub(exp) < -2*time.Second || g.exp.Sub(exp) > 2*time.Second {
			t.Errorf("%s: expires %v, want about %v", k, g.exp, exp)
		}
	}
	if _, ok := got[kGone]; ok {
		t.Errorf("%s: a record past max-age was written", kGone)
	}
	if len(got) != len(want) {
		t.Errorf("%d records, want %d", len(got), len(want))
	}
}

func TestRestoreRefusesABadMergeValue(t *testing.T) {
	a := newTestAPI(t, nil)
	resp, err := http.Post(a.srv.URL+"/v1/restore?merge=perhaps", "application/x-ndjson", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `merge=\"perhaps\"`) {
		t.Errorf("HTTP %d %s, want 400 naming the value", resp.StatusCode, body)
	}
}
