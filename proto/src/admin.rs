//! The admin protocol between `fence_virtctl` and `fence_virtd` over the daemon's root-only
//! unix socket (`fence_virtd/@admin_socket`). Ours; no reference has one.
//!
//! One request per connection: the client writes one JSON [`Request`] and shuts its write
//! side down (or ends the line with `\n`); the daemon answers one JSON [`Response`] and closes.
//! Both are bounded: a request longer than [`MAX_REQUEST`] bytes is refused, and the client
//! reads at most [`MAX_RESPONSE`] bytes. Sans-io: this module only encodes and decodes.

use serde::{Deserialize, Serialize};

/// Largest request the daemon reads.
pub const MAX_REQUEST: usize = 4096;
/// Largest answer a client accepts (a 10,000-VM table is about 2 MiB).
pub const MAX_RESPONSE: usize = 64 << 20;
/// Default path of the admin socket.
pub const DEFAULT_SOCKET: &str = "/run/fence_virtd/admin.sock";

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// The VM table.
    Vms {
        /// Refresh now instead of answering from the last refresh.
        #[serde(default)]
        fresh: bool,
    },
    /// The host map, as the daemon would write it.
    Hostmap {
        /// Name rules overriding `hostmap_rules` (`lower`, `nofqdn`, comma-separated).
        #[serde(default)]
        rules: Option<String>,
    },
    /// Listener, backend and session state.
    Health {},
    /// The last `n` fence journal entries.
    Journal {
        /// How many.
        n: usize,
    },
    /// The operator confirms that a cluster host the daemon lost contact with was fenced
    /// (powered off): its VMs count as off (cpg backend).
    #[serde(rename = "confirm-fenced")]
    ConfirmFenced {
        /// Corosync node name or nodeid.
        host: String,
    },
}

/// One VM of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRow {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// Host it runs on, when known.
    pub host: Option<String>,
    /// Power state word (`on`, `off`, `paused`, `suspended`, …).
    pub state: String,
    /// Seconds since power-on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    /// Virtual CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// CPU use now in MHz (vSphere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_mhz: Option<u64>,
    /// CPU use now in percent of the VM's vCPUs (XenAPI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// CPU seconds since start (libvirt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_secs: Option<u64>,
}

/// The VM table as of its last refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmTable {
    /// The backend that produced it.
    pub backend: String,
    /// When it was taken (seconds since the epoch; 0: never).
    pub refreshed_unix: u64,
    /// The rows, sorted by name.
    pub rows: Vec<VmRow>,
    /// Why the last refresh failed, if it did (the rows are then those of the last success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Recent authentication failures from one sender (filled in by the daemon's rejection
/// counters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailure {
    /// The sender (address or CID).
    pub sender: String,
    /// Why (key, hash, replay, groups, …).
    pub reason: String,
    /// How many.
    pub count: u64,
    /// When the last one was seen (seconds since the epoch).
    pub last_unix: u64,
}

/// The daemon's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Daemon version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The listener and what it is bound to.
    pub listener: String,
    /// The backend.
    pub backend: String,
    /// Whether the backend answered its last check.
    pub backend_up: bool,
    /// The last backend check's error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_error: Option<String>,
    /// Requests being served now.
    pub requests_in_flight: u64,
    /// The VM table's last refresh (seconds since the epoch; 0: never) and its size.
    pub table_refreshed_unix: u64,
    /// VMs in the last table.
    pub table_vms: usize,
    /// The host map file and when it was last written, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostmap_file: Option<String>,
    /// Fingerprint of the listener's key (filled in where the daemon computes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// Recent authentication failures by sender.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_failures: Vec<AuthFailure>,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Response {
    /// The VM table.
    Vms(VmTable),
    /// The host map file's text.
    Hostmap(String),
    /// Health.
    Health(Health),
    /// Journal lines (JSON objects as written), oldest first.
    Journal(Vec<String>),
    /// What a confirmation changed.
    Confirmed(String),
    /// The request was refused or failed.
    Error(String),
}

/// Why a request or answer could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum AdminDecodeError {
    /// Longer than allowed.
    #[error("longer than {0} bytes")]
    TooLong(usize),
    /// Not the JSON expected.
    #[error("malformed: {0}")]
    Json(#[from] serde_json::Error),
}

/// Encode a request (one JSON line).
pub fn encode_request(r: &Request) -> Vec<u8> {
    let mut v = serde_json::to_vec(r).expect("requests always serialise");
    v.push(b'\n');
    v
}

/// Decode a request (blanks and a trailing newline allowed).
pub fn decode_request(b: &[u8]) -> Result<Request, AdminDecodeError> {
    if b.len() > MAX_REQUEST {
        return Err(AdminDecodeError::TooLong(MAX_REQUEST));
    }
    Ok(serde_json::from_slice(b)?)
}

/// Encode an answer (one JSON line).
pub fn encode_response(r: &Response) -> Vec<u8> {
    let mut v = serde_json::to_vec(r).unwrap_or_else(|e| {
        serde_json::to_vec(&Response::Error(format!("cannot encode the answer: {e}")))
            .expect("a string serialises")
    });
    v.push(b'\n');
    v
}

/// Decode an answer.
pub fn decode_response(b: &[u8]) -> Result<Response, AdminDecodeError> {
    if b.len() > MAX_RESPONSE {
        return Err(AdminDecodeError::TooLong(MAX_RESPONSE));
    }
    Ok(serde_json::from_slice(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_have_a_stable_shape() {
        for r in [
            Request::Vms { fresh: false },
            Request::Hostmap {
                rules: Some("lower".into()),
            },
            Request::Health {},
            Request::Journal { n: 5 },
            Request::ConfirmFenced { host: "n3".into() },
        ] {
            assert_eq!(decode_request(&encode_request(&r)).unwrap(), r);
        }
        assert_eq!(
            encode_request(&Request::Journal { n: 3 }),
            b"{\"cmd\":\"journal\",\"n\":3}\n"
        );
        assert_eq!(
            encode_request(&Request::ConfirmFenced { host: "n3".into() }),
            b"{\"cmd\":\"confirm-fenced\",\"host\":\"n3\"}\n"
        );
        assert_eq!(
            decode_request(b"{\"cmd\":\"vms\"}").unwrap(),
            Request::Vms { fresh: false }
        );
    }

    #[test]
    fn malformed_and_oversized_requests_are_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"cmd\":\"reboot\"}",
            b"{\"cmd\":\"journal\"}",
            b"{\"cmd\":\"health\",\"x\":1}",
            b"\xff\xfe",
        ] {
            assert!(decode_request(bad).is_err(), "{bad:?}");
        }
        let long = vec![b' '; MAX_REQUEST + 1];
        assert!(matches!(
            decode_request(&long),
            Err(AdminDecodeError::TooLong(_))
        ));
    }

    #[test]
    fn responses_round_trip() {
        let r = Response::Vms(VmTable {
            backend: "sim".into(),
            refreshed_unix: 1,
            rows: vec![VmRow {
                name: "vm1".into(),
                uuid: "u".into(),
                host: Some("h".into()),
                state: "on".into(),
                uptime_secs: None,
                vcpus: Some(2),
                memory_mib: None,
                cpu_mhz: None,
                cpu_percent: Some(12.5),
                cpu_secs: None,
            }],
            error: None,
        });
        assert_eq!(decode_response(&encode_response(&r)).unwrap(), r);
        let e = Response::Error("no".into());
        assert_eq!(encode_response(&e), b"{\"error\":\"no\"}\n");
    }
}
