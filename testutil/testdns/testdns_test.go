package testdns

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func lookupCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRecords(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	ctx := lookupCtx(t, 10*time.Second)

	s.SetTXT("Example.COM", "v=spf1 -all", `quote " and \ backslash`)
	s.SetA("mail.example.com", "192.0.2.10", "192.0.2.11")
	s.SetAAAA("mail.example.com", "2001:db8::10")
	s.SetMX("example.com", 10, "mail.example.com")
	s.SetMX("example.com", 20, "backup.example.com")

	txts, err := r.LookupTXT(ctx, "example.com.")
	if err != nil {
		t.Fatalf("LookupTXT: %v", err)
	}
	slices.Sort(txts)
	if want := []string{`quote " and \ backslash`, "v=spf1 -all"}; !slices.Equal(txts, want) {
		t.Errorf("TXT = %q, want %q", txts, want)
	}

	ips, err := r.LookupIPAddr(ctx, "mail.example.com.")
	if err != nil {
		t.Fatalf("LookupIPAddr: %v", err)
	}
	var got []string
	for _, ip := range ips {
		got = append(got, ip.IP.String())
	}
	slices.Sort(got)
	if want := []string{"192.0.2.10", "192.0.2.11", "2001:db8::10"}; !slices.Equal(got, want) {
		t.Errorf("IPs = %v, want %v", got, want)
	}

	mxs, err := r.LookupMX(ctx, "example.com.")
	if err != nil {
		t.Fatalf("LookupMX: %v", err)
	}
	if len(mxs) != 2 || mxs[0].Host != "mail.example.com." || mxs[0].Pref != 10 || mxs[1].Pref != 20 {
		t.Errorf("MX = %+v %+v", mxs[0], mxs[1])
	}
}

func TestLongTXTSplitAndTCPFallback(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	ctx := lookupCtx(t, 10*time.Second)

	// Larger than the 1232-byte EDNS buffer Go's resolver announces: the
	// UDP answer is truncated and the resolver retries over TCP.
	long := strings.Repeat("0123456789abcdef", 200)
	s.SetTXT("long.example.com", long)
	before := s.Queries()
	txts, err := r.LookupTXT(ctx, "long.example.com.")
	if err != nil {
		t.Fatalf("LookupTXT: %v", err)
	}
	if len(txts) != 1 || txts[0] != long {
		t.Fatalf("TXT length %d, want one record of %d bytes", len(txts[0]), len(long))
	}
	if n := s.Queries() - before; n != 2 {
		t.Errorf("queries = %d, want 2 (UDP truncated, then TCP)", n)
	}
}

func TestNegativeAnswers(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	ctx := lookupCtx(t, 10*time.Second)
	s.SetA("a-only.example.com", "192.0.2.1")

	for _, name := range []string{"unknown.example.com.", "a-only.example.com."} {
		_, err := r.LookupTXT(ctx, name)
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("LookupTXT(%s) error = %v, want not found", name, err)
		}
	}

	s.SetTXT("gone.example.com", "x")
	s.Remove("gone.example.com")
	if _, err := r.LookupTXT(ctx, "gone.example.com."); err == nil {
		t.Error("LookupTXT after Remove succeeded")
	}
}

func TestModes(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	s.SetTXT("example.com", "hello")

	t.Run("drop", func(t *testing.T) {
		s.SetMode(Drop)
		defer s.SetMode(Normal)
		_, err := r.LookupTXT(lookupCtx(t, 300*time.Millisecond), "example.com.")
		var de *net.DNSError
		if !errors.As(err, &de) || !de.Timeout() {
			t.Errorf("error = %v, want a timeout", err)
		}
	})
	t.Run("servfail", func(t *testing.T) {
		s.SetMode(ServFail)
		defer s.SetMode(Normal)
		_, err := r.LookupTXT(lookupCtx(t, 10*time.Second), "example.com.")
		var de *net.DNSError
		if !errors.As(err, &de) || !de.Temporary() {
			t.Errorf("error = %v, want a temporary DNS error", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		s.SetMode(Garbage)
		defer s.SetMode(Normal)
		_, err := r.LookupTXT(lookupCtx(t, 10*time.Second), "example.com.")
		if err == nil || !strings.Contains(err.Error(), "cannot unmarshal") {
			t.Errorf("error = %v, want cannot unmarshal", err)
		}
	})
	t.Run("slow", func(t *testing.T) {
		s.SetMode(Slow(50 * time.Millisecond))
		defer s.SetMode(Normal)
		txts, err := r.LookupTXT(lookupCtx(t, 10*time.Second), "example.com.")
		if err != nil || len(txts) != 1 || txts[0] != "hello" {
			t.Errorf("LookupTXT = %q, %v", txts, err)
		}
	})
	t.Run("slow-past-deadline", func(t *testing.T) {
		s.SetMode(Slow(time.Hour))
		defer s.SetMode(Normal)
		_, err := r.LookupTXT(lookupCtx(t, 200*time.Millisecond), "example.com.")
		if err == nil {
			t.Error("LookupTXT succeeded against an hour-slow server")
		}
	})
}

func TestModeFor(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	s.SetTXT("ok.example.com", "fine")
	s.SetTXT("dead.example.com", "never seen")
	s.SetModeFor("Dead.Example.com", Drop)

	if txts, err := r.LookupTXT(lookupCtx(t, 10*time.Second), "ok.example.com."); err != nil || txts[0] != "fine" {
		t.Errorf("ok.example.com: %q, %v", txts, err)
	}
	if _, err := r.LookupTXT(lookupCtx(t, 200*time.Millisecond), "dead.example.com."); err == nil {
		t.Error("dead.example.com answered")
	}
	s.SetModeFor("dead.example.com", Normal)
	if _, err := r.LookupTXT(lookupCtx(t, 10*time.Second), "dead.example.com."); err != nil {
		t.Errorf("dead.example.com after reset: %v", err)
	}
}

func TestQueriesCount(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	ctx := lookupCtx(t, 10*time.Second)
	s.SetTXT("example.com", "x")
	if n := s.Queries(); n != 0 {
		t.Fatalf("queries before any lookup = %d", n)
	}
	for range 3 {
		if _, err := r.LookupTXT(ctx, "example.com."); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Queries(); n != 3 {
		t.Errorf("queries = %d, want 3", n)
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Normal: "normal", Drop: "drop", ServFail: "servfail", Garbage: "garbage", Slow(time.Second): "slow(1s)"} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(m), got, want)
		}
	}
}
