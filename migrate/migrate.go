// Package migrate reads the databases of the greylisting daemons
// milter-grey replaces, Postgrey and milter-greylist, and maps their
// entries to milter-grey records, so that a site that moves keeps its
// correspondents: a triplet that passed there passes here at once, and a
// triplet waiting for its retry there is accepted here at its retry, the
// delay counted from the original first attempt.
//
// What it reads:
//
//   - Postgrey's Berkeley DB files, as db_dump -p prints them (Debian's
//     db-util; see DBDump). postgrey.db maps "CLIENT_NET/SENDER/RECIPIENT"
//     to "FIRST,LAST" (Unix seconds): CLIENT_NET is the client's network
//     address under --ipv4cidr/--ipv6cidr (default /24 and /64; "a.b.c" in
//     old versions; the whole address with --lookup-by-host), SENDER is the
//     envelope sender lower-cased with its "+extension" cut and every
//     number standing alone replaced by "#", RECIPIENT the recipient
//     lower-cased. A triplet passed when LAST-FIRST reached Postgrey's
//     --delay (it then wrote LAST at the retry); otherwise it waits for its
//     retry since FIRST. postgrey_clients.db maps a client address to
//     "COUNT,LAST": passed triplets counted at most once an hour, the
//     auto-whitelist. With --privacy both hold SHA-1 digests instead of
//     keys, which cannot be mapped.
//   - milter-greylist's text dumpfile (greylist.db): a line per triplet,
//     "ADDRESS FROM RCPT TIME", blank-separated, "#" starting a comment. A
//     greylisted triplet's TIME is when its retry will be accepted (its
//     first attempt plus milter-greylist's greylist delay); a line with
//     "AUTO" after TIME is an auto-whitelisted triplet (a passed one, in
//     milter-grey's words) and TIME is when that ends (its last use plus
//     milter-greylist's autowhite period).
//
// How it maps them:
//
//   - Keys are built as the engine builds them: the client through the
//     configured ClientMask (a Postgrey /24 network "192.0.2.0" becomes
//     "192.0.2.0/24"), the sender and recipient through NormalizeSender
//     and NormalizeRecipient. Entries that fall on one key (the hosts of a
//     network, a recipient with and without its extension) are merged
//     (greylist.Merge). With key_by_spf_domain, a triplet with a sender
//     domain is also written under "spf:DOMAIN" (with the sender part
//     spf_key_drops_local_part asks for), the key the engine uses when SPF
//     proves that domain: the triplet proved itself from a client of that
//     network, and mail that SPF proves comes from the domain.
//   - Passed triplets stay passed with their first and last times;
//     pending ones keep their first attempt. Times after now are taken as
//     now (Postgrey does the same with a first time in the future).
//   - Postgrey counts the auto-whitelist per client address, milter-grey
//     per client network: a network gets the largest count of its
//     addresses, so it is whitelisted when the configured auto_whitelist
//     threshold says one of them is (with equal thresholds: when Postgrey
//     had whitelisted one of them). Nothing is summed: milter-grey counts
//     a network's passes at most once an hour, as Postgrey does an
//     address's.
//   - Lifetimes and expiry follow milter-grey's policy: a pending triplet
//     older than retry_window, and a passed triplet or client unused for
//     longer than max_age, are skipped as expired.
//
// What cannot be mapped is skipped with a reason and counted, never a
// reason to stop: a line that cannot be read, a hashed key, a client
// network milter-grey cannot key (Postgrey's network wider than the
// configured mask, or the IPv6 network "::" under which Postgrey files
// IPv4-mapped clients), a sender Postgrey reduced to "#" (an all-digit
// mailbox, which milter-grey keeps as it is).
package migrate

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/envelope"
	"github.com/milter-grey/milter-grey/greylist"
)

