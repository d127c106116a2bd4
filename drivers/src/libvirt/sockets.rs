//! Finding the host-side unix sockets of a domain's serial or channel devices in its libvirt
//! domain XML, for the daemon's serial listener. Matches fence_virtd's `virt-serial.c`
//! (fence-agents 4.12.1): only `<domain>/<devices>/<serial type='unix'>` (or `<channel
//! type='unix'>`) children, only `<source mode='bind' path='…'/>`, and with a configured socket
//! directory only sockets that sit directly in it. `<console>` elements, which libvirt adds as
//! aliases of the first serial port, are ignored as the C daemon ignores them.

use std::path::{Component, Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Which kind of character device the serial listener takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketKind {
    /// `<serial type='unix'>` (listener mode `serial`, the default).
    Serial,
    /// `<channel type='unix'>` (listener mode `vmchannel`).
    Channel,
}

impl SocketKind {
    fn element(self) -> &'static [u8] {
        match self {
            SocketKind::Serial => b"serial",
            SocketKind::Channel => b"channel",
        }
    }
}

/// Why a domain XML document could not be searched for sockets.
#[derive(Debug, thiserror::Error)]
pub enum SocketXmlError {
    /// The text is not well-formed XML.
    #[error("domain XML is not well-formed")]
    Xml(#[from] quick_xml::Error),
    /// An attribute could not be parsed.
    #[error("domain XML has a malformed attribute")]
    Attr(#[from] quick_xml::events::attributes::AttrError),
    /// The root element is not `<domain>`.
    #[error("domain XML root element is <{0}>, not <domain>")]
    NotDomain(String),
}

/// True when `socket` names a file directly inside `dir` (no subdirectory). Leading and
/// trailing slashes are ignored on both, as fence_virtd's `is_in_directory` ignores them;
/// unlike it, repeated slashes in the middle are tolerated too (its own "todo").
pub fn is_directly_in(dir: &Path, socket: &Path) -> bool {
    fn parts(p: &Path) -> Vec<Component<'_>> {
        p.components()
            .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
            .collect()
    }
    let d = parts(dir);
    let s = parts(socket);
    // As in C: an empty directory spec matches nothing.
    if d.is_empty() || s.len() != d.len() + 1 {
        return false;
    }
    matches!(s.last(), Some(Component::Normal(_))) && s[..d.len()] == d[..]
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, SocketXmlError> {
    match e.try_get_attribute(name)? {
        Some(a) => Ok(Some(a.unescape_value()?.into_owned())),
        None => Ok(None),
    }
}

/// The bind-mode unix socket paths of `kind` devices in one domain XML document, in document
/// order, restricted to sockets directly in `dir` when it is given.
pub fn parse_domain_sockets(
    xml: &str,
    kind: SocketKind,
    dir: Option<&Path>,
) -> Result<Vec<PathBuf>, SocketXmlError> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    // Depth of the element being opened: 1 = <domain>, 2 = <devices>, 3 = device, 4 = <source>.
    let mut depth = 0usize;
    let mut in_devices = false;
    let mut in_unix_device = false;

    let mut open = |e: &BytesStart<'_>,
                    d: usize,
                    in_devices: &mut bool,
                    in_unix_device: &mut bool|
     -> Result<(), SocketXmlError> {
        let name = e.local_name();
        match d {
            1 if name.as_ref() != b"domain" => {
                return Err(SocketXmlError::NotDomain(
                    String::from_utf8_lossy(name.as_ref()).into_owned(),
                ))
            }
            2 => *in_devices = name.as_ref() == b"devices",
            3 => {
                *in_unix_device = *in_devices
                    && name.as_ref() == kind.element()
                    && attr(e, "type")?.as_deref() == Some("unix");
            }
            4 if *in_unix_device && name.as_ref() == b"source" => {
                let mode = attr(e, "mode")?;
                let path = attr(e, "path")?;
                if let (Some("bind"), Some(path)) = (mode.as_deref(), path) {
                    let path = PathBuf::from(path);
                    let wanted = match dir {
                        Some(dir) => is_directly_in(dir, &path),
                        None => true,
                    };
                    if wanted {
                        out.push(path);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    };

    loop {
        match reader.read_event()? {
            Event::Start(e) => {
                depth += 1;
                open(&e, depth, &mut in_devices, &mut in_unix_device)?;
            }
            Event::Empty(e) => {
                open(&e, depth + 1, &mut in_devices, &mut in_unix_device)?;
                // An empty element has no children: whatever it opened is closed again.
                match depth + 1 {
                    2 => in_devices = false,
                    3 => in_unix_device = false,
                    _ => {}
                }
            }
            Event::End(_) => {
                match depth {
                    2 => {
                        in_devices = false;
                        in_unix_device = false;
                    }
                    3 => in_unix_device = false,
                    _ => {}
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<domain type='kvm' id='3'>
  <name>vm1</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <serial type='pty'><source path='/dev/pts/3'/><target port='0'/></serial>
  <devices>
    <serial type='unix'>
      <source mode='bind' path='/var/run/cluster/fence/vm1.sock'/>
      <target port='1'/>
    </serial>
    <serial type='unix'><source mode='connect' path='/var/run/cluster/fence/out.sock'/></serial>
    <serial type='unix'><source mode='bind' path='/var/run/cluster/fence/sub/deep.sock'/></serial>
    <serial type='file'><source mode='bind' path='/var/run/cluster/fence/file.sock'/></serial>
    <serial type='unix'><source mode='bind'/></serial>
    <serial type='unix'/>
    <console type='unix'><source mode='bind' path='/var/run/cluster/fence/vm1.sock'/></console>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='/var/run/cluster/fence/vm1-ch.sock'/>
      <target type='guestfwd' address='10.0.2.179' port='1229'/>
    </channel>
    <disk><serial type='unix'><source mode='bind' path='/var/run/cluster/fence/nested.sock'/></serial></disk>
  </devices>
</domain>"#;

    fn paths(v: &[PathBuf]) -> Vec<&str> {
        v.iter().map(|p| p.to_str().unwrap()).collect()
    }

    #[test]
    fn serial_sockets_without_dir_are_all_bind_unix_serials() {
        let got = parse_domain_sockets(XML, SocketKind::Serial, None).unwrap();
        assert_eq!(
            paths(&got),
            [
                "/var/run/cluster/fence/vm1.sock",
                "/var/run/cluster/fence/sub/deep.sock"
            ]
        );
    }

    #[test]
    fn serial_sockets_in_dir_skip_subdirectories() {
        let dir = Path::new("/var/run/cluster/fence");
        let got = parse_domain_sockets(XML, SocketKind::Serial, Some(dir)).unwrap();
        assert_eq!(paths(&got), ["/var/run/cluster/fence/vm1.sock"]);
    }

    #[test]
    fn channel_mode_without_dir_also_grabs_the_guest_agent() {
        let got = parse_domain_sockets(XML, SocketKind::Channel, None).unwrap();
        assert_eq!(
            paths(&got),
            [
                "/var/lib/libvirt/qemu/channel/target/org.qemu.guest_agent.0",
                "/var/run/cluster/fence/vm1-ch.sock"
            ]
        );
        let dir = Path::new("var/run/cluster/fence/");
        let got = parse_domain_sockets(XML, SocketKind::Channel, Some(dir)).unwrap();
        assert_eq!(paths(&got), ["/var/run/cluster/fence/vm1-ch.sock"]);
    }

    #[test]
    fn escaped_attribute_values_are_unescaped() {
        let xml = "<domain><devices><serial type='unix'>\
                   <source mode='bind' path='/tmp/a&amp;b.sock'/></serial></devices></domain>";
        let got = parse_domain_sockets(xml, SocketKind::Serial, None).unwrap();
        assert_eq!(paths(&got), ["/tmp/a&b.sock"]);
    }

    #[test]
    fn bad_documents_are_errors() {
        assert!(matches!(
            parse_domain_sockets("<network/>", SocketKind::Serial, None),
            Err(SocketXmlError::NotDomain(n)) if n == "network"
        ));
        assert!(
            parse_domain_sockets("<domain><devices></domain>", SocketKind::Serial, None).is_err()
        );
    }

    #[test]
    fn directory_matching_follows_the_c_rules() {
        let yes = [
            ("/run/fence", "/run/fence/a.sock"),
            ("/run/fence/", "/run/fence/a.sock"),
            ("run/fence", "/run/fence/a.sock"),
            ("/run//fence", "/run/fence//a.sock"),
        ];
        for (d, s) in yes {
            assert!(is_directly_in(Path::new(d), Path::new(s)), "{d} {s}");
        }
        let no = [
            ("/run/fence", "/run/fence/sub/a.sock"),
            ("/run/fence", "/run/fencex/a.sock"),
            ("/run/fence", "/run/fence"),
            ("/run/fence", "/run/a.sock"),
            ("/", "/a.sock"),
            ("", "/a.sock"),
        ];
        for (d, s) in no {
            assert!(!is_directly_in(Path::new(d), Path::new(s)), "{d} {s}");
        }
    }
}
