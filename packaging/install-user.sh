#!/bin/sh
# Creates the system user and group milter-grey that contrib/milter-grey.service
# runs as, for `make install` (the Debian package's postinst,
# packaging/debian/postinst, makes the same user). With DESTDIR set (a
# staging tree), or when not root, it creates nothing and says what to run.
set -e

user=milter-grey
home=/var/lib/milter-grey
gecos="milter-grey greylisting milter"

if getent passwd "$user" >/dev/null 2>&1; then
	exit 0
fi
how="groupadd --system $user; useradd --system --gid $user --home-dir $home --no-create-home --shell /usr/sbin/nologin $user"
if [ -n "${DESTDIR:-}" ]; then
	echo "install: DESTDIR is set, so the system user $user was not created; the unit runs as $user: create it on the target ($how), or install the Debian package (make deb), which does"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install: not root, so the system user $user was not created; the unit runs as $user: as root, run $how"
	exit 0
fi
# useradd and groupadd (shadow-utils) are on every Linux system; Debian's
# adduser, which the postinst prefers, is not.
getent group "$user" >/dev/null 2>&1 || groupadd --system "$user"
useradd --system --gid "$user" --home-dir "$home" --no-create-home \
	--shell /usr/sbin/nologin --comment "$gecos" "$user"
echo "install: created the system user $user (home $home, no login shell)"
