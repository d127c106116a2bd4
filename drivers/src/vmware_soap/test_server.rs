//! A scripted vSphere endpoint for the driver's unit tests: plain HTTP on loopback, SOAP
//! answers chosen per method by the test.

use std::time::Duration;

use parking_lot::Mutex;

use super::{Tls, VmwareSoapOptions};

pub(super) fn opts(host: &str, tls: Tls) -> VmwareSoapOptions {
    VmwareSoapOptions {
        host: host.into(),
        port: 443,
        tls,
        login: "u".into(),
        password: "p".into(),
        datacenter: None,
        timeout: Duration::from_secs(1),
    }
}

/// A scripted vSphere endpoint: answers each SOAP method from `answer(method, body)` (the
/// `<MethodResponse>` inner XML, or `Err(fault_kind)`), one HTTP request per connection.
pub(super) fn scripted_server(
    answer: impl Fn(&str, &str) -> Result<String, String> + Send + 'static,
) -> (u16, std::sync::Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(1000) {
            let Ok(mut c) = conn else { return };
            let mut r = BufReader::new(c.try_clone().unwrap());
            loop {
                let mut len = 0usize;
                let mut line = String::new();
                let mut got_any = false;
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    got_any = true;
                    let l = line.to_ascii_lowercase();
                    if let Some(v) = l.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                if !got_any {
                    break;
                }
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    break;
                }
                let body = String::from_utf8_lossy(&body).into_owned();
                let method = body
                    .split("<soapenv:Body><")
                    .nth(1)
                    .and_then(|t| t.split([' ', '>']).next())
                    .unwrap_or("")
                    .to_string();
                seen2.lock().push(method.clone());
                let (status, inner) = match answer(&method, &body) {
                    Ok(x) => ("200 OK", format!("<{method}Response xmlns=\"urn:vim25\">{x}</{method}Response>")),
                    Err(kind) => (
                        "500 Internal Server Error",
                        format!("<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>{kind}</faultstring><detail><{kind}Fault xmlns=\"urn:vim25\" xsi:type=\"{kind}\"/></detail></soapenv:Fault>"),
                    ),
                };
                let xml = format!(
                    "<?xml version=\"1.0\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
                );
                let cookie = if method == "Login" {
                    "Set-Cookie: vmware_soap_session=\"abc\"; Path=/\r\n"
                } else {
                    ""
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\n{cookie}Content-Length: {}\r\n\r\n{xml}",
                    xml.len()
                );
                if c.write_all(resp.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (port, seen)
}

pub(super) fn service_content() -> String {
    concat!(
        "<returnval><rootFolder type=\"Folder\">group-d1</rootFolder>",
        "<propertyCollector type=\"PropertyCollector\">pc</propertyCollector>",
        "<viewManager type=\"ViewManager\">vm</viewManager>",
        "<searchIndex type=\"SearchIndex\">si</searchIndex>",
        "<sessionManager type=\"SessionManager\">sm</sessionManager></returnval>"
    )
    .to_string()
}

pub(super) fn one_object(obj: &str, props: &[(&str, &str)]) -> String {
    let mut s = format!("<returnval><objects>{obj}");
    for (n, v) in props {
        s.push_str(&format!(
            "<propSet><name>{n}</name><val>{v}</val></propSet>"
        ));
    }
    s.push_str("</objects></returnval>");
    s
}
