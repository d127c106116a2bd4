#!/bin/sh
# Names the reference peers the test suite runs against: each program, the Debian package
# that owns it, and that package's version. Fails if one is missing or not from its package
# (so a test run's output shows which references really ran, never a stand-in).
set -u
status=0
for f in /usr/sbin/fence_xvm /usr/sbin/fence_virt /usr/sbin/fence_virtd \
    /usr/sbin/fence_vmware_soap /usr/sbin/fence_vmware /usr/sbin/fence_xenapi \
    /usr/sbin/fence_virsh /usr/sbin/fence_dummy /usr/share/fence/fencing.py /usr/sbin/libvirtd \
    /usr/lib/pacemaker/pacemaker-fenced /usr/sbin/stonith_admin /usr/sbin/pacemakerd \
    /usr/sbin/crm_mon /usr/sbin/attrd_updater /usr/sbin/corosync /usr/sbin/ocf-tester \
    /usr/lib/x86_64-linux-gnu/fence-virt/cpg.so /usr/sbin/corosync-cpgtool \
    /usr/sbin/corosync-quorumtool \
    /usr/bin/openssl /usr/sbin/debootstrap /usr/bin/lintian /usr/bin/systemd-analyze \
    /usr/bin/xmllint /usr/bin/go /usr/sbin/nft /usr/sbin/iptables \
    /usr/share/gocode/src/github.com/vmware/govmomi/simulator/model.go; do
    if [ ! -e "$f" ]; then
        echo "show-peers.sh: MISSING $f" >&2
        status=1
        continue
    fi
    real=$(readlink -f "$f")
    pkg=$(dpkg -S "$real" 2>/dev/null | head -1 | cut -d: -f1)
    [ -n "$pkg" ] || pkg=$(dpkg -S "$f" 2>/dev/null | head -1 | cut -d: -f1)
    if [ -z "$pkg" ]; then
        echo "show-peers.sh: $f is not from a Debian package" >&2
        status=1
        continue
    fi
    printf 'peer %-70s %s %s\n' "$f" "$pkg" "$(dpkg-query -W -f '${Version}' "$pkg")"
done
# The official XenAPI Python SDK (PyPI, second client of the XenAPI simulator), not a Debian
# package: named with its version from its own metadata.
sdk=/opt/fence-rs/xenapi-sdk
if meta=$(ls "$sdk"/xenapi-*.dist-info/METADATA 2>/dev/null | head -1) && [ -n "$meta" ]; then
    printf 'peer %-70s %s %s\n' "$sdk/XenAPI" "PyPI xenapi" "$(sed -n 's/^Version: //p' "$meta")"
else
    echo "show-peers.sh: MISSING $sdk (PyPI xenapi, installed by scripts/install-peers.sh)" >&2
    status=1
fi
exit $status
