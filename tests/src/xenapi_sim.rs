//! A XenAPI pool master (or pool member) simulator, written from Citrix's published XenAPI
//! reference and the XML-RPC wire format, for the tests of our XenAPI driver, agent and daemon
//! backend and for running the reference `fence_xenapi` (and the `XenAPI` Python SDK) against
//! the same server.
//!
//! What it serves, at any path, over HTTP/1.1 with keep-alive:
//! * `session.login_with_password(user, password[, version, originator])` → an opaque
//!   `OpaqueRef:…` session; a wrong password is `SESSION_AUTHENTICATION_FAILED`; in member mode
//!   ([`SimConfig::slave_of`]) every call is `HOST_IS_SLAVE [master address]`, as a pool member
//!   answers;
//! * `session.logout`, `session.get_uuid`, `pool.get_all` (one pool);
//! * `VM.get_all`, `VM.get_all_records`, `VM.get_by_uuid` (`UUID_INVALID`),
//!   `VM.get_by_name_label` (every VM of that name, templates and control domain included, as
//!   XenAPI does), `VM.get_record` (`HANDLE_INVALID`), `VM.hard_shutdown` (from `Running`,
//!   `Paused` or `Suspended`), `VM.start(vm, start_paused, force)` (from `Halted`), both
//!   `VM_BAD_POWER_STATE [vm, expected, actual]` otherwise, and `OPERATION_NOT_ALLOWED` on a
//!   template or the control domain;
//! * every call but login checks its session (`SESSION_INVALID [ref]`) and its parameter count
//!   (`MESSAGE_PARAMETER_COUNT_MISMATCH [method, expected, received]`, session included);
//!   unknown methods are `MESSAGE_METHOD_UNKNOWN`.
//!
//! Sessions expire after [`SimConfig::session_idle`] without use, and like xapi the server
//! keeps at most [`SimConfig::max_sessions`] (xapi: 500 per user), destroying the oldest: a
//! client that never logs out pushes other clients' sessions out.
//!
//! Faults to inject: a power call that fails ([`XenSim::fail_power`]), a VM that does not reach
//! off ([`XenSim::stick`]), all sessions expired at once ([`XenSim::expire_sessions`]).
//!
//! Not XenAPI, for tests only: `GET /sim/stats` answers `sessions N\nlogins N\nlogouts N\n
//! calls N\n`; `POST /sim/expire` expires every session; `POST /sim/stick/<uuid>` makes that
//! VM ignore `VM.hard_shutdown`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fence_drivers::xenapi::xmlrpc::{self, Value, XenResult};

/// The reference of nothing (`resident_on` of a halted VM).
const NULL_REF: &str = "OpaqueRef:NULL";

/// One VM (or template, or control domain) of the simulated pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVm {
    /// `name_label`.
    pub name: String,
    /// `uuid`, lower case.
    pub uuid: String,
    /// `power_state`: `Halted`, `Running`, `Paused` or `Suspended`.
    pub power_state: String,
    /// `is_a_template`.
    pub template: bool,
    /// `is_control_domain`.
    pub control_domain: bool,
    /// `name_label` of the host it is resident on (while not halted).
    pub host: String,
}

impl SimVm {
    /// A plain VM.
    pub fn new(name: &str, uuid: &str, power_state: &str) -> SimVm {
        SimVm {
            name: name.into(),
            uuid: uuid.to_ascii_lowercase(),
            power_state: power_state.into(),
            template: false,
            control_domain: false,
            host: "xen1".into(),
        }
    }

    /// A template (halted, never fenced).
    pub fn template(name: &str, uuid: &str) -> SimVm {
        SimVm {
            template: true,
            ..SimVm::new(name, uuid, "Halted")
        }
    }

    /// The control domain (dom0, running).
    pub fn control_domain(name: &str, uuid: &str) -> SimVm {
        SimVm {
            control_domain: true,
            ..SimVm::new(name, uuid, "Running")
        }
    }
}

/// `n` running VMs `vm0`…, with UUIDs derived from their index, plus a template and the
/// control domain.
pub fn pool(n: usize) -> Vec<SimVm> {
    let mut v: Vec<SimVm> = (0..n)
        .map(|i| SimVm::new(&format!("vm{i}"), &index_uuid(i as u64), "Running"))
        .collect();
    v.push(SimVm::template(
        "Debian Bookworm 12",
        "00000000-0000-4000-8000-7e0000000001",
    ));
    v.push(SimVm::control_domain(
        "Control domain on host: xen1",
        "00000000-0000-4000-8000-d00000000000",
    ));
    v
}

