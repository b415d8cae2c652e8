#!/usr/bin/env bash
# ops_package: build the .deb from this build tree with cpack, install it with apt-get,
# check what it installed and that it works, then purge it (always, from a trap).
#
# usage: package.sh BUILD_DIR VERSION HAS_SIM   (HAS_SIM: 1 when the gpsrelay-sim target exists)
#
# Needs root (it installs into /). The deb is built from whichever build runs the test:
# in the sanitizer build it holds ASan binaries and dpkg-shlibdeps makes it depend on
# libasan8/libubsan1, which is exactly what those binaries need, so both builds test
# the same packaging. Runs are serialised with flock on LOCK: the -Werror and the ASan
# suites, or two engineers, must never install and purge the same package at once.
set -euo pipefail

usage="usage: package.sh BUILD_DIR VERSION HAS_SIM"
build=$(realpath "${1:?$usage}")
version=${2:?$usage}
has_sim=${3:?$usage}
lock=/tmp/gpsrelay-ops-package.lock
lock_wait_s=240 # another run takes ~20 s; ctest's TIMEOUT for this test is 300
apt_lock_wait_s=60

[ "$(id -u)" = 0 ] || { echo "FAIL: ops_package installs a package and needs root" >&2; exit 1; }
exec 9>"$lock"
flock -w "$lock_wait_s" 9 || { echo "FAIL: $lock held for ${lock_wait_s}s" >&2; exit 1; }

# The test purges what it installs. An installed gpsrelay it did not install is someone's
# deployment: refuse rather than purge it.
if dpkg-query -W -f='${Status}' gpsrelay 2>/dev/null | grep -q installed; then
    echo "FAIL: package gpsrelay is already installed; this test installs and purges it" >&2
    exit 1
fi

tmp=$(mktemp -d)
installed=0
cleanup() {
    if [ "$installed" = 1 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq \
            -o DPkg::Lock::Timeout=$apt_lock_wait_s gpsrelay >"$tmp/purge.log" 2>&1 ||
            { echo "FAIL: purge failed:" >&2; cat "$tmp/purge.log" >&2; }
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }

# ---- build the package ----
(cd "$tmp" && cpack -G DEB -B "$tmp/out" --config "$build/CPackConfig.cmake" >cpack.log 2>&1) ||
    { cat "$tmp/cpack.log" >&2; echo "FAIL: cpack" >&2; exit 1; }
debs=("$tmp"/out/gpsrelay_"$version"_*.deb)
[ -f "${debs[0]}" ] || { ls -R "$tmp/out" >&2; echo "FAIL: no gpsrelay_${version}_*.deb" >&2; exit 1; }
deb=${debs[0]}
echo "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"

depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for pkg in libwebsockets-evlib-uv procps libwebsockets17 libuv1 libjansson4 libpq5 libssl3 libc6; do
    [[ ", $depends," == *", $pkg "* || ", $depends," == *", $pkg,"* ]] ||
        fail "Depends lacks $pkg"
done

# ---- install ----
cp "$deb" "$tmp/"
(cd "$tmp" && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=$apt_lock_wait_s ./gpsrelay_*.deb >install.log 2>&1) ||
    { cat "$tmp/install.log" >&2; echo "FAIL: apt-get install" >&2; installed=1; exit 1; }
installed=1

# ---- files where they belong ----
for f in /usr/sbin/gpsrelayd /usr/bin/gpsrelayctl; do
    [ -x "$f" ] || fail "$f missing or not executable"
done
for f in /usr/lib/systemd/system/gpsrelay.service /etc/gpsrelay/gpsrelay.conf \
    /etc/gpsrelay/devices.csv /usr/share/gpsrelay/schema.sql \
    /usr/share/man/man8/gpsrelayd.8.gz /usr/share/man/man5/gpsrelay.conf.5.gz \
    /usr/share/doc/gpsrelay/copyright /usr/share/doc/gpsrelay/gpsrelay.conf.example; do
    [ -f "$f" ] || fail "$f missing"
done
if [ "$has_sim" = 1 ]; then
    [ -x /usr/bin/gpsrelay-sim ] || fail "/usr/bin/gpsrelay-sim missing though the target exists"
fi
conffiles=$(dpkg-query -W -f='${Conffiles}' gpsrelay)
for f in /etc/gpsrelay/gpsrelay.conf /etc/gpsrelay/devices.csv; do
    grep -q " $f " <<<"$conffiles" || fail "$f is not a conffile"
done
if command -v man >/dev/null; then
    for page in gpsrelayd gpsrelay.conf; do
        man -w "$page" >/dev/null 2>&1 || fail "man -w $page finds nothing"
    done
fi
for page in /usr/share/man/man8/gpsrelayd.8.gz /usr/share/man/man5/gpsrelay.conf.5.gz; do
    zcat "$page" | grep -q "^\.TH .* \"gpsrelay $version\"" || fail "$page is not for version $version"
done

# ---- the binaries work ----
out=$(/usr/sbin/gpsrelayd --version) || fail "gpsrelayd --version exited $?"
[ "$out" = "gpsrelayd $version" ] || fail "gpsrelayd --version said \"$out\""

# postinst made the token key: root-only, 64 hex digits and a newline (a 32-byte key).
key=/etc/gpsrelay/hs256.key
[ -f "$key" ] || fail "postinst did not create $key"
[ "$(stat -c '%a %U' "$key" 2>/dev/null)" = "600 root" ] || fail "$key is $(stat -c '%a %U' "$key")"
grep -qxE '[0-9a-f]{64}' "$key" || fail "$key does not hold 64 hex digits"

out=$(/usr/sbin/gpsrelayd -t -c /etc/gpsrelay/gpsrelay.conf 2>&1) && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "gpsrelayd -t on the shipped config exited $rc: $out"
# The documented way for an operator to replace the key works too.
(umask 077 && openssl rand -hex 32 >"$key")
out=$(/usr/sbin/gpsrelayd -t -c /etc/gpsrelay/gpsrelay.conf 2>&1) && rc=0 || rc=$?
[ "$rc" = 0 ] || fail "gpsrelayd -t with an openssl key exited $rc: $out"
# ...and a key others can read is refused (78), so the -t above could fail.
chmod 644 "$key"
/usr/sbin/gpsrelayd -t -c /etc/gpsrelay/gpsrelay.conf >/dev/null 2>&1 && rc=0 || rc=$?
[ "$rc" = 78 ] || fail "gpsrelayd -t with a world-readable key exited $rc, want 78"
chmod 600 "$key"

token=$(/usr/bin/gpsrelayctl token --secret-file "$key" --agency county-ems --ttl 60 2>&1) ||
    fail "gpsrelayctl token failed: $token"
[[ "$token" =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] || fail "not a JWT: $token"

# ---- the installed unit, untouched, verifies against the installed binary ----
unit=/usr/lib/systemd/system/gpsrelay.service
out=$(systemd-analyze verify --man=no --recursive-errors=yes "$unit" 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ] || [ -n "$out" ]; then
    fail "systemd-analyze verify $unit exited $rc:"
    printf '%s\n' "$out" >&2
fi

# ---- purge removes everything, the generated key and the config folder included ----
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq -o DPkg::Lock::Timeout=$apt_lock_wait_s \
    gpsrelay >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "apt-get purge"; }
installed=0
for f in /usr/sbin/gpsrelayd /usr/lib/systemd/system/gpsrelay.service /etc/gpsrelay; do
    [ ! -e "$f" ] || fail "$f left after purge"
done

[ "$failed" = 0 ] && echo "ops_package: ok"
exit "$failed"
