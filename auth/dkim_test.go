package auth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/milter-grey/milter-grey/envelope"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/testutil/testdns"
)

// testKeys are generated once per test binary: RSA-2048 generation is slow
// under the race detector.
var testKeys = sync.OnceValues(func() (*rsa.PrivateKey, ed25519.PrivateKey) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return rk, ek
})

type dkimEnv struct {
	srv *testdns.Server
	r   *net.Resolver
	rsa *rsa.PrivateKey
	ed  ed25519.PrivateKey
}

// newDKIMEnv publishes the keys at rsa._domainkey.example.com and
// ed._domainkey.example.com on a test DNS server.
func newDKIMEnv(t *testing.T) *dkimEnv {
	t.Helper()
	rk, ek := testKeys()
	srv := testdns.Start(t)
	pub, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetTXT("rsa._domainkey.example.com", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(pub))
	srv.SetTXT("ed._domainkey.example.com", "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey)))
	return &dkimEnv{srv: srv, r: auth.NewResolver(auth.ResolverConfig{Server: srv.Addr()}), rsa: rk, ed: ek}
}

const testMessage = "From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: greylisting test\r\n" +
	"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	"\r\n" +
	"this message is signed.\r\n"

type signSpec struct {
	domain, selector string
	key              crypto.Signer
	can              dkim.Canonicalization // header and body
}

func (e *dkimEnv) rsaRelaxed() signSpec {
	return signSpec{"example.com", "rsa", e.rsa, dkim.CanonicalizationRelaxed}
}

func (e *dkimEnv) edSimple() signSpec {
	return signSpec{"example.com", "ed", e.ed, dkim.CanonicalizationSimple}
}

func sign(t *testing.T, msg string, s signSpec) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{
		Domain:                 s.domain,
		Selector:               s.selector,
		Signer:                 s.key,
		HeaderCanonicalization: s.can,
		BodyCanonicalization:   s.can,
	})
	if err != nil {
		t.Fatalf("dkim.Sign: %v", err)
	}
	return b.String()
}

// milterFields splits a raw message as go-milter delivers it from Postfix:
// one (name, value) per header field, folded lines joined by "\n", and the
// space after the colon removed unless keepSpace (OptHeaderLeadingSpace).
func milterFields(t *testing.T, raw string, keepSpace bool) ([][2]string, string) {
	t.Helper()
	hdr, body, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok {
		t.Fatal("message without header/body separator")
	}
	var fields [][2]string
	for _, line := range strings.Split(hdr, "\r\n") {
		if line[0] == ' ' || line[0] == '\t' {
			fields[len(fields)-1][1] += "\n" + line
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("bad header line %q", line)
		}
		if !keepSpace {
			value = strings.TrimPrefix(value, " ")
		}
		fields = append(fields, [2]string{name, value})
	}
	return fields, body
}

// feed gives raw to v as the milter callbacks would, the body in chunks of
// chunk bytes.
func feed(t *testing.T, v *auth.DKIMVerifier, raw string, chunk int, keepSpace bool) {
	t.Helper()
	fields, body := milterFields(t, raw, keepSpace)
	for _, f := range fields {
		if err := v.Header(f[0], f[1]); err != nil {
			t.Fatalf("Header(%s): %v", f[0], err)
		}
	}
	if err := v.EndHeaders(); err != nil {
		t.Fatalf("EndHeaders: %v", err)
	}
	for b := []byte(body); len(b) > 0; {
		n := min(chunk, len(b))
		if err := v.Body(b[:n]); err != nil {
			t.Fatalf("Body: %v", err)
		}
		b = b[n:]
	}
}

func (e *dkimEnv) verify(t *testing.T, raw string, opts auth.DKIMOptions) ([]auth.DKIMResult, error) {
	t.Helper()
	v := auth.NewDKIMVerifier(e.r, opts)
	feed(t, v, raw, 65535, opts.LeadingSpaceKept)
	return v.Close(testCtx(t))
}

func wantResults(t *testing.T, got []auth.DKIMResult, want ...auth.Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d results %+v, want %v", len(got), got, want)
	}
	for i := range got {
		if got[i].Result != want[i] {
			t.Errorf("result %d = %s (%v), want %s", i, got[i].Result, got[i].Err, want[i])
		}
	}
}

