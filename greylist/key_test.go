package greylist

import "testing"

func TestTripletKeyRoundTrip(t *testing.T) {
	cases := []struct {
		name                 string
		client, sender, rcpt string
		want                 string
	}{
		{"IPv4 network", "192.0.2.0/24", "alice@example.net", "bob@example.org",
			"t:192.0.2.0/24 alice@example.net bob@example.org"},
		{"IPv6 network", "2001:db8:1:2::/64", "alice@example.net", "bob@example.org",
			"t:2001:db8:1:2::/64 alice@example.net bob@example.org"},
		{"SPF domain as client", "spf:example.net", "alice@example.net", "bob@example.org",
			"t:spf:example.net alice@example.net bob@example.org"},
		{"null sender", "192.0.2.1", NullSender, "bob@example.org",
			"t:192.0.2.1 <> bob@example.org"},
		{"escaped spaces", "192.0.2.0/24",
			NormalizeSender(`"Alice Smith"@example.net`, "+"),
			NormalizeRecipient(`"Bob Jones"@example.org`, "+"),
			`t:192.0.2.0/24 "alice%20smith"@example.net "bob%20jones"@example.org`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := TripletKey(c.client, c.sender, c.rcpt)
			if key != c.want {
				t.Errorf("TripletKey = %q, want %q", key, c.want)
			}
			client, sender, rcpt, ok := SplitTripletKey(key)
			if !ok || client != c.client || sender != c.sender || rcpt != c.rcpt {
				t.Errorf("SplitTripletKey(%q) = %q, %q, %q, %v; want %q, %q, %q, true",
					key, client, sender, rcpt, ok, c.client, c.sender, c.rcpt)
			}
		})
	}
}

func TestSplitTripletKeyRejects(t *testing.T) {
	cases := []struct {
		name string
		key  string
	}{
		{"empty", ""},
		{"client key", "c:192.0.2.0/24"},
		{"no prefix", "192.0.2.0/24 alice@example.net bob@example.org"},
		{"two parts", "t:192.0.2.0/24 alice@example.net"},
		{"one part", "t:192.0.2.0/24"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, _, ok := SplitTripletKey(c.key); ok {
				t.Errorf("SplitTripletKey(%q) ok, want rejected", c.key)
			}
		})
	}
}

func TestClientKey(t *testing.T) {
	cases := []struct{ client, want string }{
		{"192.0.2.0/24", "c:192.0.2.0/24"},
		{"2001:db8::/64", "c:2001:db8::/64"},
		{"spf:example.net", "c:spf:example.net"},
	}
	for _, c := range cases {
		t.Run(c.client, func(t *testing.T) {
			if got := ClientKey(c.client); got != c.want {
				t.Errorf("ClientKey(%q) = %q, want %q", c.client, got, c.want)
			}
		})
	}
	t.Run("client and triplet keys never collide", func(t *testing.T) {
		if _, _, _, ok := SplitTripletKey(ClientKey("192.0.2.0/24")); ok {
			t.Error("a client key splits as a triplet key")
		}
	})
}
