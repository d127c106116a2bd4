//! XML-RPC as XenAPI uses it (<http://xmlrpc.com/spec.md>): a `methodCall` with a method name and
//! positional parameters, a `methodResponse` with one value or a `fault`. Values are decoded
//! from the bounded XML tree of `crate::http::xml` (depth, element count), so a hostile answer
//! cannot exhaust the stack; the caller bounds the body size.
//!
//! XenAPI wraps every result in a struct, `{Status: "Success", Value: …}` or
//! `{Status: "Failure", ErrorDescription: [code, args…]}` ([`XenResult`]).
//!
//! The codec is public so the test suite's XenAPI simulator speaks the same wire format; the
//! simulator is proven against the reference Python client, which uses Python's own `xmlrpc`.

use crate::http::xml::{self, esc, Element};

/// One XML-RPC value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `<string>` (also a `<value>` with bare text).
    Str(String),
    /// `<int>` / `<i4>` / `<i8>`.
    Int(i64),
    /// `<boolean>`.
    Bool(bool),
    /// `<double>`.
    Double(f64),
    /// `<dateTime.iso8601>`, kept as text.
    DateTime(String),
    /// `<base64>`, kept as text.
    Base64(String),
    /// `<array>`.
    Array(Vec<Value>),
    /// `<struct>`, members in document order.
    Struct(Vec<(String, Value)>),
    /// `<nil/>` (an extension).
    Nil,
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A boolean; XenAPI's own booleans are `<boolean>`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The elements of an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The members of a struct.
    pub fn as_struct(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Struct(m) => Some(m),
            _ => None,
        }
    }

    /// A struct member by name.
    pub fn member(&self, name: &str) -> Option<&Value> {
        self.as_struct()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Append this value's XML (`<value>…</value>`).
    pub fn write(&self, out: &mut String) {
        out.push_str("<value>");
        match self {
            Value::Str(s) => {
                out.push_str("<string>");
                out.push_str(&esc(s));
                out.push_str("</string>");
            }
            Value::Int(i) => out.push_str(&format!("<int>{i}</int>")),
            Value::Bool(b) => out.push_str(if *b {
                "<boolean>1</boolean>"
            } else {
                "<boolean>0</boolean>"
            }),
            Value::Double(d) => out.push_str(&format!("<double>{d}</double>")),
            Value::DateTime(s) => {
                out.push_str("<dateTime.iso8601>");
                out.push_str(&esc(s));
                out.push_str("</dateTime.iso8601>");
            }
            Value::Base64(s) => {
                out.push_str("<base64>");
                out.push_str(&esc(s));
                out.push_str("</base64>");
            }
            Value::Array(a) => {
                out.push_str("<array><data>");
                for v in a {
                    v.write(out);
                }
                out.push_str("</data></array>");
            }
            Value::Struct(m) => {
                out.push_str("<struct>");
                for (k, v) in m {
                    out.push_str("<member><name>");
                    out.push_str(&esc(k));
                    out.push_str("</name>");
                    v.write(out);
                    out.push_str("</member>");
                }
                out.push_str("</struct>");
            }
            Value::Nil => out.push_str("<nil/>"),
        }
        out.push_str("</value>");
    }
}

/// Why a document is not the XML-RPC we expect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML-RPC: {0}")]
pub struct XmlRpcError(pub String);

fn bad(s: impl Into<String>) -> XmlRpcError {
    XmlRpcError(s.into())
}