// goroutineBaseline returns the current goroutine count once it is stable.
func goroutineBaseline() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(5 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// waitGoroutines fails the test unless the goroutine count comes back to
// at most base within a few seconds.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want <= %d:\n%s", runtime.NumGoroutine(), base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDKIMPass(t *testing.T) {
	e := newDKIMEnv(t)
	tests := []struct {
		name string
		spec signSpec
	}{
		{"rsa relaxed/relaxed", signSpec{"example.com", "rsa", e.rsa, dkim.CanonicalizationRelaxed}},
		{"rsa simple/simple", signSpec{"example.com", "rsa", e.rsa, dkim.CanonicalizationSimple}},
		{"ed25519 relaxed/relaxed", signSpec{"example.com", "ed", e.ed, dkim.CanonicalizationRelaxed}},
		{"ed25519 simple/simple", signSpec{"example.com", "ed", e.ed, dkim.CanonicalizationSimple}},
	}
	for _, tt := range tests {
		for _, chunk := range []int{65535, 7} {
			t.Run(fmt.Sprintf("%s/chunks of %d", tt.name, chunk), func(t *testing.T) {
				v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{})
				feed(t, v, sign(t, testMessage, tt.spec), chunk, false)
				res, err := v.Close(testCtx(t))
				if err != nil {
					t.Fatalf("Close: %v", err)
				}
				wantResults(t, res, auth.ResultPass)
				if res[0].Domain != "example.com" || res[0].Selector != tt.spec.selector {
					t.Errorf("d=%q s=%q", res[0].Domain, res[0].Selector)
				}
			})
		}
	}
}

func TestDKIMFoldedHeaders(t *testing.T) {
	e := newDKIMEnv(t)
	msg := "From: Alice\r\n <alice@example.com>\r\n" +
		"To: bob@example.net,\r\n\tcarol@example.net\r\n" +
		"Subject: a subject long enough\r\n  to be folded\r\n\ttwice\r\n" +
		"\r\n" +
		"body\r\n"
	for _, spec := range []signSpec{e.rsaRelaxed(), e.edSimple()} {
		t.Run(string(spec.can), func(t *testing.T) {
			res, err := e.verify(t, sign(t, msg, spec), auth.DKIMOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wantResults(t, res, auth.ResultPass)
		})
	}
}

// Postfix removes the space after the colon by default and keeps a tab,
// so a field written "Name:<tab>value" comes back as "Name: <tab>value".
// That breaks c=simple header signatures only, unless the milter asks for
// the leading space (LeadingSpaceKept).
func TestDKIMLeadingSpace(t *testing.T) {
	e := newDKIMEnv(t)
	msg := "From: Alice <alice@example.com>\r\n" +
		"Subject:\tno space after the colon\r\n" +
		"X-Tight:value\r\n" +
		"\r\n" +
		"body\r\n"
	tests := []struct {
		name string
		spec signSpec
		keep bool
		want auth.Result
	}{
		{"relaxed, space removed", e.rsaRelaxed(), false, auth.ResultPass},
		{"relaxed, space kept", e.rsaRelaxed(), true, auth.ResultPass},
		{"simple, space removed: known loss", e.edSimple(), false, auth.ResultFail},
		{"simple, space kept", e.edSimple(), true, auth.ResultPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.verify(t, sign(t, msg, tt.spec), auth.DKIMOptions{LeadingSpaceKept: tt.keep})
			if err != nil {
				t.Fatal(err)
			}
			wantResults(t, res, tt.want)
		})
	}
}

