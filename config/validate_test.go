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
