package config

import (
	"strings"
	"testing"
)

func TestCheckStore(t *testing.T) {
	for _, tt := range []struct {
		spec string
		ok   bool
	}{
		{"/var/lib/milter-grey", true},
		{"badger:/var/lib/milter-grey", true},
		{"redis://127.0.0.1:6379/0", true},
		{"rediss://user:pw@redis.example:6380/1", true},
		{"unix:///run/redis/redis.sock?db=2", true},
		{"", false},
		{"http://127.0.0.1/", false},
	} {
		if err := CheckStore(tt.spec); (err == nil) != tt.ok {
			t.Errorf("CheckStore(%q) = %v, want ok=%v", tt.spec, err, tt.ok)
		}
	}
	if err := CheckStore("http://u:secret@h:1/0"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("CheckStore of a URL with a password = %v, want an error without the password", err)
	}
}