func TestDKIMAlteredMessageFails(t *testing.T) {
	e := newDKIMEnv(t)
	for _, spec := range []signSpec{e.rsaRelaxed(), e.edSimple()} {
		signed := sign(t, testMessage, spec)
		t.Run(string(spec.can)+"/body", func(t *testing.T) {
			altered := strings.Replace(signed, "this message is signed", "this message is forged", 1)
			res, err := e.verify(t, altered, auth.DKIMOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wantResults(t, res, auth.ResultFail)
			if res[0].Domain != "example.com" {
				t.Errorf("Domain = %q", res[0].Domain)
			}
		})
		t.Run(string(spec.can)+"/header", func(t *testing.T) {
			altered := strings.Replace(signed, "Subject: greylisting test", "Subject: greylisting rest", 1)
			res, err := e.verify(t, altered, auth.DKIMOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wantResults(t, res, auth.ResultFail)
		})
	}
}

// bigMessage has a body much larger than any pipe or reader buffer.
func bigMessage() string {
	return strings.Replace(testMessage, "this message is signed.\r\n",
		strings.Repeat("a line of body text to make the message large enough\r\n", 20000), 1)
}

// One signature whose key does not exist: go-msgauth returns before
// reading the body. Without draining, the body writes would block for ever.
func TestDKIMMissingKeyDoesNotDeadlock(t *testing.T) {
	e := newDKIMEnv(t)
	spec := e.rsaRelaxed()
	spec.selector = "missing"
	base := goroutineBaseline()
	res, err := e.verify(t, sign(t, bigMessage(), spec), auth.DKIMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantResults(t, res, auth.ResultPermError)
	if res[0].Selector != "missing" {
		t.Errorf("Selector = %q", res[0].Selector)
	}
	waitGoroutines(t, base)
}

func TestDKIMOneGoodOneMissingKey(t *testing.T) {
	e := newDKIMEnv(t)
	bad := e.rsaRelaxed()
	bad.selector = "missing"
	signed := sign(t, sign(t, bigMessage(), e.edSimple()), bad)
	base := goroutineBaseline()
	res, err := e.verify(t, signed, auth.DKIMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Header order: the last signature added comes first.
	wantResults(t, res, auth.ResultPermError, auth.ResultPass)
	waitGoroutines(t, base)
}

func TestDKIMKeyLookupFailureIsTempError(t *testing.T) {
	for _, mode := range []testdns.Mode{testdns.Drop, testdns.ServFail, testdns.Garbage, testdns.Slow(time.Hour)} {
		t.Run(mode.String(), func(t *testing.T) {
			e := newDKIMEnv(t)
			signed := sign(t, bigMessage(), e.rsaRelaxed())
			e.srv.SetMode(mode)
			res, err := e.verify(t, signed, auth.DKIMOptions{Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			wantResults(t, res, auth.ResultTempError)
		})
	}
}

func TestDKIMNoSignature(t *testing.T) {
	e := newDKIMEnv(t)
	base := goroutineBaseline()
	v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{})
	feed(t, v, bigMessage(), 65535, false)
	res, err := v.Close(testCtx(t))
	if err != nil || len(res) != 0 {
		t.Fatalf("Close = %+v, %v; want no results", res, err)
	}
	if n := e.srv.Queries(); n != 0 {
		t.Errorf("%d DNS queries for an unsigned message", n)
	}
	if got := auth.EvaluateDKIM(res, "example.com", false).String(); got != "dkim=none" {
		t.Errorf("verdict = %q", got)
	}
	waitGoroutines(t, base)
}

func TestDKIMMaxSignatures(t *testing.T) {
	e := newDKIMEnv(t)
	signed := testMessage
	for range 7 {
		signed = sign(t, signed, e.edSimple())
	}
	t.Run("parallel", func(t *testing.T) {
		res, err := e.verify(t, signed, auth.DKIMOptions{MaxSignatures: 5})
		if !errors.Is(err, auth.ErrTooManySignatures) {
			t.Errorf("Close error = %v, want ErrTooManySignatures", err)
		}
		wantResults(t, res, auth.ResultPass, auth.ResultPass, auth.ResultPass, auth.ResultPass, auth.ResultPass)
		if q := e.srv.Queries(); q > 5 {
			t.Errorf("%d key lookups for 5 signatures", q)
		}
	})
	t.Run("single", func(t *testing.T) {
		res, err := e.verify(t, signed, auth.DKIMOptions{MaxSignatures: 1})
		if !errors.Is(err, auth.ErrTooManySignatures) {
			t.Errorf("Close error = %v, want ErrTooManySignatures", err)
		}
		wantResults(t, res, auth.ResultPass)
	})
}

func TestDKIMMaxBytes(t *testing.T) {
	e := newDKIMEnv(t)
	signed := sign(t, bigMessage(), e.rsaRelaxed())
	tests := []struct {
		name     string
		maxBytes int64
	}{
		{"exceeded in the body", 64 << 10},
		{"exceeded in the header", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := goroutineBaseline()
			res, err := e.verify(t, signed, auth.DKIMOptions{MaxBytes: tt.maxBytes})
			if !errors.Is(err, auth.ErrMessageTooLarge) {
				t.Errorf("Close error = %v, want ErrMessageTooLarge", err)
			}
			wantResults(t, res, auth.ResultFail)
			if res[0].Domain != "example.com" {
				t.Errorf("Domain = %q", res[0].Domain)
			}
			waitGoroutines(t, base)
		})
	}
	t.Run("message just under the limit passes", func(t *testing.T) {
		res, err := e.verify(t, signed, auth.DKIMOptions{MaxBytes: int64(len(signed))})
		if err != nil {
			t.Fatal(err)
		}
		wantResults(t, res, auth.ResultPass)
	})
}

func TestDKIMAbort(t *testing.T) {
	e := newDKIMEnv(t)
	signed := sign(t, bigMessage(), e.rsaRelaxed())
	fields, body := milterFields(t, signed, false)

	t.Run("mid-body", func(t *testing.T) {
		base := goroutineBaseline()
		v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{})
		for _, f := range fields {
			v.Header(f[0], f[1])
		}
		v.EndHeaders()
		v.Body([]byte(body[:len(body)/2]))
		v.Abort()
		waitGoroutines(t, base)
		if _, err := v.Close(testCtx(t)); !errors.Is(err, auth.ErrAborted) {
			t.Errorf("Close after Abort: %v", err)
		}
		v.Abort() // again: no-op
	})

	// With several signatures go-msgauth copies the message into one pipe
	// per signature; ending the stream with an error instead of EOF
	// would leave those goroutines blocked.
	t.Run("mid-body with two signatures", func(t *testing.T) {
		fields2, body2 := milterFields(t, sign(t, signed, e.edSimple()), false)
		base := goroutineBaseline()
		v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{})
		for _, f := range fields2 {
			v.Header(f[0], f[1])
		}
		v.EndHeaders()
		v.Body([]byte(body2[:len(body2)/2]))
		v.Abort()
		waitGoroutines(t, base)
	})

	t.Run("mid-header", func(t *testing.T) {
		base := goroutineBaseline()
		v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{})
		v.Header(fields[0][0], fields[0][1])
		v.Abort()
		waitGoroutines(t, base)
	})

	// A body write waits for the key lookup; Abort from another goroutine
	// releases it at once and ends the verification.
	t.Run("while a body write waits for DNS", func(t *testing.T) {
		e.srv.SetMode(testdns.Drop)
		defer e.srv.SetMode(testdns.Normal)
		base := goroutineBaseline()
		v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{Timeout: time.Minute})
		fed := make(chan struct{})
		go func() {
			defer close(fed)
			for _, f := range fields {
				v.Header(f[0], f[1])
			}
			v.EndHeaders()
			for b := []byte(body); len(b) > 0; b = b[min(len(b), 65535):] {
				v.Body(b[:min(len(b), 65535)])
			}
		}()
		time.Sleep(50 * time.Millisecond) // let the writer block (not asserted)
		v.Abort()
		select {
		case <-fed:
		case <-testCtx(t).Done():
			t.Fatal("the feeding goroutine is still blocked after Abort")
		}
		waitGoroutines(t, base)
	})

	t.Run("after Close", func(t *testing.T) {
		v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{})
		feed(t, v, signed, 65535, false)
		res1, err1 := v.Close(testCtx(t))
		v.Abort()
		res2, err2 := v.Close(testCtx(t))
		if err1 != nil || err2 != nil || len(res1) != 1 || len(res2) != 1 || res2[0].Result != auth.ResultPass {
			t.Errorf("Close, Abort, Close: %+v %v / %+v %v", res1, err1, res2, err2)
		}
	})
}

