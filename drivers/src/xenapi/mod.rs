//! XenAPI driver: XenServer, Citrix Hypervisor and XCP-ng pools (any XenAPI server answering
//! XML-RPC at `http[s]://host/`, API 1.x and later; the calls used exist since XenServer 5)
//! for the `fence_xenapi` agent and the daemon's `xenapi` backend. Speaks the same calls as
//! fence-agents 4.12.1 `fence_xenapi`, with a deadline on every call, verified TLS by default,
//! one call for a list, and a session that is reused and logged out.
//!
//! # Calls and their cost
//!
//! * connect: `session.login_with_password(user, password)`. A host that is a pool member, not
//!   the master, answers `HOST_IS_SLAVE` with the master's address: the driver logs in there
//!   instead (same scheme, port and path), at most [`MAX_REDIRECTS`] times in a row. The
//!   session is kept; a call answered `SESSION_INVALID` (expired, master restarted) logs in
//!   again once and is repeated once.
//! * VM by UUID: `VM.get_by_uuid` (`UUID_INVALID` means no such VM). By name:
//!   `VM.get_by_name_label`, then `VM.get_record` of each VM it returns: templates and control
//!   domains (`is_a_template`, `is_control_domain`) are never fenced and do not count; two real
//!   VMs of that name are [`DriverError::Ambiguous`].
//! * The references found are kept in a bounded cache ([`REF_CACHE_MAX`] entries, cleared when
//!   full): a status with a cached reference is one `VM.get_record` (power state is never
//!   cached). A record whose uuid or name no longer matches, or `HANDLE_INVALID` (VM destroyed),
//!   drops the entry and resolves again. A status by name that would answer "off", and every
//!   power call by name, first proves the name unique again, so a duplicate created since the
//!   cache entry cannot make the wrong VM look fenced.
//! * status: `power_state` `Running` → on, `Halted` → off, `Paused` and `Suspended` count as on
//!   (they can be resumed; the reference agrees).
//! * off: `VM.hard_shutdown(ref)`; on: `VM.start(ref, false, true)` (not paused, forced, as the
//!   reference). `VM_BAD_POWER_STATE` with the VM already in the wanted state is success.
//! * list: one `VM.get_all_records` (the reference asks `VM.get_all` and then each record).
//! * check: `pool.get_all` (the pool object: one reference).
//! * drop: `session.logout` (the reference never logs out, filling the pool's session table).
//!
//! The wire format is in `xmlrpc` (public, for the test suite's simulator).

pub mod xmlrpc;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use self::xmlrpc::{Response, Value, XenResult};
use crate::http::{is_timeout, tls};
use crate::inventory::{sort_rows, CpuUse, VmRow};
use crate::{Driver, DriverError, PowerState, VmInfo, VmRef};

/// Most `HOST_IS_SLAVE` answers followed in a row before giving up (a pool has one master;
/// more means two hosts point at each other).
pub const MAX_REDIRECTS: usize = 3;

/// Most VM references remembered (name or UUID → opaque ref).
pub const REF_CACHE_MAX: usize = 4096;

/// Largest answer accepted (a 10,000-VM `VM.get_all_records` of a real pool is about 60 MiB).
const MAX_BODY: u64 = 128 << 20;

/// Most XML elements accepted in one answer (a real VM record is about 400 elements).
const MAX_ELEMENTS: usize = 4_000_000;

/// Certificate checks for `https` URLs (plain `http` URLs use no TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Verify certificate and host name against `ca` (PEM file) or, when `None`, the system
    /// store.
    Verify {
        /// CA certificates (PEM) to trust instead of the system store.
        ca: Option<PathBuf>,
    },
    /// Accept any certificate (encrypted, not authenticated).
    Insecure,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct XenApiOptions {
    /// `http://host[:port][/path]` or `https://…` of any pool host (the master is found).
    pub url: String,
    /// Certificate checks for `https`.
    pub tls: Tls,
    /// User name (`root` or a pool user).
    pub login: String,
    /// Password.
    pub password: String,
    /// Deadline of every call (connect, name lookup and whole exchange).
    pub timeout: Duration,
}

