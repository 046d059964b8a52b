package migrate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// pgDump prints key/value pairs as db_dump -p prints a Berkeley DB btree.
func pgDump(pairs ...string) string {
	var b strings.Builder
	b.WriteString("VERSION=3\nformat=print\ntype=btree\ndb_pagesize=4096\nHEADER=END\n")
	for _, p := range pairs {
		b.WriteString(" " + p + "\n")
	}
	b.WriteString("DATA=END\n")
	return b.String()
}

// seen is Postgrey's "FIRST,LAST" value.
func seen(first, last time.Time) string { return fmt.Sprintf("%d,%d", first.Unix(), last.Unix()) }

// count is a "COUNT,LAST" value of Postgrey's client database.
func count(n int, last time.Time) string { return fmt.Sprintf("%d,%d", n, last.Unix()) }

func TestReadPostgrey(t *testing.T) {
	const key = "t:192.0.2.0/24 alice@sender.test bob@dest.test"
	cases := []struct {
		name       string
		key, value string
		opts       func(*Options)
		want       map[string]greylist.Record
		skipped    Reason
	}{
		{
			name: "retried after the delay: passed, first and last kept",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(10*day), ago(2*day)),
			want: map[string]greylist.Record{key: passed(ago(10*day), ago(2*day), 1)},
		},
		{
			name: "retried exactly the delay later: passed",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(time.Hour), ago(time.Hour-PostgreyDelay)),
			want: map[string]greylist.Record{key: passed(ago(time.Hour), ago(time.Hour-PostgreyDelay), 1)},
		},
		{
			name: "retried too early: pending since its first attempt",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(time.Hour), ago(time.Hour-PostgreyDelay+time.Second)),
			want: map[string]greylist.Record{key: pending(ago(time.Hour), ago(time.Hour-PostgreyDelay+time.Second))},
		},
		{
			name: "Postgrey's --delay decides what passed",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(time.Hour), ago(time.Hour-time.Minute)),
			opts: func(o *Options) { o.Delay = time.Minute },
			want: map[string]greylist.Record{key: passed(ago(time.Hour), ago(time.Hour-time.Minute), 1)},
		},
		{
			name: "only a first attempt: pending",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(time.Minute), ago(time.Minute)),
			want: map[string]greylist.Record{key: pending(ago(time.Minute), ago(time.Minute))},
		},
		{
			name: "old three-part network",
			key:  "192.0.2/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)),
			want: map[string]greylist.Record{key: pending(ago(day), ago(day))},
		},
		{
			name: "--lookup-by-host: the client's network",
			key:  "192.0.2.77/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)),
			want: map[string]greylist.Record{key: pending(ago(day), ago(day))},
		},
		{
			name: "IPv6 network as Postgrey spells it",
			key:  "2001:db8:1:2:0:0:0:0/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)),
			want: map[string]greylist.Record{"t:2001:db8:1:2::/64 alice@sender.test bob@dest.test": pending(ago(day), ago(day))},
		},
		{
			name: "null sender",
			key:  "192.0.2.0//bob@dest.test", value: seen(ago(day), ago(day)),
			want: map[string]greylist.Record{"t:192.0.2.0/24 <> bob@dest.test": pending(ago(day), ago(day))},
		},
		{
			name: "recipient extension cut as milter-grey cuts it",
			key:  "192.0.2.0/alice@sender.test/bob+lists@dest.test", value: seen(ago(day), ago(day)),
			want: map[string]greylist.Record{key: pending(ago(day), ago(day))},
		},
		{
			name: "VERP number Postgrey masked, as milter-grey masks it",
			key:  "192.0.2.0/bounce-#-#@lists.test/bob@dest.test", value: seen(ago(day), ago(day)),
			want: map[string]greylist.Record{"t:192.0.2.0/24 bounce-#-#@lists.test bob@dest.test": pending(ago(day), ago(day))},
		},
		{
			name: "'/' in the local parts",
			key:  "192.0.2.0/a/b@sender.test/c/d@dest.test", value: seen(ago(day), ago(day)),
			want: map[string]greylist.Record{"t:192.0.2.0/24 a/b@sender.test c/d@dest.test": pending(ago(day), ago(day))},
		},
		{
			name: "times after now are taken as now",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(now.Add(time.Hour), now.Add(time.Hour)),
			want: map[string]greylist.Record{key: pending(now, now)},
		},
		{
			name: "a value with what older versions appended",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)) + ",mx1.sender.test",
			want: map[string]greylist.Record{key: pending(ago(day), ago(day))},
		},
		{
			name: "SPF keys on: the triplet also under its sender's domain",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(10*day), ago(2*day)),
			opts: func(o *Options) { o.KeyBySPFDomain = true },
			want: map[string]greylist.Record{
				key: passed(ago(10*day), ago(2*day), 1),
				"t:spf:sender.test alice@sender.test bob@dest.test": passed(ago(10*day), ago(2*day), 1),
			},
		},
		{
			name: "SPF keys on, without the local part",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(10*day), ago(2*day)),
			opts: func(o *Options) { o.KeyBySPFDomain, o.SPFKeyDropsLocalPart = true, true },
			want: map[string]greylist.Record{
				key: passed(ago(10*day), ago(2*day), 1),
				"t:spf:sender.test @sender.test bob@dest.test": passed(ago(10*day), ago(2*day), 1),
			},
		},
		{
			name: "SPF keys on: none for the null sender",
			key:  "192.0.2.0//bob@dest.test", value: seen(ago(day), ago(day)),
			opts: func(o *Options) { o.KeyBySPFDomain = true },
			want: map[string]greylist.Record{"t:192.0.2.0/24 <> bob@dest.test": pending(ago(day), ago(day))},
		},
		{
			name: "a wider milter-grey mask takes the wider network",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)),
			opts: func(o *Options) { o.Mask.IPv4 = 16 },
			want: map[string]greylist.Record{"t:192.0.0.0/16 alice@sender.test bob@dest.test": pending(ago(day), ago(day))},
		},
		{
			name: "a narrower mask, a host's address: its narrower network",
			key:  "192.0.2.77/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)),
			opts: func(o *Options) { o.Mask.IPv4 = 28 },
			want: map[string]greylist.Record{"t:192.0.2.64/28 alice@sender.test bob@dest.test": pending(ago(day), ago(day))},
		},
		{
			name: "a narrower mask than Postgrey's network",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)),
			opts:    func(o *Options) { o.Mask.IPv4 = 28 },
			skipped: BadClient,
		},
		{
			name: "Postgrey's --ipv4cidr said how wide its networks were",
			key:  "10.1.0.0/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)),
			opts:    func(o *Options) { o.SourceMask.IPv4 = 16 },
			skipped: BadClient,
		},
		{
			name: "pending past the retry window",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(3*day), ago(3*day)),
			skipped: Expired,
		},
		{
			name: "passed, unused for longer than max-age",
			key:  "192.0.2.0/alice@sender.test/bob@dest.test", value: seen(ago(50*day), ago(36*day)),
			skipped: Expired,
		},
		{
			name: "all-digit mailbox Postgrey masked",
			key:  "192.0.2.0/#@qq.test/bob@dest.test", value: seen(ago(day), ago(day)),
			skipped: MaskedSender,
		},
		{
			name: "the network of every IPv4-mapped client",
			key:  "0:0:0:0:0:0:0:0/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)),
			skipped: BadClient,
		},
		{
			name: "a client that is no address",
			key:  "mx.sender.test/alice@sender.test/bob@dest.test", value: seen(ago(day), ago(day)),
			skipped: BadClient,
		},
		{
			name: "--privacy digest",
			key:  "3f786850e387550fdab836ed7e6dc881de23001b", value: seen(ago(day), ago(day)),
			skipped: Hashed,
		},
		{name: "a value that is not two numbers", key: "192.0.2.0/a@b.test/c@d.test", value: "yesterday", skipped: Malformed},
		{name: "last seen before first seen", key: "192.0.2.0/a@b.test/c@d.test", value: seen(ago(day), ago(2*day)), skipped: Malformed},
		{name: "a key with no recipient", key: "192.0.2.0/alice@sender.test", value: seen(ago(day), ago(day)), skipped: Malformed},
		{name: "a key with an empty recipient", key: "192.0.2.0/alice@sender.test/", value: seen(ago(day), ago(day)), skipped: Malformed},
		{
			name: "client count: its network with the count and last pass",
			key:  "192.0.2.77", value: count(7, ago(time.Hour)),
			want: map[string]greylist.Record{"c:192.0.2.0/24": passed(ago(time.Hour), ago(time.Hour), 7)},
		},
		{
			name: "client count of an IPv6 client as Postgrey spells it",
			key:  "2001:DB8:1:2:0:0:0:5", value: count(2, ago(time.Hour)),
			want: map[string]greylist.Record{"c:2001:db8:1:2::/64": passed(ago(time.Hour), ago(time.Hour), 2)},
		},
		{name: "client count, auto-whitelist off", key: "192.0.2.77", value: count(7, ago(time.Hour)), opts: func(o *Options) { o.AutoWhitelist = 0 }, skipped: AutoWhitelistOff},
		{name: "client count unused for longer than max-age", key: "192.0.2.77", value: count(7, ago(36*day)), skipped: Expired},
		{name: "client count of zero", key: "192.0.2.77", value: count(0, ago(time.Hour)), skipped: Malformed},
		{name: "client that is no address", key: "mx.sender.test", value: count(1, ago(time.Hour)), skipped: Malformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := opts()
			if c.opts != nil {
				c.opts(&o)
			}
			im := NewImporter(o)
			if err := im.ReadPostgrey(strings.NewReader(pgDump(c.key, c.value)), "postgrey.db"); err != nil {
				t.Fatal(err)
			}
			checkRecords(t, im, c.want)
			want := map[Reason]int{}
			if c.skipped != "" {
				want[c.skipped] = 1
			}
			checkSkipped(t, im, want)
			if n := im.Summary().Read; n != 1 {
				t.Errorf("read %d entries, want 1", n)
			}
		})
	}
}

