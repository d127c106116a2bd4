//! The SOAP transport of the vSphere Web Services API without a WSDL: envelopes written by
//! hand (same shape as fence-agents 4.12.1 `fence_vmware_soap` sends through suds, see the
//! transcripts in `drivers/testdata/soap-wire/`), one HTTP POST per call to `/sdk`, the
//! session cookie passed explicitly, faults decoded into [`Fault`]. Every request carries the
//! agent's connect and overall deadlines.

use std::io::Read;
use std::time::Duration;

use super::xml::{self, esc, Element};
use crate::http::is_timeout;
use crate::DriverError;

/// `SOAPAction` header. The reference sends `vim25`; we name the oldest API version that has
/// every method we use (`FindAllByUuid` came with 5.0), which every vCenter and ESXi from 5.0
/// on accepts (servers keep serving older API versions).
const SOAP_ACTION: &str = "urn:vim25/5.0";

/// Largest response body we accept (a 100-object property page is a few tens of kB).
const MAX_BODY: u64 = 64 << 20;

/// A managed-object reference: `<x type="VirtualMachine">vm-30</x>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Moref {
    pub ty: String,
    pub id: String,
}

impl Moref {
    pub fn new(ty: &str, id: &str) -> Moref {
        Moref {
            ty: ty.into(),
            id: id.into(),
        }
    }

    /// From an element carrying a `type` attribute and the id as text.
    pub fn from_element(e: &Element) -> Option<Moref> {
        let ty = e.attr("type")?;
        let id = e.text.trim();
        if id.is_empty() {
            return None;
        }
        Some(Moref::new(ty, id))
    }

    /// As an argument element `<tag type="…">id</tag>`.
    pub fn xml(&self, tag: &str) -> String {
        format!(
            "<{tag} type=\"{}\">{}</{tag}>",
            esc(&self.ty),
            esc(&self.id)
        )
    }
}

impl std::fmt::Display for Moref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.ty, self.id)
    }
}

/// A SOAP fault or a `LocalizedMethodFault`: the vSphere fault type (e.g. `InvalidLogin`,
/// `NotAuthenticated`, `InvalidPowerState`) and the server's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub kind: String,
    pub message: String,
}

impl Fault {
    /// Message for humans: the server text, or the fault type when the text is empty.
    pub fn text(&self) -> String {
        if self.message.is_empty() {
            self.kind.clone()
        } else if self.kind.is_empty() {
            self.message.clone()
        } else {
            format!("{} ({})", self.message, self.kind)
        }
    }

    /// The driver error for this fault, its text after `context` (`"{context}: {text}"`):
    /// `NoPermission` is [`DriverError::PermissionDenied`], any other fault
    /// [`DriverError::Platform`].
    pub fn to_driver_error(&self, context: &str) -> DriverError {
        let m = format!("{context}: {}", self.text());
        if self.kind == "NoPermission" {
            DriverError::PermissionDenied(m)
        } else {
            DriverError::Platform(m)
        }
    }

    /// `<soapenv:Fault>`: `faultstring` and the first element under `detail`.
    pub(crate) fn from_soap(f: &Element) -> Fault {
        let message = f
            .child("faultstring")
            .map(|s| s.text.trim().to_string())
            .unwrap_or_default();
        let kind = f
            .child("detail")
            .and_then(|d| d.children.first())
            .map(|d| {
                d.xsi_type()
                    .map(str::to_string)
                    .unwrap_or_else(|| d.name.trim_end_matches("Fault").to_string())
            })
            .unwrap_or_default();
        Fault { kind, message }
    }

    /// A `LocalizedMethodFault` (task `info.error`, property `missingSet.fault`).
    pub fn from_localized(e: &Element) -> Fault {
        let kind = e
            .child("fault")
            .and_then(|f| f.xsi_type())
            .unwrap_or_default()
            .to_string();
        let message = e
            .child("localizedMessage")
            .map(|m| m.text.trim().to_string())
            .unwrap_or_default();
        Fault { kind, message }
    }
}

/// Why one call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Transport, TLS, timeout or unreadable answer, already phrased for the caller.
    Driver(DriverError),
    /// The server answered with a fault.
    Fault(Fault),
}