/// A UUID made from a number (stable across runs).
pub fn index_uuid(i: u64) -> String {
    format!("{:08x}-5a5a-4b4b-8c8c-{:012x}", i, i)
}

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Accepted user and password.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Pool member mode: every call answers `HOST_IS_SLAVE [this address]`.
    pub slave_of: Option<String>,
    /// Sessions unused this long are gone (`SESSION_INVALID`).
    pub session_idle: Option<Duration>,
    /// Most sessions kept; a login beyond destroys the oldest.
    pub max_sessions: usize,
    /// The VMs.
    pub vms: Vec<SimVm>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            user: "root".into(),
            password: "secret".into(),
            slave_of: None,
            session_idle: None,
            max_sessions: 500,
            vms: pool(3),
        }
    }
}

/// Counters of what clients did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Sessions open now.
    pub sessions: usize,
    /// Successful logins so far.
    pub logins: u64,
    /// `session.logout` calls that closed a session.
    pub logouts: u64,
    /// XML-RPC calls so far (all methods).
    pub calls: u64,
}

struct State {
    cfg: SimConfig,
    /// Session ref → (created sequence, last use).
    sessions: HashMap<String, (u64, Instant)>,
    next: u64,
    stats: SimStats,
    /// Method names in the order called.
    log: Vec<String>,
    /// uuid → error description answered by power calls.
    fail_power: HashMap<String, Vec<String>>,
    /// uuids whose hard_shutdown is accepted but leaves them running.
    stuck: Vec<String>,
}

/// A running simulator (serving until dropped).
pub struct XenSim {
    state: Arc<Mutex<State>>,
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    https: bool,
}

fn vm_ref(uuid: &str) -> String {
    format!("OpaqueRef:vm-{uuid}")
}

fn host_ref(name: &str) -> String {
    format!("OpaqueRef:host-{name}")
}

fn metrics_ref(uuid: &str) -> String {
    format!("OpaqueRef:metrics-{uuid}")
}

type Answer = Result<Value, Vec<String>>;

fn fail(parts: &[&str]) -> Answer {
    Err(parts.iter().map(|s| s.to_string()).collect())
}

impl State {
    fn record(&self, vm: &SimVm) -> Value {
        let running = vm.power_state != "Halted";
        let s = |k: &str, v: &str| (k.to_string(), Value::str(v));
        let b = |k: &str, v: bool| (k.to_string(), Value::Bool(v));
        Value::Struct(vec![
            s("uuid", &vm.uuid),
            s("name_label", &vm.name),
            s("name_description", ""),
            s("power_state", &vm.power_state),
            b("is_a_template", vm.template),
            b("is_a_snapshot", false),
            b("is_control_domain", vm.control_domain),
            s(
                "resident_on",
                &if running {
                    host_ref(&vm.host)
                } else {
                    NULL_REF.to_string()
                },
            ),
            s("metrics", &metrics_ref(&vm.uuid)),
            s("domid", if running { "1" } else { "-1" }),
            s("VCPUs_max", "2"),
            s("memory_static_max", "2147483648"),
            ("other_config".into(), Value::Struct(vec![])),
            ("tags".into(), Value::Array(vec![])),
        ])
    }

    fn find_ref(&self, r: &str) -> Option<usize> {
        self.cfg.vms.iter().position(|v| vm_ref(&v.uuid) == r)
    }

