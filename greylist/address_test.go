package greylist

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// addrCase is one rule of address normalisation: in is normalised with
// delims and must give want.
type addrCase struct {
	name   string
	in     string
	delims string
	want   string
}

var senderCases = []addrCase{
	// Form.
	{"lower-cased", "Alice@Example.NET", "+", "alice@example.net"},
	{"angle brackets dropped", "<alice@example.net>", "+", "alice@example.net"},
	{"spaces around brackets dropped", "  < alice@example.net >  ", "+", "alice@example.net"},
	{"trailing dot of the domain dropped", "alice@example.net.", "+", "alice@example.net"},
	{"address without domain kept", "Postmaster", "+", "postmaster"},
	{"nested angle brackets dropped", "<<alice@example.net>>", "+", "alice@example.net"},
	{"several trailing dots dropped", "alice@example.net..", "+", "alice@example.net"},
	{"empty domain keeps its @", "alice@", "+", "alice@"},
	{"percent hack kept readable", "alice%relay.example@example.net", "+", "alice%relay.example@example.net"},

	// Null sender.
	{"empty sender is the null sender", "", "+", NullSender},
	{"<> is the null sender", "<>", "+", NullSender},
	{"<> with spaces is the null sender", " < > ", "+", NullSender},
	{"nested <> is the null sender", "<<>>", "+", NullSender},

	// Address extensions.
	{"extension after + stripped", "alice+news@example.net", "+", "alice@example.net"},
	{"extension stripped from the first delimiter on", "alice+a+b@example.net", "+", "alice@example.net"},
	{"each of several delimiters strips: +", "alice+news@example.net", "+-", "alice@example.net"},
	{"each of several delimiters strips: -", "alice-news@example.net", "+-", "alice@example.net"},
	{"- is not a delimiter unless configured", "alice-news@example.net", "+", "alice-news@example.net"},
	{"local part starting with the delimiter kept", "+owner@example.net", "+", "+owner@example.net"},
	{"local part starting with a multi-char delimiter kept", "-request@example.net", "+-", "-request@example.net"},
	{"no delimiters keeps extensions", "alice+news@example.net", "", "alice+news@example.net"},

	// BATV.
	{"BATV prvs tag removed", "prvs=1234abcdef=user@x.example", "+", "user@x.example"},
	{"BATV prvs upper case", "PRVS=1234ABCDEF=User@X.Example", "+", "user@x.example"},
	{"BATV msprvs1 tag removed", "msprvs1=17872abcdKL=user@x.example", "+", "user@x.example"},
	{"BATV btv1 tag removed", "btv1==0123456789abcdef==user@x.example", "+", "user@x.example"},
	{"BATV then extension stripped", "prvs=1234abcdef=user+tag@x.example", "+", "user@x.example"},

	// SRS.
	{"SRS0 hash and timestamp removed", "SRS0=HHH=TT=orig.example=alice@fwd.example", "+",
		"srs0=orig.example=alice@fwd.example"},
	{"SRS0 with + separator", "SRS0+HHH=TT=orig.example=alice@fwd.example", "+",
		"srs0=orig.example=alice@fwd.example"},
	{"SRS0 with - separator", "SRS0-HHH=TT=orig.example=alice@fwd.example", "+-",
		"srs0=orig.example=alice@fwd.example"},
	{"SRS1 hashes and timestamp removed", "SRS1=HHH=fwd1.example==HHH=TT=orig.example=alice@fwd2.example", "+",
		"srs1=fwd1.example==orig.example=alice@fwd2.example"},

	// VERP and numbered bounces.
	{"VERP numeric runs masked", "bounce-12345-678@lists.example", "+", "bounce-#-#@lists.example"},
	{"numeric run after a dot masked", "news.20240101@lists.example", "+", "news.#@lists.example"},
	{"digits inside a word kept", "user2024@example.net", "+", "user2024@example.net"},
	{"all-digit mailbox kept", "12345@qq.com", "+", "12345@qq.com"},
	{"number after a delimiter masked", "12345-678@lists.example", "+", "#-#@lists.example"},
	{"digits starting a word kept", "2024user@example.net", "+", "2024user@example.net"},
	{"digits in the domain kept", "bounce-1@mail2.example", "+", "bounce-#@mail2.example"},

	// Escaping: key parts never contain a space or control byte.
	{"space in a quoted local part escaped", `"John Doe"@example.net`, "+", `"john%20doe"@example.net`},
	{"control byte escaped", "a\x01b@example.net", "+", "a%01b@example.net"},
	{"tab escaped", "a\tb@example.net", "+", "a%09b@example.net"},
	{"DEL escaped", "a\x7fb@example.net", "+", "a%7fb@example.net"},
}

