package admin

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// Kinds of record, the values of Entry.Kind and of the kind filter.
const (
	KindTriplet = "triplet" // t:CLIENT SENDER RECIPIENT
	KindClient  = "client"  // c:CLIENT, the auto-whitelist counter
	KindDomain  = "domain"  // d:DOMAIN, a proven domain's trust counter
	KindOther   = "other"
)

// States an entry is listed with, the values of Entry.State and of the
// state filter: the engine's record statuses. A dump carries the stored
// states (pending, passed) only.
const (
	StatePending         = string(greylist.StatusPending)
	StatePassed          = string(greylist.StatusPassed)
	StateNeverRetried    = string(greylist.StatusNeverRetried)
	StateAutoWhitelisted = string(greylist.StatusAutoWhitelisted)
	StateCounting        = string(greylist.StatusCounting)
	StateTrusted         = string(greylist.StatusTrusted)
)

// Entry is one record as the admin API shows it: a line of a listing or
// of a dump.
type Entry struct {
	Key  string `json:"key"`
	Kind string `json:"kind"`
	// Client, Sender and Rcpt are the parts of the key (Client only, for
	// a client record).
	Client string    `json:"client,omitempty"`
	Domain string    `json:"domain,omitempty"` // of a domain record
	Sender string    `json:"sender,omitempty"`
	Rcpt   string    `json:"rcpt,omitempty"`
	State  string    `json:"state"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
	Count  uint32    `json:"count"`
	// Expires is when the store forgets the record; nil: never.
	Expires *time.Time `json:"expires,omitempty"`
	// TTLSeconds is the lifetime left, rounded up; 0 means no expiry.
	TTLSeconds int64 `json:"ttl_seconds"`
}

// line is a line of a JSON lines answer: an entry, or the error that cut
// the answer short (the status line was already sent).
type line struct {
	Entry
	Error string `json:"error,omitempty"`
}

// classifier turns stored records into entries, with the engine's idea of
// what a record means.
type classifier struct{ engine *greylist.Engine }

func kindOf(key string) string {
	switch {
	case strings.HasPrefix(key, greylist.TripletPrefix):
		return KindTriplet
	case strings.HasPrefix(key, greylist.ClientPrefix):
		return KindClient
	case strings.HasPrefix(key, greylist.DomainPrefix):
		return KindDomain
	}
	return KindOther
}

// state is the state a record is listed with at now.
func (c classifier) state(key string, rec *greylist.Record, now time.Time) string {
	return string(c.engine.Status(key, rec, now))
}

// entry builds the entry of a record. now is the policy clock (states);
// wall is the store's clock (expiries are wall-clock times in every store).
// stored keeps the stored state, for a dump.
func (c classifier) entry(key string, rec *greylist.Record, expires time.Time, now, wall time.Time, stored bool) Entry {
	e := Entry{
		Key:   key,
		Kind:  kindOf(key),
		First: rec.First.UTC(),
		Last:  rec.Last.UTC(),
		Count: rec.Count,
	}
	switch e.Kind {
	case KindTriplet:
		e.Client, e.Sender, e.Rcpt, _ = greylist.SplitTripletKey(key)
	case KindClient:
		e.Client = strings.TrimPrefix(key, greylist.ClientPrefix)
	case KindDomain:
		e.Domain = strings.TrimPrefix(key, greylist.DomainPrefix)
	}
	if stored {
		e.State = rec.State.String()
	} else {
		e.State = c.state(key, rec, now)
	}
	if !expires.IsZero() {
		x := expires.UTC()
		e.Expires = &x
		e.TTLSeconds = ttlSeconds(expires, wall)
	}
	return e
}

// ttlSeconds is the time from now to expires in whole seconds, rounded up
// and at least 1 (0 would mean "no expiry").
func ttlSeconds(expires, now time.Time) int64 {
	s := int64(math.Ceil(expires.Sub(now).Seconds()))
	if s < 1 {
		return 1
	}
	return s
}

// maxTTLSeconds bounds a restored lifetime (a century).
const maxTTLSeconds = 100 * 366 * 24 * 3600

// record is the stored record of a restored entry, and its time to live.
func (e *Entry) record() (*greylist.Record, time.Duration, error) {
	if e.Key == "" {
		return nil, 0, fmt.Errorf("no key")
	}
	var st greylist.State
	switch e.State {
	case StatePending, StateNeverRetried:
		st = greylist.Pending
	case StatePassed, StateAutoWhitelisted, StateCounting:
		st = greylist.Passed
	default:
		return nil, 0, fmt.Errorf("%s: unknown state %q", e.Key, e.State)
	}
	if e.First.IsZero() || e.Last.IsZero() {
		return nil, 0, fmt.Errorf("%s: no first or last time", e.Key)
	}
	if e.TTLSeconds < 0 || e.TTLSeconds > maxTTLSeconds {
		return nil, 0, fmt.Errorf("%s: ttl_seconds %d out of range", e.Key, e.TTLSeconds)
	}
	rec := &greylist.Record{State: st, First: e.First, Last: e.Last, Count: e.Count}
	return rec, time.Duration(e.TTLSeconds) * time.Second, nil
}
