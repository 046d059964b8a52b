#!/usr/bin/env bash
# Builds the Debian package of milter-grey with dpkg-deb from a staging tree:
#
#   packaging/build-deb.sh [OUTDIR]      (default: dist; `make deb` runs it)
#
# It prints the path of OUTDIR/milter-grey_VERSION_ARCH.deb on its last line.
# Needs go and dpkg-deb (any Debian has it); no debhelper, no root.
# `make deb-lint` runs lintian on the result, for information.
#
# Environment (the names dpkg's own tools use):
#   DEB_VERSION      the version; default from `git describe --tags --always
#                    --dirty`: tag v1.2.3 -> 1.2.3, 4 commits after it ->
#                    1.2.3+git4.gSHA, no tag -> 0.0.0+gitDATE.SHA (DATE: the
#                    commit's UTC time), uncommitted changes -> +dirty.
#   DEB_HOST_ARCH    the architecture; default `dpkg --print-architecture`.
#                    Another one cross-compiles (amd64, arm64, armhf, i386,
#                    ppc64el, s390x, riscv64, ...).
#   DEBFULLNAME, DEBEMAIL
#                    the Maintainer; default the author of the last commit.
#   GO               the go command (default go).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
outdir=${1:-dist}
GO=${GO:-go}
pkg=milter-grey

die() { printf 'build-deb: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-deb: %s\n' "$*" >&2; }

command -v dpkg-deb >/dev/null || die "dpkg-deb not found (Debian package dpkg)"
command -v "$GO" >/dev/null || die "$GO not found (need Go 1.26)"
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
cd "$top"

in_git() { git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; }

# debian_version turns `git describe --tags --always --dirty` into a version
# dpkg accepts and orders the way the commits go.
debian_version() {
	local desc dirty="" v
	desc=$(git describe --tags --always --dirty)
	if [[ $desc == *-dirty ]]; then
		dirty=+dirty
		desc=${desc%-dirty}
	fi
	if [[ $desc =~ ^v?([0-9][A-Za-z0-9.~+-]*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		# N commits after a tag. A "-" inside the tag (1.0.0-rc1) marks a
		# pre-release: "~" sorts it before 1.0.0.
		v="${BASH_REMATCH[1]//-/\~}+git${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
	elif [[ $desc =~ ^v?([0-9][A-Za-z0-9.~+-]*)$ ]] && git rev-parse -q --verify "refs/tags/$desc" >/dev/null; then
		v=${BASH_REMATCH[1]//-/\~}
	else
		# No tag: describe gave the abbreviated commit.
		v="0.0.0+git$(TZ=UTC0 git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S).$(git rev-parse --short=12 HEAD)"
	fi
	printf '%s%s\n' "$v" "$dirty"
}

VERSION=${DEB_VERSION:-}
if [[ -z $VERSION ]]; then
	in_git || die "not a git checkout: set DEB_VERSION"
	VERSION=$(debian_version)
fi
# Debian policy 5.6.12, without an epoch: UPSTREAM or UPSTREAM-REVISION.
[[ $VERSION =~ ^[0-9][A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)?$ ]] ||
	die "version $VERSION is not a valid Debian version (digits first, then [A-Za-z0-9.+~], optionally -REVISION; no epoch)"
# A native package (no revision) has a changelog; others a changelog.Debian.
changelog=changelog.gz
[[ $VERSION == *-* ]] && changelog=changelog.Debian.gz

ARCH=${DEB_HOST_ARCH:-$(dpkg --print-architecture)}
goarm=""
case $ARCH in
amd64) goarch=amd64 ;;
arm64) goarch=arm64 ;;
armhf) goarch=arm goarm=7 ;;
armel) goarch=arm goarm=5 ;;
i386) goarch=386 ;;
ppc64el) goarch=ppc64le ;;
s390x) goarch=s390x ;;
riscv64) goarch=riscv64 ;;
mips64el) goarch=mips64le ;;
loong64) goarch=loong64 ;;
*) die "no Go port known for Debian architecture $ARCH" ;;
esac

if [[ -n ${DEBFULLNAME:-} && -n ${DEBEMAIL:-} ]]; then
	MAINTAINER="$DEBFULLNAME <$DEBEMAIL>"
elif in_git; then
	MAINTAINER=$(git log -1 --format='%an <%ae>')
else
	MAINTAINER="milter-grey maintainers <root@localhost>"
fi

# Reproducible timestamps: the commit's time (dpkg-deb clamps to it).
if [[ -z ${SOURCE_DATE_EPOCH:-} ]] && in_git; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)}

