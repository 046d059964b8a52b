package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// errStop ends a Scan early on purpose.
var errStop = errors.New("stop")

// deleteBatch is how many keys a filtered deletion collects per scan: it
// never deletes under a running scan, nor holds every key in memory.
const deleteBatch = 5000

// scan calls fn for every record m selects, as an entry.
func (h *handler) scan(ctx context.Context, m *matcher, fn func(e *Entry) error) error {
	now, wall := h.cfg.Now(), time.Now()
	return h.cfg.Store.Scan(ctx, m.prefix, func(key string, rec *greylist.Record, expires time.Time) error {
		e := h.cls.entry(key, rec, expires, now, wall, false)
		if !m.match(&e) {
			return nil
		}
		return fn(&e)
	})
}

// streamLines writes entries as JSON lines; an error after the first line
// becomes a last line {"error": …}.
func streamLines(w http.ResponseWriter, produce func(emit func(e *Entry) error) error) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // keys hold "<>"; the answers are never HTML
	var werr error
	err := produce(func(e *Entry) error {
		if werr = enc.Encode(e); werr != nil {
			return werr
		}
		return nil
	})
	if err != nil && werr == nil && !errors.Is(err, errStop) {
		enc.Encode(line{Error: err.Error()})
	}
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	f, err := filterFromQuery(r.URL.Query())
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	h.listFiltered(w, r, f)
}

// neverRetried lists the triplets whose retry window closed without a
// retry: they stay listed for greylist.NeverRetriedGrace.
func (h *handler) neverRetried(w http.ResponseWriter, r *http.Request) {
	f, err := filterFromQuery(r.URL.Query())
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	if f.State != "" && f.State != StateNeverRetried {
		h.fail(w, http.StatusBadRequest, "state %q: this listing is of never-retried triplets", f.State)
		return
	}
	f.State = StateNeverRetried
	h.listFiltered(w, r, f)
}

func (h *handler) listFiltered(w http.ResponseWriter, r *http.Request, f Filter) {
	m, err := f.compile(h.cfg.Engine.Config().Delimiters)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	streamLines(w, func(emit func(*Entry) error) error {
		n := 0
		return h.scan(r.Context(), m, func(e *Entry) error {
			if err := emit(e); err != nil {
				return err
			}
			n++
			if f.Limit > 0 && n >= f.Limit {
				return errStop
			}
			return nil
		})
	})
}

func (h *handler) show(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	rec, exp, err := h.cfg.Store.Get(ctx, key)
	switch {
	case errors.Is(err, greylist.ErrNotFound):
		h.fail(w, http.StatusNotFound, "no record %q", key)
	case err != nil:
		h.fail(w, http.StatusServiceUnavailable, "store: %v", err)
	default:
		writeJSON(w, http.StatusOK, h.cls.entry(key, rec, exp, h.cfg.Now(), time.Now(), false))
	}
}