// Close gives up when its context ends before the key lookup does.
func TestDKIMCloseContext(t *testing.T) {
	e := newDKIMEnv(t)
	// No body: EndHeaders returns once the header is read, while the key
	// lookup is pending (a body write would wait for the lookup).
	msg := strings.TrimSuffix(testMessage, "Hello Bob,\r\n\r\nthis message is signed.\r\n")
	fields, _ := milterFields(t, sign(t, msg, e.rsaRelaxed()), false)
	e.srv.SetMode(testdns.Drop)
	base := goroutineBaseline()
	v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{Timeout: time.Minute})
	for _, f := range fields {
		v.Header(f[0], f[1])
	}
	v.EndHeaders()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := v.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close error = %v, want deadline exceeded", err)
	}
	wantResults(t, res, auth.ResultTempError)
	waitGoroutines(t, base)
}

func TestDKIMWithoutBody(t *testing.T) {
	e := newDKIMEnv(t)
	msg := strings.TrimSuffix(testMessage, "Hello Bob,\r\n\r\nthis message is signed.\r\n")
	signed := sign(t, msg, e.rsaRelaxed())
	fields, _ := milterFields(t, signed, false)

	t.Run("end of headers then close", func(t *testing.T) {
		v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{})
		for _, f := range fields {
			v.Header(f[0], f[1])
		}
		v.EndHeaders()
		res, err := v.Close(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		wantResults(t, res, auth.ResultPass)
	})
	t.Run("close without end of headers", func(t *testing.T) {
		v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{})
		for _, f := range fields {
			v.Header(f[0], f[1])
		}
		res, err := v.Close(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		wantResults(t, res, auth.ResultPass)
	})
}

