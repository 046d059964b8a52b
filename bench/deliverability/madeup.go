package main

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
)

// mailboxName is the site's i-th mailbox.
func mailboxName(i int) string { return fmt.Sprintf("user%04d@%s", i, siteDomain) }

// person makes up the local part of a person's address (anna.berg17).
func person(rng *rand.Rand) string {
	first := []string{"anna", "ben", "chloe", "david", "emma", "felix", "grace", "hugo", "ines", "jonas",
		"karin", "leo", "maria", "nils", "olga", "paul", "rita", "sven", "tara", "victor"}
	last := []string{"berg", "costa", "dubois", "evans", "fischer", "garcia", "hansen", "ito", "jensen", "kowalski",
		"lopez", "meyer", "novak", "olsen", "perez", "rossi", "schmidt", "tanaka", "weber", "young"}
	return fmt.Sprintf("%s.%s%d", pick(rng, first), pick(rng, last), rng.IntN(100))
}

// word makes up a pronounceable word, for domain and list names.
func word(rng *rand.Rand) string {
	cons, vow := "bcdfgklmnprstvz", "aeiou"
	var b strings.Builder
	for range 2 + rng.IntN(2) {
		b.WriteByte(cons[rng.IntN(len(cons))])
		b.WriteByte(vow[rng.IntN(len(vow))])
	}
	return b.String()
}

// alnum makes up a token of n letters and digits, in mixed case.
func alnum(rng *rand.Rand, n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[rng.IntN(len(chars))]
	}
	return string(b)
}

// hexToken makes up n lower-case hex digits.
func hexToken(rng *rand.Rand, n int) string {
	const chars = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[rng.IntN(len(chars))]
	}
	return string(b)
}

// dynamicName makes up the host name an access provider gives a
// residential address, in one of the common shapes.
func dynamicName(rng *rand.Rand, ip netip.Addr) string {
	a := ip.As4()
	isp := fmt.Sprintf("isp%d.example", rng.IntN(40))
	switch rng.IntN(6) {
	case 0:
		return fmt.Sprintf("%d-%d-%d-%d.dynamic.%s", a[0], a[1], a[2], a[3], isp)
	case 1:
		return fmt.Sprintf("dsl-%d-%d-%d-%d.%s", a[0], a[1], a[2], a[3], isp)
	case 2:
		return fmt.Sprintf("c-%d-%d-%d-%d.hsd1.%s", a[0], a[1], a[2], a[3], isp)
	case 3:
		return fmt.Sprintf("pool-%d-%d-%d-%d.%s", a[0], a[1], a[2], a[3], isp)
	case 4:
		return fmt.Sprintf("cpe-%d-%d-%d-%d.cable.%s", a[0], a[1], a[2], a[3], isp)
	default:
		return fmt.Sprintf("%d.%d.%d.%d.ppp.%s", a[3], a[2], a[1], a[0], isp)
	}
}

// staticName is the generic name an access provider gives a business
// line's fixed address: it spells out the address too.
func staticName(rng *rand.Rand, ip netip.Addr) string {
	a := ip.As4()
	return fmt.Sprintf("static-%d-%d-%d-%d.biz.isp%d.example", a[0], a[1], a[2], a[3], rng.IntN(40))
}
