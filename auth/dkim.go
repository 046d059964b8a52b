package auth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/emersion/go-msgauth/dkim"
)

// DKIM defaults.
const (
	DefaultDKIMMaxSignatures = 5
	DefaultDKIMMaxBytes      = 10 << 20
)

// Errors returned by DKIMVerifier.Close. Whatever the error, the results
// returned with it are sound: a ResultPass among them is a verified
// signature.
var (
	// ErrTooManySignatures: only the first MaxSignatures signatures were
	// verified.
	ErrTooManySignatures = errors.New("dkim: too many signatures, only the first ones verified")
	// ErrMessageTooLarge: the message exceeded MaxBytes and was not
	// verified; every signature is reported as fail.
	ErrMessageTooLarge = errors.New("dkim: message too large to verify")
	// ErrAborted: Abort was called before Close.
	ErrAborted = errors.New("dkim: verification aborted")
)

// DKIMOptions tunes a DKIM verifier. The zero value works.
type DKIMOptions struct {
	// MaxSignatures is the number of signatures verified, in header
	// order; 0 means DefaultDKIMMaxSignatures.
	MaxSignatures int
	// MaxBytes bounds the header and body bytes fed to the verifier; 0
	// means DefaultDKIMMaxBytes. Beyond it the message is not verified.
	MaxBytes int64
	// Timeout bounds each key lookup; 0 means DefaultTimeout. Signatures
	// are verified in parallel, so it also bounds the wait at Close.
	Timeout time.Duration
	// LeadingSpaceKept says header values are delivered with the
	// whitespace after the colon kept (go-milter's OptHeaderLeadingSpace
	// negotiated with the MTA): each field is rebuilt as name+":"+value,
	// exactly as received, so c=simple header canonicalization verifies
	// whatever the spacing. Without it values are taken as Postfix sends
	// them by default, with the one space after the colon removed, and
	// rebuilt as name+": "+value: exact for the usual "Name: value"
	// (nearly all mail, and every c=relaxed signature), but a c=simple
	// signature over a field written "Name:value" or "Name:<tab>value"
	// then fails.
	LeadingSpaceKept bool
}

// DKIMResult is the verification of one DKIM-Signature.
type DKIMResult struct {
	// Domain is the signing domain (d=), lower-cased.
	Domain string
	// Selector is the key selector (s=).
	Selector string
	// Result is pass, fail (the signature or body hash does not verify,
	// or the message was too large), permerror (malformed signature, no
	// or bad key) or temperror (the key lookup failed or timed out).
	Result Result
	// Err explains a result other than pass.
	Err error
}

type dkimState int

const (
	dkimHeaders dkimState = iota // collecting header fields
	dkimBody                     // header ended, feeding the body
	dkimClosed                   // Close or Abort called
)

// DKIMVerifier verifies the DKIM signatures of one message, fed piece by
// piece as the milter callbacks deliver it: Header for each field,
// EndHeaders, Body for each chunk, then Close. Abort ends it early.
//
// Header fields are kept until EndHeaders. A message without a
// DKIM-Signature field costs nothing more: its body is not fed to
// go-msgauth and Close returns no results (dkim=none). Otherwise a
// goroutine runs go-msgauth's verifier on the far end of a pipe; body
// writes may wait for its key lookups (at most Timeout). Close and Abort
// always end that goroutine.
//
// The feeding methods are meant to be called from one goroutine; Abort may
// be called from any goroutine, at any time.
type DKIMVerifier struct {
	r    *net.Resolver
	opts DKIMOptions

	mu       sync.Mutex
	state    dkimState
	header   bytes.Buffer
	sigs     []sigTags
	fed      int64
	tooLarge bool
	closed   bool         // Close has returned
	results  []DKIMResult // what Close returned
	closeErr error

	// Set by EndHeaders when the message has signatures.
	pw     *io.PipeWriter
	cancel context.CancelFunc
	done   chan struct{}
	// Written by the verifying goroutine before it closes done.
	verifs []*dkim.Verification
	verr   error
}

// sigTags are the d= and s= tags of one DKIM-Signature field, read here to
// report the selector (go-msgauth does not) and to name the signatures of
// a message that is not verified.
type sigTags struct {
	domain, selector string
}

