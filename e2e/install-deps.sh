#!/usr/bin/env bash
# Installs the Debian packages the end-to-end tests drive (postfix, swaks,
# miltertest, redis-server, postgrey, db-util; postfix-pcre, for the pcre:
# tables that accessmap's tests compare with postmap; man-db, which checks the
# manual pages), only those missing,
# so reruns are fast. postgrey is there for its whitelist files, which the
# list tests load as Debian installs them, and for the program, which they
# ask for its verdict and whose database the import tests read with
# db-util's db_dump.
# Sendmail is not installed (it would replace Postfix): sendmail_test.go
# unpacks Debian's sendmail debs privately; here come only what that needs,
# m4 (to build a sendmail.cf) and the binary's shared libraries; and
# libio-socket-inet6-perl, which swaks needs to talk to [::1].
#
# No system service is configured or started: Postfix is preseeded to "No
# configuration" and, during the install, a policy-rc.d forbids service
# starts (redis-server's would otherwise listen on 6379, postgrey's on
# 10023). The tests start their own private instances on loopback. Run by
# `make test` and .ci/run.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH=$PATH:/usr/sbin:/sbin

log() { printf '[deps] %s\n' "$*" >&2; }

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

# master_running: a system Postfix (default queue directory) is running.
master_running() {
	local pid
	pid=$(tr -d ' \n' 2>/dev/null </var/spool/postfix/pid/master.pid) || return 1
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

command -v dpkg-query >/dev/null || { log "not a Debian system: install postfix, postfix-pcre, swaks, miltertest, redis-server, postgrey, man-db and db_dump (Berkeley DB 5.3) yourself"; exit 0; }
packages=(postfix postfix-pcre swaks miltertest redis-server postgrey db-util ca-certificates make man-db
	m4 libwrap0 libdb5.3 libldap-2.5-0 libnsl2 libsasl2-2 libssl3 libio-socket-inet6-perl
	debootstrap systemd)
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
((${#missing[@]})) || exit 0

if [[ $(id -u) != 0 ]]; then
	# Without them the end-to-end tests skip, or fail when CI=true.
	log "missing Debian packages: ${missing[*]} (run as root to install them)"
	exit 0
fi

log "installing: ${missing[*]}"
postfix_was_running=false
master_running && postfix_was_running=true
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections
# Forbid service starts while installing, unless the machine already has a
# policy (containers often do); ours goes away on exit.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
	printf '#!/bin/sh\n# installed by milter-grey e2e/install-deps.sh during apt-get install\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The install must not have brought up a system MTA. Nothing we did not
# start is stopped: a wrong set-up is reported, not repaired.
if ! $postfix_was_running && master_running; then
	log "FAIL: installing postfix started a system Postfix (pid $(cat /var/spool/postfix/pid/master.pid)); expected 'No configuration'"
	exit 1
fi