// Entries that fall on one milter-grey key merge into one record.
func TestReadPostgreyMergesEntriesOfOneKey(t *testing.T) {
	im := NewImporter(opts())
	dump := pgDump(
		// Two hosts counted apart by Postgrey: the network takes the larger count.
		"192.0.2.7", count(3, ago(2*time.Hour)),
		"192.0.2.8", count(6, ago(5*time.Hour)),
		// One recipient with and without its extension: the pass wins.
		"198.51.100.0/alice@sender.test/bob@dest.test", seen(ago(time.Hour), ago(time.Hour)),
		"198.51.100.0/alice@sender.test/bob+x@dest.test", seen(ago(9*day), ago(3*day)),
	)
	if err := im.ReadPostgrey(strings.NewReader(dump), "postgrey.db"); err != nil {
		t.Fatal(err)
	}
	checkRecords(t, im, map[string]greylist.Record{
		"c:192.0.2.0/24": passed(ago(5*time.Hour), ago(2*time.Hour), 6),
		"t:198.51.100.0/24 alice@sender.test bob@dest.test": passed(ago(9*day), ago(3*day), 1),
	})
	if s := im.Summary(); s.Read != 4 || s.Records != 2 {
		t.Errorf("summary %+v, want 4 read, 2 records", s)
	}
}

