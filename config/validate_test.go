package config

import (
	"log/slog"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     slog.Level
	}{
		{"debug", "debug", slog.LevelDebug},
		{"info", "info", slog.LevelInfo},
		{"warn", "warn", slog.LevelWarn},
		{"error", "error", slog.LevelError},
		{"upper case", "WARN", slog.LevelWarn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLevel(tc.in)
			if err != nil || got != tc.want {
				t.Errorf("ParseLevel(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
	for _, in := range []string{"", "loud", "warning", "verbose"} {
		t.Run("not a level: "+in, func(t *testing.T) {
			if l, err := ParseLevel(in); err == nil {
				t.Errorf("ParseLevel(%q) = %v, want an error", in, l)
			}
		})
	}
}

// The facilities syslog.conf(5) names, with their RFC 5424 codes.
func TestParseFacility(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"user", 1}, {"mail", 2}, {"daemon", 3}, {"auth", 4}, {"syslog", 5}, {"lpr", 6},
		{"news", 7}, {"uucp", 8}, {"cron", 9}, {"authpriv", 10}, {"ftp", 11},
		{"local0", 16}, {"local3", 19}, {"local7", 23},
	} {
		if got, err := ParseFacility(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseFacility(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "Mail", "kern", "local8", "local", "local07", "mail.info", "LOG_MAIL", "2"} {
		if f, err := ParseFacility(in); err == nil {
			t.Errorf("ParseFacility(%q) = %d, want an error", in, f)
		}
	}
}
