//! A libvirt test-driver node file (`test:///path/node.xml`): a `<node>` with one `<domain
//! type='test'>` per VM, each running or shut off, optionally with unix-socket serial ports or
//! virtio channels (for the serial/vmchannel listener).
//!
//! The test driver keeps VM state in the memory of the connection that opened the file, so
//! the state seen by a daemon can only be observed through that daemon.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One VM of the test node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDomain {
    /// Domain name.
    pub name: String,
    /// Canonical UUID text.
    pub uuid: String,
    /// Running (true) or shut off (false) when the driver loads the file.
    pub running: bool,
    /// `<serial type='unix'>` sockets (bind mode: the daemon connects to them).
    pub serial_sockets: Vec<PathBuf>,
    /// `<channel type='unix'>` virtio-serial sockets (bind mode).
    pub channel_sockets: Vec<PathBuf>,
    /// Transient (`<test:transient/>`): the domain vanishes when it is destroyed.
    pub transient: bool,
}

impl TestDomain {
    /// A domain without serial devices.
    pub fn new(name: &str, uuid: &str, running: bool) -> TestDomain {
        TestDomain {
            name: name.into(),
            uuid: uuid.into(),
            running,
            serial_sockets: Vec::new(),
            channel_sockets: Vec::new(),
            transient: false,
        }
    }

    /// Makes the domain transient (gone once destroyed).
    pub fn transient(mut self) -> TestDomain {
        self.transient = true;
        self
    }

    /// Adds a unix serial socket.
    pub fn with_serial(mut self, path: impl Into<PathBuf>) -> TestDomain {
        self.serial_sockets.push(path.into());
        self
    }

    /// Adds a unix virtio channel socket.
    pub fn with_channel(mut self, path: impl Into<PathBuf>) -> TestDomain {
        self.channel_sockets.push(path.into());
        self
    }
}

/// The whole node: a list of domains, rendered to XML.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestNode {
    /// The domains, in file order.
    pub domains: Vec<TestDomain>,
}

/// The standard VMs of the interop matrix.
pub mod std_vms {
    /// Running VM.
    pub const VM1: (&str, &str) = ("vm1", "11111111-2222-3333-4444-555555555555");
    /// Running VM, the only one allowed by the `groups` cases.
    pub const VM2: (&str, &str) = ("vm2", "11111111-2222-3333-4444-666666666666");
    /// VM that starts shut off.
    pub const VM3: (&str, &str) = ("vm3", "11111111-2222-3333-4444-777777777777");
}

impl TestNode {
    /// vm1 (running), vm2 (running), vm3 (shut off); see [`std_vms`].
    pub fn standard() -> TestNode {
        use std_vms::*;
        TestNode {
            domains: vec![
                TestDomain::new(VM1.0, VM1.1, true),
                TestDomain::new(VM2.0, VM2.1, true),
                TestDomain::new(VM3.0, VM3.1, false),
            ],
        }
    }

    /// The XML text.
    pub fn to_xml(&self) -> String {
        let mut s = String::from("<node>\n");
        for d in &self.domains {
            let _ = writeln!(s, "  <domain type='test'>");
            let _ = writeln!(s, "    <name>{}</name>", d.name);
            let _ = writeln!(s, "    <uuid>{}</uuid>", d.uuid);
            let _ = writeln!(s, "    <memory>65536</memory>");
            let _ = writeln!(s, "    <os><type>hvm</type></os>");
            let _ = writeln!(s, "    <devices>");
            for (i, p) in d.serial_sockets.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "      <serial type='unix'><source mode='bind' path='{}'/><target port='{i}'/></serial>",
                    p.display()
                );
            }
            for p in &d.channel_sockets {
                let _ = writeln!(
                    s,
                    "      <channel type='unix'><source mode='bind' path='{}'/><target type='virtio' name='org.clusterlabs.fence_virt.0'/></channel>",
                    p.display()
                );
            }
            let _ = writeln!(s, "    </devices>");
            // The test driver reads the initial state (virDomainState: 1 running, 5 shutoff)
            // from this element.
            let _ = writeln!(
                s,
                "    <test:runstate xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>{}</test:runstate>",
                if d.running { 1 } else { 5 }
            );
            if d.transient {
                let _ = writeln!(
                    s,
                    "    <test:transient xmlns:test='http://libvirt.org/schemas/domain/test/1.0'/>"
                );
            }
            let _ = writeln!(s, "  </domain>");
        }
        s.push_str("</node>\n");
        s
    }

    /// Writes the XML to `dir/node.xml` and returns the libvirt URI `test:///dir/node.xml`.
    pub fn write(&self, dir: &Path) -> String {
        let path = dir.join("node.xml");
        std::fs::write(&path, self.to_xml())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        format!("test://{}", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_lists_domains_and_sockets() {
        let mut n = TestNode::standard();
        n.domains[0] = n.domains[0].clone().with_serial("/tmp/x.sock");
        let x = n.to_xml();
        assert_eq!(x.matches("<domain type='test'>").count(), 3);
        assert!(x.contains("<name>vm3</name>"));
        assert!(x.contains("path='/tmp/x.sock'"));
        assert!(x.contains(">5</test:runstate>"));
    }

    #[test]
    fn uri_points_at_file() {
        let d = tempfile::tempdir().unwrap();
        let uri = TestNode::standard().write(d.path());
        assert_eq!(uri, format!("test://{}/node.xml", d.path().display()));
        assert!(d.path().join("node.xml").is_file());
    }
}
