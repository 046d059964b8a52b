package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/envelope"
	"github.com/milter-grey/milter-grey/greylist"
)

// ExplainRequest is one recipient of an imagined SMTP transaction.
type ExplainRequest struct {
	Client   string `json:"client"`              // the client's IP address
	Helo     string `json:"helo,omitempty"`      // its HELO name (SPF of the null sender)
	From     string `json:"from,omitempty"`      // envelope sender; "" or "<>" is the null sender
	To       string `json:"to"`                  // the recipient
	Name     string `json:"name,omitempty"`      // the client's confirmed host name, if any
	AuthUser string `json:"auth_user,omitempty"` // SASL login, if any
}

// Explanation is what the daemon would answer now, and why.
type Explanation struct {
	Action string `json:"action"` // pass, greylist, defer
	Reason string `json:"reason"`
	Match  string `json:"match,omitempty"` // the list entry that decided
	Key    string `json:"key,omitempty"`   // the triplet's key
	// Trigger is why a new triplet is greylisted under greylist =
	// "suspicious", or the DNS blocklist that lists the client.
	Trigger string `json:"trigger,omitempty"`
	SPF     string `json:"spf,omitempty"` // the SPF result, when the decision needed it
	// RetryInSeconds is, when greylisted, how long until a retry passes.
	RetryInSeconds int64 `json:"retry_in_seconds"`
	// WaitedSeconds is, for a triplet that would pass as retried, how long
	// it waited.
	WaitedSeconds int64 `json:"waited_seconds"`
	// Err is the store error, for reason store-error.
	Err string `json:"err,omitempty"`
	// Record is the triplet's record as stored now, if it has one.
	Record *Entry `json:"record,omitempty"`
}

// explain runs the engine's decision on a read-only view of the store,
// with SPF evaluated as for the milter.
func (h *handler) explain(w http.ResponseWriter, r *http.Request) {
	var req ExplainRequest
	if err := decode(r, &req); err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	ip := greylist.ParseClientAddr(req.Client)
	switch {
	case !ip.IsValid():
		h.fail(w, http.StatusBadRequest, "client %q: want an IP address", req.Client)
		return
	case strings.TrimSpace(req.To) == "":
		h.fail(w, http.StatusBadRequest, "to: a recipient is required")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	msg := &greylist.Message{
		Client:     ip,
		ClientName: req.Name,
		Helo:       req.Helo,
		AuthUser:   req.AuthUser,
		Sender:     envelope.Parse(req.From), // "" and "<>" are the null sender
	}
	d := h.cfg.Engine.Explain(ctx, msg, envelope.Parse(req.To))
	ex := Explanation{
		Action:         d.Action.String(),
		Reason:         string(d.Reason),
		Match:          d.Match,
		Key:            d.Key,
		Trigger:        string(d.Trigger),
		SPF:            d.SPF,
		RetryInSeconds: int64((d.RetryIn + time.Second - 1) / time.Second),
		WaitedSeconds:  int64(d.Waited / time.Second),
	}
	if d.Err != nil {
		ex.Err = d.Err.Error()
	}
	if d.Key != "" && d.Err == nil {
		rec, exp, err := h.cfg.Store.Get(ctx, d.Key)
		if err == nil {
			e := h.cls.entry(d.Key, rec, exp, h.cfg.Now(), time.Now(), false)
			ex.Record = &e
		} else if !errors.Is(err, greylist.ErrNotFound) {
			ex.Err = err.Error()
		}
	}
	writeJSON(w, http.StatusOK, ex)
}
