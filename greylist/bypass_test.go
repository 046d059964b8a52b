package greylist_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/accessmap"
	"github.com/milter-grey/milter-grey/auth"

	. "github.com/milter-grey/milter-grey/greylist"
)

// A listed sender that SPF does not prove waits for DKIM at end of message,
// unless its triplet passes anyway: then there is nothing to prove, and the
// recipient is not held with the message.
func TestListedSenderUnprovenWaitsForDKIMUnlessTripletPasses(t *testing.T) {
	e, clock, _ := newTestEngine(t, Config{})
	table, _, err := accessmap.Parse(accessmap.DefaultOptions(), "bypass", strings.NewReader("example.com OK\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := e.Lists()
	lists := *l
	lists.Bypass = table
	e.SetLists(&lists)
	ctx := context.Background()
	spf := func(res auth.SPFResult) func(*Request) {
		return func(r *Request) { r.SPF = &res }
	}
	listed := func(r *Request) { r.Sender = "alice@example.com" }
	fail := spf(auth.SPFResult{Result: auth.ResultFail})

	if d := decide(e, ctx, req(listed, fail)); d.Action != Defer || d.Reason != ReasonPending || !strings.Contains(d.Match, "example.com OK") {
		t.Fatalf("unproven listed sender: %+v", d)
	}
	// DKIM did not prove it either: greylisted as anyone else.
	dkimFailed := func(r *Request) { r.Stage = AtEndOfMessage }
	if d := decide(e, ctx, req(listed, fail, dkimFailed)); d.Action != Greylist || d.Reason != ReasonNew {
		t.Fatalf("after DKIM: %+v", d)
	}
	clock.Advance(10 * time.Minute)
	// The retry after the delay passes on its triplet, at RCPT.
	if d := decide(e, ctx, req(listed, fail)); d.Action != Pass || d.Reason != ReasonRetried {
		t.Fatalf("retry of an unproven listed sender: %+v", d)
	}
	if d := decide(e, ctx, req(listed, fail)); d.Action != Pass || d.Reason != ReasonKnown {
		t.Fatalf("known triplet of an unproven listed sender: %+v", d)
	}
	// Proven by SPF: passes at once, whatever the triplet.
	proven := spf(auth.SPFResult{Result: auth.ResultPass, Domain: "example.com"})
	if d := decide(e, ctx, req(listed, proven, func(r *Request) { r.Recipient = "new@example.org" })); d.Reason != ReasonBypassSPF {
		t.Fatalf("proven listed sender: %+v", d)
	}
}