// NewDKIMVerifier returns a verifier for one message, looking keys up
// through r.
func NewDKIMVerifier(r *net.Resolver, opts DKIMOptions) *DKIMVerifier {
	if opts.MaxSignatures <= 0 {
		opts.MaxSignatures = DefaultDKIMMaxSignatures
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultDKIMMaxBytes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &DKIMVerifier{r: r, opts: opts}
}

var errOutOfOrder = errors.New("dkim: header field after the end of the header")

// Header adds one header field, in message order. value is as go-milter
// delivers it: folded lines joined by "\n", and (unless LeadingSpaceKept)
// the space after the colon removed.
func (v *DKIMVerifier) Header(name, value string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch v.state {
	case dkimClosed:
		return nil
	case dkimBody:
		return errOutOfOrder
	}
	if strings.EqualFold(strings.TrimSpace(name), "DKIM-Signature") {
		v.sigs = append(v.sigs, parseSigTags(value))
	}
	if v.tooLarge {
		return nil
	}
	field := v.rebuildField(name, value)
	v.fed += int64(len(field))
	if v.fed > v.opts.MaxBytes {
		v.tooLarge = true
		v.header = bytes.Buffer{}
		return nil
	}
	v.header.WriteString(field)
	return nil
}

// rebuildField turns a milter header callback back into the field's wire
// form, CRLF line ends included.
func (v *DKIMVerifier) rebuildField(name, value string) string {
	// Postfix joins folded lines with "\n"; other MTAs may keep "\r\n".
	value = strings.ReplaceAll(value, "\r\n", "\n")
	value = strings.ReplaceAll(value, "\n", "\r\n")
	if v.opts.LeadingSpaceKept {
		return name + ":" + value + "\r\n"
	}
	return name + ": " + value + "\r\n"
}

// EndHeaders marks the end of the header. It starts the verification when
// the message has signatures.
func (v *DKIMVerifier) EndHeaders() error {
	v.mu.Lock()
	if v.state != dkimHeaders {
		v.mu.Unlock()
		return nil
	}
	hdr := v.startLocked()
	v.mu.Unlock()
	return v.write(hdr)
}

// startLocked ends the header phase and, when there is something to
// verify, starts the verifying goroutine. It returns the header bytes to
// feed it (nil when there is nothing to verify).
func (v *DKIMVerifier) startLocked() []byte {
	v.state = dkimBody
	if v.tooLarge || len(v.sigs) == 0 {
		v.header = bytes.Buffer{}
		return nil
	}
	v.header.WriteString("\r\n")
	v.fed += 2
	hdr := v.header.Bytes()
	v.header = bytes.Buffer{}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	v.pw, v.cancel, v.done = pw, cancel, make(chan struct{})
	go v.verify(ctx, cancel, pr)
	return hdr
}

// verify runs go-msgauth on the reading end of the pipe.
func (v *DKIMVerifier) verify(ctx context.Context, cancel context.CancelFunc, pr *io.PipeReader) {
	defer close(v.done)
	defer cancel()
	verifs, err := dkim.VerifyWithOptions(pr, &dkim.VerifyOptions{
		LookupTXT:        v.lookupTXT(ctx),
		MaxVerifications: v.opts.MaxSignatures,
	})
	// Verify may return before reading the whole message (a signature it
	// rejects before the body hash, e.g. no key): keep reading until the
	// writer closes, or the next body write would block forever.
	_, _ = io.Copy(io.Discard, pr)
	v.verifs, v.verr = verifs, err
}

// lookupTXT looks DKIM keys up with the Timeout, classifying errors as
// go-msgauth needs: NXDOMAIN/NODATA -> permerror, any other failure ->
// temperror.
func (v *DKIMVerifier) lookupTXT(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, v.opts.Timeout)
		defer cancel()
		txts, err := v.r.LookupTXT(ctx, rooted(name))
		return txts, classifyDNSError(name, err)
	}
}

// Body adds a chunk of the body (CRLF line ends, as the MTA sends it).
func (v *DKIMVerifier) Body(chunk []byte) error {
	v.mu.Lock()
	var hdr []byte
	if v.state == dkimHeaders {
		hdr = v.startLocked() // no end-of-header callback: the body ends it
	}
	if v.state != dkimBody || v.tooLarge || (v.pw == nil && hdr == nil) {
		v.mu.Unlock()
		return nil
	}
	if v.fed+int64(len(chunk)) > v.opts.MaxBytes {
		v.tooLarge = true
		v.stopLocked()
		v.mu.Unlock()
		return nil
	}
	v.fed += int64(len(chunk))
	v.mu.Unlock()
	if err := v.write(hdr); err != nil {
		return err
	}
	return v.write(chunk)
}

// write feeds the verifier. A pipe closed by Abort or the size limit meanwhile
// is not an error.
func (v *DKIMVerifier) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	v.mu.Lock()
	pw := v.pw
	v.mu.Unlock()
	if pw == nil {
		return nil
	}
	if _, err := pw.Write(b); err != nil && !errors.Is(err, io.ErrClosedPipe) {
		return err
	}
	return nil
}

