package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// dump writes every record as a JSON line with its stored state and the
// lifetime it has left, the input of restore.
func (h *handler) dump(w http.ResponseWriter, r *http.Request) {
	wall := time.Now()
	streamLines(w, func(emit func(*Entry) error) error {
		return h.cfg.Store.Scan(r.Context(), "", func(key string, rec *greylist.Record, expires time.Time) error {
			e := h.cls.entry(key, rec, expires, wall, wall, true)
			return emit(&e)
		})
	})
}

// DumpEntry is the dump line of a record with ttl to live from now (0: no
// expiry): what a dump writes for it and restore reads back. Importers
// from other greylisting daemons write their records in this form.
func DumpEntry(key string, rec *greylist.Record, ttl time.Duration, now time.Time) Entry {
	var expires time.Time
	if ttl > 0 {
		expires = now.Add(ttl)
	}
	return classifier{}.entry(key, rec, expires, now, now, true)
}

// Restored is the answer to a restore: the records written, the lines a
// merge left unchanged, and what stopped it, if anything.
type Restored struct {
	Restored int `json:"restored"`
	// Unchanged counts, in a merge, the lines that changed nothing: the
	// store's record already held as much, or the merged record's lifetime
	// under the daemon's policy had run out.
	Unchanged int    `json:"unchanged,omitempty"`
	Error     string `json:"error,omitempty"`
}

// restore writes each record of a dump with its remaining lifetime,
// replacing a record of the same key. Records the store holds and the
// dump does not are kept. It stops at the first bad line, keeping what it
// wrote before.
//
// With ?merge=true (an import from another greylisting daemon) a record
// is merged into the store's record of the same key (greylist.Merge)
// instead of replacing it, atomically, and lives as the daemon's policy
// says from its times (the dump's lifetime is not used): an import cannot
// undo what the daemon learned meanwhile.
func (h *handler) restore(w http.ResponseWriter, r *http.Request) {
	merge := false
	if v := r.URL.Query().Get("merge"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			h.fail(w, http.StatusBadRequest, "merge=%q: want true or false", v)
			return
		}
		merge = b
	}
	res, err := h.restoreLines(r.Context(), r, merge)
	if res.Restored > 0 || res.Unchanged > 0 {
		h.log.Info("admin: records restored", "restored", res.Restored, "unchanged", res.Unchanged, "merge", merge, "peer", peer(r))
	}
	if err != nil {
		status := http.StatusBadRequest
		var se storeError
		if errors.As(err, &se) {
			status = http.StatusServiceUnavailable
		}
		res.Error = err.Error()
		writeJSON(w, status, res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// storeError marks a restore failure that is the store's.
type storeError struct{ error }

func (e storeError) Unwrap() error { return e.error }

func (h *handler) restoreLines(ctx context.Context, r *http.Request, merge bool) (Restored, error) {
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var res Restored
	for lineNo := 1; sc.Scan(); lineNo++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var e Entry
		dec := json.NewDecoder(bytes.NewReader(text))
		if err := dec.Decode(&e); err != nil {
			return res, fmt.Errorf("line %d: %v", lineNo, err)
		}
		rec, ttl, err := e.record()
		if err != nil {
			return res, fmt.Errorf("line %d: %v", lineNo, err)
		}
		wrote := true
		if merge {
			wrote, err = h.cfg.Engine.MergeRecord(ctx, e.Key, rec)
		} else {
			err = h.cfg.Store.Put(ctx, e.Key, rec, ttl)
		}
		if err != nil {
			return res, storeError{fmt.Errorf("line %d: store: %w", lineNo, err)}
		}
		if wrote {
			res.Restored++
		} else {
			res.Unchanged++
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("reading the dump after %d records: %v", res.Restored+res.Unchanged, err)
	}
	return res, nil
}