/// An `http[s]://authority/path` URL split where we need it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    host: String,
    port: Option<u16>,
    path: String,
}

impl Url {
    fn parse(s: &str) -> Result<Url, DriverError> {
        let bad = |why: &str| DriverError::Platform(format!("session URL {s:?}: {why}"));
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(r) = auth.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match &r[end + 1..] {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            };
            (r[..end].to_string(), port)
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
                _ => (auth.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
            None => None,
        };
        Ok(Url {
            https,
            host,
            port,
            path: path.to_string(),
        })
    }

    /// The same URL on another host (the pool master).
    fn with_host(&self, host: &str) -> Url {
        let host = host
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Url {
            host,
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]", self.host)?;
        } else {
            write!(f, "{scheme}://{}", self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        f.write_str(&self.path)
    }
}

/// A transport failure flattened into one readable line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

/// Why one call failed.
#[derive(Debug)]
enum CallError {
    /// Transport, timeout or unreadable answer, already phrased.
    Driver(DriverError),
    /// XenAPI answered `Failure`: code and arguments.
    Failure(Vec<String>),
}

impl CallError {
    fn code(&self) -> Option<&str> {
        match self {
            CallError::Failure(d) => d.first().map(String::as_str),
            CallError::Driver(_) => None,
        }
    }

    /// As a driver error, for `what` (the operation and VM).
    fn into_driver(self, what: &str) -> DriverError {
        match self {
            CallError::Driver(e) => e,
            CallError::Failure(d) => match d[0].as_str() {
                "SESSION_AUTHENTICATION_FAILED" => DriverError::Auth(d.join(" ")),
                "UUID_INVALID" | "HANDLE_INVALID" => DriverError::NotFound(what.to_string()),
                _ => DriverError::Platform(format!("{what}: XenAPI {}", d.join(" "))),
            },
        }
    }
}

impl From<DriverError> for CallError {
    fn from(e: DriverError) -> Self {
        CallError::Driver(e)
    }
}

#[derive(Debug)]
struct Session {
    url: Url,
    /// Opaque session reference, when logged in.
    session: Option<String>,
}

/// One VM record's fields the driver uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    uuid: String,
    name: String,
    power_state: String,
    excluded: bool,
}

impl Record {
    fn from_value(v: &Value) -> Result<Record, DriverError> {
        let s = |k: &str| {
            v.member(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| DriverError::Platform(format!("VM record without {k}")))
        };
        let b = |k: &str| v.member(k).and_then(Value::as_bool).unwrap_or(false);
        Ok(Record {
            uuid: s("uuid")?.to_ascii_lowercase(),
            name: s("name_label")?,
            power_state: s("power_state")?,
            excluded: b("is_a_template") || b("is_control_domain") || b("is_a_snapshot"),
        })
    }

    /// XenAPI `vm_power_state`: only `Halted` is off; anything unknown counts as on.
    fn state(&self) -> PowerState {
        match self.power_state.as_str() {
            "Halted" => PowerState::Off,
            "Running" => PowerState::On,
            "Paused" => PowerState::Paused,
            "Suspended" => PowerState::Suspended,
            _ => PowerState::Unknown,
        }
    }

    fn matches(&self, vm: &VmRef) -> bool {
        match vm {
            VmRef::Uuid(u) => &self.uuid == u,
            VmRef::Name(n) => &self.name == n,
        }
    }
}

/// A XenAPI pool session. Send + Sync; calls from several threads share the session.
pub struct XenApiDriver {
    agent: ureq::Agent,
    login: String,
    password: String,
    state: Mutex<Session>,
    refs: Mutex<HashMap<VmRef, String>>,
    calls: AtomicU64,
    logins: AtomicU64,
}

