package migrate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/envelope"
	"github.com/milter-grey/milter-grey/greylist"
)

// now is the import's clock in the tests, at whole seconds as the old
// daemons keep times.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// ago is a time before now.
func ago(d time.Duration) time.Time { return now.Add(-d) }

const day = 24 * time.Hour

// opts are milter-grey's defaults, auto-whitelist on, SPF keys off (the
// tests that want them turn them on).
func opts() Options {
	return Options{
		Policy:        greylist.DefaultPolicy,
		Mask:          greylist.DefaultClientMask,
		Delimiters:    "+",
		AutoWhitelist: greylist.DefaultAutoWhitelist,
		Now:           now,
	}
}

func passed(first, last time.Time, count uint32) greylist.Record {
	return greylist.Record{State: greylist.Passed, First: first, Last: last, Count: count}
}

func pending(first, last time.Time) greylist.Record {
	return greylist.Record{State: greylist.Pending, First: first, Last: last, Count: 1}
}

// checkRecords compares what an Importer made with want, key by key.
func checkRecords(t *testing.T, im *Importer, want map[string]greylist.Record) {
	t.Helper()
	got := map[string]greylist.Record{}
	for _, r := range im.Records() {
		got[r.Key] = r.Rec
	}
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("no record %q; made %v", k, keys(got))
		case !greylist.Same(&g, &w):
			t.Errorf("%q: %s, want %s", k, fmtRec(g), fmtRec(w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected record %q: %s", k, fmtRec(got[k]))
		}
	}
}

// checkSkipped compares the skip counts of an Importer with want.
func checkSkipped(t *testing.T, im *Importer, want map[Reason]int) {
	t.Helper()
	s := im.Summary()
	for r, n := range want {
		if s.Reasons[r] != n {
			t.Errorf("skipped as %s: %d, want %d (%v)", r, s.Reasons[r], n, im.Skips())
		}
	}
	for r, n := range s.Reasons {
		if _, ok := want[r]; !ok {
			t.Errorf("skipped %d as %s, want none: %v", n, r, im.Skips())
		}
	}
}

func keys(m map[string]greylist.Record) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func fmtRec(r greylist.Record) string {
	return fmt.Sprintf("{%s first=%s last=%s count=%d}", r.State,
		r.First.UTC().Format(time.RFC3339), r.Last.UTC().Format(time.RFC3339), r.Count)
}

func TestSummaryCountsByKindAndReason(t *testing.T) {
	o := opts()
	o.KeyBySPFDomain = true
	im := NewImporter(o)
	err := im.ReadMilterGreylist(strings.NewReader(strings.Join([]string{
		mgLine("192.0.2.7", "<a@sender.test>", "<b@dest.test>", now.Add(time.Hour), true),
		mgLine("192.0.2.7", "<>", "<b@dest.test>", now.Add(10*time.Minute), false),
		mgLine("192.0.2.7", "<c@sender.test>", "<b@dest.test>", now.Add(-10*day), false),
		"nonsense",
	}, "\n")), "greylist.db")
	if err != nil {
		t.Fatal(err)
	}
	s := im.Summary()
	want := Summary{Read: 4, Records: 3, Passed: 2, Pending: 1, SPFKeyed: 1, Skipped: 2}
	if s.Read != want.Read || s.Records != want.Records || s.Passed != want.Passed || s.Pending != want.Pending ||
		s.Clients != want.Clients || s.SPFKeyed != want.SPFKeyed || s.Skipped != want.Skipped {
		t.Errorf("summary %+v, want %+v", s, want)
	}
	line := s.String()
	for _, part := range []string{"read 4 entries: 3 records (passed 2, pending 1, clients 0; keyed by SPF domain 1)", "skipped 2 (expired 1, malformed 1)"} {
		if !strings.Contains(line, part) {
			t.Errorf("summary line %q lacks %q", line, part)
		}
	}
	skips := im.Skips()
	if len(skips) != 2 || skips[0].Where != "greylist.db:3" || skips[1].Where != "greylist.db:4" {
		t.Errorf("skips %v, want lines 3 and 4 of greylist.db", skips)
	}
}

func TestSkipsKeepAFewExamplesPerReason(t *testing.T) {
	im := NewImporter(opts())
	var b strings.Builder
	for range 3 * maxExamples {
		b.WriteString("bad line here\n")
	}
	if err := im.ReadMilterGreylist(strings.NewReader(b.String()), "f"); err != nil {
		t.Fatal(err)
	}
	if n := im.Summary().Reasons[Malformed]; n != 3*maxExamples {
		t.Errorf("counted %d malformed, want %d", n, 3*maxExamples)
	}
	if n := len(im.Skips()); n != maxExamples {
		t.Errorf("kept %d examples, want %d", n, maxExamples)
	}
}

func TestSPFDomain(t *testing.T) {
	for _, c := range []struct {
		sender, domain string
	}{
		{"alice@sender.test", "sender.test"},
		{"<Alice@Sender.Test.>", "sender.test"},
		{`"a@b"@sender.test`, "sender.test"},
		{"<>", ""},
		{"postmaster", ""},
		{"a@localhost", ""},
		{"a@[192.0.2.1]", ""},
		{"a@192.0.2.1", ""},
		{"a@xn--bcher-kva.test", "xn--bcher-kva.test"},
		{"a@bücher.test", ""},
		{"a@", ""},
	} {
		d, ok := spfDomain(envelope.Parse(c.sender))
		if d != c.domain || ok != (c.domain != "") {
			t.Errorf("spfDomain(%q) = %q, %v; want %q", c.sender, d, ok, c.domain)
		}
	}
}
