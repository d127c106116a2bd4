//! Parsing `crm_mon --output-as=xml` (Pacemaker's schema-validated `pacemaker-result`
//! document, `/usr/share/pacemaker/api/crm_mon-*.rng`) into what pm-monitor needs: each node's
//! state flags, the cluster-wide `maintenance-mode`, and node attributes. Bounded: the caller
//! caps the size; here nesting depth and the number of elements are capped, and anything that
//! is not a complete `pacemaker-result` with status code 0 is an error.

use std::collections::HashMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Deepest element nesting accepted (crm_mon's output is about 6 deep).
pub const MAX_DEPTH: usize = 32;
/// Most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 200_000;

/// One `<nodes><node …/>` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFlags {
    /// `online`.
    pub online: bool,
    /// `standby` or `standby_onfail`.
    pub standby: bool,
    /// `maintenance` (the node's own).
    pub maintenance: bool,
    /// `unclean`.
    pub unclean: bool,
}

/// What one crm_mon run said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Node name → flags.
    pub nodes: HashMap<String, NodeFlags>,
    /// Node name → attribute name → value (`<node_attributes>`).
    pub attributes: HashMap<String, HashMap<String, String>>,
    /// `cluster_options/@maintenance-mode`.
    pub cluster_maintenance: bool,
    /// `current_dc/@with_quorum` when a DC is present: whether this node's partition has
    /// quorum. `None` without a DC (an election is under way).
    pub quorum: Option<bool>,
}

impl Snapshot {
    /// The `#state` pseudo-attribute of `node`, or `None` if crm_mon does not list it. A node
    /// that is unclean is `unclean` whatever else holds; then `offline`; then `noquorum` (its
    /// partition has lost quorum: the quorate side may be about to fence it, and this side's
    /// view of it cannot be trusted); then maintenance (the node's or the whole cluster's);
    /// then standby.
    pub fn state(&self, node: &str) -> Option<&'static str> {
        let f = self.nodes.get(node)?;
        Some(if f.unclean {
            "unclean"
        } else if !f.online {
            "offline"
        } else if self.quorum == Some(false) {
            "noquorum"
        } else if f.maintenance || self.cluster_maintenance {
            "maintenance"
        } else if f.standby {
            "standby"
        } else {
            "online"
        })
    }
}

