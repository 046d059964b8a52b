package migrate

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// checkImport holds for whatever an Importer read: nothing is skipped
// that was not read, and every record has a key the engine could have
// written and a state and times the policy keeps.
func checkImport(t *testing.T, im *Importer) {
	s := im.Summary()
	if s.Skipped > s.Read {
		t.Fatalf("skipped %d of %d entries read", s.Skipped, s.Read)
	}
	for _, r := range im.Records() {
		client, _, _, isTriplet := greylist.SplitTripletKey(r.Key)
		if !isTriplet && !strings.HasPrefix(r.Key, greylist.ClientPrefix) {
			t.Fatalf("record key %q is neither a triplet nor a client", r.Key)
		}
		if isTriplet && client == "" {
			t.Fatalf("record key %q has no client", r.Key)
		}
		if r.Rec.State != greylist.Pending && r.Rec.State != greylist.Passed {
			t.Fatalf("%q: state %v", r.Key, r.Rec.State)
		}
		if im.opts.Policy.Expired(&r.Rec, im.opts.Now) {
			t.Fatalf("%q: an expired record %+v", r.Key, r.Rec)
		}
		if r.Rec.First.After(im.opts.Now) || r.Rec.Last.After(im.opts.Now) {
			t.Fatalf("%q: times after now %+v", r.Key, r.Rec)
		}
		b, _ := r.Rec.MarshalBinary()
		var back greylist.Record
		if err := back.UnmarshalBinary(b); err != nil || !greylist.Same(&back, &r.Rec) {
			t.Fatalf("%q: %+v does not survive the store's encoding: %v", r.Key, r.Rec, err)
		}
	}
}

func fuzzOpts() Options {
	o := opts()
	o.KeyBySPFDomain = true
	return o
}

func FuzzReadPostgrey(f *testing.F) {
	f.Add(pgDump("192.0.2.0/alice@sender.test/bob@dest.test", seen(ago(3*day), ago(2*day))))
	f.Add(pgDump("192.0.2.7", count(5, ago(time.Hour)), "2001:DB8:0:0:0:0:0:1", count(1, ago(time.Hour))))
	f.Add(pgDump("2001:db8:1:2:0:0:0:0/a/b@x.test/c\\5cd@y.test", seen(ago(time.Hour), ago(time.Hour))))
	f.Add(pgDump("192.0.2//bob@dest.test", "1,2,host", "3f786850e387550fdab836ed7e6dc881de23001b", "1,1"))
	f.Add("VERSION=3\nHEADER=END\n key\nstray\n \\zz\nDATA=END\n")
	f.Fuzz(func(t *testing.T, dump string) {
		im := NewImporter(fuzzOpts())
		if err := im.ReadPostgrey(strings.NewReader(dump), "fuzz"); err != nil {
			// Only a line longer than the scanner takes.
			if !strings.Contains(err.Error(), "too long") {
				t.Fatalf("ReadPostgrey: %v", err)
			}
			return
		}
		checkImport(t, im)
	})
}

func FuzzReadMilterGreylist(f *testing.F) {
	data, err := os.ReadFile("testdata/milter-greylist.db")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(data))
	f.Add(mgLine("2001:db8::1%eth0", "<>", "<a@b.test>", now, true))
	f.Add("192.0.2.1 a#b@c.test #comment\n::ffff:192.0.2.1 <x> <y> 0 AUTO\n")
	f.Fuzz(func(t *testing.T, dump string) {
		im := NewImporter(fuzzOpts())
		if err := im.ReadMilterGreylist(strings.NewReader(dump), "fuzz"); err != nil {
			if !strings.Contains(err.Error(), "too long") {
				t.Fatalf("ReadMilterGreylist: %v", err)
			}
			return
		}
		checkImport(t, im)
	})
}
