package migrate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// ReadPostgrey reads a Postgrey database as db_dump -p prints it (the
// triplets of postgrey.db, the client counts of postgrey_clients.db, or
// both one after the other); name says where it came from, for the skip
// reports. Each entry is told by its key: a triplet's holds '/'. Only an
// error reading r is returned; bad entries are skipped.
func (im *Importer) ReadPostgrey(r io.Reader, name string) error {
	delay := im.opts.Delay
	if delay == 0 {
		delay = PostgreyDelay
	}
	sc := bufio.NewScanner(r)
	// Postgrey cuts the attributes of a key at 512 bytes each; printed,
	// a byte may take 3.
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	inData := false
	var key string
	haveKey := false
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		if !inData {
			inData = line == "HEADER=END"
			continue
		}
		if line == "DATA=END" {
			if haveKey {
				im.read++
				im.skip(fmt.Sprintf("%s: key %q", name, key), Malformed, "a key without a value")
			}
			inData, haveKey = false, false
			continue
		}
		text, ok := strings.CutPrefix(line, " ")
		var err error
		if ok {
			text, err = unprint(text)
		}
		if !ok || err != nil {
			if !ok {
				err = errors.New("not a data line of db_dump -p")
			}
			// The key/value pairing is lost: start again at the next line.
			im.read++
			im.skip(fmt.Sprintf("%s:%d", name, lineNo), Malformed, "%v: %q", err, clip(line))
			haveKey = false
			continue
		}
		if !haveKey {
			key, haveKey = text, true
			continue
		}
		haveKey = false
		im.read++
		im.postgreyEntry(fmt.Sprintf("%s: key %q", name, clip(key)), key, text, delay)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// postgreyEntry maps one key and value of either Postgrey database.
func (im *Importer) postgreyEntry(where, key, value string, delay time.Duration) {
	if isDigest(key) {
		im.skip(where, Hashed, "Postgrey ran with --privacy")
		return
	}
	a, b, err := postgreyPair(value)
	if err != nil {
		im.skip(where, Malformed, "value %q: %v", clip(value), err)
		return
	}
	if !strings.Contains(key, "/") {
		// postgrey_clients.db: ADDRESS -> COUNT,LAST
		ip, err := netip.ParseAddr(key)
		if err != nil {
			im.skip(where, Malformed, "not a client address")
			return
		}
		if a < 1 || a > 1<<32-1 {
			im.skip(where, Malformed, "count %d", a)
			return
		}
		last := im.clamp(time.Unix(b, 0))
		im.client(where, ip, greylist.Record{State: greylist.Passed, First: last, Last: last, Count: uint32(a)})
		return
	}
	// postgrey.db: CLIENT_NET/SENDER/RECIPIENT -> FIRST,LAST
	netStr, sender, rcpt, ok := splitPostgreyKey(key)
	if !ok {
		im.skip(where, Malformed, "not CLIENT/SENDER/RECIPIENT")
		return
	}
	client, err := im.postgreyNet(netStr)
	if err != nil {
		im.skip(where, BadClient, "%v", err)
		return
	}
	if local, _, _ := strings.Cut(sender, "@"); local == "#" {
		im.skip(where, MaskedSender, "Postgrey wrote an all-digit mailbox as %q; milter-grey keeps its number", sender)
		return
	}
	if b < a {
		im.skip(where, Malformed, "value %q: last seen before first seen", value)
		return
	}
	first, last := im.clamp(time.Unix(a, 0)), im.clamp(time.Unix(b, 0))
	rec := greylist.Record{State: greylist.Pending, First: first, Last: last, Count: 1}
	// Postgrey's own test: the last attempt came at least the delay
	// after the first, so it passed.
	if time.Duration(b-a)*time.Second >= delay {
		rec.State = greylist.Passed
	}
	im.triplet(where, client, sender, rcpt, rec)
}

// postgreyPair reads "A,B" (and ignores what older versions appended).
func postgreyPair(value string) (a, b int64, err error) {
	fields := strings.Split(value, ",")
	if len(fields) < 2 {
		return 0, 0, errors.New("want two numbers")
	}
	if a, err = strconv.ParseInt(fields[0], 10, 64); err != nil {
		return 0, 0, errors.New("want two numbers")
	}
	if b, err = strconv.ParseInt(fields[1], 10, 64); err != nil {
		return 0, 0, errors.New("want two numbers")
	}
	// Unix seconds milter-grey's records can hold (milliseconds in 64 bits).
	const limit = 1 << 52
	if a < 0 || b < 0 || a > limit || b > limit {
		return 0, 0, errors.New("time out of range")
	}
	return a, b, nil
}

// splitPostgreyKey splits "CLIENT_NET/SENDER/RECIPIENT". Addresses may hold
// '/' in their local parts, a domain never does: the sender ends at the
// first '/' after its '@'. A null sender is empty; a sender without a
// domain (no '@' before the recipient's) ends at the first '/'.
func splitPostgreyKey(key string) (client, sender, rcpt string, ok bool) {
	client, rest, ok := strings.Cut(key, "/")
	if !ok || client == "" {
		return "", "", "", false
	}
	end := -1
	if at := strings.IndexByte(rest, '@'); at >= 0 {
		if i := strings.IndexByte(rest[at:], '/'); i >= 0 {
			end = at + i
		}
	}
	if end < 0 {
		end = strings.IndexByte(rest, '/')
	}
	if end < 0 || end == len(rest)-1 {
		return "", "", "", false
	}
	return client, rest[:end], rest[end+1:], true
}

// postgreyNet reads the client part of a triplet key: an address (its
// network's under --ipv4cidr/--ipv6cidr, or the client's own under
// --lookup-by-host), or "a.b.c", how old versions wrote a /24.
func (im *Importer) postgreyNet(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		if p := strings.Split(s, "."); len(p) == 3 {
			ip, err = netip.ParseAddr(s + ".0")
		}
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("client %q is not an address", s)
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() {
		// Postgrey cuts an IPv4-mapped client to its IPv6 /64: "::",
		// every such client at once.
		return netip.Addr{}, fmt.Errorf("client network %q holds every IPv4-mapped client", s)
	}
	src, dst := im.opts.SourceMask.IPv4, im.opts.Mask.IPv4
	if ip.Is6() {
		src, dst = im.opts.SourceMask.IPv6, im.opts.Mask.IPv6
	}
	if dst > src {
		// A network wider than milter-grey's key: which of its smaller
		// networks the client was in is lost, unless the address keeps
		// bits past Postgrey's prefix (--lookup-by-host).
		if p, _ := ip.Prefix(src); p.Addr() == ip {
			return netip.Addr{}, fmt.Errorf("client network %s/%d is wider than milter-grey's /%d", ip, src, dst)
		}
	}
	return ip, nil
}

// isDigest reports a key Postgrey's --privacy wrote: a SHA-1 digest in hex.
func isDigest(key string) bool {
	if len(key) != 40 {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// unprint decodes a data line of db_dump -p: bytes that are not printable
// are written as a backslash and two hex digits, a backslash as two.
func unprint(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			b.WriteByte('\\')
			i++
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("cut escape")
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape %q", s[i:i+3])
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// clip shortens a value for a report.
func clip(s string) string {
	const n = 120
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
