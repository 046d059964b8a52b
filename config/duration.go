package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration in TOML: Go syntax ("90s", "1h30m") plus "d"
// and "w" for days and weeks ("35d"), which is how admins think of expiry.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String is the duration as the file would say it: whole days in days.
func (d Duration) String() string { return formatDuration(time.Duration(d)) }

// ParseDuration reads a duration as the configuration writes it: Go
// syntax, with leading weeks and days ("1w2d12h").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	// A sign is never meaningful here, and after a d or w term Go would
	// subtract: "2d-1h" must not quietly mean 47h.
	if strings.ContainsAny(s, "+-") {
		return 0, fmt.Errorf("negative or signed duration %q", s)
	}
	var total time.Duration
	rest := s
	// Peel leading "<n>w" and "<n>d" terms, then hand the rest to Go.
	for _, unit := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		i := strings.Index(rest, unit.suffix)
		if i < 0 {
			continue
		}
		n, err := strconv.ParseUint(rest[:i], 10, 16)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q (use e.g. 300s, 5m, 48h, 2d, 5w)", s)
		}
		if n > uint64((math.MaxInt64-total)/unit.d) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		total += time.Duration(n) * unit.d
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q (use e.g. 300s, 5m, 48h, 2d, 5w)", s)
		}
		if d > math.MaxInt64-total {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		total += d
	}
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if total < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return total, nil
}

func formatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
