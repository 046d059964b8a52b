// Package greylist is milter-grey's policy engine: it turns one recipient of
// one SMTP transaction into a decision (pass or greylist, with a reason).
//
// It holds the triplet keys and their normalisation, the exemption lists,
// the triplet state machine, the client auto-whitelist, and the Store
// interface the state lives in. It knows nothing of the milter protocol and
// takes its clock from the caller, so every rule is testable alone.
package greylist