/// Output that is not a usable crm_mon document.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CrmXmlError {
    /// Not well-formed XML.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// Too deep or too many elements.
    #[error("document exceeds the parser's bounds ({0})")]
    TooLarge(&'static str),
    /// Well-formed but not what crm_mon writes.
    #[error("not crm_mon output: {0}")]
    Unexpected(&'static str),
    /// crm_mon reported an error in its `<status>` element.
    #[error("crm_mon reported status {code}: {message}")]
    Status {
        /// The status code.
        code: String,
        /// Its message.
        message: String,
    },
}

fn attr(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, CrmXmlError> {
    match e
        .try_get_attribute(name)
        .map_err(|x| CrmXmlError::Xml(x.to_string()))?
    {
        Some(a) => Ok(Some(
            a.unescape_value()
                .map_err(|x| CrmXmlError::Xml(x.to_string()))?
                .into_owned(),
        )),
        None => Ok(None),
    }
}

fn flag(e: &BytesStart<'_>, name: &str) -> Result<bool, CrmXmlError> {
    Ok(attr(e, name)?.as_deref() == Some("true"))
}

/// Parse one crm_mon XML document.
pub fn parse(xml: &str) -> Result<Snapshot, CrmXmlError> {
    let mut r = Reader::from_str(xml);
    r.config_mut().check_end_names = true;
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut elements = 0usize;
    let mut snap = Snapshot::default();
    let mut saw_root = false;
    let mut saw_nodes = false;
    let mut status: Option<(String, String)> = None;
    let mut attr_node: Option<String> = None;
    loop {
        let ev = r
            .read_event()
            .map_err(|e| CrmXmlError::Xml(e.to_string()))?;
        let (e, empty) = match ev {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                if path.pop().is_some_and(|n| n == b"node")
                    && path.last().is_some_and(|p| p == b"node_attributes")
                {
                    attr_node = None;
                }
                continue;
            }
            Event::Eof => break,
            Event::DocType(_) => return Err(CrmXmlError::Unexpected("a DOCTYPE")),
            _ => continue,
        };
        elements += 1;
        if elements > MAX_ELEMENTS {
            return Err(CrmXmlError::TooLarge("too many elements"));
        }
        if path.len() >= MAX_DEPTH {
            return Err(CrmXmlError::TooLarge("nesting too deep"));
        }
        let name = e.name().as_ref().to_vec();
        let parent: &[u8] = path.last().map_or(b"", |p| p.as_slice());
        match (path.len(), parent, name.as_slice()) {
            (0, _, b"pacemaker-result") => saw_root = true,
            (0, _, _) => return Err(CrmXmlError::Unexpected("root is not <pacemaker-result>")),
            (2, b"summary", b"current_dc") => {
                snap.quorum = if flag(&e, "present")? {
                    Some(flag(&e, "with_quorum")?)
                } else {
                    None
                };
            }
            (2, b"summary", b"cluster_options") => {
                snap.cluster_maintenance = flag(&e, "maintenance-mode")?;
            }
            (1, _, b"nodes") => saw_nodes = true,
            (2, b"nodes", b"node") => {
                let n = attr(&e, "name")?.ok_or(CrmXmlError::Unexpected("<node> without name"))?;
                let f = NodeFlags {
                    online: flag(&e, "online")?,
                    standby: flag(&e, "standby")? || flag(&e, "standby_onfail")?,
                    maintenance: flag(&e, "maintenance")?,
                    unclean: flag(&e, "unclean")?,
                };
                snap.nodes.insert(n, f);
            }
            (2, b"node_attributes", b"node") => {
                let n = attr(&e, "name")?.ok_or(CrmXmlError::Unexpected("<node> without name"))?;
                snap.attributes.entry(n.clone()).or_default();
                attr_node = Some(n);
            }
            (3, b"node", b"attribute") if path[1] == b"node_attributes" => {
                let (Some(node), Some(a), Some(v)) =
                    (attr_node.as_ref(), attr(&e, "name")?, attr(&e, "value")?)
                else {
                    return Err(CrmXmlError::Unexpected("<attribute> without name or value"));
                };
                snap.attributes
                    .entry(node.clone())
                    .or_default()
                    .insert(a, v);
            }
            (1, _, b"status") => {
                status = Some((
                    attr(&e, "code")?.unwrap_or_default(),
                    attr(&e, "message")?.unwrap_or_default(),
                ));
            }
            _ => {}
        }
        if !empty {
            path.push(name);
        }
    }
    if !path.is_empty() {
        return Err(CrmXmlError::Xml("document ends inside an element".into()));
    }
    if !saw_root {
        return Err(CrmXmlError::Unexpected("no <pacemaker-result>"));
    }
    match status {
        Some((code, _)) if code == "0" => {}
        Some((code, message)) => return Err(CrmXmlError::Status { code, message }),
        None => return Err(CrmXmlError::Unexpected("no <status> element")),
    }
    if !saw_nodes {
        return Err(CrmXmlError::Unexpected("no <nodes> element"));
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<pacemaker-result api-version="2.25" request="crm_mon">
  <summary><cluster_options stonith-enabled="false" maintenance-mode="false"/></summary>
  <nodes>
    <node name="host1" id="1" online="true" standby="false" standby_onfail="false" maintenance="false" pending="false" unclean="false"/>
    <node name="host2" id="2" online="true" standby="true" standby_onfail="false" maintenance="false" pending="false" unclean="false"/>
    <node name="host3" id="3" online="false" standby="false" standby_onfail="false" maintenance="false" pending="false" unclean="true"/>
    <node name="host4" id="4" online="false" standby="false" standby_onfail="false" maintenance="false" pending="false" unclean="false"/>
    <node name="host5" id="5" online="true" standby="true" standby_onfail="false" maintenance="true" pending="false" unclean="false"/>
  </nodes>
  <node_attributes>
    <node name="host1"><attribute name="pingd" value="100"/><attribute name="x" value="a&amp;b"/></node>
  </node_attributes>
  <status code="0" message="OK"/>
</pacemaker-result>"#;

    #[test]
    fn states_and_attributes() {
        let s = parse(DOC).unwrap();
        assert_eq!(s.state("host1"), Some("online"));
        assert_eq!(s.state("host2"), Some("standby"));
        assert_eq!(s.state("host3"), Some("unclean"));
        assert_eq!(s.state("host4"), Some("offline"));
        assert_eq!(s.state("host5"), Some("maintenance"));
        assert_eq!(s.state("nobody"), None);
        assert_eq!(s.attributes["host1"]["pingd"], "100");
        assert_eq!(s.attributes["host1"]["x"], "a&b");
        let m = parse(&DOC.replace(r#"maintenance-mode="false""#, r#"maintenance-mode="true""#))
            .unwrap();
        assert_eq!(m.state("host2"), Some("maintenance"));
        assert_eq!(m.state("host4"), Some("offline"));
    }

    #[test]
    fn garbage_and_errors_are_refused() {
        for bad in [
            "",
            "not xml",
            "<pacemaker-result>",
            "<other/>",
            &DOC.replace("<status code=\"0\" message=\"OK\"/>", ""),
            &DOC.replace("code=\"0\"", "code=\"102\""),
            &DOC[..DOC.len() / 2],
            "<pacemaker-result><status code=\"0\"/></pacemaker-result>",
            "<!DOCTYPE x [<!ENTITY a \"b\">]><pacemaker-result/>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let e = parse(&DOC.replace(
            "code=\"0\" message=\"OK\"",
            "code=\"102\" message=\"Not connected\"",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("Not connected"), "{e}");
    }

    #[test]
    fn bounds() {
        let deep = format!(
            "<pacemaker-result>{}{}</pacemaker-result>",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(parse(&deep), Err(CrmXmlError::TooLarge("nesting too deep")));
        let many = format!(
            "<pacemaker-result>{}</pacemaker-result>",
            "<a/>".repeat(MAX_ELEMENTS + 1)
        );
        assert_eq!(
            parse(&many),
            Err(CrmXmlError::TooLarge("too many elements"))
        );
    }
}