func TestNormalizeSender(t *testing.T) {
	for _, c := range senderCases {
		t.Run(c.name, func(t *testing.T) {
			if got := NormalizeSender(c.in, c.delims); got != c.want {
				t.Errorf("NormalizeSender(%q, %q) = %q, want %q", c.in, c.delims, got, c.want)
			}
		})
	}
}

// TestNormalizeSenderRetryKeys checks the purpose of sender normalisation:
// the per-message parts of an address change between a message and its
// retry, and both must give the same key.
func TestNormalizeSenderRetryKeys(t *testing.T) {
	cases := []struct {
		name  string
		first string
		retry string
	}{
		{"SRS0 with another hash and timestamp",
			"SRS0=a1B2=4X=orig.example=alice@fwd.example",
			"SRS0=zz9Q=7Y=orig.example=alice@fwd.example"},
		{"SRS0 with another separator",
			"SRS0=a1B2=4X=orig.example=alice@fwd.example",
			"SRS0+zz9Q=7Y=orig.example=alice@fwd.example"},
		{"SRS1 with other hashes",
			"SRS1=h1=fwd1.example==a1B2=4X=orig.example=alice@fwd2.example",
			"SRS1=h2=fwd1.example==zz9Q=7Y=orig.example=alice@fwd2.example"},
		{"BATV with another tag",
			"prvs=0123abcdef=alice@example.net",
			"prvs=9876fedcba=alice@example.net"},
		{"VERP with another message number",
			"bounce-12345-678@lists.example",
			"bounce-99-1@lists.example"},
		{"BATV and VERP together",
			"prvs=0123abcdef=bounce-1111@lists.example",
			"prvs=9876fedcba=bounce-2222@lists.example"},
		{"extension differs",
			"alice+one@example.net",
			"alice+two@example.net"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := NormalizeSender(c.first, "+"), NormalizeSender(c.retry, "+")
			if a != b {
				t.Errorf("NormalizeSender(%q) = %q but NormalizeSender(%q) = %q", c.first, a, c.retry, b)
			}
		})
	}
	t.Run("different SRS originals stay different", func(t *testing.T) {
		a := NormalizeSender("SRS0=h=tt=orig.example=alice@fwd.example", "+")
		b := NormalizeSender("SRS0=h=tt=orig.example=bob@fwd.example", "+")
		if a == b {
			t.Errorf("two SRS senders both normalise to %q", a)
		}
	})
}

var recipientCases = []addrCase{
	{"lower-cased", "Bob@Example.ORG", "+", "bob@example.org"},
	{"angle brackets and spaces dropped", " <bob@example.org> ", "+", "bob@example.org"},
	{"extension stripped", "bob+folder@example.org", "+", "bob@example.org"},
	{"multi-char delimiters", "bob-folder@example.org", "+-", "bob@example.org"},
	{"local part starting with the delimiter kept", "+bob@example.org", "+", "+bob@example.org"},
	{"trailing dot of the domain dropped", "bob@example.org.", "+", "bob@example.org"},
	{"no BATV treatment", "prvs=1234abcdef=bob@example.org", "+", "prvs=1234abcdef=bob@example.org"},
	{"no SRS treatment", "SRS0=HHH=TT=orig.example=bob@example.org", "+", "srs0=hhh=tt=orig.example=bob@example.org"},
	{"no VERP treatment", "list-12345@example.org", "+", "list-12345@example.org"},
	{"postmaster without domain", "<Postmaster>", "+", "postmaster"},
	{"empty is <>", "", "+", NullSender},
	{"space escaped", `"bob smith"@example.org`, "+", `"bob%20smith"@example.org`},
	{"escapes are kept, not escaped again", `"bob%20smith"@example.org`, "+", `"bob%20smith"@example.org`},
	{"several trailing dots dropped", "bob@example.org...", "+", "bob@example.org"},
	{"bracket left by a cut extension dropped", "bob>+x", "+", "bob"},
	{"dot before a bracket of the domain dropped", "bob@example.org.>.", "+", "bob@example.org"},
}

