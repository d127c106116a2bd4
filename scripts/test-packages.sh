#!/bin/sh
# The package test (a step of scripts/test.sh; needs root, debootstrap, lintian, unshare and
# Debian's package mirror):
#   1. build the packages (scripts/build-packages.sh) and run lintian: no errors allowed;
#   2. check the unit with systemd-analyze verify;
#   3. in a clean Debian 12 root: install our five packages, check paths, conffile, key,
#      diversion and enablement, run scripts/demo.sh against the installed binaries (in a
#      network namespace of its own), remove them again: nothing else removed, conffile kept,
#      dpkg state clean;
#   4. in another clean root: install Debian's fence-virtd, fence-virt and fence-agents, edit
#      the config, install ours over them (apt swaps the packages), check that the edit and the
#      key survived and that fence-agents' fence_vmware_soap was moved aside, remove ours (the
#      Python agent comes back), and install Debian's again.
# The minbase root is made once with debootstrap and kept as a tarball in $FENCE_RS_CACHE
# (default /var/cache/fence-rs), with the .debs apt downloads, so later runs need the mirror
# only for `apt-get update`. Prints "test-packages.sh: PASS" or "test-packages.sh: FAIL: why".
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)

CACHE=${FENCE_RS_CACHE:-/var/cache/fence-rs}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
base=$CACHE/$SUITE-minbase.tar.gz
archives=$CACHE/apt-archives

