package greylist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// State is the state of a record.
type State uint8

const (
	// Pending: a triplet seen but not yet retried after the delay.
	Pending State = 1
	// Passed: a triplet retried after the delay, or a client whose passes are
	// counted for the auto-whitelist.
	Passed State = 2
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Passed:
		return "passed"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Record is what a store keeps per key. Times are kept in the record, not
// taken from the store's TTL, so that decisions use the engine's clock and a
// record moved between stores keeps its history.
type Record struct {
	State State
	// First is when the triplet was first seen (for a client record: when
	// its first pass was counted).
	First time.Time
	// Last is when the record was last written: the pass time of a triplet,
	// refreshed at most once a minute; for a client, its last counted pass.
	Last time.Time
	// Count is the number of attempts of a pending triplet, the number of
	// deliveries of a passed one, or the counted passes of a client.
	Count uint32
}

// recordVersion is the first byte of an encoded record.
const recordVersion = 1

// ErrBadRecord is wrapped by UnmarshalRecord for undecodable input.
var ErrBadRecord = errors.New("greylist: bad record encoding")

// MarshalBinary encodes r compactly: a version byte, the state, then First
// and Last as Unix milliseconds and Count as varints (typically 12–16 bytes).
func (r *Record) MarshalBinary() ([]byte, error) {
	return r.AppendBinary(make([]byte, 0, 2+3*binary.MaxVarintLen64))
}

// AppendBinary appends the encoding of r to b.
func (r *Record) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, recordVersion, byte(r.State))
	b = binary.AppendVarint(b, r.First.UnixMilli())
	b = binary.AppendVarint(b, r.Last.UnixMilli()-r.First.UnixMilli())
	b = binary.AppendUvarint(b, uint64(r.Count))
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary produced.
func (r *Record) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("%w: %d bytes", ErrBadRecord, len(b))
	}
	if b[0] != recordVersion {
		return fmt.Errorf("%w: version %d", ErrBadRecord, b[0])
	}
	st := State(b[1])
	if st != Pending && st != Passed {
		return fmt.Errorf("%w: state %d", ErrBadRecord, b[1])
	}
	b = b[2:]
	first, n := binary.Varint(b)
	if n <= 0 {
		return fmt.Errorf("%w: first", ErrBadRecord)
	}
	b = b[n:]
	last, n := binary.Varint(b)
	if n <= 0 {
		return fmt.Errorf("%w: last", ErrBadRecord)
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count > 1<<32-1 {
		return fmt.Errorf("%w: count", ErrBadRecord)
	}
	if n != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(b)-n)
	}
	*r = Record{
		State: st,
		First: time.UnixMilli(first),
		Last:  time.UnixMilli(first + last),
		Count: uint32(count),
	}
	return nil
}
