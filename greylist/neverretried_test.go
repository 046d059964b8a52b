package greylist

import (
	"testing"
	"time"
)

func TestNeverRetried(t *testing.T) {
	p := DefaultPolicy
	first := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	pending := &Record{State: Pending, First: first, Last: first, Count: 1}
	passed := &Record{State: Passed, First: first, Last: first, Count: 1}
	for _, tt := range []struct {
		name string
		rec  *Record
		at   time.Duration
		want bool
	}{
		{"pending inside its window is still expected", pending, p.RetryWindow, false},
		{"pending past its window was never retried", pending, p.RetryWindow + time.Second, true},
		{"passed is not", passed, p.RetryWindow + time.Hour, false},
	} {
		if got := p.NeverRetried(tt.rec, first.Add(tt.at)); got != tt.want {
			t.Errorf("%s: got %v", tt.name, got)
		}
	}
	// The record outlives its window by the grace, for the report.
	_, ttl, _ := p.Step(nil, first)
	if ttl != p.RetryWindow+NeverRetriedGrace {
		t.Errorf("new record ttl %v, want window + grace", ttl)
	}
}