// stopLocked makes the verifying goroutine finish quickly: pending key
// lookups are cancelled and the message ends here.
//
// The pipe is closed with a plain EOF, never CloseWithError: when more than
// one signature is verified, go-msgauth copies the message into one pipe
// per signature and, if reading the message fails, returns without closing
// them, leaving its per-signature goroutines blocked for ever.
func (v *DKIMVerifier) stopLocked() {
	if v.cancel != nil {
		v.cancel()
	}
	if v.pw != nil {
		v.pw.Close()
	}
}

// Close ends the message and returns one result per verified signature
// (none without signatures). It waits for pending key lookups, at most
// Timeout, or until ctx is done: then the verification is aborted and the
// signatures are reported as temperror with ctx's error. See the Err*
// variables for the errors returned with results. Calling Close again
// returns the same.
func (v *DKIMVerifier) Close(ctx context.Context) ([]DKIMResult, error) {
	v.mu.Lock()
	if v.state == dkimClosed {
		defer v.mu.Unlock()
		if !v.closed {
			return nil, ErrAborted
		}
		return v.results, v.closeErr
	}
	var hdr []byte
	if v.state == dkimHeaders {
		hdr = v.startLocked() // no body at all
	}
	v.mu.Unlock()
	if err := v.write(hdr); err != nil {
		v.Abort()
		return nil, err
	}

	v.mu.Lock()
	if v.state == dkimClosed { // aborted meanwhile
		v.mu.Unlock()
		return nil, ErrAborted
	}
	v.state = dkimClosed
	pw, done, tooLarge := v.pw, v.done, v.tooLarge
	v.mu.Unlock()

	var results []DKIMResult
	var err error
	switch {
	case done == nil && tooLarge:
		results, err = v.allResults(ResultFail, ErrMessageTooLarge), ErrMessageTooLarge
	case done == nil:
		// No signature: nothing to verify.
	default:
		pw.Close()
		select {
		case <-done:
			results, err = v.collect()
		case <-ctx.Done():
			v.mu.Lock()
			v.stopLocked()
			v.mu.Unlock()
			<-done
			results, err = v.allResults(ResultTempError, ctx.Err()), ctx.Err()
		}
	}

	v.mu.Lock()
	v.closed, v.results, v.closeErr = true, results, err
	v.mu.Unlock()
	return results, err
}

// collect turns go-msgauth's verifications into results, once the
// verifying goroutine has ended.
func (v *DKIMVerifier) collect() ([]DKIMResult, error) {
	if v.tooLarge {
		return v.allResults(ResultFail, ErrMessageTooLarge), ErrMessageTooLarge
	}
	err := v.verr
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// An unexpected failure. go-msgauth then clears the Err of the
		// verification that failed, which would read as a pass: use
		// none of them.
		return v.allResults(ResultTempError, err), err
	}
	if err != nil {
		err = ErrTooManySignatures
	}
	results := make([]DKIMResult, 0, len(v.verifs))
	for i, vf := range v.verifs {
		var tags sigTags
		if i < len(v.sigs) {
			tags = v.sigs[i]
		}
		r := DKIMResult{Domain: strings.ToLower(vf.Domain), Selector: tags.selector, Err: vf.Err}
		if r.Domain == "" {
			r.Domain = tags.domain
		}
		switch {
		case vf.Err == nil:
			r.Result = ResultPass
		case dkim.IsTempFail(vf.Err):
			r.Result = ResultTempError
		case dkim.IsPermFail(vf.Err):
			r.Result = ResultPermError
		default:
			r.Result = ResultFail
		}
		results = append(results, r)
	}
	return results, err
}

// allResults reports every signature (up to MaxSignatures) with res.
func (v *DKIMVerifier) allResults(res Result, err error) []DKIMResult {
	n := min(len(v.sigs), v.opts.MaxSignatures)
	results := make([]DKIMResult, 0, n)
	for _, s := range v.sigs[:n] {
		results = append(results, DKIMResult{Domain: s.domain, Selector: s.selector, Result: res, Err: err})
	}
	return results
}

// Abort stops the verification and waits for its goroutine to end (at once
// for lookups through a resolver from NewResolver). It is safe to call at
// any time, more than once, and after Close.
func (v *DKIMVerifier) Abort() {
	v.mu.Lock()
	if v.state == dkimClosed && v.done == nil {
		v.mu.Unlock()
		return
	}
	v.state = dkimClosed
	v.header = bytes.Buffer{}
	v.stopLocked()
	done := v.done
	v.mu.Unlock()
	if done != nil {
		<-done
	}
}

// parseSigTags reads d= and s= from a DKIM-Signature value.
func parseSigTags(value string) sigTags {
	var t sigTags
	for _, part := range strings.Split(value, ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "d":
			if t.domain == "" {
				t.domain = strings.ToLower(stripSpace(val))
			}
		case "s":
			if t.selector == "" {
				t.selector = stripSpace(val)
			}
		}
	}
	return t
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}