impl CallError {
    pub fn is_not_authenticated(&self) -> bool {
        matches!(self, CallError::Fault(f) if f.kind == "NotAuthenticated")
    }
}

impl From<DriverError> for CallError {
    fn from(e: DriverError) -> Self {
        CallError::Driver(e)
    }
}

/// A transport failure flattened into one readable line (ureq and rustls nest their causes).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TransportError(pub String);

/// One HTTP endpoint (`http[s]://host:port/sdk`) with its agent.
pub(crate) struct Transport {
    agent: ureq::Agent,
    url: String,
    calls: std::sync::atomic::AtomicU64,
}

impl Transport {
    pub fn new(
        url: String,
        timeout: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Transport {
        Transport {
            agent: crate::http::agent(timeout, tls),
            url,
            calls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Method calls sent so far (answered or not).
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn unreachable(&self, why: String) -> DriverError {
        DriverError::Unreachable {
            what: format!("vSphere SDK at {}", self.url),
            source: Box::new(TransportError(why)),
        }
    }

    /// POST one method call. `args` is the already-escaped XML of the arguments after `_this`.
    /// Returns the response element (`<MethodResponse>`) and the response's `Set-Cookie`
    /// name=value pairs.
    pub fn call(
        &self,
        cookie: Option<&str>,
        method: &str,
        this: &Moref,
        args: &str,
    ) -> Result<(Element, Vec<String>), CallError> {
        let body = envelope(method, this, args);
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut req = self
            .agent
            .post(&self.url)
            .set("Content-Type", "text/xml; charset=utf-8")
            .set("SOAPAction", SOAP_ACTION);
        if let Some(c) = cookie {
            req = req.set("Cookie", c);
        }
        tracing::trace!(method, this = %this, "vSphere call");
        let resp = match req.send_string(&body) {
            Ok(r) => r,
            // Faults come back as HTTP 500 with a SOAP body.
            Err(ureq::Error::Status(code, r)) => {
                let text = self.read_body(r, method)?;
                return match xml::parse(&text)
                    .ok()
                    .and_then(|root| root.path(&["Body", "Fault"]).cloned())
                {
                    Some(f) => Err(CallError::Fault(Fault::from_soap(&f))),
                    None => Err(CallError::Driver(DriverError::Platform(format!(
                        "{method}: HTTP {code} from {}",
                        self.url
                    )))),
                };
            }
            Err(ureq::Error::Transport(t)) => return Err(self.transport_error(method, t).into()),
        };
        let cookies: Vec<String> = resp
            .all("set-cookie")
            .iter()
            .filter_map(|c| c.split(';').next())
            .map(|c| c.trim().to_string())
            .filter(|c| c.contains('='))
            .collect();
        let text = self.read_body(resp, method)?;
        let root = xml::parse(&text)
            .map_err(|e| CallError::Driver(DriverError::Platform(format!("{method}: {e}"))))?;
        let body = root.child("Body").ok_or_else(|| {
            CallError::Driver(DriverError::Platform(format!("{method}: no SOAP body")))
        })?;
        if let Some(f) = body.child("Fault") {
            return Err(CallError::Fault(Fault::from_soap(f)));
        }
        let want = format!("{method}Response");
        let r = body.child(&want).cloned().ok_or_else(|| {
            CallError::Driver(DriverError::Platform(format!(
                "{method}: no {want} in answer"
            )))
        })?;
        Ok((r, cookies))
    }

    fn read_body(&self, r: ureq::Response, method: &str) -> Result<String, CallError> {
        let mut s = String::new();
        r.into_reader()
            .take(MAX_BODY + 1)
            .read_to_string(&mut s)
            .map_err(|e| {
                if is_timeout(&e) {
                    DriverError::Timeout(format!("{method} at {}", self.url))
                } else {
                    self.unreachable(format!(
                        "reading the answer to {method}: {}",
                        crate::error_chain(&e)
                    ))
                }
            })?;
        if s.len() as u64 > MAX_BODY {
            return Err(DriverError::Platform(format!(
                "{method}: answer from {} is larger than {} MiB; refused",
                self.url,
                MAX_BODY >> 20
            ))
            .into());
        }
        Ok(s)
    }

    fn transport_error(&self, method: &str, t: ureq::Transport) -> DriverError {
        let timed_out = {
            let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&t);
            let mut hit = false;
            while let Some(c) = cur {
                if let Some(io) = c.downcast_ref::<std::io::Error>() {
                    hit |= is_timeout(io);
                }
                cur = c.source();
            }
            hit
        };
        if timed_out {
            return DriverError::Timeout(format!("{method} at {}", self.url));
        }
        let mut why = crate::error_chain(&t);
        if why.contains("certificate") || why.contains("Certificate") {
            why = format!("TLS certificate verification failed: {why}");
        }
        self.unreachable(why)
    }
}

/// The request envelope: body element in `urn:vim25` (default namespace), `_this` first.
pub(crate) fn envelope(method: &str, this: &Moref, args: &str) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
            r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" "#,
            r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema">"#,
            r#"<soapenv:Body><{m} xmlns="urn:vim25">{this}{args}</{m}></soapenv:Body></soapenv:Envelope>"#
        ),
        m = method,
        this = this.xml("_this"),
        args = args
    )
}