impl std::fmt::Debug for XenApiDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XenApiDriver")
            .field("url", &self.url())
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

impl XenApiDriver {
    /// Log in (following the pool master). Fails with [`DriverError::Auth`] on a refused login
    /// and [`DriverError::Unreachable`]/[`DriverError::Timeout`] when no host answers.
    pub fn connect(o: XenApiOptions) -> Result<XenApiDriver, DriverError> {
        let url = Url::parse(&o.url)?;
        let tls_cfg = if url.https {
            let cfg = match &o.tls {
                Tls::Verify { ca: Some(p) } => tls::verify_with_ca(p),
                Tls::Verify { ca: None } => tls::verify_with_system(),
                Tls::Insecure => tls::insecure(),
            }
            .map_err(|e| DriverError::Platform(e.to_string()))?;
            Some(cfg)
        } else {
            None
        };
        let d = XenApiDriver {
            agent: crate::http::agent(o.timeout, tls_cfg),
            login: o.login,
            password: o.password,
            state: Mutex::new(Session { url, session: None }),
            refs: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            logins: AtomicU64::new(0),
        };
        {
            let mut st = d.state.lock();
            d.login_locked(&mut st)?;
        }
        Ok(d)
    }

    /// XML-RPC calls sent so far (for tests and benchmarks counting round trips).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Successful logins so far (1 after connect; more after re-logins).
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// The URL currently talked to (the pool master's once a slave redirected us).
    pub fn url(&self) -> String {
        self.state.lock().url.to_string()
    }

    /// Log the session out (also done on drop). Later calls log in again.
    pub fn logout(&self) -> Result<(), DriverError> {
        let mut st = self.state.lock();
        let Some(s) = st.session.take() else {
            return Ok(());
        };
        let url = st.url.to_string();
        match self.raw_call(&url, "session.logout", &[Value::Str(s)]) {
            Ok(_) | Err(CallError::Failure(_)) => Ok(()),
            Err(CallError::Driver(e)) => Err(e),
        }
    }

