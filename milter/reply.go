package milter

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultReply is the SMTP reply for a greylisted recipient; {seconds} is
// replaced with the time until a retry passes.
const DefaultReply = "451 4.7.1 Greylisted, please try again in {seconds} seconds"

// storeErrorReply is sent when the store fails and on_error = "tempfail".
const storeErrorReply = "451 4.3.0 Greylisting temporarily unavailable, please try again later"

// replyRe is what Postfix accepts from a milter (milter8.c): a 4xx code, an
// enhanced status code of the same class, then text. Anything else makes
// Postfix drop the milter for the session and apply milter_default_action.
var replyRe = regexp.MustCompile(`^4[0-9][0-9] 4\.[0-9]{1,3}\.[0-9]{1,3} [[:print:]]+$`)

// ValidateReply checks a greylist reply template.
func ValidateReply(tmpl string) error {
	if !replyRe.MatchString(tmpl) {
		return fmt.Errorf("reply %q must be \"4XX 4.X.X text\" in printable ASCII on one line", tmpl)
	}
	return nil
}

// formatReply fills in the template and escapes '%' for Postfix, which
// reads replies as format strings.
func formatReply(tmpl string, retryIn time.Duration) string {
	secs := int64((retryIn + time.Second - 1) / time.Second) // round up: never invite a retry that is still early
	if secs < 1 {
		secs = 1
	}
	s := strings.ReplaceAll(tmpl, "{seconds}", strconv.FormatInt(secs, 10))
	return strings.ReplaceAll(s, "%", "%%")
}