func TestDKIMHeaderAfterEndIsAnError(t *testing.T) {
	e := newDKIMEnv(t)
	v := auth.NewDKIMVerifier(e.r, auth.DKIMOptions{})
	defer v.Abort()
	v.EndHeaders()
	if err := v.Header("X-Late", "x"); err == nil {
		t.Error("Header after EndHeaders succeeded")
	}
}

func TestDKIMVerdict(t *testing.T) {
	e := newDKIMEnv(t)
	other := signSpec{"attacker.test", "rsa", e.rsa, dkim.CanonicalizationRelaxed}
	e.srv.SetTXT("rsa._domainkey.attacker.test", "v=DKIM1; k=rsa; p="+mustPub(t, e.rsa))

	tests := []struct {
		name   string
		msg    string
		sender string
		strict bool
		want   string
		proven bool
	}{
		{"aligned relaxed", sign(t, testMessage, e.rsaRelaxed()), "bounce@mail.example.com", false, "dkim=pass d=example.com aligned=relaxed", true},
		{"not aligned strict", sign(t, testMessage, e.rsaRelaxed()), "bounce@mail.example.com", true, "dkim=pass d=example.com aligned=no", false},
		{"aligned strict", sign(t, testMessage, e.rsaRelaxed()), "alice@Example.COM", true, "dkim=pass d=example.com aligned=strict", true},
		{"pass for another domain", sign(t, testMessage, other), "alice@example.com", false, "dkim=pass d=attacker.test aligned=no", false},
		{"aligned one among others", sign(t, sign(t, testMessage, e.rsaRelaxed()), other), "alice@example.com", false, "dkim=pass d=example.com aligned=relaxed", true},
		{"broken signature", strings.Replace(sign(t, testMessage, other), "signed", "forged", 1), "alice@attacker.test", false, "dkim=fail d=attacker.test", false},
		{"null sender never aligns", sign(t, testMessage, e.rsaRelaxed()), "", false, "dkim=pass d=example.com aligned=no", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.verify(t, tt.msg, auth.DKIMOptions{})
			if err != nil {
				t.Fatal(err)
			}
			v := auth.EvaluateDKIM(res, envelope.Parse(tt.sender).LowerDomain(), tt.strict)
			if got := v.String(); got != tt.want || v.Proven() != tt.proven {
				t.Errorf("verdict %q proven=%v, want %q proven=%v", got, v.Proven(), tt.want, tt.proven)
			}
		})
	}
}

func mustPub(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pub)
}