stage=$(mktemp -d "${TMPDIR:-/tmp}/milter-grey-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
umask 022

log "version $VERSION, architecture $ARCH"

# The binary: static (no libc dependency, the pure-Go resolver), reproducible.
# `milter-grey version` reports the commit it was built from (Go's VCS
# stamp), even where GOFLAGS turns stamping off.
vcs=()
in_git && vcs=(-buildvcs=true)
install -d "$root/usr/sbin"
CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
	"$GO" build "${vcs[@]}" -trimpath -ldflags='-s -w' -o "$root/usr/sbin/$pkg" ./cmd/milter-grey
chmod 0755 "$root/usr/sbin/$pkg"

install -D -m 0644 contrib/milter-grey.service "$root/lib/systemd/system/milter-grey.service"

# The manual pages, from docs/man with go-md2man (a tool of go.mod), gzipped
# as Debian ships them.
for page in milter-grey.8 milter-grey.toml.5; do
	dir=$root/usr/share/man/man${page##*.}
	install -d "$dir"
	"$GO" tool go-md2man -in "docs/man/$page.md" | gzip -9n >"$dir/$page.gz"
	chmod 0644 "$dir/$page.gz"
done
install -D -m 0644 contrib/milter-grey.toml "$root/etc/milter-grey/milter-grey.toml"
# The starter client list, off until the configuration names it.
install -m 0644 contrib/whitelist_clients "$root/etc/milter-grey/whitelist_clients"

doc=$root/usr/share/doc/$pkg
install -D -m 0644 README.md "$doc/README.md"
install -m 0644 packaging/debian/README.Debian "$doc/README.Debian"
install -m 0644 contrib/logging.md "$doc/logging.md"
install -d "$doc/examples"
for f in milter-grey.toml postfix-main.cf sendmail.mc; do
	install -m 0644 "contrib/$f" "$doc/examples/$f"
done

# The changelog: one entry for this build; the history is in git.
{
	printf '%s (%s) unstable; urgency=medium\n\n' "$pkg" "$VERSION"
	if in_git; then
		printf '  * Built from commit %s.\n' "$(git rev-parse HEAD)"
	else
		printf '  * Built from a source tree without git.\n'
	fi
	printf '\n -- %s  %s\n' "$MAINTAINER" "$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/$changelog"
chmod 0644 "$doc/$changelog"

# A Go binary is static by design (CGO_ENABLED=0 above).
install -D -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/$pkg"

# copyright: milter-grey, then the license of every Go module linked in.
{
	cat <<-EOF
	Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
	Upstream-Name: milter-grey
	Source: https://github.com/milter-grey/milter-grey
	Comment: /usr/sbin/milter-grey is statically linked from milter-grey and
	 the Go modules listed below, each followed by the license text it ships.

	EOF
	lic=""
	for f in LICENSE LICENSE.md LICENSE.txt COPYING; do
		[[ -f $f ]] && { lic=$f; break; }
	done
	printf 'Files: *\nCopyright: the milter-grey authors\n'
	if [[ -n $lic ]]; then
		printf 'License: see-text\n'
		sed -e 's/^$/./' -e 's/^/ /' "$lic"
	else
		printf 'License: UNSTATED\n The source tree had no LICENSE file when this package was built.\n'
	fi
	"$GO" version -m "$root/usr/sbin/$pkg" | awk '$1 == "dep" { print $2, $3 }' |
		while read -r mod ver; do
			dir=$(GOFLAGS=-mod=mod "$GO" list -m -f '{{.Dir}}' "$mod" 2>/dev/null || true)
			printf '\nFiles: Go module %s %s\nCopyright: its authors\n' "$mod" "$ver"
			text=""
			for f in LICENSE LICENSE.md LICENSE.txt COPYING LICENCE; do
				[[ -n $dir && -f $dir/$f ]] && { text=$dir/$f; break; }
			done
			if [[ -n $text ]] && grep -q 'Apache License' "$text" && grep -q 'Version 2.0, January 2004' "$text"; then
				printf 'License: Apache-2.0\n On Debian systems the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.\n'
			elif [[ -n $text ]]; then
				printf 'License: see-text\n'
				sed -e 's/[[:space:]]*$//' -e 's/^$/./' -e 's/^/ /' "$text"
			else
				printf 'License: UNSTATED\n No license file found in the module cache.\n'
			fi
		done
} >"$doc/copyright"
chmod 0644 "$doc/copyright"

# DEBIAN/: control, conffiles, maintainer scripts, md5sums.
install -d -m 0755 "$root/DEBIAN"
installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sedesc() { printf '%s' "$1" | sed 's/[&|\\]/\\&/g'; }
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" \
	-e "s|@MAINTAINER@|$(sedesc "$MAINTAINER")|" -e "s|@INSTALLED_SIZE@|$installed_size|" \
	packaging/debian/control >"$root/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "packaging/debian/$s" "$root/DEBIAN/$s"
done
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
	xargs md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
if grep -q '@[A-Z_]*@' "$root/DEBIAN/control"; then
	die "unfilled placeholder in DEBIAN/control"
fi

deb=$outdir/${pkg}_${VERSION}_${ARCH}.deb
dpkg-deb --build --root-owner-group "$root" "$deb" >/dev/null
log "built $deb ($(du -h "$deb" | cut -f1))"
printf '%s\n' "$deb"
