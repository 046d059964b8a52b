package main

import (
	"regexp"

	"github.com/milter-grey/milter-grey/greylist"
)

// dynamicNames is the dynamic-name matcher the engine runs with: a stand-in
// for a shipped default pattern list, with the two rules such lists rest
// on: a host name that spells out the client's address, and a label naming
// an access technology or an address pool.
func dynamicNames() greylist.NameMatcher {
	return patterns{
		regexp.MustCompile(`(^|[^0-9])[0-9]{1,3}[-.][0-9]{1,3}[-.][0-9]{1,3}[-.][0-9]{1,3}([^0-9]|$)`),
		regexp.MustCompile(`(^|[.-])(dyn|dynamic|dhcp|dsl|adsl|xdsl|vdsl|cable|pool|ppp|pppoe|dial|dialup|cpe|broadband|residential|hsd[0-9]*)[0-9]*([.-]|$)`),
	}
}

type patterns []*regexp.Regexp

func (p patterns) Match(name string) (string, bool) {
	for _, re := range p {
		if re.MatchString(name) {
			return re.String(), true
		}
	}
	return "", false
}