    fn new_session(&mut self) -> String {
        self.next += 1;
        let r = format!("OpaqueRef:{}", index_uuid(0x5e55_0000_0000 + self.next));
        if self.sessions.len() >= self.cfg.max_sessions.max(1) {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, (seq, _))| *seq)
                .map(|(k, _)| k.clone())
            {
                self.sessions.remove(&oldest);
            }
        }
        self.sessions.insert(r.clone(), (self.next, Instant::now()));
        r
    }

    fn check_session(&mut self, s: Option<&Value>) -> Result<(), Vec<String>> {
        let s = s.and_then(Value::as_str).unwrap_or_default().to_string();
        let idle = self.cfg.session_idle;
        match self.sessions.get_mut(&s) {
            Some((_, used)) if idle.is_none_or(|d| used.elapsed() < d) => {
                *used = Instant::now();
                Ok(())
            }
            Some(_) => {
                self.sessions.remove(&s);
                Err(vec!["SESSION_INVALID".into(), s])
            }
            None => Err(vec!["SESSION_INVALID".into(), s]),
        }
    }

    fn call(&mut self, method: &str, p: &[Value]) -> Answer {
        self.stats.calls += 1;
        self.log.push(method.to_string());
        if let Some(master) = &self.cfg.slave_of {
            return fail(&["HOST_IS_SLAVE", master]);
        }
        let want = |n: usize| -> Result<(), Vec<String>> {
            if p.len() == n {
                Ok(())
            } else {
                Err(vec![
                    "MESSAGE_PARAMETER_COUNT_MISMATCH".into(),
                    method.into(),
                    n.to_string(),
                    p.len().to_string(),
                ])
            }
        };
        let arg = |i: usize| p.get(i).and_then(Value::as_str).unwrap_or_default();
        if method == "session.login_with_password" {
            if !(2..=4).contains(&p.len()) {
                want(2)?;
            }
            if arg(0) != self.cfg.user || arg(1) != self.cfg.password {
                return fail(&[
                    "SESSION_AUTHENTICATION_FAILED",
                    arg(0),
                    "Authentication failure",
                ]);
            }
            self.stats.logins += 1;
            return Ok(Value::Str(self.new_session()));
        }
        let known = [
            "session.logout",
            "session.get_uuid",
            "pool.get_all",
            "VM.get_all",
            "VM.get_all_records",
            "VM.get_by_uuid",
            "VM.get_by_name_label",
            "VM.get_record",
            "VM.hard_shutdown",
            "VM.start",
            "host.get_all_records",
            "VM_metrics.get_all_records",
        ];
        if !known.contains(&method) {
            return fail(&["MESSAGE_METHOD_UNKNOWN", method]);
        }
        self.check_session(p.first())?;
        match method {
            "session.logout" => {
                want(1)?;
                self.sessions.remove(arg(0));
                self.stats.logouts += 1;
                Ok(Value::str(""))
            }
            "session.get_uuid" => {
                want(2)?;
                if !self.sessions.contains_key(arg(1)) {
                    return fail(&["HANDLE_INVALID", "session", arg(1)]);
                }
                Ok(Value::str(arg(1).trim_start_matches("OpaqueRef:")))
            }
            "pool.get_all" => {
                want(1)?;
                Ok(Value::Array(vec![Value::str("OpaqueRef:pool-0")]))
            }
            "VM.get_all" => {
                want(1)?;
                Ok(Value::Array(
                    self.cfg
                        .vms
                        .iter()
                        .map(|v| Value::Str(vm_ref(&v.uuid)))
                        .collect(),
                ))
            }
            "VM.get_all_records" => {
                want(1)?;
                Ok(Value::Struct(
                    self.cfg
                        .vms
                        .iter()
                        .map(|v| (vm_ref(&v.uuid), self.record(v)))
                        .collect(),
                ))
            }
            "host.get_all_records" => {
                want(1)?;
                let mut names: Vec<&str> = self.cfg.vms.iter().map(|v| v.host.as_str()).collect();
                names.sort();
                names.dedup();
                Ok(Value::Struct(
                    names
                        .into_iter()
                        .map(|n| {
                            (
                                host_ref(n),
                                Value::Struct(vec![
                                    ("name_label".into(), Value::str(n)),
                                    ("hostname".into(), Value::str(n)),
                                ]),
                            )
                        })
                        .collect(),
                ))
            }
            "VM_metrics.get_all_records" => {
                want(1)?;
                Ok(Value::Struct(
                    self.cfg
                        .vms
                        .iter()
                        .map(|v| {
                            (
                                metrics_ref(&v.uuid),
                                Value::Struct(vec![
                                    (
                                        "start_time".into(),
                                        Value::DateTime("20260101T00:00:00Z".into()),
                                    ),
                                    (
                                        "VCPUs_utilisation".into(),
                                        Value::Struct(vec![
                                            ("0".into(), Value::Double(0.25)),
                                            ("1".into(), Value::Double(0.75)),
                                        ]),
                                    ),
                                ]),
                            )
                        })
                        .collect(),
                ))
            }
            "VM.get_by_uuid" => {
                want(2)?;
                match self.cfg.vms.iter().find(|v| v.uuid == arg(1)) {
                    Some(v) => Ok(Value::Str(vm_ref(&v.uuid))),
                    None => fail(&["UUID_INVALID", "VM", arg(1)]),
                }
            }
            "VM.get_by_name_label" => {
                want(2)?;
                Ok(Value::Array(
                    self.cfg
                        .vms
                        .iter()
                        .filter(|v| v.name == arg(1))
                        .map(|v| Value::Str(vm_ref(&v.uuid)))
                        .collect(),
                ))
            }
            "VM.get_record" => {
                want(2)?;
                match self.find_ref(arg(1)) {
                    Some(i) => Ok(self.record(&self.cfg.vms[i])),
                    None => fail(&["HANDLE_INVALID", "VM", arg(1)]),
                }
            }
            "VM.hard_shutdown" | "VM.start" => {
                let start = method == "VM.start";
                want(if start { 4 } else { 2 })?;
                let r = arg(1).to_string();
                let Some(i) = self.find_ref(&r) else {
                    return fail(&["HANDLE_INVALID", "VM", &r]);
                };
                let vm = self.cfg.vms[i].clone();
                if vm.template || vm.control_domain {
                    let why = if vm.template {
                        "template"
                    } else {
                        "control domain"
                    };
                    return fail(&["OPERATION_NOT_ALLOWED", &format!("VM is a {why}")]);
                }
                if let Some(d) = self.fail_power.get(&vm.uuid) {
                    return Err(d.clone());
                }
                let actual = vm.power_state.to_ascii_lowercase();
                if start {
                    if vm.power_state != "Halted" {
                        return fail(&["VM_BAD_POWER_STATE", &r, "halted", &actual]);
                    }
                    let paused = p.get(2).and_then(Value::as_bool).unwrap_or(false);
                    self.cfg.vms[i].power_state =
                        if paused { "Paused" } else { "Running" }.to_string();
                } else {
                    if vm.power_state == "Halted" {
                        return fail(&["VM_BAD_POWER_STATE", &r, "running", &actual]);
                    }
                    if !self.stuck.contains(&vm.uuid) {
                        self.cfg.vms[i].power_state = "Halted".into();
                    }
                }
                Ok(Value::str(""))
            }
            _ => unreachable!("checked above"),
        }
    }
}