// Options say how entries map to records: the configuration of the
// milter-grey that will hold them, and what the old daemon ran with.
type Options struct {
	// Policy, Mask and Delimiters are milter-grey's, with defaults filled.
	Policy     greylist.Policy
	Mask       greylist.ClientMask
	Delimiters string
	// AutoWhitelist is milter-grey's threshold; 0 (off) skips client
	// records.
	AutoWhitelist int
	// KeyBySPFDomain also writes each triplet under its sender's domain,
	// SPFKeyDropsLocalPart with the domain alone for its sender part.
	KeyBySPFDomain       bool
	SPFKeyDropsLocalPart bool

	// Delay is the old daemon's greylisting delay: Postgrey's --delay
	// tells a passed triplet from a pending one, milter-greylist's
	// greylist delay dates a pending triplet's first attempt. Zero: its
	// default (Postgrey 300 s, milter-greylist 30 min).
	Delay time.Duration
	// Autowhite is milter-greylist's autowhite period, which dates a
	// passed triplet's last use. Zero: its default, 24 h.
	Autowhite time.Duration
	// SourceMask is the network prefix Postgrey keyed clients by
	// (--ipv4cidr, --ipv6cidr). Zero: its defaults, /24 and /64.
	SourceMask greylist.ClientMask

	// Now is the time the import measures ages from.
	Now time.Time
}

// Defaults of the daemons imported from.
const (
	PostgreyDelay           = 300 * time.Second
	MilterGreylistDelay     = 30 * time.Minute
	MilterGreylistAutowhite = 24 * time.Hour
)

// Reason says why an entry was skipped.
type Reason string

// The reasons an entry is skipped.
const (
	Malformed        Reason = "malformed"          // a line, key or value that cannot be read
	Expired          Reason = "expired"            // gone under milter-grey's retry_window or max_age
	Hashed           Reason = "hashed"             // Postgrey --privacy: a digest, not a key
	BadClient        Reason = "client"             // a client network milter-grey cannot key
	MaskedSender     Reason = "sender"             // Postgrey replaced an all-digit mailbox by "#"
	AutoWhitelistOff Reason = "auto-whitelist-off" // a client count, and auto_whitelist is 0
)

// Skip is one skipped entry: where it was, why, and what.
type Skip struct {
	Where  string // file and line, or file and key
	Reason Reason
	Detail string
}

func (s Skip) String() string { return fmt.Sprintf("%s: %s: %s", s.Where, s.Reason, s.Detail) }

// maxExamples bounds the skipped entries kept per reason for the report;
// the others are only counted.
const maxExamples = 5

// Record is a milter-grey record an import writes.
type Record struct {
	Key string
	Rec greylist.Record
}

// Summary counts what an import read, made and skipped.
type Summary struct {
	Read int `json:"read"` // entries read
	// Records is the number of records made, by kind and state; an entry
	// adds none when it merges into a key another entry made.
	Records  int `json:"records"`
	Passed   int `json:"passed"`    // passed triplets
	Pending  int `json:"pending"`   // pending triplets
	Clients  int `json:"clients"`   // auto-whitelist counts
	SPFKeyed int `json:"spf_keyed"` // triplets (of those above) under spf:DOMAIN
	Skipped  int `json:"skipped"`
	// Reasons counts the skipped entries by reason.
	Reasons map[Reason]int `json:"reasons,omitempty"`
}

// An Importer collects the records of one or more sources. It is not safe
// for concurrent use.
type Importer struct {
	opts     Options
	recs     map[string]*greylist.Record
	read     int
	skipped  map[Reason]int
	examples []Skip
}

// NewImporter returns an Importer mapping entries as opts say.
func NewImporter(opts Options) *Importer {
	if opts.Autowhite == 0 {
		opts.Autowhite = MilterGreylistAutowhite
	}
	if opts.SourceMask.IPv4 == 0 {
		opts.SourceMask.IPv4 = greylist.DefaultClientMask.IPv4
	}
	if opts.SourceMask.IPv6 == 0 {
		opts.SourceMask.IPv6 = greylist.DefaultClientMask.IPv6
	}
	return &Importer{opts: opts, recs: make(map[string]*greylist.Record), skipped: make(map[Reason]int)}
}

// skip counts a skipped entry and keeps the first few of each reason.
func (im *Importer) skip(where string, r Reason, format string, args ...any) {
	im.skipped[r]++
	if im.skipped[r] <= maxExamples {
		im.examples = append(im.examples, Skip{Where: where, Reason: r, Detail: fmt.Sprintf(format, args...)})
	}
}

// Skips returns the first few skipped entries of each reason, in the order
// they were read.
func (im *Importer) Skips() []Skip { return im.examples }

// clamp takes a time after now as now.
func (im *Importer) clamp(t time.Time) time.Time {
	if t.After(im.opts.Now) {
		return im.opts.Now
	}
	return t
}

