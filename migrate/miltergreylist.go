package migrate

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// ReadMilterGreylist reads a milter-greylist dumpfile; name says where it
// came from, for the skip reports. Only an error reading r is returned;
// bad lines are skipped.
func (im *Importer) ReadMilterGreylist(r io.Reader, name string) error {
	delay := im.opts.Delay
	if delay == 0 {
		delay = MilterGreylistDelay
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for lineNo := 1; sc.Scan(); lineNo++ {
		fields := strings.Fields(sc.Text())
		// A comment starts where a field does with '#' ('#' inside an
		// address is part of it, as milter-greylist reads it).
		for i, f := range fields {
			if strings.HasPrefix(f, "#") {
				fields = fields[:i]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		im.read++
		im.milterGreylistLine(fmt.Sprintf("%s:%d", name, lineNo), fields, delay)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// milterGreylistLine maps "ADDRESS FROM RCPT TIME [AUTO]".
func (im *Importer) milterGreylistLine(where string, f []string, delay time.Duration) {
	auto := len(f) == 5 && strings.EqualFold(f[4], "AUTO")
	if len(f) != 4 && !auto {
		im.skip(where, Malformed, "want ADDRESS FROM RCPT TIME [AUTO], got %q", clip(strings.Join(f, " ")))
		return
	}
	ip, err := netip.ParseAddr(f[0])
	if err != nil {
		im.skip(where, Malformed, "address %q", clip(f[0]))
		return
	}
	secs, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil || secs < 0 || secs > 1<<52 {
		im.skip(where, Malformed, "time %q", clip(f[3]))
		return
	}
	t := time.Unix(secs, 0)
	var rec greylist.Record
	if auto {
		// Whitelisted until TIME: last used an autowhite period before.
		last := im.clamp(t.Add(-im.opts.Autowhite))
		rec = greylist.Record{State: greylist.Passed, First: last, Last: last, Count: 1}
	} else {
		// Accepted from TIME: first seen a greylist delay before.
		first := im.clamp(t.Add(-delay))
		rec = greylist.Record{State: greylist.Pending, First: first, Last: first, Count: 1}
	}
	im.triplet(where, ip, f[1], f[2], rec)
}
