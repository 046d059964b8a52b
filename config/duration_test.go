package config

import (
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want time.Duration
	}{
		{"go seconds", "300s", 300 * time.Second},
		{"go minutes", "5m", 5 * time.Minute},
		{"go hours", "48h", 48 * time.Hour},
		{"days", "2d", 2 * day},
		{"max_age default in days", "35d", 35 * day},
		{"a week", "1w", 7 * day},
		{"weeks then days", "1w2d", 9 * day},
		{"days then go units", "2d12h", 2*day + 12*time.Hour},
		{"go compound", "1h30m", 90 * time.Minute},
		{"surrounding spaces are ignored", " 5m ", 5 * time.Minute},
		{"weeks, days and go units", "1w1d1h", 8*day + time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			if err != nil {
				t.Fatalf("ParseDuration(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseDuration(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseDurationErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"not a duration", "abc"},
		{"negative", "-5m"},
		{"unknown unit", "5x"},
		{"unit without a number", "d"},
		{"no unit", "300"},
		{"words", "5 minutes"},
		{"a sign after days would subtract", "2d-1h"},
		{"a sign after days", "2d+1h"},
		{"weeks after days", "1d1w"},
		{"overflowing weeks", "20000w"},
		{"overflowing sum", "15000w65000d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			if err == nil {
				t.Fatalf("ParseDuration(%q) = %v, want an error", tc.in, got)
			}
			if tc.in != "" && !strings.Contains(err.Error(), tc.in) {
				t.Errorf("error %q does not quote the value %q", err, tc.in)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   time.Duration
		want string
	}{
		{"whole days in days", 35 * day, "35d"},
		{"one day", day, "1d"},
		{"weeks as days", 14 * day, "14d"},
		{"retry_window default", 48 * time.Hour, "2d"},
		{"not whole days in go syntax", 36 * time.Hour, "36h0m0s"},
		{"minutes in go syntax", 5 * time.Minute, "5m0s"},
		{"zero", 0, "0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := formatDuration(tc.in)
			if s != tc.want {
				t.Errorf("formatDuration(%v) = %q, want %q", tc.in, s, tc.want)
			}
			if tc.in == 0 {
				return
			}
			back, err := ParseDuration(s)
			if err != nil {
				t.Fatalf("round trip: ParseDuration(%q): %v", s, err)
			}
			if back != tc.in {
				t.Errorf("round trip: %v -> %q -> %v", tc.in, s, back)
			}
		})
	}
}

// A duration in TOML goes through UnmarshalText and MarshalText.
func TestDurationTextRoundTrip(t *testing.T) {
	for _, in := range []string{"2d", "35d", "5m0s", "36h0m0s"} {
		t.Run(in, func(t *testing.T) {
			var d Duration
			if err := d.UnmarshalText([]byte(in)); err != nil {
				t.Fatal(err)
			}
			out, err := d.MarshalText()
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != in {
				t.Errorf("MarshalText(UnmarshalText(%q)) = %q", in, out)
			}
		})
	}
}
