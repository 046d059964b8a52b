package accessmap_test

import (
	"fmt"
	"github.com/milter-grey/milter-grey/envelope"
	"strings"

	"github.com/milter-grey/milter-grey/accessmap"
)

func Example() {
	table := `# senders that skip greylisting
example.com             OK
newsletter@example.com  DUNNO
partner.test            OK
`
	t, warnings, err := accessmap.Parse(accessmap.DefaultOptions(), "nogreylist-senders", strings.NewReader(table))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, w := range warnings {
		fmt.Println("warning:", w)
	}
	for _, sender := range []string{
		"<alice+tag@mail.example.com>",
		"<newsletter@example.com>",
		"<bob@partner.test>",
		"<mallory@example.org>",
	} {
		m, bypass := t.Lookup(envelope.Parse(sender))
		fmt.Printf("%s bypass=%v %s\n", sender, bypass, m)
	}
	// Output:
	// <alice+tag@mail.example.com> bypass=true nogreylist-senders:2 example.com OK
	// <newsletter@example.com> bypass=false nogreylist-senders:3 newsletter@example.com DUNNO
	// <bob@partner.test> bypass=true nogreylist-senders:4 partner.test OK
	// <mallory@example.org> bypass=false
}