impl XenSim {
    /// Serve `cfg` on `127.0.0.1`, a free port.
    pub fn start(cfg: SimConfig) -> XenSim {
        Self::start_on("127.0.0.1:0", cfg)
    }

    /// Serve `cfg` on `addr` (e.g. `127.0.0.2:PORT` for a pool member beside a master).
    pub fn start_on(addr: &str, cfg: SimConfig) -> XenSim {
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("XenAPI simulator on {addr}: {e}"));
        Self::serve(listener, cfg)
    }

    /// Serve `cfg` on an already bound listener.
    pub fn serve(listener: TcpListener, cfg: SimConfig) -> XenSim {
        Self::serve_with(listener, cfg, None)
    }

    /// Serve `cfg` over HTTPS on `127.0.0.1`, a free port, with this certificate chain and key
    /// (PEM files), as XenServer hosts serve XenAPI on 443.
    pub fn start_tls(cfg: SimConfig, cert: &std::path::Path, key: &std::path::Path) -> XenSim {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("certificate file")
            .collect::<Result<_, _>>()
            .expect("PEM certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("PEM key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("TLS server configuration");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        Self::serve_with(listener, cfg, Some(Arc::new(tls)))
    }

    fn serve_with(
        listener: TcpListener,
        cfg: SimConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> XenSim {
        let https = tls.is_some();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            cfg,
            sessions: HashMap::new(),
            next: 0,
            stats: SimStats::default(),
            log: Vec::new(),
            fail_power: HashMap::new(),
            stuck: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (st, sp) = (st.clone(), sp.clone());
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                        let _ = conn.set_nodelay(true);
                        let tls = tls.clone();
                        std::thread::spawn(move || match tls {
                            None => serve_conn(conn, st, sp),
                            Some(cfg) => {
                                let Ok(tc) = rustls::ServerConnection::new(cfg) else {
                                    return;
                                };
                                serve_conn(rustls::StreamOwned::new(tc, conn), st, sp)
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        XenSim {
            state,
            addr,
            stop,
            https,
        }
    }

    /// `http://127.0.0.1:PORT/` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Counters.
    pub fn stats(&self) -> SimStats {
        let s = self.state.lock().unwrap();
        SimStats {
            sessions: s.sessions.len(),
            ..s.stats
        }
    }

    /// Methods called so far, in order.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// Forget the call log.
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// The VM with this uuid as the server has it now.
    pub fn vm(&self, uuid: &str) -> Option<SimVm> {
        let s = self.state.lock().unwrap();
        s.cfg.vms.iter().find(|v| v.uuid == uuid).cloned()
    }

    /// Set a VM's power state.
    pub fn set_power(&self, uuid: &str, power_state: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(v) = s.cfg.vms.iter_mut().find(|v| v.uuid == uuid) {
            v.power_state = power_state.into();
        }
    }

    /// Move a VM to the host named `host` (a live migration), as the pool would.
    pub fn migrate(&self, uuid: &str, host: &str) {
        let mut st = self.state.lock().unwrap();
        if let Some(v) = st.cfg.vms.iter_mut().find(|v| v.uuid == uuid) {
            v.host = host.to_string();
        }
    }

    /// Add a VM.
    pub fn add(&self, vm: SimVm) {
        self.state.lock().unwrap().cfg.vms.push(vm);
    }

    /// Power calls on this VM answer with `error` (code and arguments).
    pub fn fail_power(&self, uuid: &str, error: &[&str]) {
        let d = error.iter().map(|s| s.to_string()).collect();
        self.state.lock().unwrap().fail_power.insert(uuid.into(), d);
    }

    /// `VM.hard_shutdown` of this VM succeeds but leaves it running.
    pub fn stick(&self, uuid: &str) {
        self.state.lock().unwrap().stuck.push(uuid.into());
    }

    /// Every session is gone (as after a master restart).
    pub fn expire_sessions(&self) {
        self.state.lock().unwrap().sessions.clear();
    }
}

impl Drop for XenSim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Largest request body accepted.
const MAX_REQUEST: usize = 16 << 20;

fn serve_conn(conn: impl Read + Write, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    let mut rd = BufReader::new(conn);
    // One request per iteration, keep-alive until the client closes or asks to.
    for _ in 0..1_000_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut line = String::new();
        if rd.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let mut len = 0usize;
        let mut close = false;
        for _ in 0..100 {
            let mut h = String::new();
            if rd.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                } else if k == "connection" && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        if len > MAX_REQUEST {
            return;
        }
        let mut body = vec![0u8; len];
        if rd.read_exact(&mut body).is_err() {
            return;
        }
        let (status, ctype, text) = if path.starts_with("/sim/") {
            let mut s = state.lock().unwrap();
            if method == "POST" && path == "/sim/expire" {
                s.sessions.clear();
            }
            if let Some(uuid) = path.strip_prefix("/sim/stick/") {
                if method == "POST" {
                    s.stuck.push(uuid.to_string());
                }
            }
            let text = format!(
                "sessions {}\nlogins {}\nlogouts {}\ncalls {}\n",
                s.sessions.len(),
                s.stats.logins,
                s.stats.logouts,
                s.stats.calls
            );
            ("200 OK", "text/plain", text)
        } else if method != "POST" {
            (
                "405 Method Not Allowed",
                "text/plain",
                "XML-RPC wants POST\n".to_string(),
            )
        } else {
            let body = String::from_utf8_lossy(&body);
            match xmlrpc::decode_call(&body) {
                Ok((m, p)) => {
                    let r = state.lock().unwrap().call(&m, &p);
                    let r = match r {
                        Ok(v) => XenResult::Success(v),
                        Err(d) => XenResult::Failure(d),
                    };
                    ("200 OK", "text/xml", xmlrpc::encode_response(&r.to_value()))
                }
                Err(e) => ("400 Bad Request", "text/plain", format!("{e}\n")),
            }
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{}\r\n",
            text.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        // One write (head and body together) and no Nagle delay: a split answer would wait
        // for the client's delayed ACK (40 ms per call on Linux).
        let mut msg = head.into_bytes();
        msg.extend_from_slice(text.as_bytes());
        if rd.get_mut().write_all(&msg).is_err() || rd.get_mut().flush().is_err() {
            return;
        }
        if close {
            return;
        }
    }
}