    /// One HTTP POST of one method call, decoded to its XenAPI result.
    fn raw_call(&self, url: &str, method: &str, params: &[Value]) -> Result<Value, CallError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(method, url, "XenAPI call");
        let body = xmlrpc::encode_call(method, params);
        let unreachable = |why: String| DriverError::Unreachable {
            what: format!("XenAPI at {url}"),
            source: Box::new(TransportError(why)),
        };
        let resp = match self
            .agent
            .post(url)
            .set("Content-Type", "text/xml")
            .send_string(&body)
        {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => {
                return Err(
                    DriverError::Platform(format!("{method}: HTTP {code} from {url}")).into(),
                )
            }
            Err(ureq::Error::Transport(t)) => {
                let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(&t);
                while let Some(c) = cur {
                    if let Some(io) = c.downcast_ref::<std::io::Error>() {
                        if is_timeout(io) {
                            return Err(DriverError::Timeout(format!("{method} at {url}")).into());
                        }
                    }
                    cur = c.source();
                }
                let mut why = crate::error_chain(&t);
                if why.to_ascii_lowercase().contains("certificate") {
                    why = format!("TLS certificate verification failed: {why}");
                }
                return Err(unreachable(why).into());
            }
        };
        let mut text = String::new();
        resp.into_reader()
            .take(MAX_BODY + 1)
            .read_to_string(&mut text)
            .map_err(|e| {
                if is_timeout(&e) {
                    DriverError::Timeout(format!("{method} at {url}"))
                } else {
                    unreachable(format!(
                        "reading the answer to {method}: {}",
                        crate::error_chain(&e)
                    ))
                }
            })?;
        if text.len() as u64 > MAX_BODY {
            return Err(DriverError::Platform(format!(
                "{method}: answer from {url} is larger than {} MiB; refused",
                MAX_BODY >> 20
            ))
            .into());
        }
        let platform = |e: xmlrpc::XmlRpcError| DriverError::Platform(format!("{method}: {e}"));
        match xmlrpc::decode_response_bounded(&text, MAX_ELEMENTS).map_err(platform)? {
            Response::Fault { code, message } => Err(DriverError::Platform(format!(
                "{method}: XML-RPC fault {code}: {message}"
            ))
            .into()),
            Response::Value(v) => match XenResult::from_value(v).map_err(platform)? {
                XenResult::Success(v) => Ok(v),
                XenResult::Failure(d) => Err(CallError::Failure(d)),
            },
        }
    }

    /// Log in, following `HOST_IS_SLAVE` to the master.
    fn login_locked(&self, st: &mut Session) -> Result<(), DriverError> {
        st.session = None;
        let mut hops = 0;
        loop {
            let url = st.url.to_string();
            let r = self.raw_call(
                &url,
                "session.login_with_password",
                &[Value::str(&self.login), Value::str(&self.password)],
            );
            match r {
                Ok(Value::Str(s)) => {
                    self.logins.fetch_add(1, Ordering::Relaxed);
                    st.session = Some(s);
                    return Ok(());
                }
                Ok(other) => {
                    return Err(DriverError::Platform(format!(
                        "login at {url}: session reference expected, got {other:?}"
                    )))
                }
                Err(CallError::Failure(d)) if d[0] == "HOST_IS_SLAVE" && d.len() > 1 => {
                    hops += 1;
                    if hops > MAX_REDIRECTS {
                        return Err(DriverError::Platform(format!(
                            "login at {url}: more than {MAX_REDIRECTS} HOST_IS_SLAVE redirects"
                        )));
                    }
                    let master = st.url.with_host(&d[1]);
                    tracing::info!(slave = %url, master = %master, "XenAPI host is a pool member; logging in to its master");
                    st.url = master;
                }
                Err(e) => return Err(e.into_driver(&format!("login at {url}"))),
            }
        }
    }

    /// A method call with our session first, logging in again once on `SESSION_INVALID` (and
    /// following the master on `HOST_IS_SLAVE`).
    fn call(&self, method: &str, args: &[Value]) -> Result<Value, CallError> {
        let mut st = self.state.lock();
        let mut relogged = false;
        loop {
            if st.session.is_none() {
                self.login_locked(&mut st)?;
                relogged = true;
            }
            let session = st.session.clone().unwrap_or_default();
            let mut params = Vec::with_capacity(args.len() + 1);
            params.push(Value::Str(session));
            params.extend_from_slice(args);
            let url = st.url.to_string();
            match self.raw_call(&url, method, &params) {
                Err(e)
                    if !relogged
                        && matches!(e.code(), Some("SESSION_INVALID" | "HOST_IS_SLAVE")) =>
                {
                    if let CallError::Failure(d) = &e {
                        if d[0] == "HOST_IS_SLAVE" && d.len() > 1 {
                            st.url = st.url.with_host(&d[1]);
                        }
                    }
                    tracing::info!(method, error = ?e, "XenAPI session lost; logging in again");
                    st.session = None;
                }
                r => return r,
            }
        }
    }

    fn record(&self, r: &str) -> Result<Record, CallError> {
        let v = self.call("VM.get_record", &[Value::str(r)])?;
        Ok(Record::from_value(&v)?)
    }

    /// Every non-excluded VM of a name, with its ref and record.
    fn by_name(&self, name: &str) -> Result<Vec<(String, Record)>, DriverError> {
        let what = format!("VM {name:?}");
        let refs = self
            .call("VM.get_by_name_label", &[Value::str(name)])
            .map_err(|e| e.into_driver(&what))?;
        let refs = refs
            .as_array()
            .ok_or_else(|| DriverError::Platform("VM.get_by_name_label: not an array".into()))?;
        let mut out = Vec::new();
        for r in refs {
            let r = r.as_str().ok_or_else(|| {
                DriverError::Platform("VM.get_by_name_label: not a reference".into())
            })?;
            match self.record(r) {
                Ok(rec) if !rec.excluded && rec.name == name => out.push((r.to_string(), rec)),
                Ok(_) => {}
                // Destroyed between the two calls.
                Err(e) if e.code() == Some("HANDLE_INVALID") => {}
                Err(e) => return Err(e.into_driver(&what)),
            }
        }
        Ok(out)
    }

    fn unique(
        name: &str,
        mut found: Vec<(String, Record)>,
    ) -> Result<(String, Record), DriverError> {
        match found.len() {
            0 => Err(DriverError::NotFound(name.to_string())),
            1 => Ok(found.remove(0)),
            count => Err(DriverError::Ambiguous {
                name: name.to_string(),
                count,
            }),
        }
    }

    fn remember(&self, vm: &VmRef, r: &str) {
        let mut refs = self.refs.lock();
        if refs.len() >= REF_CACHE_MAX && !refs.contains_key(vm) {
            refs.clear();
        }
        refs.insert(vm.clone(), r.to_string());
    }

    /// Resolve without the cache: ref and record, templates and control domains refused.
    fn resolve_fresh(&self, vm: &VmRef) -> Result<(String, Record), DriverError> {
        let (r, rec) = match vm {
            VmRef::Uuid(u) => {
                let what = format!("VM {u}");
                let r = self
                    .call("VM.get_by_uuid", &[Value::str(u)])
                    .map_err(|e| e.into_driver(&what))?;
                let r = r
                    .as_str()
                    .ok_or_else(|| DriverError::Platform("VM.get_by_uuid: not a reference".into()))?
                    .to_string();
                let rec = self.record(&r).map_err(|e| e.into_driver(&what))?;
                (r, rec)
            }
            VmRef::Name(n) => Self::unique(n, self.by_name(n)?)?,
        };
        if rec.excluded {
            return Err(DriverError::Platform(format!(
                "{vm} is a template, snapshot or control domain; not fenced"
            )));
        }
        self.remember(vm, &r);
        Ok((r, rec))
    }

    /// Resolve through the cache: one `VM.get_record` when the reference is known and still
    /// names this VM.
    fn resolve_cached(&self, vm: &VmRef) -> Result<(String, Record), DriverError> {
        let cached = self.refs.lock().get(vm).cloned();
        if let Some(r) = cached {
            match self.record(&r) {
                Ok(rec) if rec.matches(vm) && !rec.excluded => return Ok((r, rec)),
                Ok(_) | Err(CallError::Failure(_)) => {
                    self.refs.lock().remove(vm);
                }
                Err(CallError::Driver(e)) => return Err(e),
            }
        }
        self.resolve_fresh(vm)
    }

    fn status_inner(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        let (_, rec) = self.resolve_cached(vm)?;
        let st = rec.state();
        if st.is_off() {
            if let VmRef::Name(_) = vm {
                // "Off" must be true of the only VM of that name.
                return Ok(self.resolve_fresh(vm)?.1.state());
            }
        }
        Ok(st)
    }

    fn power_inner(&self, vm: &VmRef, on: bool) -> Result<(), DriverError> {
        let (r, _) = match vm {
            VmRef::Name(_) => self.resolve_fresh(vm)?,
            VmRef::Uuid(_) => self.resolve_cached(vm)?,
        };
        let (method, args) = if on {
            (
                "VM.start",
                vec![Value::str(&r), Value::Bool(false), Value::Bool(true)],
            )
        } else {
            ("VM.hard_shutdown", vec![Value::str(&r)])
        };
        match self.call(method, &args) {
            Ok(_) => Ok(()),
            Err(CallError::Failure(d)) if d[0] == "VM_BAD_POWER_STATE" => {
                // Already there? Ask rather than trust the error's arguments.
                let st = self
                    .record(&r)
                    .map_err(|e| e.into_driver(&format!("VM {vm}")))?
                    .state();
                if st.is_off() != on {
                    Ok(())
                } else {
                    Err(DriverError::Platform(format!(
                        "{method} {vm}: XenAPI {}",
                        d.join(" ")
                    )))
                }
            }
            Err(e) => Err(e.into_driver(&format!("{method} {vm}"))),
        }
    }

    fn list_inner(&self) -> Result<Vec<VmInfo>, DriverError> {
        let all = self
            .call("VM.get_all_records", &[])
            .map_err(|e| e.into_driver("VM.get_all_records"))?;
        let all = all.as_struct().ok_or_else(|| {
            DriverError::Platform("VM.get_all_records: not a map of records".into())
        })?;
        let mut vms = Vec::with_capacity(all.len());
        for (_, v) in all {
            let rec = Record::from_value(v)?;
            if rec.excluded {
                continue;
            }
            vms.push(VmInfo {
                state: rec.state(),
                name: rec.name,
                uuid: rec.uuid,
            });
        }
        crate::vm::sort_by_name(&mut vms);
        Ok(vms)
    }

    /// The VM table: `VM.get_all_records`, `host.get_all_records` (host names for
    /// `resident_on`) and `VM_metrics.get_all_records` (start time, vCPU use; left out if the
    /// pool refuses it). Three calls whatever the pool size.
    fn inventory_inner(&self) -> Result<Vec<VmRow>, DriverError> {
        let all = self
            .call("VM.get_all_records", &[])
            .map_err(|e| e.into_driver("VM.get_all_records"))?;
        let all = all.as_struct().ok_or_else(|| {
            DriverError::Platform("VM.get_all_records: not a map of records".into())
        })?;
        let hosts = self
            .call("host.get_all_records", &[])
            .map_err(|e| e.into_driver("host.get_all_records"))?;
        let host_name = |r: &str| -> Option<String> {
            hosts
                .member(r)?
                .member("name_label")?
                .as_str()
                .map(str::to_string)
        };
        let metrics = match self.call("VM_metrics.get_all_records", &[]) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::debug!(error = %e.into_driver("VM_metrics.get_all_records"), "no VM metrics");
                None
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let text = |v: &Value, k: &str| v.member(k).and_then(Value::as_str).map(str::to_string);
        let num = |v: &Value, k: &str| text(v, k).and_then(|t| t.trim().parse::<u64>().ok());
        let mut out = Vec::with_capacity(all.len());
        for (_, v) in all {
            let rec = Record::from_value(v)?;
            if rec.excluded {
                continue;
            }
            let state = rec.state();
            let on = !state.is_off();
            let m = text(v, "metrics").and_then(|r| metrics.as_ref()?.member(&r).cloned());
            let uptime = m
                .as_ref()
                .and_then(|m| m.member("start_time"))
                .and_then(|t| match t {
                    Value::DateTime(s) | Value::Str(s) => xmlrpc_time(s),
                    _ => None,
                })
                .filter(|&t| t > 0 && t <= now && on)
                .map(|t| now - t);
            let util = m
                .as_ref()
                .and_then(|m| m.member("VCPUs_utilisation"))
                .and_then(|u| {
                    let vals: Vec<f64> = u
                        .as_struct()?
                        .iter()
                        .filter_map(|(_, x)| match x {
                            Value::Double(d) => Some(*d),
                            Value::Str(s) => s.parse().ok(),
                            _ => None,
                        })
                        .collect();
                    (!vals.is_empty()).then(|| 100.0 * vals.iter().sum::<f64>() / vals.len() as f64)
                });
            out.push(VmRow {
                host: text(v, "resident_on").and_then(|r| host_name(&r)),
                state,
                uptime_secs: uptime,
                vcpus: num(v, "VCPUs_max").map(|n| n as u32),
                memory_mib: num(v, "memory_static_max").map(|b| b / (1024 * 1024)),
                cpu: util.filter(|_| on).map(CpuUse::Percent),
                name: rec.name,
                uuid: rec.uuid,
            });
        }
        sort_rows(&mut out);
        Ok(out)
    }

    fn check_inner(&self) -> Result<(), DriverError> {
        // A call whose only argument is the session (one pool object to read), so a re-login
        // inside `call` leaves no stale argument behind.
        self.call("pool.get_all", &[])
            .map(|_| ())
            .map_err(|e| e.into_driver("session check"))
    }
}