func TestNormalizeRecipient(t *testing.T) {
	for _, c := range recipientCases {
		t.Run(c.name, func(t *testing.T) {
			if got := NormalizeRecipient(c.in, c.delims); got != c.want {
				t.Errorf("NormalizeRecipient(%q, %q) = %q, want %q", c.in, c.delims, got, c.want)
			}
		})
	}
}

func TestNormalizeLongAddressTruncated(t *testing.T) {
	long := strings.Repeat("a", 400) + "@" + strings.Repeat("b", 300) + ".example"
	escaped := strings.Repeat("a b", 200) + "@example.net" // grows when escaped
	for _, in := range []string{long, escaped} {
		for name, norm := range map[string]func(string, string) string{
			"sender": NormalizeSender, "recipient": NormalizeRecipient,
		} {
			got := norm(in, "+")
			if len(got) > maxAddrLen || len(got) == 0 {
				t.Errorf("%s of %d bytes normalised to %d bytes, want 1–%d", name, len(in), len(got), maxAddrLen)
			}
			if strings.ContainsAny(got, " \t") {
				t.Errorf("%s normalised to %q, which contains a space", name, got)
			}
		}
	}
}

// TestNormalizeRecipientIdempotentWhenCut checks that recipients cut at the
// length limit, wherever the cut falls, still normalise to themselves.
func TestNormalizeRecipientIdempotentWhenCut(t *testing.T) {
	pieces := []string{"@", ".", " ", "<", ">", "+", "-", "\x01", "é", "\u00a0", "%", "\xff"}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		for n := 250 + r.IntN(200); b.Len() < n; {
			if r.IntN(3) == 0 {
				b.WriteString(pieces[r.IntN(len(pieces))])
			} else {
				b.WriteByte("ab"[r.IntN(2)])
			}
		}
		in := b.String()
		once := NormalizeRecipient(in, "+-")
		checkKeyPart(t, "NormalizeRecipient", in, once)
		if twice := NormalizeRecipient(once, "+-"); twice != once {
			t.Fatalf("NormalizeRecipient(%q) = %q, normalised again %q", in, once, twice)
		}
	}
}

// checkKeyPart reports what makes s unfit as a part of a triplet key.
func checkKeyPart(t *testing.T, what, in, s string) {
	t.Helper()
	if s == "" {
		t.Fatalf("%s(%q) is empty", what, in)
	}
	if len(s) > maxAddrLen {
		t.Fatalf("%s(%q) is %d bytes, more than %d", what, in, len(s), maxAddrLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			t.Fatalf("%s(%q) = %q contains byte %#x at %d", what, in, s, c, i)
		}
	}
}

// FuzzNormalize checks that any envelope address, however broken, gives a
// usable key part, and that a normalised recipient is a fixed point (list
// lookups and admin commands may normalise what is already normalised).
func FuzzNormalize(f *testing.F) {
	for _, c := range senderCases {
		f.Add(c.in, c.delims)
	}
	for _, c := range recipientCases {
		f.Add(c.in, c.delims)
	}
	f.Add(strings.Repeat("a b", 200)+"@example.net", "+")
	f.Fuzz(func(t *testing.T, addr, delims string) {
		// Delimiters come from the config: keep them to plausible ones
		// (punctuation that can appear in a local part).
		if len(delims) > 4 || strings.Trim(delims, "+-_=.~&!") != "" {
			delims = "+"
		}
		s := NormalizeSender(addr, delims)
		checkKeyPart(t, "NormalizeSender", addr, s)
		r := NormalizeRecipient(addr, delims)
		checkKeyPart(t, "NormalizeRecipient", addr, r)
		if r2 := NormalizeRecipient(r, delims); r2 != r {
			t.Fatalf("NormalizeRecipient not idempotent with delimiters %q: %q -> %q -> %q", delims, addr, r, r2)
		}
	})
}