/// Decode a `<value>` element.
fn value(e: &Element) -> Result<Value, XmlRpcError> {
    let Some(t) = e.children.first() else {
        // No type element: a string.
        return Ok(Value::Str(e.text.clone()));
    };
    let num = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| bad(format!("<{}> holds {s:?}", t.name)))
    };
    Ok(match t.name.as_str() {
        "string" => Value::Str(t.text.clone()),
        "int" | "i4" | "i8" => Value::Int(num(&t.text)?),
        "boolean" => match t.text.trim() {
            "1" => Value::Bool(true),
            "0" => Value::Bool(false),
            other => return Err(bad(format!("<boolean> holds {other:?}"))),
        },
        "double" => Value::Double(
            t.text
                .trim()
                .parse()
                .map_err(|_| bad(format!("<double> holds {:?}", t.text)))?,
        ),
        "dateTime.iso8601" => Value::DateTime(t.text.trim().to_string()),
        "base64" => Value::Base64(t.text.trim().to_string()),
        "nil" => Value::Nil,
        "array" => {
            let data = t
                .child("data")
                .ok_or_else(|| bad("<array> without <data>"))?;
            Value::Array(
                data.children_named("value")
                    .map(value)
                    .collect::<Result<_, _>>()?,
            )
        }
        "struct" => Value::Struct(
            t.children_named("member")
                .map(|m| {
                    let name = m.child("name").ok_or_else(|| bad("member without name"))?;
                    let v = m
                        .child("value")
                        .ok_or_else(|| bad("member without value"))?;
                    Ok((name.text.clone(), value(v)?))
                })
                .collect::<Result<_, XmlRpcError>>()?,
        ),
        other => return Err(bad(format!("unknown value type <{other}>"))),
    })
}