// The layout of db_dump -p: headers, then key and value lines that start
// with a space and escape what is not printable, then DATA=END; two
// databases may follow each other.
func TestReadPostgreyDumpLayout(t *testing.T) {
	two := pgDump("192.0.2.0/a\\5cb@sender.test/bob@dest.test", seen(ago(day), ago(day))) +
		pgDump("192.0.2.7", count(1, ago(time.Hour)))
	broken := "VERSION=3\nHEADER=END\n 192.0.2.0/a@sender.test/bob@dest.test\nnot a data line\n" +
		" 192.0.2.0/c@sender.test/bob@dest.test\n " + seen(ago(day), ago(day)) + "\n 192.0.2.9\nDATA=END\n"
	cases := []struct {
		name    string
		dump    string
		want    map[string]greylist.Record
		skipped map[Reason]int
	}{
		{
			name: "two databases, an escaped byte",
			dump: two,
			want: map[string]greylist.Record{
				`t:192.0.2.0/24 a\b@sender.test bob@dest.test`: pending(ago(day), ago(day)),
				"c:192.0.2.0/24": passed(ago(time.Hour), ago(time.Hour), 1),
			},
		},
		{
			name: "a stray line loses its pair, a key loses its value at the end; the rest is read",
			dump: broken,
			want: map[string]greylist.Record{
				"t:192.0.2.0/24 c@sender.test bob@dest.test": pending(ago(day), ago(day)),
			},
			skipped: map[Reason]int{Malformed: 2},
		},
		{
			name:    "a bad escape",
			dump:    pgDump("192.0.2.0/a\\zzb@sender.test/bob@dest.test", seen(ago(day), ago(day))),
			skipped: map[Reason]int{Malformed: 2},
		},
		{name: "nothing but headers", dump: "VERSION=3\nHEADER=END\nDATA=END\n"},
		{name: "empty", dump: ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			im := NewImporter(opts())
			if err := im.ReadPostgrey(strings.NewReader(c.dump), "postgrey.db"); err != nil {
				t.Fatal(err)
			}
			checkRecords(t, im, c.want)
			checkSkipped(t, im, c.skipped)
		})
	}
}

