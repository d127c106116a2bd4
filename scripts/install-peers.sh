#!/bin/sh
# Installs every peer the test suite needs (reference C fence-virt, Python fence-agents,
# libvirt test driver, Pacemaker fencer and CLI, the corosync -dev libraries the `cpg` cargo
# feature links (rust-corosync links cpg, cfg, cmap, quorum and votequorum), govmomi's simulator, tools used by the harness
# and by scripts/vcsim-wsdl.sh; debootstrap, lintian and systemd-analyze for the package
# test), and the XenAPI Python SDK from PyPI into its own directory. Idempotent: only missing
# packages are installed, and `apt-get update` runs only when one of them, or a package
# vcsim-wsdl.sh downloads, has no candidate in the current package lists. Prints what it
# installed.
set -eu

PACKAGES="
fence-virt
fence-virtd
fence-agents
libvirt-daemon
libvirt-dev
libvirt-clients
pacemaker
pacemaker-cli-utils
corosync
libcpg-dev
libcfg-dev
libcmap-dev
libquorum-dev
libvotequorum-dev
libcorosync-common-dev
resource-agents
libxml2-utils
socat
iproute2
coreutils
util-linux
mount
pkg-config
golang-go
groff-base
man-db
golang-github-vmware-govmomi-dev
python3
python3-pip
openssl
tar
dpkg
apt
debootstrap
lintian
systemd
"

# Not installed, fetched by scripts/vcsim-wsdl.sh with `apt-get download`: must be in the
# package lists.
DOWNLOADED="
python3-oslo.vmware
"

if [ "$(id -u)" -ne 0 ]; then
    echo "install-peers.sh: must run as root (apt-get, and the system tests need netns)" >&2
    exit 1
fi

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done

# A package with no candidate version in the current lists (apt-cache show also succeeds for
# a name that is only mentioned, e.g. as a virtual package).
no_candidate() {
    ! apt-cache policy "$1" 2>/dev/null | grep -q '^  Candidate: [^(]'
}

export DEBIAN_FRONTEND=noninteractive
need_update=0
for p in $missing $DOWNLOADED; do
    if no_candidate "$p"; then
        need_update=1
    fi
done
if [ "$need_update" -eq 1 ]; then
    apt-get update -q
fi

if [ -n "$missing" ]; then
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -q --no-install-recommends $missing
    echo "install-peers.sh: installed:$missing"
else
    echo "install-peers.sh: all packages already installed"
fi

# The official XenAPI Python SDK (PyPI `xenapi`), a second client of the XenAPI simulator.
# Installed into its own directory, never on Python's default path: the reference
# fence_xenapi appends /usr/share/fence (its bundled XenAPI.py) to sys.path, and a
# system-wide `XenAPI` would shadow it.
XENAPI_SDK_DIR=/opt/fence-rs/xenapi-sdk
XENAPI_SDK_VERSION=26.21.1
if [ ! -f "$XENAPI_SDK_DIR/xenapi-$XENAPI_SDK_VERSION.dist-info/METADATA" ]; then
    python3 -m pip install -q --no-deps --target "$XENAPI_SDK_DIR" "xenapi==$XENAPI_SDK_VERSION"
    echo "install-peers.sh: installed XenAPI SDK $XENAPI_SDK_VERSION in $XENAPI_SDK_DIR"
fi
