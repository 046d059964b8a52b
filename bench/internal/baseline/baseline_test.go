package baseline

import (
	"net"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// TestGreylistThenPass: new → 451, early retry → 451, retry after the
// delay → continue and X-Greylist at end of message, then known → accepted
// at the first header; the session survives every reply.
func TestGreylistThenPass(t *testing.T) {
	srv := New(Config{Delay: 50 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	c := gomilter.NewClientWithOptions("tcp", ln.Addr().String(), gomilter.ClientOptions{
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ActionMask: gomilter.OptAddHeader,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(a *gomilter.Action, err error) *gomilter.Action {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	must(s.Conn("[198.51.100.7]", gomilter.FamilyInet, 25, "198.51.100.7"))
	must(s.Helo("mx.example.org"))
	rcpt := func(want gomilter.ActionCode) {
		t.Helper()
		must(s.Mail("Alice@Example.org", nil))
		if a := must(s.Rcpt("bob@example.net", nil)); a.Code != want {
			t.Fatalf("RCPT: %c %d %q, want %c", a.Code, a.SMTPCode, a.SMTPText, want)
		}
	}
	rcpt(gomilter.ActReplyCode)
	s.Abort()
	rcpt(gomilter.ActReplyCode)
	s.Abort()
	time.Sleep(60 * time.Millisecond)
	rcpt(gomilter.ActContinue)
	must(s.HeaderField("From", " <alice@example.org>"))
	must(s.HeaderEnd())
	mods, act := func() ([]gomilter.ModifyAction, *gomilter.Action) {
		m, a, err := s.End()
		if err != nil {
			t.Fatal(err)
		}
		return m, a
	}()
	if act.Code != gomilter.ActAccept || len(mods) != 1 || mods[0].HeaderName != "X-Greylist" {
		t.Fatalf("EOM: %c %+v", act.Code, mods)
	}
	rcpt(gomilter.ActContinue)
	if a := must(s.HeaderField("From", " <alice@example.org>")); a.Code != gomilter.ActAccept {
		t.Fatalf("first header of a known message: %c, want accept", a.Code)
	}
	if n := srv.Len(); n != 1 {
		t.Errorf("%d triplets in memory, want 1", n)
	}
}