func TestUnprint(t *testing.T) {
	for _, c := range []struct {
		in, out string
		ok      bool
	}{
		{"plain text", "plain text", true},
		{`a\\b`, `a\b`, true},
		{`a\0ab`, "a\nb", true},
		{`\7f\7F`, "\x7f\x7f", true},
		{`a\`, "", false},
		{`a\0`, "", false},
		{`a\zz`, "", false},
	} {
		got, err := unprint(c.in)
		if got != c.out || (err == nil) != c.ok {
			t.Errorf("unprint(%q) = %q, %v; want %q, ok %v", c.in, got, err, c.out, c.ok)
		}
	}
}

func TestSplitPostgreyKey(t *testing.T) {
	for _, c := range []struct {
		key, client, sender, rcpt string
		ok                        bool
	}{
		{"192.0.2.0/a@b.test/c@d.test", "192.0.2.0", "a@b.test", "c@d.test", true},
		{"192.0.2.0//c@d.test", "192.0.2.0", "", "c@d.test", true},
		{"192.0.2.0/a/x@b.test/c/y@d.test", "192.0.2.0", "a/x@b.test", "c/y@d.test", true},
		{"192.0.2.0/mailer-daemon/c@d.test", "192.0.2.0", "mailer-daemon", "c@d.test", true},
		{"192.0.2.0/a@b.test", "", "", "", false},
		{"192.0.2.0//", "", "", "", false},
		{"/a@b.test/c@d.test", "", "", "", false},
		{"no slash", "", "", "", false},
	} {
		cl, s, r, ok := splitPostgreyKey(c.key)
		if cl != c.client || s != c.sender || r != c.rcpt || ok != c.ok {
			t.Errorf("splitPostgreyKey(%q) = %q %q %q %v; want %q %q %q %v", c.key, cl, s, r, ok, c.client, c.sender, c.rcpt, c.ok)
		}
	}
}
