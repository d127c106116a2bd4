#!/bin/sh
# Builds the Debian packages with cargo-deb (installed from crates.io when missing) into
# $CARGO_TARGET_DIR/debian (default target/debian) and prints their paths:
#   fence-virtd-rs        fence_virtd, fence_virtd.service, /etc/fence_virt.conf (replaces fence-virtd)
#   fence-virt-rs         fence_xvm, fence_virt (replaces fence-virt)
#   fence-vmware-soap-rs  fence_vmware_soap (diverts fence-agents' copy)
#   fence-vmware-rs       fence_vmware (diverts fence-agents' copy)
#   fence-xenapi-rs       fence_xenapi (diverts fence-agents' copy)
# cargo-deb rather than dpkg-buildpackage: the package metadata lives next to each crate in
# Cargo.toml, the release build is cargo's own, and no debian/ tree or debhelper is needed;
# its systemd support generates the same maintainer-script snippets as dh_installsystemd.
set -eu
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "build-packages.sh: installing cargo-deb from crates.io"
    cargo install cargo-deb --locked
fi

target=${CARGO_TARGET_DIR:-target}
out=$target/debian
mkdir -p "$out"
rm -f "$out"/fence-virtd-rs_*.deb "$out"/fence-virt-rs_*.deb "$out"/fence-vmware-soap-rs_*.deb \
    "$out"/fence-vmware-rs_*.deb "$out"/fence-xenapi-rs_*.deb

# --strip: the release profile keeps line tables for backtraces; the packages do not.
# fence_virtctl (the admin client) is built by fence-agents (the daemon never depends on the
# agents crate) but ships in the host package fence-virtd-rs: build it before that package.
cargo build --quiet --release -p fence-agents --bin fence_virtctl
cargo deb --quiet --strip -p fence-virtd -o "$out"
cargo deb --quiet --strip -p fence-agents --variant virt -o "$out"
cargo deb --quiet --strip -p fence-agents --variant vmware-soap -o "$out"
cargo deb --quiet --strip -p fence-agents --variant vmware -o "$out"
cargo deb --quiet --strip -p fence-agents --variant xenapi -o "$out"
ls "$out"/fence-virtd-rs_*.deb "$out"/fence-virt-rs_*.deb "$out"/fence-vmware-soap-rs_*.deb \
    "$out"/fence-vmware-rs_*.deb "$out"/fence-xenapi-rs_*.deb