// triplet adds a triplet record (and its spf: twin), or skips it as
// expired.
func (im *Importer) triplet(where string, client netip.Addr, sender, rcpt string, rec greylist.Record) {
	if im.opts.Policy.Expired(&rec, im.opts.Now) {
		if rec.State == greylist.Pending {
			im.skip(where, Expired, "pending since %s, past the retry window", rec.First.UTC().Format(time.RFC3339))
		} else {
			im.skip(where, Expired, "passed, last seen %s, past max-age", rec.Last.UTC().Format(time.RFC3339))
		}
		return
	}
	from := envelope.Parse(sender)
	s := greylist.SenderKey(from, im.opts.Delimiters)
	r := greylist.RecipientKey(envelope.Parse(rcpt), im.opts.Delimiters)
	im.put(greylist.TripletKey(im.opts.Mask.Key(client), s, r), rec)
	if d, ok := spfDomain(from); ok && im.opts.KeyBySPFDomain {
		im.put(greylist.TripletKey(greylist.SPFClient(d), greylist.SPFKeySender(from, s, im.opts.SPFKeyDropsLocalPart), r), rec)
	}
}

// client adds an auto-whitelist record, or skips it.
func (im *Importer) client(where string, client netip.Addr, rec greylist.Record) {
	switch {
	case im.opts.AutoWhitelist == 0:
		im.skip(where, AutoWhitelistOff, "client %s (count %d)", client, rec.Count)
	case im.opts.Policy.Expired(&rec, im.opts.Now):
		im.skip(where, Expired, "client %s, last pass %s, past max-age", client, rec.Last.UTC().Format(time.RFC3339))
	default:
		im.put(greylist.ClientKey(im.opts.Mask.Key(client)), rec)
	}
}

func (im *Importer) put(key string, rec greylist.Record) {
	im.recs[key] = greylist.Merge(im.recs[key], &rec)
}

// spfDomain is the domain SPF checks for a sender, as the key of a
// triplet it proves names it: the domain lower-cased, when it looks like
// one (ASCII, with a dot, not an address literal). The null sender has
// none: SPF checks its HELO name, which no imported entry holds.
func spfDomain(sender envelope.Address) (string, bool) {
	if sender.IsNull() || !sender.Qualified() {
		return "", false
	}
	d := strings.ToLower(sender.Domain())
	if !strings.Contains(d, ".") || strings.HasPrefix(d, "[") {
		return "", false
	}
	for j := 0; j < len(d); j++ {
		if c := d[j]; c >= 0x80 || c <= ' ' || c == '%' || c == '@' {
			return "", false
		}
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return "", false
	}
	return d, true
}

// Records returns the records collected, sorted by key.
func (im *Importer) Records() []Record {
	out := make([]Record, 0, len(im.recs))
	for k, r := range im.recs {
		out = append(out, Record{Key: k, Rec: *r})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Summary counts what the Importer read, made and skipped.
func (im *Importer) Summary() Summary {
	s := Summary{Read: im.read, Records: len(im.recs), Reasons: make(map[Reason]int)}
	for k, r := range im.recs {
		switch {
		case strings.HasPrefix(k, greylist.ClientPrefix):
			s.Clients++
		case r.State == greylist.Passed:
			s.Passed++
		default:
			s.Pending++
		}
		if strings.HasPrefix(k, greylist.TripletPrefix+"spf:") {
			s.SPFKeyed++
		}
	}
	for r, n := range im.skipped {
		s.Reasons[r] = n
		s.Skipped += n
	}
	return s
}

// String is the summary in a line: made, then skipped by reason.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "read %d entries: %d records (passed %d, pending %d, clients %d",
		s.Read, s.Records, s.Passed, s.Pending, s.Clients)
	if s.SPFKeyed > 0 {
		fmt.Fprintf(&b, "; keyed by SPF domain %d", s.SPFKeyed)
	}
	fmt.Fprintf(&b, "); skipped %d", s.Skipped)
	reasons := make([]string, 0, len(s.Reasons))
	for r := range s.Reasons {
		reasons = append(reasons, string(r))
	}
	sort.Strings(reasons)
	for i, r := range reasons {
		sep := ", "
		if i == 0 {
			sep = " ("
		}
		fmt.Fprintf(&b, "%s%s %d", sep, r, s.Reasons[Reason(r)])
	}
	if len(reasons) > 0 {
		b.WriteString(")")
	}
	return b.String()
}
