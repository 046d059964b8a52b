package config

import (
	"strings"
	"testing"
)

func TestUnknownSocketGroupNamesItsKey(t *testing.T) {
	path := writeFile(t, "milter-grey.toml", "# x\nsocket_group = \"no-such-group-mg\"\n")
	c, err := Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.LookupAccounts()
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: socket_group: ") {
		t.Errorf("error %v, want %s:2: socket_group: …", err, path)
	}
}
