package greylist

import (
	_ "embed"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// defaultNamePatterns is the shipped list; the file documents each pattern.
//
//go:embed dynamic_names.txt
var defaultNamePatterns string

// NamePatterns recognises host names that ISPs give to dynamic or
// residential addresses ("c-73-162-45-12.hsd1.ca.comcast.net"), as opposed
// to the names of mail servers ("mail.example.com"). It is only ever asked
// about a forward-confirmed client name.
//
// A name matches when one of the patterns matches it and none of the
// exceptions does; the patterns are regular expressions, unanchored and
// case-insensitive. A nil *NamePatterns matches nothing.
type NamePatterns struct {
	patterns   []namePattern
	exceptions []namePattern
}

type namePattern struct {
	text string // as written in the file, without the "!"
	re   *regexp.Regexp
}

// DefaultNamePatterns returns the shipped list (greylist/dynamic_names.txt).
func DefaultNamePatterns() *NamePatterns {
	p, err := ParseNamePatterns("dynamic_names.txt", strings.NewReader(defaultNamePatterns))
	if err != nil {
		// The file is part of the program, and a test compiles it.
		panic("greylist: shipped " + err.Error())
	}
	return p
}

// ParseNamePatterns reads a pattern list: one regular expression per line,
// "!" before an exception, '#' starts a comment, blank lines are skipped.
// Errors name the file (name), the line and the pattern.
func ParseNamePatterns(name string, r io.Reader) (*NamePatterns, error) {
	p := &NamePatterns{}
	// Host names hold no '#', so no pattern needs one.
	err := eachLine(name, r, func(line int, text string) error {
		np, except, err := parseNamePattern(text)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if except {
			p.exceptions = append(p.exceptions, np)
		} else {
			p.patterns = append(p.patterns, np)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func parseNamePattern(text string) (np namePattern, except bool, err error) {
	value := text
	if rest, ok := strings.CutPrefix(text, "!"); ok {
		except, text = true, strings.TrimSpace(rest)
	}
	if text == "" {
		return np, false, fmt.Errorf("pattern %q: no regular expression after '!'", value)
	}
	if strings.ContainsAny(text, " \t") {
		return np, false, fmt.Errorf("pattern %q: white space, which no host name holds", value)
	}
	re, err := regexp.Compile("(?i)" + text)
	if err != nil {
		return np, false, fmt.Errorf("pattern %q: %w", value, err)
	}
	// Unanchored, a pattern that matches the empty string matches every
	// name: a typo ("a|") must not make every client look dynamic.
	if re.MatchString("") {
		return np, false, fmt.Errorf("pattern %q matches every host name", value)
	}
	return namePattern{text: text, re: re}, except, nil
}

// Match reports whether hostname looks dynamic, and the first pattern (in
// file order) that says so.
func (p *NamePatterns) Match(hostname string) (pattern string, ok bool) {
	if p == nil {
		return "", false
	}
	name := strings.TrimSuffix(strings.ToLower(hostname), ".")
	if name == "" {
		return "", false
	}
	for _, e := range p.exceptions {
		if e.re.MatchString(name) {
			return "", false
		}
	}
	for _, np := range p.patterns {
		if np.re.MatchString(name) {
			return np.text, true
		}
	}
	return "", false
}

// Len is the number of patterns and exceptions.
func (p *NamePatterns) Len() int {
	if p == nil {
		return 0
	}
	return len(p.patterns) + len(p.exceptions)
}
