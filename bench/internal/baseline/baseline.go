// Package baseline is the bare greylisting milter that milter-grey's
// throughput is measured against: go-milter answering the same protocol
// exchange from a map in memory, with nothing else (no store, no lists, no
// logging, no timeouts). It negotiates what milter-grey negotiates
// (OptAddHeader; OptNoUnknown|OptHeaderLeadingSpace), keys triplets the
// same way (client network, sender, recipient; lower-cased), answers a new
// or early triplet with the same 451 reply code at RCPT, accepts a message
// at its first header when it has nothing to add, adds X-Greylist at end of
// message when a recipient was retried, and keeps go-milter's session
// object across final replies the same way (docs/libraries.md). The
// difference between the two is milter-grey's own work. It is benchmark
// tooling (bench/internal/): bench/baseline serves it, bench/milterbench
// measures against it; the daemon never imports it.
package baseline

import (
	"hash/maphash"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// Config configures a Server; zero fields take milter-grey's defaults
// (masks /24 and /64), except Delay, whose default is 1 s as in the bench.
type Config struct {
	Delay time.Duration
	Mask4 int
	Mask6 int
	// MaxEntries bounds the map; a shard that reaches its share is
	// emptied (default 4 M entries, a few hundred MiB at most).
	MaxEntries int
}

const shards = 64

type entry struct {
	first  time.Time
	passed bool
}

type shard struct {
	mu sync.Mutex
	m  map[string]entry
}

// Server is the bare milter.
type Server struct {
	cfg    Config
	seed   maphash.Seed
	shards [shards]shard
	gm     *gomilter.Server
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Delay <= 0 {
		cfg.Delay = time.Second
	}
	if cfg.Mask4 <= 0 {
		cfg.Mask4 = 24
	}
	if cfg.Mask6 <= 0 {
		cfg.Mask6 = 64
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 4 << 20
	}
	s := &Server{cfg: cfg, seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = make(map[string]entry)
	}
	s.gm = &gomilter.Server{
		NewMilter: func() gomilter.Milter { return &session{srv: s} },
		Actions:   gomilter.OptAddHeader,
		Protocol:  gomilter.OptNoUnknown | gomilter.OptHeaderLeadingSpace,
	}
	return s
}

// Serve accepts milter connections on ln until Close.
func (s *Server) Serve(ln net.Listener) error { return s.gm.Serve(ln) }

// Close closes the listeners.
func (s *Server) Close() error { return s.gm.Close() }

// Len is the number of triplets in memory.
func (s *Server) Len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.Lock()
		n += len(s.shards[i].m)
		s.shards[i].mu.Unlock()
	}
	return n
}

// decide steps one triplet: new → 451, early → 451, retried → pass
// (waited > 0), passed → pass.
func (s *Server) decide(key string, now time.Time) (pass bool, retryIn, waited time.Duration) {
	sh := &s.shards[maphash.String(s.seed, key)%shards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[key]
	switch {
	case !ok:
		if len(sh.m) >= s.cfg.MaxEntries/shards {
			clear(sh.m)
		}
		sh.m[key] = entry{first: now}
		return false, s.cfg.Delay, 0
	case e.passed:
		return true, 0, 0
	case now.Sub(e.first) < s.cfg.Delay:
		return false, e.first.Add(s.cfg.Delay).Sub(now), 0
	default:
		sh.m[key] = entry{first: e.first, passed: true}
		return true, 0, now.Sub(e.first)
	}
}

// keep sends a final response without go-milter replacing the session.
type keep struct{ r gomilter.Response }

func (k keep) Response() *gomilter.Message { return k.r.Response() }
func (keep) Continue() bool                { return true }

var respAccept = keep{gomilter.RespAccept}

type session struct {
	srv     *Server
	client  string // masked network, the key's first part
	sender  string
	waited  time.Duration
	envDone bool
}

func (s *session) Connect(host, family string, port uint16, addr net.IP, m *gomilter.Modifier) (gomilter.Response, error) {
	s.reset()
	s.client = ""
	if ip, ok := netip.AddrFromSlice(addr); ok {
		ip = ip.Unmap()
		bits := s.srv.cfg.Mask6
		if ip.Is4() {
			bits = s.srv.cfg.Mask4
		}
		if p, err := ip.Prefix(bits); err == nil {
			s.client = p.String()
		}
	}
	return gomilter.RespContinue, nil
}

func (s *session) Helo(string, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) MailFrom(from string, m *gomilter.Modifier) (gomilter.Response, error) {
	s.reset()
	s.sender = strings.ToLower(from)
	return gomilter.RespContinue, nil
}

func (s *session) RcptTo(rcpt string, m *gomilter.Modifier) (gomilter.Response, error) {
	if s.client == "" {
		return gomilter.RespContinue, nil
	}
	key := s.client + " " + s.sender + " " + strings.ToLower(rcpt)
	pass, retryIn, waited := s.srv.decide(key, time.Now())
	if pass {
		s.waited = max(s.waited, waited)
		return gomilter.RespContinue, nil
	}
	secs := max(1, int64((retryIn+time.Second-1)/time.Second))
	return gomilter.NewResponseStr(byte(gomilter.ActReplyCode),
		"451 4.7.1 Greylisted, please try again in "+strconv.FormatInt(secs, 10)+" seconds"), nil
}

func (s *session) Header(name, value string, m *gomilter.Modifier) (gomilter.Response, error) {
	if !s.envDone {
		s.envDone = true
		if s.waited == 0 {
			return respAccept, nil // nothing to add: stop the message here
		}
	}
	return gomilter.RespContinue, nil
}

func (s *session) Headers(textproto.MIMEHeader, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) BodyChunk([]byte, *gomilter.Modifier) (gomilter.Response, error) {
	return gomilter.RespContinue, nil
}

func (s *session) Body(m *gomilter.Modifier) (gomilter.Response, error) {
	defer s.reset()
	if s.waited > 0 {
		if err := m.AddHeader("X-Greylist", "delayed "+strconv.FormatInt(int64(s.waited/time.Second), 10)+
			" seconds by baseline"); err != nil {
			return nil, err
		}
	}
	return respAccept, nil
}

func (s *session) Abort(*gomilter.Modifier) error {
	s.reset()
	return nil
}

func (s *session) reset() {
	s.sender, s.waited, s.envDone = "", 0, false
}
