package greylist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"
)

var recordCases = []struct {
	name string
	rec  Record
}{
	{"new pending triplet", Record{State: Pending, First: t0, Last: t0, Count: 1}},
	{"early retries counted", Record{State: Pending, First: t0, Last: t0.Add(90 * time.Second), Count: 4}},
	{"passed triplet", Record{State: Passed, First: t0, Last: t0.Add(30 * 24 * time.Hour), Count: 123}},
	{"last before first (clock went back)", Record{State: Passed, First: t0, Last: t0.Add(-time.Hour), Count: 2}},
	{"largest count", Record{State: Passed, First: t0, Last: t0, Count: math.MaxUint32}},
	{"zero count", Record{State: Pending, First: t0, Last: t0, Count: 0}},
	{"before 1970", Record{State: Pending, First: time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC),
		Last: time.Date(1969, 7, 21, 2, 56, 15, 0, time.UTC), Count: 1}},
	{"zero time", Record{State: Passed}},
}

func TestRecordRoundTrip(t *testing.T) {
	for _, c := range recordCases {
		t.Run(c.name, func(t *testing.T) {
			b, err := c.rec.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var got Record
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary(%x): %v", b, err)
			}
			if !sameRecord(&got, &c.rec) {
				t.Errorf("round trip = %s, want %s", fmtRecord(&got), fmtRecord(&c.rec))
			}
		})
	}
}

func TestRecordKeepsMilliseconds(t *testing.T) {
	first := t0.Add(123*time.Millisecond + 456*time.Microsecond + 789)
	last := first.Add(time.Minute + 999*time.Microsecond)
	r := Record{State: Passed, First: first, Last: last, Count: 3}
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Record
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	want := Record{State: Passed, First: first.Truncate(time.Millisecond), Last: last.Truncate(time.Millisecond), Count: 3}
	if !sameRecord(&got, &want) {
		t.Errorf("got %s, want %s (times at millisecond precision)", fmtRecord(&got), fmtRecord(&want))
	}
}

func TestRecordAppendBinary(t *testing.T) {
	r := Record{State: Pending, First: t0, Last: t0, Count: 1}
	want, _ := r.MarshalBinary()
	got, err := r.AppendBinary([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Errorf("AppendBinary = %x, want prefix + %x", got, want)
	}
}

// enc builds an encoding field by field.
func enc(head []byte, first, delta int64, count uint64) []byte {
	b := append([]byte(nil), head...)
	b = binary.AppendVarint(b, first)
	b = binary.AppendVarint(b, delta)
	return binary.AppendUvarint(b, count)
}

func TestRecordRejectsMalformed(t *testing.T) {
	good := enc([]byte{recordVersion, byte(Pending)}, t0.UnixMilli(), 0, 1)
	overflow := bytes.Repeat([]byte{0xff}, binary.MaxVarintLen64+1)
	cases := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"version only", []byte{recordVersion}},
		{"version 0", append([]byte{0}, good[1:]...)},
		{"version 2", append([]byte{2}, good[1:]...)},
		{"state 0", append([]byte{recordVersion, 0}, good[2:]...)},
		{"state 3", append([]byte{recordVersion, 3}, good[2:]...)},
		{"no first", []byte{recordVersion, byte(Pending)}},
		{"truncated first", []byte{recordVersion, byte(Pending), 0x80}},
		{"overlong first", append([]byte{recordVersion, byte(Pending)}, overflow...)},
		{"no last", binary.AppendVarint([]byte{recordVersion, byte(Pending)}, 1)},
		{"truncated last", append(binary.AppendVarint([]byte{recordVersion, byte(Pending)}, 1), 0x80)},
		{"no count", binary.AppendVarint(binary.AppendVarint([]byte{recordVersion, byte(Pending)}, 1), 0)},
		{"truncated count", append(binary.AppendVarint(binary.AppendVarint([]byte{recordVersion, byte(Passed)}, 1), 0), 0x80)},
		{"count above uint32", enc([]byte{recordVersion, byte(Passed)}, 1, 0, math.MaxUint32+1)},
		{"count at uint64 max", enc([]byte{recordVersion, byte(Passed)}, 1, 0, math.MaxUint64)},
		{"one trailing byte", append(append([]byte(nil), good...), 0)},
		{"a second record appended", append(append([]byte(nil), good...), good...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Record{State: Passed, Count: 42}
			err := r.UnmarshalBinary(c.in)
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("UnmarshalBinary(%x) = %v, want ErrBadRecord", c.in, err)
			}
			if r.State != Passed || r.Count != 42 {
				t.Errorf("a rejected record changed its receiver: %s", fmtRecord(&r))
			}
		})
	}
}

// FuzzRecord checks that any bytes a store hands back decode or are
// rejected as ErrBadRecord, and that a decoded record re-encodes to itself.
func FuzzRecord(f *testing.F) {
	for _, c := range recordCases {
		b, _ := c.rec.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{recordVersion, byte(Pending), 0x80})
	f.Add(enc([]byte{recordVersion, byte(Passed)}, math.MaxInt64, math.MaxInt64, math.MaxUint32))
	f.Add(enc([]byte{recordVersion, byte(Passed)}, math.MinInt64, math.MinInt64, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := r.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrBadRecord) {
				t.Fatalf("UnmarshalBinary(%x) = %v, not an ErrBadRecord", b, err)
			}
			return
		}
		b2, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary(%s): %v", fmtRecord(&r), err)
		}
		var r2 Record
		if err := r2.UnmarshalBinary(b2); err != nil {
			t.Fatalf("re-encoded %s as %x, which does not decode: %v", fmtRecord(&r), b2, err)
		}
		if !sameRecord(&r, &r2) {
			t.Fatalf("decode(encode(%s)) = %s", fmtRecord(&r), fmtRecord(&r2))
		}
		if b3, _ := r2.MarshalBinary(); !bytes.Equal(b2, b3) {
			t.Fatalf("encoding is not stable: %x then %x", b2, b3)
		}
	})
}