/// A `methodCall` document.
pub fn encode_call(method: &str, params: &[Value]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version='1.0'?>\n<methodCall><methodName>");
    out.push_str(&esc(method));
    out.push_str("</methodName><params>");
    for p in params {
        out.push_str("<param>");
        p.write(&mut out);
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>\n");
    out
}

/// Read a `methodCall` document: method name and parameters.
pub fn decode_call(doc: &str) -> Result<(String, Vec<Value>), XmlRpcError> {
    let root = xml::parse(doc).map_err(|e| bad(e.0))?;
    if root.name != "methodCall" {
        return Err(bad(format!("<{}> instead of <methodCall>", root.name)));
    }
    let name = root
        .child("methodName")
        .ok_or_else(|| bad("no <methodName>"))?
        .text
        .trim()
        .to_string();
    let params = match root.child("params") {
        Some(p) => p
            .children_named("param")
            .map(|p| {
                value(
                    p.child("value")
                        .ok_or_else(|| bad("<param> without <value>"))?,
                )
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    Ok((name, params))
}

/// A `methodResponse` document carrying one value.
pub fn encode_response(v: &Value) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("<?xml version='1.0'?>\n<methodResponse><params><param>");
    v.write(&mut out);
    out.push_str("</param></params></methodResponse>\n");
    out
}

/// What a `methodResponse` carried.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// `<params><param><value>`.
    Value(Value),
    /// `<fault>`: code and string (XenAPI itself answers with a Failure struct instead; a fault
    /// means the server's XML-RPC layer refused the call).
    Fault {
        /// `faultCode`.
        code: i64,
        /// `faultString`.
        message: String,
    },
}

/// Read a `methodResponse` document.
pub fn decode_response(doc: &str) -> Result<Response, XmlRpcError> {
    decode_response_bounded(doc, xml::MAX_ELEMENTS)
}

/// [`decode_response`] accepting at most `max_elements` XML elements.
pub fn decode_response_bounded(doc: &str, max_elements: usize) -> Result<Response, XmlRpcError> {
    let root = xml::parse_bounded(doc, max_elements).map_err(|e| bad(e.0))?;
    if root.name != "methodResponse" {
        return Err(bad(format!("<{}> instead of <methodResponse>", root.name)));
    }
    if let Some(f) = root.child("fault") {
        let v = value(
            f.child("value")
                .ok_or_else(|| bad("<fault> without <value>"))?,
        )?;
        let code = match v.member("faultCode") {
            Some(Value::Int(i)) => *i,
            _ => 0,
        };
        let message = v
            .member("faultString")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        return Ok(Response::Fault { code, message });
    }
    let v = root
        .path(&["params", "param", "value"])
        .ok_or_else(|| bad("no <params><param><value>"))?;
    Ok(Response::Value(value(v)?))
}

/// A XenAPI result: `{Status: "Success", Value: v}` or `{Status: "Failure", ErrorDescription:
/// [code, args…]}`.
#[derive(Debug, Clone, PartialEq)]
pub enum XenResult {
    /// The call succeeded with this value.
    Success(Value),
    /// The call failed: the error code and its arguments.
    Failure(Vec<String>),
}

impl XenResult {
    /// Read the XenAPI wrapper struct.
    pub fn from_value(v: Value) -> Result<XenResult, XmlRpcError> {
        let status = v
            .member("Status")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("XenAPI result without Status"))?;
        match status {
            "Success" => Ok(XenResult::Success(
                v.member("Value")
                    .cloned()
                    .ok_or_else(|| bad("Success without Value"))?,
            )),
            "Failure" => {
                let d = v
                    .member("ErrorDescription")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad("Failure without ErrorDescription"))?;
                let parts: Vec<String> = d
                    .iter()
                    .map(|p| match p {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                if parts.is_empty() {
                    return Err(bad("Failure with an empty ErrorDescription"));
                }
                Ok(XenResult::Failure(parts))
            }
            other => Err(bad(format!("Status {other:?}"))),
        }
    }

    /// As the wrapper struct.
    pub fn to_value(&self) -> Value {
        match self {
            XenResult::Success(v) => Value::Struct(vec![
                ("Status".into(), Value::str("Success")),
                ("Value".into(), v.clone()),
            ]),
            XenResult::Failure(d) => Value::Struct(vec![
                ("Status".into(), Value::str("Failure")),
                (
                    "ErrorDescription".into(),
                    Value::Array(d.iter().map(|s| Value::str(s.as_str())).collect()),
                ),
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = Value::Struct(vec![
            ("a".into(), Value::str("x<&>y")),
            ("b".into(), Value::Int(-3)),
            ("c".into(), Value::Bool(true)),
            (
                "d".into(),
                Value::Array(vec![Value::Double(1.5), Value::Nil, Value::Array(vec![])]),
            ),
            ("e".into(), Value::Struct(vec![])),
        ]);
        let doc = encode_response(&v);
        assert_eq!(decode_response(&doc).unwrap(), Response::Value(v.clone()));
        let call = encode_call("VM.get_record", &[Value::str("OpaqueRef:s"), v.clone()]);
        let (m, p) = decode_call(&call).unwrap();
        assert_eq!(m, "VM.get_record");
        assert_eq!(p, vec![Value::str("OpaqueRef:s"), v]);
    }

    #[test]
    fn reads_what_python_xmlrpc_writes() {
        // Python's xmlrpc.client.dumps(({'Status': 'Success', 'Value': ['OpaqueRef:1']},),
        // methodresponse=True): pretty-printed, bare-text strings allowed elsewhere.
        let doc = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n<member>\n<name>Status</name>\n<value><string>Success</string></value>\n</member>\n<member>\n<name>Value</name>\n<value><array><data>\n<value>OpaqueRef:1</value>\n</data></array></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodResponse>\n";
        let Response::Value(v) = decode_response(doc).unwrap() else {
            panic!()
        };
        assert_eq!(
            XenResult::from_value(v).unwrap(),
            XenResult::Success(Value::Array(vec![Value::str("OpaqueRef:1")]))
        );
    }

    #[test]
    fn failures_and_faults_are_decoded() {
        let f = XenResult::Failure(vec!["HOST_IS_SLAVE".into(), "10.0.0.1".into()]);
        let doc = encode_response(&f.to_value());
        let Response::Value(v) = decode_response(&doc).unwrap() else {
            panic!()
        };
        assert_eq!(XenResult::from_value(v).unwrap(), f);
        let fault = "<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>4</int></value></member><member><name>faultString</name><value><string>Too many parameters.</string></value></member></struct></value></fault></methodResponse>";
        assert_eq!(
            decode_response(fault).unwrap(),
            Response::Fault {
                code: 4,
                message: "Too many parameters.".into()
            }
        );
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for doc in [
            "",
            "<methodResponse/>",
            "<methodResponse><params><param><value><int>x</int></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><boolean>2</boolean></value></param></params></methodResponse>",
            "<methodResponse><params><param><value><blob/></value></param></params></methodResponse>",
            "<other/>",
        ] {
            assert!(decode_response(doc).is_err(), "{doc}");
        }
        let no_status = encode_response(&Value::Struct(vec![]));
        let Response::Value(v) = decode_response(&no_status).unwrap() else {
            panic!()
        };
        assert!(XenResult::from_value(v).is_err());
        let big = format!(
            "<methodResponse><params><param><value><array><data>{}</data></array></value></param></params></methodResponse>",
            "<value>x</value>".repeat(100)
        );
        assert!(decode_response_bounded(&big, 50).is_err());
        assert!(decode_response_bounded(&big, 200).is_ok());
    }
}
