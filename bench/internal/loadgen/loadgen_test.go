package loadgen

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.9, 9000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.Quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff < -1.0/subCount || diff > 1.0/subCount {
			t.Errorf("Quantile(%v) = %v, want %v ± %.1f%%", tc.q, got, tc.want, 100.0/subCount)
		}
	}
	if h.Max() != 10*time.Millisecond || h.Min() != time.Microsecond || h.Count() != 10000 {
		t.Errorf("max %v min %v count %d", h.Max(), h.Min(), h.Count())
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 20000 || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merged: count %d p50 %v", m.Count(), m.Quantile(0.5))
	}
}

func TestHistogramBucketsAreMonotonic(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<22; v = v*17/16 + 1 {
		b := bucketOf(v)
		if b < prev || b >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d", v, b, prev)
		}
		if mid := bucketMid(b); float64(mid) < float64(v)*(1-2.0/subCount) || float64(mid) > float64(v)*(1+2.0/subCount)+1 {
			t.Fatalf("bucketMid(bucketOf(%d)) = %d", v, mid)
		}
		prev = b
	}
	if b := bucketOf(1 << 62); b >= numBuckets {
		t.Fatalf("huge value: bucket %d of %d", b, numBuckets)
	}
}

func TestParseAddrLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		spec, network, addr string
		ok                  bool
	}{
		{"inet:127.0.0.1:10091", "tcp", "127.0.0.1:10091", true},
		{"inet:10091@127.0.0.1", "tcp", "127.0.0.1:10091", true},
		{"inet6:[::1]:10091", "tcp", "[::1]:10091", true},
		{"inet:localhost:10091", "tcp", "localhost:10091", true},
		{"unix:/run/milter.sock", "unix", "/run/milter.sock", true},
		{"inet:192.0.2.1:10091", "", "", false},
		{"inet:mx.example.com:10091", "", "", false},
		{"inet:0.0.0.0:10091", "", "", false},
		{"unix:relative.sock", "", "", false},
		{"127.0.0.1:10091", "", "", false},
	} {
		n, a, err := ParseAddr(tc.spec)
		if (err == nil) != tc.ok || n != tc.network || a != tc.addr {
			t.Errorf("ParseAddr(%q) = %q, %q, %v", tc.spec, n, a, err)
		}
	}
}

func TestKnownFileRoundTrip(t *testing.T) {
	envs := NewKnownPool(1, 50, 3, Pools{IPv4: DefaultPools.IPv4, IPv6: DefaultPools.IPv6, IPv6Fraction: 0.5})
	var b bytes.Buffer
	if err := WriteKnown(&b, envs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadKnown(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, envs) {
		t.Errorf("read back %d envelopes, differ from the %d written", len(got), len(envs))
	}
	if _, err := ReadKnown(bytes.NewBufferString("198.18.0.1 a@b\n")); err == nil {
		t.Error("ReadKnown accepted a line of two fields")
	}
}

// TestNamesAreTheirOwnKeys: the generated addresses survive milter-grey's
// key normalisation unchanged, so the preload and the daemon agree.
func TestNamesAreTheirOwnKeys(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		s, rc := RandomSender(r), RandomRcpt(r)
		if got := greylist.NormalizeSender(s, "+"); got != s {
			t.Fatalf("NormalizeSender(%q) = %q", s, got)
		}
		if got := greylist.NormalizeRecipient(rc, "+"); got != rc {
			t.Fatalf("NormalizeRecipient(%q) = %q", rc, got)
		}
	}
}

func TestRandomClientStaysInPools(t *testing.T) {
	p := Pools{IPv4: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
		IPv6: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, IPv6Fraction: 0.3}
	r := rand.New(rand.NewPCG(5, 6))
	v6 := 0
	for range 10000 {
		ip := p.RandomClient(r)
		if !p.IPv4[0].Contains(ip) && !p.IPv6[0].Contains(ip) {
			t.Fatalf("%s outside the pools", ip)
		}
		if ip.Is6() {
			v6++
		}
	}
	if v6 < 2700 || v6 > 3300 {
		t.Errorf("%d IPv6 clients of 10000, want about 3000", v6)
	}
}
