package sockspec

import "testing"

func TestParse(t *testing.T) {
	for _, tt := range []struct{ spec, network, address string }{
		{"inet:127.0.0.1:10091", "tcp", "127.0.0.1:10091"},
		{"inet:10091@127.0.0.1", "tcp", "127.0.0.1:10091"},
		{"inet6:[::1]:10091", "tcp", "[::1]:10091"},
		{"unix:/run/m.sock", "unix", "/run/m.sock"},
		{"local:/run/m.sock", "unix", "/run/m.sock"},
	} {
		n, a, err := Parse(tt.spec)
		if err != nil || n != tt.network || a != tt.address {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", tt.spec, n, a, err, tt.network, tt.address)
		}
	}
	for _, bad := range []string{"127.0.0.1:10091", "unix:run/m.sock", "inet:127.0.0.1:99999", "inet:127.0.0.1", "tcp:127.0.0.1:1"} {
		if _, _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1": true, "127.9.9.9:1": true, "[::1]:1": true, "localhost:1": true,
		"[::ffff:127.0.0.1]:1": true, "0.0.0.0:1": false, "[::]:1": false, "192.0.2.1:1": false, ":1": false, "x": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
