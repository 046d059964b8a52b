// Command deliverability replays a synthetic but realistic month of a
// site's inbound SMTP attempts through the real greylisting engine
// (greylist.New on a map-backed store, testutil/memstore, whose records
// expire on the same fake clock; no sockets) under several policies, and prints for each who is delayed, by
// how much, and which spam gets in:
//
//	go run ./bench/deliverability [-messages 100000] [-mailboxes 1000] [-seed 1] [-domain-trust 1]
//
// (make bench-deliverability). The same flags always print the same
// tables.
//
// # The replay
//
// Each message is a transaction whose recipients are decided at RCPT TO
// (greylist.AtRcpt). The sender's MTA delivers the recipients that pass
// and keeps the ones refused with 451 in its queue, trying them again on
// its own retry schedule, from the server its pool picks, until all pass
// or it gives up. A message is delayed when it was refused at least once;
// its delay runs from the first attempt to the acceptance of its last
// recipient. Only the outside world is faked: SPF answers from the
// model's records, a DNS blocklist lists the addresses the model says are
// listed (a small share of its lookups time out, and of SPF's for small
// domains); host names are judged by the shipped dynamic-name patterns
// (greylist.DefaultNamePatterns).
// A month of history is replayed first and not counted, so that the
// store holds what a running site's would.
//
// # The senders
//
// Facts the models rest on:
//
//   - Postfix's queue manager defers a message for its age, at least
//     minimal_backoff_time (300 s) and at most maximal_backoff_time (4000
//     s), so the gap between attempts doubles; it scans the deferred queue
//     every queue_run_delay (300 s) and returns a message after
//     maximal_queue_lifetime (5 days).
//   - Exim's default retry rule is "F,2h,15m; G,16h,1h,1.5; F,4d,6h": every
//     15 minutes for two hours, then hourly and sparser, for four days; a
//     due message waits for the next queue runner, which Debian's exim4
//     starts every 30 minutes.
//   - Exchange Server retries a message refused with a 4xx reply after its
//     message retry interval, 15 minutes by default, for two days.
//   - Gmail, Microsoft 365 and Yahoo send from pools spread over several
//     /16s (Google's SPF record lists 74.125.0.0/16 and 209.85.128.0/17
//     among others; Microsoft's, 40.92.0.0/15, 40.107.0.0/16 and
//     104.47.0.0/17); they retry a greylisted message after minutes,
//     usually from another server of the pool, often in another /24 or
//     /16. Their servers have forward-confirmed names
//     (mail-….google.com, mail-….outbound.protection.outlook.com), they
//     sign with DKIM, and SPF passes for the consumer domains and for the
//     business domains they host (Google Workspace, Microsoft 365).
//   - Amazon SES's default envelope sender is the message id at the
//     region's domain: 16 hex digits, a UUID and a sequence number,
//     0102018c3b1e5a7f-3c8e1b2a-9d4e-4f1a-8b7c-2e5d6f7a8b9c-000000@us-east-1.amazonses.com;
//     a customer may set a custom MAIL FROM subdomain instead.
//   - SendGrid's is bounces+UID-HASH-user=dest.test@ its own domain or the
//     customer's emNNNN subdomain; Mailchimp's is
//     bounce-mc.usN_ACCOUNT.CAMPAIGN-user=dest.test@ a domain naming its
//     sending servers (under mcsv.net, rsgsv.net, mcdlv.net); Postmark's is
//     one fixed pm_bounces@ address at the customer's pm-bounces
//     subdomain.
//   - Google's own notifications (Calendar, account mail) come from a
//     random per-message token at a bounces.google.com subdomain
//     (…@calendar-server.bounces.google.com): letters and digits, not hex,
//     so no sender key rule can mask it; only keys without the local part
//     (SPFKeyDropsLocalPart) make its next message known.
//   - Mailman's VERP sender is list-bounces+user=dest.test@; ezmlm's,
//     list-return-N-user=dest.test@: a sender per recipient, so each
//     recipient is its own transaction. Lists without VERP send one
//     transaction for all of a site's subscribers.
//   - Spam bots are spamware on infected home computers talking SMTP
//     directly from residential addresses, whose names, when they have
//     one, spell out the address or name the access technology (dsl-…,
//     c-….hsd1…, pool-…, cpe-…); most never retry a 4xx, which is what
//     greylisting rests on, and some try once more within a minute or two.
//     They forge senders, often at a big provider or at the recipient's
//     own domain, whose SPF records then fail. DNS blocklists list most of
//     their addresses, also as policy listings of dynamic ranges.
//   - Spam scripts on compromised web servers talk SMTP directly too, but
//     from hosting addresses with forward-confirmed plain names.
//   - DKIM replay: a DKIM signature covers the message, not the envelope
//     nor the connection, so a signed message still verifies when anyone
//     re-sends it to other recipients (RFC 6376 names replay among its
//     security considerations). The IETF's DKIM replay problem statement
//     describes spammers getting a message signed through an account at a
//     large provider and re-sending it in bulk from their own machines,
//     which the signer's SPF record does not list: SPF fails for the
//     signer's domain while DKIM, and DMARC through it, pass.
//   - Snowshoe spam spreads its volume thinly over many addresses of
//     several /24s, each with its own domain, SPF record passing and
//     forward-confirmed name, sent by real MTAs that retry; it keeps under
//     the blocklists' radar and moves to fresh ranges.
//
// Assumptions, not facts, and the knobs of the model (in class.go,
// legitimate.go, spam.go): the mix of classes (58 % legitimate; 26.5 %
// residential bots, 1.5 % compromised servers, 2 % DKIM replays, 12 %
// snowshoe); the shares of new correspondences (12 % of person-to-person messages, 6 % of
// notifications, 35 % of one-time codes, many of which come with a
// sign-up); pool sizes (Gmail-like 192 /24s, Microsoft-like 384, Yahoo-like
// 48, SES-like 192, SendGrid-like 192); pool retries after 1–15 minutes,
// doubling; small servers running Postfix (70 %), Exim (25 %) or Exchange
// (5 %), 80 % of them with their own name, 10 % with a business line's
// generic name and 10 % without forward-confirmed DNS, 80 % with an SPF
// record that passes, 15 % without one and 5 % with one that forgets the
// server; residential bots: 55 % without a name, 42 % with a dynamic one,
// 3 % with a name no pattern can tell, 70 % listed, 25 % retrying once;
// compromised servers: 5 % of bot messages, 60 % listed, half with a
// sender at their own name (no SPF record); DKIM replays: a big
// provider's consumer domain as sender (by market share), from residential
// (70 %) and compromised (30 %) machines drawn as the other bots' are;
// snowshoe: 25 % of addresses listed, ranges moved after one to two weeks;
// 1 % of small servers listed by mistake.
//
// # Policies
//
// Every policy keys a triplet by the SPF-proven domain (key_by_spf_domain)
// and auto-whitelists a client network after 5 passes, the defaults.
// "everyone" greylists every new triplet, as milter-grey did before
// selective greylisting and domain trust: the baseline the targets compare
// with. "suspicious" greylists only a new triplet with a trigger (DNS
// blocklist, DNS failure, SPF fail or softfail, SPF not proving the sender,
// dynamic name, no FCrDNS). Each scope is replayed without and with
// "+trust", learned domain trust after domain_trust passes (1, the
// default, or -domain-trust N); "suspicious +trust" is the shipped default. Three variants of the default change one
// setting each: "+DNSBL", a DNS blocklist, which no default configures;
// "without spf-unproven", greylist_triggers without that trigger, to show
// what it keeps out; "+domain keys", SPFKeyDropsLocalPart, to show what
// it would bring.
//
// The targets: with the default, legitimate messages delayed at most 5 %,
// one-time codes at most 2 %, and no more bot messages (residential,
// compromised and DKIM replays) accepted than under "everyone"; with trust, in each scope, legitimate messages delayed
// at most half as often as without it, and no more bot or DKIM replay
// messages accepted. The report says met or missed; the model is not tuned
// to meet them. Beside each scope's legitimate delays it shows the share
// whose sender SPF did not prove at the first attempt: trust is used only
// when SPF proves the sender, so no setting can spare those, and when they
// are more than half of the delays without trust the report marks halving
// "out of reach".
//
// # The snowshoe trade-off
//
// Snowshoe spam retries like a good MTA, so greylisting never kept it out;
// it only delayed it, and under "everyone" not for long: a range's retried
// triplets soon auto-whitelist its /24. "suspicious" gives up even that
// delay, since a snowshoe sender shows what a good sender shows (a
// forward-confirmed name, SPF pass); only a blocklist that lists it brings
// the delay back, and keeps the range off the auto-whitelist. The delay
// was worth something only where a later filter learns of a campaign in
// those minutes.
//
// # Not modelled
//
// IPv6 clients (keys by /64), DNS allowlists, the null sender (bounces
// are decided after the envelope) and the bypass list. Only the bypass
// list reads DKIM, so a replayed message is modelled by its envelope and
// its client alone: neither the triggers nor domain trust look at its
// signature.
package main