// Bulk senders put a per-message token in the envelope sender: each rule
// of maskTokens, with address shapes these senders use.
func TestNormalizeSenderTokens(t *testing.T) {
	for _, c := range []addrCase{
		{"Amazon SES: message id and UUID", "0102018c3b1e5a7f-3c8e1b2a-9d4e-4f1a-8b7c-2e5d6f7a8b9c-000000@us-east-1.amazonses.com", "+",
			"#-#-#@us-east-1.amazonses.com"},
		{"Mailchimp VERP: tags before the encoded recipient", "bounce-mc.us5_1234.5678-user=dest.test@mail123.mcsv.net", "+",
			"bounce-mc.#_#.#-user=dest.test@mail123.mcsv.net"},
		{"SendGrid: the extension goes", "bounces+12345-ab3f-user=dest.test@em123.sendgrid.net", "+",
			"bounces@em123.sendgrid.net"},
		{"SendGrid without + as a delimiter: VERP rule", "bounces+12345-ab3f-user=dest.test@em123.sendgrid.net", "",
			"bounces+#-#-user=dest.test@em123.sendgrid.net"},
		{"mailing list VERP with a digit in the recipient kept", "list-bounces-7f3a9c-bob2=example.org@lists.example", "+",
			"list-bounces-#-bob2=example.org@lists.example"},
		{"hex message id", "bounce-4f9a2c1e8b7d@mailer.example", "+", "bounce-#@mailer.example"},
		{"UUID alone in a word list", "msg-123e4567-e89b-12d3-a456-426614174000@notify.example", "+", "msg-#@notify.example"},
		{"short hex word kept", "cafe12-news@example.net", "+", "cafe12-news@example.net"},
		{"hex-looking name of letters only kept", "deadbeefcafe-team@example.net", "+", "deadbeefcafe-team@example.net"},
		{"a mailbox that is one hex word kept", "a1b2c3d4e5@example.net", "+", "a1b2c3d4e5@example.net"},
		{"SRS is not taken for VERP", "SRS0=HHH=TT=orig.example=alice@fwd.example", "+", "srs0=orig.example=alice@fwd.example"},
		{"a person's name with = and no domain after it kept", "a=b@example.net", "+", "a=b@example.net"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := NormalizeSender(c.in, c.delims); got != c.want {
				t.Errorf("NormalizeSender(%q, %q) = %q, want %q", c.in, c.delims, got, c.want)
			}
		})
	}
	// The purpose: the next message's token gives the same key.
	for _, pair := range [][2]string{
		{"0102018c3b1e5a7f-3c8e1b2a-9d4e-4f1a-8b7c-2e5d6f7a8b9c-000000@us-east-1.amazonses.com",
			"010201a7d9e3b6c0-9a8b7c6d-1e2f-4a3b-9c8d-7e6f5a4b3c2d-000000@us-east-1.amazonses.com"},
		{"bounce-mc.us5_1234.5678-user=dest.test@mail123.mcsv.net",
			"bounce-mc.us5_9876.4321-user=dest.test@mail123.mcsv.net"},
		{"bounces+12345-ab3f-user=dest.test@em123.sendgrid.net",
			"bounces+67890-cd01-user=dest.test@em123.sendgrid.net"},
	} {
		if a, b := NormalizeSender(pair[0], "+"), NormalizeSender(pair[1], "+"); a != b {
			t.Errorf("two messages of one sender give two keys: %q and %q", a, b)
		}
	}
	// And different recipients encoded by VERP stay apart (the triplet has
	// the recipient anyway; the key must not merge two lists' members).
	if a, b := NormalizeSender("bounce-mc.us5_1.2-ann=dest.test@mcsv.net", "+"),
		NormalizeSender("bounce-mc.us5_1.2-bob=dest.test@mcsv.net", "+"); a == b {
		t.Errorf("two encoded recipients give one key %q", a)
	}
}
