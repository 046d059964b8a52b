package redact

import "testing"

func TestURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no password", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"user without password", "redis://user@h:1", "redis://user@h:1"},
		{"password alone", "redis://:pw@h:1/2", "redis://:xxxxx@h:1/2"},
		{"user and password", "rediss://user:pw@h:1", "rediss://user:xxxxx@h:1"},
		{"sentinel: both passwords", "redis://s:spw@h:26379?master_name=m&password=mpw", "redis://s:xxxxx@h:26379?master_name=m&password=xxxxx"},
		{"query password alone", "redis://h:26379?password=mpw&master_name=m", "redis://h:26379?master_name=m&password=xxxxx"},
		{"unix socket", "unix://:pw@/run/redis.sock?db=2", "unix://:xxxxx@/run/redis.sock?db=2"},
		{"badger directory", "/var/lib/milter-grey", "/var/lib/milter-grey"},
		{"badger: prefix", "badger:/var/lib/milter grey", "badger:/var/lib/milter grey"},
		{"malformed, no password", "redis://127.0.0.1:port/0", "redis://127.0.0.1:port/0"},
		{"malformed, password with a slash", "redis://user:pa/ss@127.0.0.1:6379/0", Hidden},
		{"malformed, password with a percent", "redis://user:100%@h:1/0", Hidden},
		{"malformed, query password", "redis://h:port?master_name=m&password=pw", Hidden},
		{"directory that is no URL", "/srv/100%/db", "/srv/100%/db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := URL(tt.in); got != tt.want {
				t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
