//! The serial listener's libvirt socket source with libvirt's default URI: the test sets
//! `LIBVIRT_DEFAULT_URI`, so it has a test binary of its own (setting the environment while
//! other test threads are inside libvirt, which reads it, is undefined behaviour).
#![cfg(feature = "libvirt")]

use fence_drivers::libvirt::SocketKind;
use fence_virtd::listener::serial::{LibvirtSockets, SocketSource, VmSocket};

const U1: &str = "11111111-2222-3333-4444-555555555555";

fn node_xml(domains: &[(&str, &str, bool, &std::path::Path)]) -> String {
    let mut s = String::from("<node>");
    for (name, uuid, running, sock) in domains {
        s.push_str(&format!(
            "<domain type='test'><name>{name}</name><uuid>{uuid}</uuid><memory>65536</memory>\
             <os><type>hvm</type></os><devices><serial type='unix'><source mode='bind' \
             path='{}'/><target port='1'/></serial></devices>\
             <test:runstate xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>{}\
             </test:runstate></domain>",
            sock.display(),
            if *running { 1 } else { 5 }
        ));
    }
    s.push_str("</node>");
    s
}

/// The default URI (unset `uri`) is libvirt's, and each listing re-reads a test-driver
/// node file: rewriting it starts and stops domains for the listener.
#[test]
fn libvirt_source_uses_the_default_uri_and_a_fresh_connection_per_listing() {
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.xml");
    let a = dir.path().join("a.sock");
    let b = dir.path().join("b.sock");
    std::fs::write(&node, node_xml(&[("a", U1, true, &a)])).unwrap();
    // The only test in this binary: no other thread is inside libvirt (reading the
    // environment) while this sets it.
    std::env::set_var("LIBVIRT_DEFAULT_URI", format!("test://{}", node.display()));
    let src = LibvirtSockets {
        uri: None,
        kind: SocketKind::Serial,
        dir: Some(dir.path().to_path_buf()),
    };
    let got = src.running_sockets().unwrap();
    assert_eq!(
        got,
        [VmSocket {
            uuid: U1.into(),
            name: "a".into(),
            path: a.clone()
        }]
    );
    let u2 = "22222222-2222-3333-4444-555555555555";
    std::fs::write(
        &node,
        node_xml(&[("a", U1, false, &a), ("b", u2, true, &b)]),
    )
    .unwrap();
    let got = src.running_sockets().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].name.as_str(), &got[0].path), ("b", &b));
    let chan = LibvirtSockets {
        kind: SocketKind::Channel,
        ..src
    };
    assert!(chan.running_sockets().unwrap().is_empty());
}