// Deleted is the answer to a deletion.
type Deleted struct {
	Deleted int `json:"deleted"`
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	_, _, err := h.cfg.Store.Get(ctx, key)
	if errors.Is(err, greylist.ErrNotFound) {
		h.fail(w, http.StatusNotFound, "no record %q", key)
		return
	}
	if err == nil {
		err = h.cfg.Store.Delete(ctx, key)
	}
	if err != nil {
		h.fail(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	h.log.Info("admin: record deleted", "key", key, "peer", peer(r))
	writeJSON(w, http.StatusOK, Deleted{Deleted: 1})
}

// deleteMatching deletes every record a filter selects. An empty filter
// must say "all": true.
func (h *handler) deleteMatching(w http.ResponseWriter, r *http.Request) {
	var f Filter
	if err := decode(r, &f); err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	if f.Empty() && !f.All {
		h.fail(w, http.StatusBadRequest, "an empty filter deletes every record: set \"all\": true to mean it")
		return
	}
	if f.Limit != 0 {
		h.fail(w, http.StatusBadRequest, "limit does not apply to a deletion")
		return
	}
	m, err := f.compile(h.cfg.Engine.Config().Delimiters)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	n, err := h.deleteAll(r.Context(), m)
	if n > 0 {
		h.log.Info("admin: records deleted", "filter", filterString(f), "deleted", n, "peer", peer(r))
	}
	if err != nil {
		h.fail(w, http.StatusServiceUnavailable, "store: %v (%d records deleted)", err, n)
		return
	}
	writeJSON(w, http.StatusOK, Deleted{Deleted: n})
}

// deleteAll deletes what m selects, a batch of keys per scan.
func (h *handler) deleteAll(ctx context.Context, m *matcher) (int, error) {
	n := 0
	for {
		var keys []string
		err := h.scan(ctx, m, func(e *Entry) error {
			keys = append(keys, e.Key)
			if len(keys) >= deleteBatch {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return n, err
		}
		for _, k := range keys {
			if err := h.cfg.Store.Delete(ctx, k); err != nil {
				return n, err
			}
			n++
		}
		if len(keys) < deleteBatch {
			return n, nil
		}
	}
}

// PassRequest marks a triplet passed: by its parts, or by its key; the key
// d:DOMAIN makes a proven domain trusted.
type PassRequest struct {
	// Client is an IP address (keyed by its network, as the milter keys
	// it), a network in CIDR notation, or spf:DOMAIN.
	Client string `json:"client,omitempty"`
	Sender string `json:"sender,omitempty"` // "" or "<>": the null sender
	Rcpt   string `json:"rcpt,omitempty"`
	Key    string `json:"key,omitempty"`
}

// pass writes the triplet as passed now, for max_age: its next mail passes
// at once, as if it had been retried. Or it trusts a domain (d:DOMAIN).
func (h *handler) pass(w http.ResponseWriter, r *http.Request) {
	var req PassRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	key, err := h.passKey(req)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if domain, ok := strings.CutPrefix(key, greylist.DomainPrefix); ok {
		if key, err = h.cfg.Engine.TrustDomain(ctx, domain); err != nil {
			h.fail(w, http.StatusBadRequest, "%v", err)
			return
		}
		h.log.Info("admin: domain trusted", "key", key, "peer", peer(r))
	} else {
		if err := h.cfg.Engine.Pass(ctx, key); err != nil {
			h.fail(w, http.StatusServiceUnavailable, "store: %v", err)
			return
		}
		h.log.Info("admin: triplet passed", "key", key, "peer", peer(r))
	}
	// Answer with the record as stored.
	stored, exp, err := h.cfg.Store.Get(ctx, key)
	if err != nil {
		h.fail(w, http.StatusServiceUnavailable, "store: read back %q: %v", key, err)
		return
	}
	writeJSON(w, http.StatusOK, h.cls.entry(key, stored, exp, h.cfg.Now(), time.Now(), false))
}

// passKey builds the key a pass request names.
func (h *handler) passKey(req PassRequest) (string, error) {
	if req.Key != "" {
		if req.Client != "" || req.Sender != "" || req.Rcpt != "" {
			return "", errors.New("give either key, or client, sender and rcpt")
		}
		_, _, _, triplet := greylist.SplitTripletKey(req.Key)
		if !triplet && !strings.HasPrefix(req.Key, greylist.DomainPrefix) {
			return "", fmt.Errorf("key %q is not a triplet key (t:CLIENT SENDER RECIPIENT) nor a domain (d:DOMAIN)", req.Key)
		}
		return req.Key, nil
	}
	if req.Client == "" || req.Rcpt == "" {
		return "", errors.New("client and rcpt are required (sender \"\" is the null sender)")
	}
	client, err := h.cfg.Engine.ClientPart(req.Client)
	if err != nil {
		return "", err
	}
	delims := h.cfg.Engine.Config().Delimiters
	return greylist.TripletKey(client,
		greylist.NormalizeSender(req.Sender, delims),
		greylist.NormalizeRecipient(req.Rcpt, delims)), nil
}

// peer names the client of a request for the log.
func peer(r *http.Request) string {
	if isUnixPeer(r.RemoteAddr) {
		return "unix"
	}
	return r.RemoteAddr
}

func filterString(f Filter) string {
	var parts []string
	for _, p := range []struct{ k, v string }{
		{"client", f.Client}, {"sender", f.Sender}, {"rcpt", f.Rcpt}, {"state", f.State}, {"kind", f.Kind},
	} {
		if p.v != "" {
			parts = append(parts, p.k+"="+p.v)
		}
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, " ")
}
