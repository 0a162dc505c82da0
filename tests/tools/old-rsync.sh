#!/bin/sh
# Unpacks Debian 12's rsync 3.2.7 client into a directory, next to (not over)
# the installed rsync, for differential tests with an older client:
#
#   export UPSERV_TEST_RSYNC_OLD="$(tests/tools/old-rsync.sh /tmp/old-rsync)"
#
# Prints the client's path on stdout (progress goes to stderr). Needs apt and
# dpkg-deb; installs nothing system-wide. RSYNC_OLD_VERSION picks another
# Debian version of the package.
set -eu

dir=${1:?usage: old-rsync.sh DIR}
version=${RSYNC_OLD_VERSION:-3.2.7-1+deb12u6}
client="$dir/usr/bin/rsync"

if [ -x "$client" ] && "$client" --version >/dev/null 2>&1; then
    echo "$client"
    exit 0
fi

mkdir -p "$dir"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
# apt-get download drops privileges to _apt when it can; let it write here.
chmod 0777 "$scratch"
if ! apt-get download "rsync=$version" >&2; then
    echo "old-rsync.sh: refreshing the package lists and trying again" >&2
    apt-get update >&2
    apt-get download "rsync=$version" >&2
fi
dpkg-deb -x rsync_*.deb "$dir"
"$client" --version | head -n 1 >&2
echo "$client"
