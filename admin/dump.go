package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// dump writes every record as a JSON line with its stored state and the
// lifetime it has left, the input of restore.
func (h *handler) dump(w http.ResponseWriter, r *http.Request, _ string) {
	wall := time.Now()
	streamLines(w, func(emit func(*Entry) error) error {
		return h.cfg.Store.Scan(r.Context(), "", func(key string, rec *greylist.Record, expires time.Time) error {
			e := h.cls.entry(key, rec, expires, wall, wall, true)
			return emit(&e)
		})
	})
}

// Restored is the answer to a restore: the records written, and what
// stopped it, if anything.
type Restored struct {
	Restored int    `json:"restored"`
	Error    string `json:"error,omitempty"`
}

// restore writes each record of a dump with its remaining lifetime,
// replacing a record of the same key. Records the store holds and the
// dump does not are kept. It stops at the first bad line, keeping what it
// wrote before.
func (h *handler) restore(w http.ResponseWriter, r *http.Request, _ string) {
	n, err := h.restoreLines(r.Context(), r)
	if n > 0 {
		h.log.Info("admin: records restored", "restored", n, "peer", peer(r))
	}
	if err != nil {
		status := http.StatusBadRequest
		var se storeError
		if errors.As(err, &se) {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, Restored{Restored: n, Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, Restored{Restored: n})
}

// storeError marks a restore failure that is the store's.
type storeError struct{ error }

func (e storeError) Unwrap() error { return e.error }

func (h *handler) restoreLines(ctx context.Context, r *http.Request) (int, error) {
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for lineNo := 1; sc.Scan(); lineNo++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(text))
		if err := dec.Decode(&e); err != nil {
			return n, fmt.Errorf("line %d: %v", lineNo, err)
		}
		rec, ttl, err := e.record()
		if err != nil {
			return n, fmt.Errorf("line %d: %v", lineNo, err)
		}
		if err := h.cfg.Store.Put(ctx, e.Key, rec, ttl); err != nil {
			return n, storeError{fmt.Errorf("line %d: store: %w", lineNo, err)}
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("reading the dump after %d records: %v", n, err)
	}
	return n, nil
}