say() { echo "test-packages.sh: $*"; }
fail() {
    say "FAIL: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || fail "must run as root (debootstrap, chroot, namespaces)"
for tool in debootstrap lintian unshare chroot systemd-analyze ip; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (scripts/install-peers.sh installs it)"
done

# --- 1. packages and lintian
say "building the packages"
debs=$(sh scripts/build-packages.sh | grep '\.deb$' | sort -u)
[ "$(echo "$debs" | wc -l)" = 5 ] || fail "expected five packages, got: $debs"
say "lintian (errors fail the test)"
# shellcheck disable=SC2086 # one word per package
lintian --fail-on error $debs || fail "lintian reports errors"

# --- 2. the unit
unitdir=$(mktemp -d)
cp packaging/deb/fence-virtd-rs/fence_virtd.service "$unitdir/"
verify=$(systemd-analyze verify "$unitdir/fence_virtd.service" 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify is not clean: $verify"
exposure=$(systemd-analyze security --offline=true "$unitdir/fence_virtd.service" 2>/dev/null | tail -n 1)
say "systemd-analyze security: $exposure"
rm -rf "$unitdir"

# --- 3. and 4. Debian roots
mkdir -p "$CACHE" "$archives/partial"
if [ ! -s "$base" ]; then
    say "creating the cached Debian $SUITE minbase root ($base)"
    tmp=$(mktemp -d "$CACHE/debootstrap.XXXXXX")
    debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        {
            rm -rf "$tmp"
            fail "debootstrap failed (see $CACHE/debootstrap.log)"
        }
    # No daemon started by a maintainer script inside the root; no Recommends.
    printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
    chmod 755 "$tmp/usr/sbin/policy-rc.d"
    printf 'APT::Install-Recommends "false";\n' >"$tmp/etc/apt/apt.conf.d/90fence-rs-test"
    rm -rf "$tmp/var/cache/apt/archives/"*.deb
    tar -C "$tmp" -czf "$base.new" . && mv "$base.new" "$base"
    rm -rf "$tmp"
fi

work=$(mktemp -d /var/tmp/fence-rs-packages.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root

# A fresh root from the cached tarball, with the packages under /debs.
new_root() {
    rm -rf "$root"
    mkdir -p "$root"
    tar -C "$root" -xzf "$base"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mkdir -p "$root/debs"
    # shellcheck disable=SC2086
    cp $debs "$root/debs/"
}

# Run a command in the root, in a mount namespace of its own (the apt cache and /proc are
# mounted there and vanish with it).
in_root() {
    unshare --mount --propagation private --fork -- sh -c '
        r=$1 a=$2; shift 2
        mount --bind "$a" "$r/var/cache/apt/archives" && mount -t proc proc "$r/proc" &&
            exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
                DEBIAN_FRONTEND=noninteractive "$@"' sh "$root" "$archives" "$@"
}

# The same without network: a network namespace with only loopback.
in_root_offline() {
    unshare --mount --net --propagation private --fork -- sh -c '
        r=$1; shift
        ip link set lo up && mount -t proc proc "$r/proc" &&
            exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"' sh "$root" "$@"
}

apt_get() { in_root apt-get -q -y -o Dpkg::Use-Pty=0 "$@" >>"$work/apt.log" 2>&1 || {
    tail -n 30 "$work/apt.log" >&2
    fail "apt-get $*"
}; }

status_of() { in_root dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true; }
installed_set() { in_root dpkg-query -W -f='${Status} ${Package}\n' | sed -n 's/^install ok installed //p' | sort; }
audit_clean() {
    a=$(in_root dpkg --audit 2>&1) || true
    [ -z "$a" ] || fail "dpkg --audit after $1: $a"
}
# Sorted as installed_set prints them.
ours="fence-virt-rs fence-virtd-rs fence-vmware-rs fence-vmware-soap-rs fence-xenapi-rs"
our_debs=""
for p in $ours; do
    our_debs="$our_debs /debs/$(basename "$(echo "$debs" | grep "/${p}_")")"
done
# fence-agents' agents that ours divert.
diverted="fence_vmware_soap fence_vmware fence_xenapi"

# --- 3. clean root
say "clean root: install our packages"
new_root
apt_get update
before=$(installed_set)
# shellcheck disable=SC2086
apt_get install $our_debs
for p in $ours; do
    [ "$(status_of "$p")" = "install ok installed" ] || fail "$p is not installed: $(status_of "$p")"
done
for f in /usr/sbin/fence_virtd /usr/sbin/fence_virtctl /usr/sbin/fence_xvm /usr/sbin/fence_virt \
    /usr/sbin/fence_vmware_soap /usr/sbin/fence_vmware /usr/sbin/fence_xenapi \
    /usr/lib/ocf/resource.d/fence-rs/vm-client; do
    [ -x "$root$f" ] || fail "$f is missing"
done
for f in /lib/systemd/system/fence_virtd.service /usr/share/man/man8/fence_virtd.8.gz \
    /usr/share/man/man5/fence_virt.conf.5.gz /usr/share/man/man8/fence_xvm.8.gz \
    /usr/share/man/man8/fence_virt.8.gz; do
    [ -f "$root$f" ] || fail "$f is missing"
done
grep -qx /etc/fence_virt.conf "$root/var/lib/dpkg/info/fence-virtd-rs.conffiles" ||
    fail "/etc/fence_virt.conf is not a conffile"
[ "$(stat -c %a "$root/etc/fence_virt.conf")" = 600 ] || fail "/etc/fence_virt.conf is not 0600"
[ "$(stat -c %a:%s "$root/etc/fence_virt.key")" = 600:4096 ] || fail "no 4096-byte 0600 /etc/fence_virt.key"
[ -L "$root/etc/systemd/system/multi-user.target.wants/fence_virtd.service" ] ||
    fail "fence_virtd.service was not enabled"
for a in $diverted; do
    in_root dpkg-divert --list "/usr/sbin/$a" | grep -q "rs$" || fail "no diversion of /usr/sbin/$a"
done
# The default config is valid: the daemon gets as far as the backend (no libvirtd here).
out=$(in_root_offline /usr/sbin/fence_virtd -F -p /run/fence_virtd.pid 2>&1) && rc=0 || rc=$?
{ [ "$rc" = 1 ] && echo "$out" | grep -q 'backend "libvirt" failed to initialise'; } ||
    fail "the default /etc/fence_virt.conf: expected the libvirt backend to fail (exit 1), got exit $rc: $out"
audit_clean "installing ours"

say "clean root: demo against the installed binaries"
mkdir -p "$root/root/fence-rs/scripts"
cp scripts/demo.sh "$root/root/fence-rs/scripts/"
demo=$(in_root_offline env FENCE_RS_BIN=/usr/sbin bash /root/fence-rs/scripts/demo.sh 2>&1) ||
    fail "demo: $demo"
exits=$(echo "$demo" | sed -n 's/^(exit \([0-9]*\))$/\1/p' | tr '\n' ' ')
[ "$exits" = "0 0 0 2 0 0 1 " ] || fail "demo exit codes: $exits (expected 0 0 0 2 0 0 1):
$demo"

say "clean root: remove them"
with_ours=$(installed_set)
# shellcheck disable=SC2086
apt_get remove $ours
removed=$(echo "$with_ours" | grep -vxF "$(installed_set)" | tr '\n' ' ')
[ "$removed" = "$ours " ] || fail "removing ours removed: $removed"
[ "$(status_of fence-virtd-rs)" = "deinstall ok config-files" ] ||
    fail "fence-virtd-rs after removal: $(status_of fence-virtd-rs)"
[ -f "$root/etc/fence_virt.conf" ] || fail "the conffile went with the removal"
[ ! -e "$root/usr/sbin/fence_virtd" ] || fail "fence_virtd stayed"
for a in $diverted; do
    if in_root dpkg-divert --list | grep -q "/usr/sbin/$a "; then fail "the diversion of $a stayed"; fi
done
audit_clean "removing ours"
[ -n "$before" ] || fail "empty package list"

# --- 4. over Debian's packages
say "Debian's packages: install fence-virtd, fence-virt, fence-agents"
new_root
apt_get update
apt_get install fence-virtd fence-virt fence-agents
echo "# edited by the administrator" >>"$root/etc/fence_virt.conf"
key_sum=$(md5sum <"$root/etc/fence_virt.key")
[ -n "$key_sum" ] || fail "Debian's fence-virtd made no key"
python_agent=$(md5sum <"$root/usr/sbin/fence_vmware_soap")
python_xenapi=$(md5sum <"$root/usr/sbin/fence_xenapi")
python_vmware=$(md5sum <"$root/usr/sbin/fence_vmware")
debian_set=$(installed_set)

say "Debian's packages: install ours over them"
# The administrator edited the conffile, so dpkg asks whether to keep it; keep it, as answering
# N would (non-interactively: these two options).
keep="-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
# shellcheck disable=SC2086
apt_get $keep install $our_debs
for p in fence-virtd fence-virt; do
    case $(status_of "$p") in
    "install ok installed") fail "$p is still installed" ;;
    esac
done
[ "$(status_of fence-agents)" = "install ok installed" ] || fail "fence-agents went"
gone=$(echo "$debian_set" | grep -vxF "$(installed_set)" | tr '\n' ' ')
[ "$gone" = "fence-virt fence-virtd " ] || fail "installing ours removed: $gone"
grep -q "edited by the administrator" "$root/etc/fence_virt.conf" || fail "the edited config was replaced"
[ "$(md5sum <"$root/etc/fence_virt.key")" = "$key_sum" ] || fail "the key changed"
in_root /usr/sbin/fence_virtd -l | grep -q sim || fail "/usr/sbin/fence_virtd is not ours"
grep -q '^Type=notify' "$root/lib/systemd/system/fence_virtd.service" || fail "the unit is not ours"
[ "$(md5sum <"$root/usr/sbin/fence_vmware_soap.fence-agents")" = "$python_agent" ] ||
    fail "fence-agents' fence_vmware_soap was not moved aside"
in_root /usr/sbin/fence_vmware_soap -o metadata | grep -q 'name="fence_vmware_soap"' ||
    fail "our fence_vmware_soap does not run"
[ "$(md5sum <"$root/usr/sbin/fence_xenapi.fence-agents")" = "$python_xenapi" ] ||
    fail "fence-agents' fence_xenapi was not moved aside"
[ "$(md5sum <"$root/usr/sbin/fence_vmware.fence-agents")" = "$python_vmware" ] ||
    fail "fence-agents' fence_vmware was not moved aside"
in_root /usr/sbin/fence_vmware -o metadata | grep -q 'name="fence_vmware"' ||
    fail "our fence_vmware does not run"
[ "$(md5sum <"$root/usr/sbin/fence_vmware")" != "$python_vmware" ] ||
    fail "/usr/sbin/fence_vmware is still fence-agents'"
audit_clean "installing ours over Debian's"

say "Debian's packages: remove ours"
with_ours=$(installed_set)
# shellcheck disable=SC2086
apt_get remove $ours
removed=$(echo "$with_ours" | grep -vxF "$(installed_set)" | tr '\n' ' ')
[ "$removed" = "$ours " ] || fail "removing ours removed: $removed"
[ "$(md5sum <"$root/usr/sbin/fence_vmware_soap")" = "$python_agent" ] ||
    fail "fence-agents' fence_vmware_soap is not back"
[ "$(md5sum <"$root/usr/sbin/fence_xenapi")" = "$python_xenapi" ] ||
    fail "fence-agents' fence_xenapi is not back"
[ "$(md5sum <"$root/usr/sbin/fence_vmware")" = "$python_vmware" ] ||
    fail "fence-agents' fence_vmware is not back"
grep -q "edited by the administrator" "$root/etc/fence_virt.conf" || fail "the config went"
[ "$(md5sum <"$root/etc/fence_virt.key")" = "$key_sum" ] || fail "the key went"
audit_clean "removing ours"

say "Debian's packages: install Debian's again"
apt_get $keep install fence-virtd fence-virt
grep -q "edited by the administrator" "$root/etc/fence_virt.conf" || fail "the config went"
[ -f "$root/usr/lib/x86_64-linux-gnu/fence-virt/multicast.so" ] || fail "the C daemon is not back"
audit_clean "reinstalling Debian's"

say PASS
