package admin

import (
	"net/http"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// Stats counts the records by kind and state, with the daemon's health.
type Stats struct {
	Triplets struct {
		Pending      int `json:"pending"`
		Passed       int `json:"passed"`
		NeverRetried int `json:"never_retried"`
	} `json:"triplets"`
	Clients struct {
		AutoWhitelisted int `json:"auto_whitelisted"`
		Counting        int `json:"counting"`
	} `json:"clients"`
	Domains struct {
		Trusted  int `json:"trusted"`
		Counting int `json:"counting"`
	} `json:"domains"`
	// Other counts records of no known kind (none, normally).
	Other int `json:"other"`
	// StoreUp is false during a store outage (the last decision failed).
	StoreUp bool `json:"store_up"`
	// SessionsOpen is the number of milter connections open now.
	SessionsOpen *int `json:"sessions_open,omitempty"`
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	var s Stats
	now := h.cfg.Now()
	err := h.cfg.Store.Scan(r.Context(), "", func(key string, rec *greylist.Record, _ time.Time) error {
		kind := kindOf(key)
		switch state := h.cls.state(key, rec, now); {
		case kind == KindTriplet && state == StatePending:
			s.Triplets.Pending++
		case kind == KindTriplet && state == StatePassed:
			s.Triplets.Passed++
		case kind == KindTriplet && state == StateNeverRetried:
			s.Triplets.NeverRetried++
		case kind == KindClient && state == StateAutoWhitelisted:
			s.Clients.AutoWhitelisted++
		case kind == KindClient && state == StateCounting:
			s.Clients.Counting++
		case kind == KindDomain && state == StateTrusted:
			s.Domains.Trusted++
		case kind == KindDomain && state == StateCounting:
			s.Domains.Counting++
		default:
			s.Other++
		}
		return nil
	})
	if err != nil {
		h.fail(w, http.StatusServiceUnavailable, "store: %v", err)
		return
	}
	s.StoreUp = h.cfg.Engine.StoreHealthy()
	if h.cfg.Sessions != nil {
		n := h.cfg.Sessions()
		s.SessionsOpen = &n
	}
	writeJSON(w, http.StatusOK, s)
}