/// One object of a `RetrieveResult`: its moref, properties by path, and missing properties.
#[derive(Debug, Clone)]
pub(crate) struct ObjectContent {
    pub obj: Moref,
    pub props: Vec<(String, Element)>,
    pub missing: Vec<(String, Fault)>,
}

impl ObjectContent {
    /// Text of a simple property.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.prop(path).map(|e| e.text.as_str())
    }

    pub fn prop(&self, path: &str) -> Option<&Element> {
        self.props.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }
}

/// Decode `returnval` of `RetrievePropertiesEx`/`ContinueRetrievePropertiesEx`: the objects
/// and the continuation token, if any.
pub(crate) fn retrieve_result(resp: &Element) -> (Vec<ObjectContent>, Option<String>) {
    let Some(rv) = resp.child("returnval") else {
        return (Vec::new(), None);
    };
    let token = rv
        .child("token")
        .map(|t| t.text.trim().to_string())
        .filter(|t| !t.is_empty());
    let objects = rv
        .children_named("objects")
        .filter_map(|o| {
            let obj = Moref::from_element(o.child("obj")?)?;
            let props = o
                .children_named("propSet")
                .filter_map(|p| Some((p.child("name")?.text.clone(), p.child("val")?.clone())))
                .collect();
            let missing = o
                .children_named("missingSet")
                .filter_map(|m| {
                    let path = m.child("path")?.text.clone();
                    let fault = m
                        .child("fault")
                        .map(Fault::from_localized)
                        .unwrap_or(Fault {
                            kind: String::new(),
                            message: String::new(),
                        });
                    Some((path, fault))
                })
                .collect();
            Some(ObjectContent {
                obj,
                props,
                missing,
            })
        })
        .collect();
    (objects, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSES: &str =
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>";

    #[test]
    fn envelope_has_the_reference_shape() {
        let e = envelope(
            "FindByUuid",
            &Moref::new("SearchIndex", "SearchIndex"),
            "<uuid>f7c371d6-2003-5a48-9859-3bc9a8b08908</uuid><vmSearch>true</vmSearch>",
        );
        let root = xml::parse(&e).unwrap();
        let call = root.path(&["Body", "FindByUuid"]).unwrap();
        assert_eq!(call.children[0].name, "_this");
        assert_eq!(call.children[0].attr("type"), Some("SearchIndex"));
        assert_eq!(call.child("vmSearch").unwrap().text, "true");
        assert!(e.contains(r#"<FindByUuid xmlns="urn:vim25">"#));
    }

    /// (method, document) pairs of a transcript in `testdata/soap-wire/`.
    fn transcript(text: &str) -> Vec<(&str, &str)> {
        let mut v = Vec::new();
        let mut lines = text.lines();
        while let Some(head) = lines.next() {
            let method = head
                .strip_prefix("<!-- ")
                .and_then(|h| h.strip_suffix(" -->"))
                .unwrap_or_else(|| panic!("transcript header expected, got {head:.60}"));
            v.push((method, lines.next().expect("document after header")));
        }
        v
    }

    const SUDS_REQUESTS: &str =
        include_str!("../../testdata/soap-wire/requests-as-sent-by-suds.xml.txt");
    const VCSIM_RESPONSES: &str =
        include_str!("../../testdata/soap-wire/responses-from-vcsim.xml.txt");

    #[test]
    fn our_envelope_matches_suds_requests() {
        let reqs = transcript(SUDS_REQUESTS);
        assert_eq!(reqs.len(), 10);
        for (method, doc) in reqs {
            let theirs = xml::parse(doc).unwrap();
            let call = &theirs.child("Body").unwrap().children[0];
            assert_eq!(call.name, method);
            let this = Moref::from_element(&call.children[0]).unwrap();
            assert_eq!(call.children[0].name, "_this");
            let ours = xml::parse(&envelope(method, &this, "")).unwrap();
            let our_call = &ours.child("Body").unwrap().children[0];
            assert_eq!(our_call.name, method);
            assert_eq!(our_call.children[0].name, "_this");
            assert_eq!(Moref::from_element(&our_call.children[0]), Some(this));
        }
    }

    #[test]
    fn vcsim_responses_decode() {
        let resps = transcript(VCSIM_RESPONSES);
        assert_eq!(resps.len(), 11);
        for (method, doc) in &resps {
            let root = xml::parse(doc).unwrap_or_else(|e| panic!("{method}: {e}"));
            let body = root.child("Body").unwrap();
            if *method == "soapenv" {
                let f = Fault::from_soap(body.child("Fault").unwrap());
                assert_eq!(f.text(), "Login failure (InvalidLogin)");
                continue;
            }
            let resp = body.child(method).unwrap_or_else(|| panic!("{method}"));
            match *method {
                "RetrievePropertiesExResponse" | "ContinueRetrievePropertiesExResponse" => {
                    let (objs, _) = retrieve_result(resp);
                    assert!(!objs.is_empty(), "{method}");
                    for o in objs {
                        assert_eq!(o.obj.ty, "VirtualMachine");
                        assert!(o.text("name").is_some_and(|n| !n.is_empty()));
                        assert!(o.text("summary.runtime.powerState").is_some());
                        assert!(o.text("config.uuid").is_some());
                    }
                }
                "FindByInventoryPathResponse" | "FindByUuidResponse" => assert_eq!(
                    Moref::from_element(resp.child("returnval").unwrap()),
                    Some(Moref::new("VirtualMachine", "vm-30"))
                ),
                _ => {}
            }
        }
    }

    #[test]
    fn login_fault_from_vcsim_fixture() {
        let doc = r#"<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Login failure</faultstring><detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let root = xml::parse(doc).unwrap();
        let f = Fault::from_soap(root.path(&["Body", "Fault"]).unwrap());
        assert_eq!(f.kind, "InvalidLogin");
        assert_eq!(f.message, "Login failure");
        assert_eq!(f.text(), "Login failure (InvalidLogin)");
    }

    #[test]
    fn retrieve_result_from_vcsim_fixture() {
        let doc = format!(
            "{RESPONSES}{}",
            r#"<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval><token>5253d50a310d8936</token><objects><obj type="VirtualMachine">vm-27</obj><propSet><name>name</name><val xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" XMLSchema-instance:type="xsd:string">DC0_C0_RP0_VM0</val></propSet><propSet><name>summary.runtime.powerState</name><val xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" XMLSchema-instance:type="VirtualMachinePowerState">poweredOn</val></propSet><missingSet><path>config.uuid</path><fault><fault xsi:type="NotAuthenticated"/><localizedMessage></localizedMessage></fault></missingSet></objects></returnval></RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>"#
        );
        let root = xml::parse(&doc).unwrap();
        let (objs, token) = retrieve_result(
            root.path(&["Body", "RetrievePropertiesExResponse"])
                .unwrap(),
        );
        assert_eq!(token.as_deref(), Some("5253d50a310d8936"));
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].obj, Moref::new("VirtualMachine", "vm-27"));
        assert_eq!(objs[0].text("name"), Some("DC0_C0_RP0_VM0"));
        assert_eq!(
            objs[0].text("summary.runtime.powerState"),
            Some("poweredOn")
        );
        assert_eq!(objs[0].missing[0].0, "config.uuid");
        assert_eq!(objs[0].missing[0].1.kind, "NotAuthenticated");
    }

    #[test]
    fn moref_xml_escapes() {
        assert_eq!(
            Moref::new("Folder", "a<b").xml("container"),
            r#"<container type="Folder">a&lt;b</container>"#
        );
    }
}
