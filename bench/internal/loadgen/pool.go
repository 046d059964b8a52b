package loadgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
)

// Envelope is one SMTP transaction as far as greylisting sees it: a client,
// a sender and recipients. A known envelope's triplets have been made to
// pass (by the warm-up or by a preload), so they come back "known".
type Envelope struct {
	Client netip.Addr
	Sender string
	Rcpts  []string
}

// Triplets returns the number of triplets in envs.
func Triplets(envs []Envelope) int {
	n := 0
	for _, e := range envs {
		n += len(e.Rcpts)
	}
	return n
}

// Pools are the client networks sessions come from. Hosts are drawn at
// random inside them; with the daemon's default masks (/24, /64) a /15 of
// IPv4 gives 512 client networks and a /32 of IPv6 practically endless.
type Pools struct {
	IPv4 []netip.Prefix
	IPv6 []netip.Prefix
	// IPv6Fraction of new clients are drawn from IPv6 (0..1).
	IPv6Fraction float64
}

// DefaultPools: 198.18.0.0/15 (RFC 2544, benchmarking) and 2001:db8::/32
// (documentation): neither is in milter-grey's default trusted networks.
var DefaultPools = Pools{
	IPv4: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
	IPv6: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")},
}

// ParsePrefixes reads a comma-separated list of CIDR prefixes of family
// v6 (or v4).
func ParsePrefixes(s string, v6 bool) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		if p.Addr().Is6() != v6 {
			return nil, fmt.Errorf("%s: wrong address family", f)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no prefix in %q", s)
	}
	return out, nil
}

// RandomClient draws a client address: IPv6 with probability
// IPv6Fraction, a random host of a random pool prefix.
func (p Pools) RandomClient(r *rand.Rand) netip.Addr {
	if r.Float64() < p.IPv6Fraction && len(p.IPv6) > 0 {
		return randomHost(r, p.IPv6[r.IntN(len(p.IPv6))])
	}
	return randomHost(r, p.IPv4[r.IntN(len(p.IPv4))])
}

func randomHost(r *rand.Rand, p netip.Prefix) netip.Addr {
	a := p.Addr().As16()
	hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	host := 128 - p.Bits()
	if p.Addr().Is4() {
		host = 32 - p.Bits()
	}
	rhi, rlo := r.Uint64(), r.Uint64()
	switch {
	case host >= 64:
		lo = rlo
		if host > 64 {
			hi |= rhi & (1<<(host-64) - 1)
		}
	case host > 0:
		lo |= rlo & (1<<host - 1)
	}
	binary.BigEndian.PutUint64(a[:8], hi)
	binary.BigEndian.PutUint64(a[8:], lo)
	ip := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		ip = ip.Unmap()
	}
	return ip
}

// Names of senders and recipients. Local parts are a letter then base-36
// digits: milter-grey's key normalisation leaves them alone (no extension
// delimiter, no stand-alone number for its VERP masking), so the key a
// daemon builds from an address is the address itself, lower-cased.
const (
	senderDomains = 1000
	rcptDomains   = 16
)

func word(r *rand.Rand, prefix byte) string {
	var b [16]byte
	b[0] = prefix
	n := 1
	for v := r.Uint64()>>24 | 1<<39; v > 0 && n < len(b); v /= 36 {
		b[n] = "0123456789abcdefghijklmnopqrstuvwxyz"[v%36]
		n++
	}
	return string(b[:n])
}

// RandomSender is a sender address from one of 1000 domains.
func RandomSender(r *rand.Rand) string {
	return word(r, 's') + fmt.Sprintf("@m%03d.example.org", r.IntN(senderDomains))
}

// RandomRcpt is a recipient in one of the 16 local domains.
func RandomRcpt(r *rand.Rand) string {
	return word(r, 'u') + fmt.Sprintf("@dom%02d.example.net", r.IntN(rcptDomains))
}

// NewKnownPool makes n envelopes of rcpts recipients each, the same for
// the same seed: the warm-up of one run and the measured runs that follow
// it (other processes) agree on them.
func NewKnownPool(seed uint64, n, rcpts int, pools Pools) []Envelope {
	r := rand.New(rand.NewPCG(seed, 0x6b6e6f776e)) // "known"
	envs := make([]Envelope, n)
	for i := range envs {
		e := Envelope{Client: pools.RandomClient(r), Sender: RandomSender(r), Rcpts: make([]string, rcpts)}
		for j := range e.Rcpts {
			e.Rcpts[j] = RandomRcpt(r)
		}
		envs[i] = e
	}
	return envs
}

// Limits on a known file.
const (
	MaxKnownTriplets = 2_000_000
	maxLineLen       = 2048
)

// ReadKnown reads a known-triplets file: one "CLIENT SENDER RCPT" per
// line ('#' comments and blank lines skipped), consecutive lines with the
// same client and sender forming one envelope (the preload writes them
// so). At most MaxKnownTriplets are read.
func ReadKnown(rd io.Reader) ([]Envelope, error) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 4096), maxLineLen)
	var envs []Envelope
	n, line := 0, 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want CLIENT SENDER RCPT, got %d fields", line, len(f))
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if n == MaxKnownTriplets {
			return nil, fmt.Errorf("more than %d triplets", MaxKnownTriplets)
		}
		n++
		if k := len(envs) - 1; k >= 0 && envs[k].Client == ip && envs[k].Sender == f[1] {
			envs[k].Rcpts = append(envs[k].Rcpts, f[2])
			continue
		}
		envs = append(envs, Envelope{Client: ip, Sender: f[1], Rcpts: []string{f[2]}})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	return envs, nil
}

// WriteKnown writes envelopes in the format ReadKnown reads.
func WriteKnown(w io.Writer, envs []Envelope) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# bench/load known triplets: CLIENT SENDER RCPT; consecutive lines of one client and sender are one envelope")
	for _, e := range envs {
		for _, r := range e.Rcpts {
			fmt.Fprintf(bw, "%s %s %s\n", e.Client, e.Sender, r)
		}
	}
	return bw.Flush()
}
