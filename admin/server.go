// Package admin is milter-grey's admin HTTP API, served by the daemon on
// its admin listener, and the client the admin commands use to reach it.
//
// Reads (the records, stats, explain, a dump, /metrics and /healthz) are
// open to whoever reaches the listener; writes (delete, pass, restore)
// only to peers on loopback or on the unix socket. The API talks JSON:
// listings and dumps are JSON lines, one record a line, streamed.
//
// It is not an authentication layer: the listener is loopback or a unix
// socket by default, and the socket's mode says who may use it.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/metrics"
)

// Config configures the admin API.
type Config struct {
	// Store is the daemon's store and Engine its engine; both required.
	Store  greylist.Store
	Engine *greylist.Engine
	// Metrics, when set, is served on /metrics.
	Metrics *metrics.Metrics
	// Ready, when set, is asked by /healthz after the store and the lists.
	Ready func() error
	// Sessions, when set, reports the open milter sessions in stats.
	Sessions func() int
	// Now is the policy clock (states, pass times); nil: the Engine's.
	// Lifetimes are measured on the wall clock, as every store keeps them.
	Now func() time.Time
	// Log receives a line per write (delete, pass, restore); nil discards.
	Log *slog.Logger
}

// Timeouts of the server's own store work.
const (
	healthTimeout  = 2 * time.Second
	requestTimeout = 30 * time.Second // one record's read or write, explain
	maxBody        = 64 << 10         // a JSON request (not a restore)
	maxLine        = 64 << 10         // a line of a restore
)

// healthKey is read by /healthz to prove the store answers; it never
// exists (no prefix milter-grey writes).
const healthKey = "healthz:probe"

type handler struct {
	cfg      Config
	cls      classifier
	log      *slog.Logger
	promhttp http.Handler // nil without metrics
	mux      *http.ServeMux
}

// NewHandler returns the admin API. It panics without a Store or an
// Engine, a programming error.
func NewHandler(cfg Config) http.Handler {
	if cfg.Store == nil || cfg.Engine == nil {
		panic("admin: NewHandler needs a Store and an Engine")
	}
	if cfg.Now == nil {
		cfg.Now = cfg.Engine.Now
	}
	h := &handler{cfg: cfg, cls: classifier{cfg.Engine}, log: cfg.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics != nil {
		h.promhttp = cfg.Metrics.Handler()
	}
	h.mux = h.routes()
	return h
}

// routes maps the endpoints. A GET pattern also answers HEAD. A record's
// key is the rest of the path, unescaped: it may hold '/' (a network),
// which clients send as %2F.
func (h *handler) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", h.metrics)
	mux.HandleFunc("GET /healthz", h.health)
	mux.HandleFunc("GET /v1/records", h.list)
	mux.HandleFunc("GET /v1/records/{key...}", h.record(h.show))
	mux.HandleFunc("DELETE /v1/records/{key...}", h.record(h.write(h.delete)))
	mux.HandleFunc("GET /v1/never-retried", h.neverRetried)
	mux.HandleFunc("POST /v1/delete", h.write(h.jsonOnly(h.deleteMatching)))
	mux.HandleFunc("POST /v1/pass", h.write(h.jsonOnly(h.pass)))
	mux.HandleFunc("POST /v1/explain", h.jsonOnly(h.explain))
	mux.HandleFunc("GET /v1/dump", h.dump)
	mux.HandleFunc("POST /v1/restore", h.write(h.jsonOnly(h.restore)))
	mux.HandleFunc("GET /v1/stats", h.stats)
	return mux
}

// ServeHTTP serves the routes, and answers what they do not match (404, or
// 405 with Allow) with the API's JSON error body: ServeMux's own answers
// are plain text.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, pattern := h.mux.Handler(r)
	if pattern != "" {
		h.mux.ServeHTTP(w, r) // which sets the path values; Handler does not
		return
	}
	unmatched := &headerOnly{header: http.Header{}}
	route.ServeHTTP(unmatched, r)
	if unmatched.status == http.StatusMethodNotAllowed {
		allow := unmatched.header.Get("Allow")
		w.Header().Set("Allow", allow)
		h.fail(w, http.StatusMethodNotAllowed, "%s: method %s not allowed (use %s)", r.URL.Path, r.Method, allow)
		return
	}
	h.fail(w, http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
}