impl Driver for XenApiDriver {
    fn kind(&self) -> &'static str {
        "xenapi"
    }

    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        self.status_inner(vm)
    }

    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.power_inner(vm, false)
    }

    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.power_inner(vm, true)
    }

    fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        self.list_inner()
    }

    fn check(&self) -> Result<(), DriverError> {
        self.check_inner()
    }

    fn inventory(&self) -> Result<Vec<VmRow>, DriverError> {
        self.inventory_inner()
    }
}

/// Seconds since the epoch of an XML-RPC time as XenAPI writes it (`20260102T03:04:05Z`,
/// UTC); `None` for anything else.
fn xmlrpc_time(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once('T')?;
    let date: String = date.chars().filter(|c| *c != '-').collect();
    if date.len() != 8 {
        return None;
    }
    let y: i64 = date[0..4].parse().ok()?;
    let mo: i64 = date[4..6].parse().ok()?;
    let d: i64 = date[6..8].parse().ok()?;
    let mut hms = time.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    u64::try_from(days * 86400 + h * 3600 + mi * 60 + se).ok()
}

impl Drop for XenApiDriver {
    fn drop(&mut self) {
        if let Err(e) = self.logout() {
            tracing::debug!(error = %e, "XenAPI logout on drop failed");
        }
    }
}

