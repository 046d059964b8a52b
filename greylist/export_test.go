package greylist

import "github.com/milter-grey/milter-grey/auth"

// The engine's tests are in the external package greylist_test, so that
// they can use testutil/memstore (which imports greylist). These are the
// internals they reach.

var (
	Exemption  = exemption
	DKIMProof  = dkimProof
	SameRecord = sameRecord
	FmtRecord  = fmtRecord
)

// SetSPF records r as m's SPF result, as if the checker had run.
func SetSPF(m *Message, r auth.SPFResult) { m.spf, m.spfDone = r, true }
