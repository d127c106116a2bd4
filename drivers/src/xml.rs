//! A small owned XML tree for SOAP and XML-RPC responses, fence agents' metadata and
//! Pacemaker's fencing history, and escaping for the requests we write by hand.
//! Element and attribute names are kept by local name (namespace prefixes differ between
//! vCenter, ESXi and the simulator and carry no meaning for us).
//!
//! The input comes from the network, so the tree is bounded: at most [`MAX_DEPTH`] levels
//! (a deeper tree would overflow the stack when dropped or compared, as every recursive
//! structure does) and [`MAX_ELEMENTS`] elements per document. Real vSphere answers are about
//! 15 levels deep and, with the driver's paged property collection, a few thousand elements.

use quick_xml::events::Event;
use quick_xml::Reader;

/// One element: local name, attributes (qualified key as written, value), text, children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// First child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follow a path of child names.
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        names.iter().try_fold(self, |e, n| e.child(n))
    }

    /// Attribute by exact key (`type` for a managed-object reference).
    #[cfg_attr(not(feature = "vmware_soap"), allow(dead_code))]
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `xsi:type` attribute, whatever prefix the server bound to the XSI namespace.
    #[cfg_attr(not(feature = "vmware_soap"), allow(dead_code))]
    pub fn xsi_type(&self) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.ends_with(":type"))
            .map(|(_, v)| v.rsplit(':').next().unwrap_or(v))
    }
}

/// Deepest element nesting accepted in one document.
pub(crate) const MAX_DEPTH: usize = 128;

/// Most elements accepted in one document.
pub(crate) const MAX_ELEMENTS: usize = 200_000;

/// Why a response could not be read as XML.
#[derive(Debug, thiserror::Error)]
#[error("malformed XML from server: {0}")]
pub(crate) struct XmlError(pub String);

/// Parse a whole document into its root element.
pub(crate) fn parse(doc: &str) -> Result<Element, XmlError> {
    parse_bounded(doc, MAX_ELEMENTS)
}

/// [`parse`] with another element bound (XenAPI's `VM.get_all_records` of a large pool is one
/// document of a few hundred elements per VM).
pub(crate) fn parse_bounded(doc: &str, max_elements: usize) -> Result<Element, XmlError> {
    parse_limited(doc, max_elements, MAX_DEPTH)
}

/// [`parse`] with both bounds given. A second root element is an error.
pub(crate) fn parse_limited(
    doc: &str,
    max_elements: usize,
    max_depth: usize,
) -> Result<Element, XmlError> {
    let mut reader = Reader::from_str(doc);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let start = |e: &quick_xml::events::BytesStart<'_>| -> Result<Element, XmlError> {
        let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|err| XmlError(err.to_string()))?;
            let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
            let val = a
                .unescape_value()
                .map_err(|err| XmlError(err.to_string()))?
                .into_owned();
            attrs.push((key, val));
        }
        Ok(Element {
            name,
            attrs,
            ..Element::default()
        })
    };
    let mut elements = 0usize;
    let mut count = |depth: usize| -> Result<(), XmlError> {
        elements += 1;
        if elements > max_elements {
            return Err(XmlError(format!(
                "more than {max_elements} elements in one answer"
            )));
        }
        if depth > max_depth {
            return Err(XmlError(format!(
                "elements nested deeper than {max_depth} levels"
            )));
        }
        Ok(())
    };
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                count(stack.len() + 1)?;
                stack.push(start(&e)?)
            }
            Ok(Event::Empty(e)) => {
                count(stack.len() + 1)?;
                let el = start(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_some() => {
                        return Err(XmlError("more than one root element".into()))
                    }
                    None => root = Some(el),
                }
            }
            Ok(Event::End(_)) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_some() => {
                        return Err(XmlError("more than one root element".into()))
                    }
                    None => root = Some(el),
                }
            }
            Ok(Event::Text(t)) => {
                if let Some(cur) = stack.last_mut() {
                    let s = t.unescape().map_err(|err| XmlError(err.to_string()))?;
                    cur.text.push_str(&s);
                }
            }
            Ok(Event::CData(t)) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(XmlError(e.to_string())),
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("document ended inside an element".into()));
    }
    root.ok_or_else(|| XmlError("empty document".into()))
}

/// Escape text for element content or attribute values.
pub(crate) fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixed_soap_and_keeps_local_names() {
        let doc = r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><R xmlns="urn:vim25"><returnval type="Folder">group-d1</returnval><v xmlns:X="http://www.w3.org/2001/XMLSchema-instance" X:type="xsd:string">a &amp; b ü</v><e/></R></soapenv:Body></soapenv:Envelope>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "Envelope");
        let r = root.path(&["Body", "R"]).unwrap();
        let rv = r.child("returnval").unwrap();
        assert_eq!(rv.attr("type"), Some("Folder"));
        assert_eq!(rv.text, "group-d1");
        let v = r.child("v").unwrap();
        assert_eq!(v.text, "a & b ü");
        assert_eq!(v.xsi_type(), Some("string"));
        assert!(r.child("e").is_some());
    }

    #[test]
    fn rejects_truncated_documents() {
        assert!(parse("<a><b></b>").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn deep_and_huge_documents_are_refused_not_overflowed() {
        // 200,000 levels overflowed the stack (dropping the tree) before the bound.
        let n = 200_000;
        let deep = format!("{}{}", "<a>".repeat(n), "</a>".repeat(n));
        let e = parse(&deep).unwrap_err();
        assert!(e.to_string().contains("nested deeper than 128"), "{e}");
        let deep_empty = format!("{}<b/>{}", "<a>".repeat(n), "</a>".repeat(n));
        assert!(parse(&deep_empty).is_err());
        // exactly at the bound is fine
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let wide = format!("<r>{}</r>", "<e/>".repeat(MAX_ELEMENTS));
        let e = parse(&wide).unwrap_err();
        assert!(e.to_string().contains("more than 200000 elements"), "{e}");
        let fits = format!("<r>{}</r>", "<e/>".repeat(MAX_ELEMENTS - 1));
        assert!(parse(&fits).is_ok());
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