/// Read a XenAPI answer the way every call does and discard it: a fuzzing entry point, not an
/// API.
#[doc(hidden)]
pub fn fuzz_xenapi_answer(text: &str) {
    if let Ok(Response::Value(v)) = xmlrpc::decode_response(text) {
        if let Ok(XenResult::Success(v)) = XenResult::from_value(v) {
            let _ = Record::from_value(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_follow_the_master() {
        let u = Url::parse("https://xen1.example:8443/api").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (true, "xen1.example", Some(8443), "/api")
        );
        assert_eq!(
            u.with_host("10.0.0.2").to_string(),
            "https://10.0.0.2:8443/api"
        );
        assert_eq!(
            u.with_host("fd00::2").to_string(),
            "https://[fd00::2]:8443/api"
        );
        let u = Url::parse("http://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", None));
        assert_eq!(u.to_string(), "http://[::1]/");
        assert_eq!(Url::parse("http://h").unwrap().to_string(), "http://h/");
        for bad in ["ftp://h", "http://", "http://h:x", "http://[::1", "h"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn power_states_map_safely() {
        let rec = |p: &str| Record {
            uuid: String::new(),
            name: String::new(),
            power_state: p.into(),
            excluded: false,
        };
        assert_eq!(rec("Halted").state(), PowerState::Off);
        for p in ["Running", "Paused", "Suspended", "Crashed", ""] {
            assert!(!rec(p).state().is_off(), "{p}");
        }
    }
}

#[cfg(test)]
mod inventory_tests {
    #[test]
    fn xenapi_times_are_read_as_utc() {
        assert_eq!(super::xmlrpc_time("19700101T00:00:00Z"), Some(0));
        assert_eq!(super::xmlrpc_time("20260102T03:04:05Z"), Some(1767323045));
        assert_eq!(super::xmlrpc_time("2026-01-02T03:04:05Z"), Some(1767323045));
        assert_eq!(super::xmlrpc_time("yesterday"), None);
    }
}