// headerOnly keeps the status and header of ServeMux's answer to an
// unmatched request, and drops its plain-text body.
type headerOnly struct {
	header http.Header
	status int
}

func (w *headerOnly) Header() http.Header         { return w.header }
func (w *headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (w *headerOnly) WriteHeader(status int)      { w.status = status }

// record serves fn for /v1/records/{key...} when the key is not empty:
// "/v1/records/" names no endpoint.
func (h *handler) record(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("key") == "" {
			h.fail(w, http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
			return
		}
		fn(w, r)
	}
}

// write refuses fn to peers that may not write (writeAllowed), and tells
// the engine after fn that the store changed: what it cached of the
// records may be stale now.
func (h *handler) write(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := writeAllowed(r); err != nil {
			h.fail(w, http.StatusForbidden, "%v", err)
			return
		}
		fn(w, r)
		h.cfg.Engine.StoreChanged()
	}
}

// jsonOnly refuses fn a request whose body is not JSON (jsonBody).
func (h *handler) jsonOnly(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := jsonBody(r); err != nil {
			h.fail(w, http.StatusUnsupportedMediaType, "%v", err)
			return
		}
		fn(w, r)
	}
}

// writeAllowed lets through writes from loopback and unix-socket peers,
// and among those only requests naming the host by address or
// "localhost", so that a web page whose name was rebound to 127.0.0.1
// cannot write either.
func writeAllowed(r *http.Request) error {
	if isUnixPeer(r.RemoteAddr) {
		return nil
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("writes are only accepted from loopback or the unix socket, not from %s", r.RemoteAddr)
	}
	name := r.Host
	if hn, _, err := net.SplitHostPort(name); err == nil {
		name = hn
	}
	name = strings.Trim(name, "[]")
	if _, err := netip.ParseAddr(name); err != nil && !strings.EqualFold(name, "localhost") && name != "" {
		return fmt.Errorf("writes need the Host to be an address or localhost, not %q", r.Host)
	}
	return nil
}

// isUnixPeer: a client of a unix socket has no address, which net/http
// reports as "" or "@" (or a path, for a bound client socket).
func isUnixPeer(remote string) bool {
	return remote == "" || remote == "@" || strings.HasPrefix(remote, "/") || strings.HasPrefix(remote, "@")
}

// jsonBody requires a JSON body type on POST: a browser cannot send one
// to another site without asking first (CORS), which this API never allows.
func jsonBody(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || mt == "application/x-ndjson") {
		return nil
	}
	return fmt.Errorf("Content-Type %q: want application/json (or application/x-ndjson for a restore)", ct)
}

// errorBody is every error answer.
type errorBody struct {
	Error string `json:"error"`
}

func (h *handler) fail(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, errorBody{Error: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // keys hold "<>"; the answers are never HTML
	enc.Encode(v)
}

// decode reads a JSON request body into v, refusing unknown fields.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v", err)
	}
	return nil
}

func (h *handler) metrics(w http.ResponseWriter, r *http.Request) {
	if h.promhttp == nil {
		h.fail(w, http.StatusNotFound, "metrics are not enabled")
		return
	}
	h.promhttp.ServeHTTP(w, r)
}

// health answers 200 "ok" when the store answers a read and the lists are
// loaded, 503 with the reason otherwise.
func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := h.healthy(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (h *handler) healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	if _, _, err := h.cfg.Store.Get(ctx, healthKey); err != nil && !errors.Is(err, greylist.ErrNotFound) {
		return fmt.Errorf("store unreachable: %v", err)
	}
	if l := h.cfg.Engine.Lists(); l == nil || l.Trusted == nil {
		return errors.New("lists not loaded")
	}
	if h.cfg.Ready != nil {
		if err := h.cfg.Ready(); err != nil {
			return err
		}
	}
	return nil
}
