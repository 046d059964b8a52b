package migrate

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// mgLine writes a dumpfile line as milter-greylist does: tab-separated,
// then " AUTO" for an auto-whitelisted triplet, then the time as a comment.
func mgLine(addr, from, rcpt string, t time.Time, auto bool) string {
	mark := " "
	if auto {
		mark = " AUTO "
	}
	return fmt.Sprintf("%s\t%s\t%s\t%d%s# %s", addr, from, rcpt, t.Unix(), mark, t.Format("2006-01-02 15:04:05"))
}

func TestReadMilterGreylist(t *testing.T) {
	delay := MilterGreylistDelay
	aw := MilterGreylistAutowhite
	cases := []struct {
		name    string
		line    string
		opts    func(*Options)
		want    map[string]greylist.Record
		skipped Reason
	}{
		{
			name: "greylisted: first attempt a greylist delay before its acceptance time",
			line: mgLine("192.0.2.7", "<alice@sender.test>", "<bob@dest.test>", now.Add(10*time.Minute), false),
			want: map[string]greylist.Record{"t:192.0.2.0/24 alice@sender.test bob@dest.test": pending(now.Add(10*time.Minute-delay), now.Add(10*time.Minute-delay))},
		},
		{
			name: "auto-whitelisted: passed, last used an autowhite period before it ends",
			line: mgLine("192.0.2.7", "<alice@sender.test>", "<bob@dest.test>", now.Add(20*time.Hour), true),
			want: map[string]greylist.Record{"t:192.0.2.0/24 alice@sender.test bob@dest.test": passed(now.Add(20*time.Hour-aw), now.Add(20*time.Hour-aw), 1)},
		},
		{
			name: "AUTO in any case, without a comment, separated by spaces",
			line: fmt.Sprintf("192.0.2.7 <alice@sender.test>   <bob@dest.test> %d auto", now.Add(time.Hour).Unix()),
			want: map[string]greylist.Record{"t:192.0.2.0/24 alice@sender.test bob@dest.test": passed(now.Add(time.Hour-aw), now.Add(time.Hour-aw), 1)},
		},
		{
			name: "the delay and autowhite period the site ran with",
			line: mgLine("192.0.2.7", "<alice@sender.test>", "<bob@dest.test>", now.Add(time.Minute), false),
			opts: func(o *Options) { o.Delay = 5 * time.Minute },
			want: map[string]greylist.Record{"t:192.0.2.0/24 alice@sender.test bob@dest.test": pending(now.Add(-4*time.Minute), now.Add(-4*time.Minute))},
		},
		{
			name: "a first attempt after now is taken as now",
			line: mgLine("192.0.2.7", "<alice@sender.test>", "<bob@dest.test>", now.Add(2*delay), false),
			want: map[string]greylist.Record{"t:192.0.2.0/24 alice@sender.test bob@dest.test": pending(now, now)},
		},
		{
			name: "null sender, IPv6 client, addresses normalised",
			line: mgLine("2001:db8:1:2::5", "<>", "<Bob+Lists@Dest.Test>", now, false),
			want: map[string]greylist.Record{"t:2001:db8:1:2::/64 <> bob@dest.test": pending(now.Add(-delay), now.Add(-delay))},
		},
		{
			name: "addresses without brackets, '#' inside one",
			line: mgLine("192.0.2.7", "a#b@sender.test", "bob@dest.test", now, false),
			want: map[string]greylist.Record{"t:192.0.2.0/24 a#b@sender.test bob@dest.test": pending(now.Add(-delay), now.Add(-delay))},
		},
		{
			name:    "greylisted past the retry window",
			line:    mgLine("192.0.2.7", "<alice@sender.test>", "<bob@dest.test>", now.Add(-3*day), false),
			skipped: Expired,
		},
		{
			name:    "auto-whitelisted, unused for longer than max-age",
			line:    mgLine("192.0.2.7", "<alice@sender.test>", "<bob@dest.test>", now.Add(-40*day), true),
			skipped: Expired,
		},
		{name: "three fields", line: "192.0.2.7 <a@b.test> 1767225600", skipped: Malformed},
		{name: "a word for AUTO", line: "192.0.2.7 <a@b.test> <c@d.test> 1767225600 WHITE", skipped: Malformed},
		{name: "a host name for the address", line: "mx.example <a@b.test> <c@d.test> 1767225600", skipped: Malformed},
		{name: "a time that is not a number", line: "192.0.2.7 <a@b.test> <c@d.test> soon", skipped: Malformed},
		{name: "a negative time", line: "192.0.2.7 <a@b.test> <c@d.test> -5", skipped: Malformed},
		{name: "comment and blank lines are not entries", line: "# Summary: 0 records\n\n   \t\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := opts()
			if c.opts != nil {
				c.opts(&o)
			}
			im := NewImporter(o)
			if err := im.ReadMilterGreylist(strings.NewReader(c.line+"\n"), "greylist.db"); err != nil {
				t.Fatal(err)
			}
			checkRecords(t, im, c.want)
			want := map[Reason]int{}
			if c.skipped != "" {
				want[c.skipped] = 1
			}
			checkSkipped(t, im, want)
		})
	}
}

// The fixture is written by hand in the layout milter-greylist's dump.c
// gives its dumpfile: a header, the stored tuples (greylisted, then
// auto-whitelisted marked AUTO), each time followed by a comment, and a
// summary.
func TestReadMilterGreylistDumpfile(t *testing.T) {
	f, err := os.Open("testdata/milter-greylist.db")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := opts()
	// The file was written at 2026-03-01 11:00:00 UTC.
	o.Now = time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	im := NewImporter(o)
	if err := im.ReadMilterGreylist(f, "greylist.db"); err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.Parse(time.DateTime, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	checkRecords(t, im, map[string]greylist.Record{
		// Accepted from 11:20: first seen at 10:50.
		"t:192.0.2.0/24 alice@sender.test bob@dest.test": pending(at("2026-03-01 10:50:00"), at("2026-03-01 10:50:00")),
		// Two hosts of one network: one record, the earliest attempt.
		"t:198.51.100.0/24 news@lists.test carol@dest.test": pending(at("2026-03-01 10:40:00"), at("2026-03-01 10:45:00")),
		// Whitelisted until 2026-03-02 09:00: last used 2026-03-01 09:00.
		"t:203.0.113.0/24 dave@partner.test bob@dest.test": passed(at("2026-03-01 09:00:00"), at("2026-03-01 09:00:00"), 1),
		"t:2001:db8:1:2::/64 <> bob@dest.test":             passed(at("2026-02-28 20:00:00"), at("2026-02-28 20:00:00"), 1),
	})
	checkSkipped(t, im, map[Reason]int{Expired: 1, Malformed: 1})
	if s := im.Summary(); s.Read != 7 {
		t.Errorf("read %d entries, want 7", s.Read)
	}
}
