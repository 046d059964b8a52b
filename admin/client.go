package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/internal/sockspec"
)

// Client talks to a running daemon's admin API. Its methods mirror the
// endpoints; listings and dumps stream.
type Client struct {
	addr string // as given, for errors
	base string // http://HOST:PORT or http://localhost for a unix socket
	hc   *http.Client
}

// dialTimeout bounds connecting to the daemon.
const dialTimeout = 5 * time.Second

// NewClient returns a client of the admin API at addr: "HOST:PORT"
// (optionally "inet:HOST:PORT", as in the configuration) or "unix:/path".
func NewClient(addr string) *Client {
	d := &net.Dialer{Timeout: dialTimeout}
	tr := &http.Transport{
		Proxy:                 nil, // never through a proxy: the daemon is local
		DialContext:           d.DialContext,
		ResponseHeaderTimeout: 5 * time.Minute, // a deletion of many records answers at the end
		MaxIdleConns:          2,
	}
	c := &Client{addr: addr, hc: &http.Client{Transport: tr}}
	network, address, err := sockspec.Parse(addr)
	if err != nil {
		network, address = "tcp", addr // a plain host:port
	}
	if network == "unix" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", address)
		}
		c.base = "http://localhost"
		return c
	}
	c.base = "http://" + address
	return c
}

// Error is an error answer of the API.
type Error struct {
	StatusCode int
	Message    string
	body       []byte // the answer, for endpoints that say more
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.StatusCode)
}

// IsNotFound reports whether err is the API's "no such record".
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// do sends a request and returns the response of a 2xx status, or the
// API's error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, ctype string, body io.Reader) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %w", c.addr, unwrapURLError(err))
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	var eb errorBody
	if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
		eb.Error = strings.TrimSpace(string(data))
		if eb.Error == "" {
			eb.Error = resp.Status
		}
	}
	return nil, &Error{StatusCode: resp.StatusCode, Message: eb.Error, body: data}
}

// unwrapURLError drops net/http's "Get "http://…": " prefix, which names a
// URL the admin never typed.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// call sends a JSON request (nil: none) and decodes a JSON answer into out.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	resp, err := c.do(ctx, method, path, nil, ctype, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("admin API at %s: bad answer: %v", c.addr, err)
	}
	return nil
}

// Health returns nil when the daemon reports itself healthy, else why not.
func (c *Client) Health(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodGet, "/healthz", nil, "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Records calls fn for each record f selects, as the daemon streams them.
func (c *Client) Records(ctx context.Context, f Filter, fn func(Entry) error) error {
	return c.lines(ctx, "/v1/records", f.query(), fn)
}

// NeverRetried calls fn for each triplet whose retry window closed without
// a retry, among those f selects.
func (c *Client) NeverRetried(ctx context.Context, f Filter, fn func(Entry) error) error {
	return c.lines(ctx, "/v1/never-retried", f.query(), fn)
}

func (c *Client) lines(ctx context.Context, path string, q url.Values, fn func(Entry) error) error {
	resp, err := c.do(ctx, http.MethodGet, path, q, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("admin API at %s: bad line: %v", c.addr, err)
		}
		if l.Error != "" {
			return &Error{StatusCode: http.StatusServiceUnavailable, Message: l.Error}
		}
		if err := fn(l.Entry); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("admin API at %s: %w", c.addr, err)
	}
	return nil
}

// Record returns the record at key; IsNotFound tells an absent one.
func (c *Client) Record(ctx context.Context, key string) (Entry, error) {
	var e Entry
	err := c.call(ctx, http.MethodGet, "/v1/records/"+url.PathEscape(key), nil, &e)
	return e, err
}

// Delete deletes the record at key; IsNotFound tells an absent one.
func (c *Client) Delete(ctx context.Context, key string) error {
	var d Deleted
	return c.call(ctx, http.MethodDelete, "/v1/records/"+url.PathEscape(key), nil, &d)
}

// DeleteMatching deletes every record f selects (an empty filter needs
// f.All) and returns how many it deleted.
func (c *Client) DeleteMatching(ctx context.Context, f Filter) (int, error) {
	var d Deleted
	err := c.call(ctx, http.MethodPost, "/v1/delete", f, &d)
	return d.Deleted, err
}

// Pass marks a triplet passed and returns its record.
func (c *Client) Pass(ctx context.Context, req PassRequest) (Entry, error) {
	var e Entry
	err := c.call(ctx, http.MethodPost, "/v1/pass", req, &e)
	return e, err
}

// Explain says what the daemon would answer now for one recipient.
func (c *Client) Explain(ctx context.Context, req ExplainRequest) (Explanation, error) {
	var ex Explanation
	err := c.call(ctx, http.MethodPost, "/v1/explain", req, &ex)
	return ex, err
}

// Stats returns the record counts and the daemon's health.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := c.call(ctx, http.MethodGet, "/v1/stats", nil, &s)
	return s, err
}

// Dump writes every record to w as JSON lines, as the daemon streams them,
// and returns how many it wrote.
func (c *Client) Dump(ctx context.Context, w io.Writer) (int, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/dump", nil, "", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() {
		b := sc.Bytes()
		if bytes.HasPrefix(b, []byte(`{"error":`)) {
			var l line
			json.Unmarshal(b, &l)
			return n, &Error{StatusCode: http.StatusServiceUnavailable, Message: l.Error}
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return n, err
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("admin API at %s: %w", c.addr, err)
	}
	return n, nil
}

// Restore sends a dump read from r and returns how many records the
// daemon wrote, which on error are those before the line it names.
func (c *Client) Restore(ctx context.Context, r io.Reader) (int, error) {
	res, err := c.restore(ctx, r, nil)
	return res.Restored, err
}

// Merge sends records in the dump format read from r, to be merged into
// those of the same keys the store holds (see the restore endpoint), and
// returns how many the daemon wrote and left unchanged, which on error
// are those before the line it names.
func (c *Client) Merge(ctx context.Context, r io.Reader) (Restored, error) {
	return c.restore(ctx, r, url.Values{"merge": {"true"}})
}

func (c *Client) restore(ctx context.Context, r io.Reader, q url.Values) (Restored, error) {
	var res Restored
	resp, err := c.do(ctx, http.MethodPost, "/v1/restore", q, "application/x-ndjson", r)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) {
			// The error answer of a restore carries the counts.
			json.Unmarshal(ae.body, &res)
			res.Error = ""
		}
		return res, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return Restored{}, fmt.Errorf("admin API at %s: bad answer: %v", c.addr, err)
	}
	return res, nil
}
