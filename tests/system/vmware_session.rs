//! VMware SOAP session life cycle against govmomi's simulator (the tests/vcsim launcher, see
//! [`super::vmware`]), observed through a recording TCP proxy ([`Proxy`]) between our program
//! and the simulator:
//! * `fence_vmware_soap` interrupted by SIGTERM while its `Login` is in flight still logs the
//!   session out (exit 1, as the reference's SIGTERM handler); SIGTERM during `--delay` exits 1
//!   without a single request;
//! * our fence_virtd with the `vmware_soap` backend keeps one session, answers cleanly (failure,
//!   daemon alive) while the endpoint is down, and works again without a restart once a fresh
//!   endpoint listens on the same port (the old cookie is unknown there, the old TCP connection
//!   dead: new connection, re-login);
//! * the daemon logs in again when the server expires its idle session (launcher flag
//!   `-session-idle-timeout`), seen as a second `Login` through the proxy;
//! * every run of `fence_vmware_soap` that logged in logs out, answered 200, whatever the
//!   action and outcome (unknown VM included); a refused login leaves nothing to log out.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fence_system_tests::netns::Netns;

use super::vmware::{launcher, ours, Sim, VmwareDaemon, PASS, USER, VM1, VM1_UUID};

/// What the proxy saw, in order: SOAP methods in requests and HTTP status codes in answers,
/// each with the number of the TCP connection it travelled on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Request { conn: usize, method: String },
    Answer { conn: usize, status: u16 },
}

/// Finds complete occurrences of `marker` followed by a token in a growing byte stream.
struct Scanner {
    marker: &'static [u8],
    buf: Vec<u8>,
    next: usize,
}

impl Scanner {
    fn new(marker: &'static [u8]) -> Scanner {
        Scanner {
            marker,
            buf: Vec::new(),
            next: 0,
        }
    }

    /// Appends `chunk`; returns the tokens after every new complete occurrence of the marker (a
    /// token ends at a space, `>`, `/` or CR; an occurrence whose token is not complete yet is
    /// reported once more bytes arrive).
    fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(i) = find(&self.buf[self.next..], self.marker) {
            let start = self.next + i + self.marker.len();
            let Some(len) = self.buf[start..]
                .iter()
                .position(|b| matches!(b, b' ' | b'>' | b'/' | b'\r'))
            else {
                self.next += i;
                break;
            };
            out.push(String::from_utf8_lossy(&self.buf[start..start + len]).into_owned());
            self.next = start + len;
        }
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A TCP proxy on loopback (optionally inside a network namespace) in front of one upstream
/// port. It forwards bytes both ways unchanged, records [`Seen`] events, reports every request
/// method on a channel, and can hold back the request of one method for a while.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    methods: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
    ns: Option<PathBuf>,
}

impl Proxy {
    /// `ns`: the handle of a network namespace to listen and connect in.
    fn start(upstream: u16, hold: Option<(&'static str, Duration)>, ns: Option<PathBuf>) -> Proxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (method_tx, methods) = mpsc::channel();
        let (port_tx, port_rx) = mpsc::channel();
        let (seen2, stop2, ns2) = (seen.clone(), stop.clone(), ns.clone());
        std::thread::spawn(move || {
            if let Some(ns) = ns2 {
                let f = std::fs::File::open(&ns).expect("open netns handle");
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            }
            let l = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
            port_tx.send(l.local_addr().unwrap().port()).unwrap();
            let conns = AtomicUsize::new(0);
            for client in l.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let conn = conns.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    // Upstream down: the client sees the connection closed, as it would.
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (seen_a, seen_b, tx) = (seen2.clone(), seen2.clone(), method_tx.clone());
                std::thread::spawn(move || {
                    let mut sc = Scanner::new(b"<soapenv:Body><");
                    pump(client, server, |chunk| {
                        for method in sc.feed(chunk) {
                            seen_a.lock().unwrap().push(Seen::Request {
                                conn,
                                method: method.clone(),
                            });
                            let _ = tx.send(method.clone());
                            if let Some((m, d)) = hold {
                                if m == method {
                                    std::thread::sleep(d);
                                }
                            }
                        }
                    })
                });
                std::thread::spawn(move || {
                    let mut sc = Scanner::new(b"HTTP/1.1 ");
                    pump(s2, c2, |chunk| {
                        for status in sc.feed(chunk) {
                            let status = status.parse().unwrap_or(0);
                            seen_b.lock().unwrap().push(Seen::Answer { conn, status });
                        }
                    })
                });
            }
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("proxy started");
        Proxy {
            port,
            seen,
            methods,
            stop,
            ns,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Methods requested so far, in order.
    fn requests(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Request { method, .. } => Some(method),
                Seen::Answer { .. } => None,
            })
            .collect()
    }

    /// Waits (bounded) until a request for `method` passes; `false` on timeout.
    fn wait_for(&self, method: &str, within: Duration) -> bool {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.methods.recv_timeout(left) {
                Ok(m) if m == method => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    /// The HTTP status of the answer to the last request for `method`, if one came back.
    fn answer_to_last(&self, method: &str) -> Option<u16> {
        let seen = self.seen();
        let (i, conn) = seen.iter().enumerate().rev().find_map(|(i, s)| match s {
            Seen::Request { conn, method: m } if m == method => Some((i, *conn)),
            _ => None,
        })?;
        seen[i + 1..].iter().find_map(|s| match s {
            Seen::Answer { conn: c, status } if *c == conn => Some(*status),
            _ => None,
        })
    }
}

impl Proxy {
    /// Every request so far with the HTTP status of its answer (the next answer on the same
    /// connection: HTTP/1.1 without pipelining), `None` if none came back.
    fn exchanges(&self) -> Vec<(String, Option<u16>)> {
        let seen = self.seen();
        seen.iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Seen::Request { conn, method } => {
                    let answer = seen[i + 1..].iter().find_map(|s| match s {
                        Seen::Answer { conn: c, status } if c == conn => Some(*status),
                        _ => None,
                    });
                    Some((method.clone(), answer))
                }
                Seen::Answer { .. } => None,
            })
            .collect()
    }
}

/// Whether every `Login` answered 200 in `ex` is followed by a `Logout` answered 200 (each
/// Logout closes at most one session).
fn logins_logged_out(ex: &[(String, Option<u16>)]) -> bool {
    let mut open = 0usize;
    for (method, answer) in ex {
        match (method.as_str(), answer) {
            ("Login", Some(200)) => open += 1,
            ("Logout", Some(200)) if open > 0 => open -= 1,
            _ => {}
        }
    }
    open == 0
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop (inside the namespace if there is one).
        let port = self.port;
        let wake = move || {
            let _ =
                TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1));
        };
        match self.ns.clone() {
            Some(ns) => {
                let _ = std::thread::spawn(move || {
                    if let Ok(f) = std::fs::File::open(ns) {
                        if nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).is_ok() {
                            wake();
                        }
                    }
                })
                .join();
            }
            None => wake(),
        }
    }
}

/// Copies `from` → `to`, showing every chunk to `look` before forwarding it; on EOF or error
/// closes the write side of `to` and the read side of `from`.
fn pump(mut from: TcpStream, mut to: TcpStream, mut look: impl FnMut(&[u8])) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                look(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn wait_child(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// SIGTERM while `Login` is on the wire: the agent must not leave the session the server then
/// creates behind. The proxy holds the Login request back for 1.5 s; the signal arrives during
/// that time.
#[test]
fn agent_sigterm_during_login_still_logs_out() {
    let sim = Sim::local(5, false);
    let proxy = Proxy::start(sim.port, Some(("Login", Duration::from_millis(1500))), None);
    let args: Vec<String> = [
        "-a",
        "127.0.0.1",
        "-u",
        &proxy.port.to_string(),
        "-l",
        USER,
        "-p",
        PASS,
        "-o",
        "status",
        "-n",
        VM1,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = spawn_ours(&args);
    assert!(
        proxy.wait_for("Login", Duration::from_secs(10)),
        "no Login seen: {:?}",
        proxy.seen()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = wait_child(&mut child, Duration::from_secs(20)).expect("agent exits within 20 s");
    let mut stderr = String::new();
    let mut stdout = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(st.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stdout, "", "no action ran");
    assert!(
        stderr.contains("Interrupted by SIGTERM"),
        "stderr: {stderr}"
    );
    // Give the proxy's answer pump a moment to record the last answer (bounded).
    let end = Instant::now() + Duration::from_secs(5);
    while proxy.answer_to_last("Logout").is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let reqs = proxy.requests();
    let login = reqs.iter().position(|m| m == "Login");
    let logout = reqs.iter().rposition(|m| m == "Logout");
    assert!(
        matches!((login, logout), (Some(a), Some(b)) if b > a),
        "a Logout must follow the Login: {:?}",
        proxy.seen()
    );
    assert_eq!(
        proxy.answer_to_last("Login"),
        Some(200),
        "{:?}",
        proxy.seen()
    );
    assert_eq!(
        proxy.answer_to_last("Logout"),
        Some(200),
        "{:?}",
        proxy.seen()
    );
    // Nothing but the session's own calls: no VM lookup after the signal.
    assert!(
        reqs.iter()
            .all(|m| ["RetrieveServiceContent", "Login", "Logout"].contains(&m.as_str())),
        "{reqs:?}"
    );
}

/// SIGTERM during `--delay` (applied to off and reboot), before any contact with the device:
/// exit 1 at once, no request.
#[test]
fn agent_sigterm_during_delay_exits_without_connecting() {
    let sim = Sim::local(2, false);
    let proxy = Proxy::start(sim.port, None, None);
    let port = proxy.port.to_string();
    let args = [
        "-a",
        "127.0.0.1",
        "-u",
        &port,
        "-l",
        USER,
        "-p",
        PASS,
        "-o",
        "off",
        "-n",
        VM1,
        "--delay=30",
    ];
    let t = Instant::now();
    let mut child = spawn_ours(&args);
    // Signal only once the agent takes SIGTERM itself (before that, the default action would
    // kill it): bounded, no fixed sleep to race its start-up.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !takes_sigterm(child.id()) {
        assert!(
            Instant::now() < deadline,
            "the agent never blocked or caught SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = wait_child(&mut child, Duration::from_secs(15)).expect("agent exits within 15 s");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(st.code(), Some(1), "stderr: {stderr}");
    // Well before the 30 s delay would have ended.
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(stderr.contains("Interrupted by SIGTERM"), "{stderr}");
    assert!(!stderr.contains("logged out"), "{stderr}");
    assert_eq!(proxy.seen(), vec![], "no request during the delay");
}

/// Whether process `pid` blocks (to wait for it in a thread) or catches SIGTERM: bit 14
/// (signal 15) of its main thread's `SigBlk` or of `SigCgt` in /proc/PID/status.
fn takes_sigterm(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (mask("SigBlk:") | mask("SigCgt:")) & (1 << 14) != 0
}

/// A loopback port free in `ns` right now (bound, then released).
fn free_port_in(ns: &Netns) -> u16 {
    ns.run_in(|| {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

fn sim_on(ns: &Netns, port: u16, extra: &[&str]) -> Sim {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["-vms", "5", "-listen", &listen];
    args.extend_from_slice(extra);
    let sim = Sim::start(ns.cmd(launcher()), &args, false);
    assert_eq!(sim.port, port, "simulator listens on the port asked for");
    sim
}

/// The endpoint goes away and comes back (a fresh simulator on the same port: new sessions,
/// old TCP connection dead) under a running daemon: requests fail cleanly meanwhile, then work
/// again without restarting the daemon.
#[test]
fn daemon_reconnects_after_endpoint_restart() {
    let ns = Netns::new();
    let port = free_port_in(&ns);
    let mut sim = sim_on(&ns, port, &[]);
    let mut daemon = VmwareDaemon::start(&ns, port);
    let status = ["-o", "status", "-H", VM1];
    let o = daemon.xvm_until(&ns, &status, 0, Duration::from_secs(20));
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "Status: ON\n"),
        "{}\ndaemon: {}",
        o.stderr,
        daemon.log()
    );

    sim.kill();
    for args in [&status[..], &["-o", "off", "-H", VM1]] {
        let t = Instant::now();
        let o = daemon.xvm(&ns, args);
        assert_eq!(o.code, 1, "{args:?} with the endpoint down: {}", o.stderr);
        assert!(
            !o.timed_out,
            "{args:?}: the daemon answers, it does not go silent"
        );
        // Hang guard only (the harness' 20 s bound is what `timed_out` reports).
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
        assert!(daemon.alive(), "daemon died: {}", daemon.log());
    }

    // The launcher prints its URL once it listens: the first request must already work.
    let sim2 = sim_on(&ns, port, &[]);
    let o = daemon.xvm(&ns, &status);
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "Status: ON\n"),
        "after the restart: {}\ndaemon: {}",
        o.stderr,
        daemon.log()
    );
    let o = daemon.xvm(&ns, &["-o", "off", "-H", VM1_UUID]);
    assert_eq!(o.code, 0, "{}\ndaemon: {}", o.stderr, daemon.log());
    let o = daemon.xvm(&ns, &status);
    assert_eq!((o.code, o.stdout.as_str()), (2, "Status: OFF\n"));
    let o = daemon.xvm(&ns, &["-o", "on", "-H", VM1]);
    assert_eq!(o.code, 0, "{}\ndaemon: {}", o.stderr, daemon.log());
    let o = daemon.xvm(&ns, &status);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Status: ON\n"));

    // A restart between two requests, none in between: the pooled connection is dead and the
    // session unknown, yet the very next request is answered.
    drop(sim2);
    let _sim3 = sim_on(&ns, port, &[]);
    let o = daemon.xvm(&ns, &["-o", "off", "-H", VM1]);
    assert_eq!(o.code, 0, "{}\ndaemon: {}", o.stderr, daemon.log());
    let o = daemon.xvm(&ns, &status);
    assert_eq!((o.code, o.stdout.as_str()), (2, "Status: OFF\n"));
    assert!(daemon.alive());
}

/// The server drops the daemon's session after 2 s idle; the daemon's next request logs in
/// again (a second `Login` through the proxy) and is answered correctly.
#[test]
fn daemon_logs_in_again_after_session_expiry() {
    let ns = Netns::new();
    let port = free_port_in(&ns);
    let _sim = sim_on(&ns, port, &["-session-idle-timeout", "2s"]);
    let proxy = Proxy::start(port, None, Some(ns.handle_path()));
    let daemon = VmwareDaemon::start(&ns, proxy.port);
    let status = ["-o", "status", "-H", VM1];
    let o = daemon.xvm_until(&ns, &status, 0, Duration::from_secs(20));
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "Status: ON\n"),
        "{}\ndaemon: {}",
        o.stderr,
        daemon.log()
    );
    let logins = |p: &Proxy| p.requests().iter().filter(|m| *m == "Login").count();
    // One Login at start-up; a slow start could already have needed a second one.
    let before = logins(&proxy);
    assert!((1..=2).contains(&before), "{:?}", proxy.seen());
    // Idle for 2 s, checked every 2 s: gone after at most ~4 s; 8 s leaves the simulator's
    // reaper ample time on a loaded machine. (Counts are lower bounds: a slow request can
    // itself outlast the idle limit and need one more login, which is fine.)
    std::thread::sleep(Duration::from_secs(8));
    let o = daemon.xvm(&ns, &["-o", "off", "-H", VM1]);
    assert_eq!(o.code, 0, "{}\ndaemon: {}", o.stderr, daemon.log());
    assert!(logins(&proxy) > before, "a re-login: {:?}", proxy.seen());
    assert_eq!(proxy.answer_to_last("Login"), Some(200));
    let o = daemon.xvm(&ns, &status);
    assert_eq!((o.code, o.stdout.as_str()), (2, "Status: OFF\n"));
    let after_first = logins(&proxy);
    std::thread::sleep(Duration::from_secs(8));
    let o = daemon.xvm(&ns, &["-o", "on", "-H", VM1]);
    assert_eq!(o.code, 0, "{}\ndaemon: {}", o.stderr, daemon.log());
    assert!(
        logins(&proxy) > after_first,
        "another re-login: {:?}",
        proxy.seen()
    );
}

/// Our `fence_vmware_soap` with `args`, outside Pacemaker, stdout and stderr piped.
fn spawn_ours<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Child {
    Command::new(ours())
        .args(args)
        .env_remove("PCMK_service")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// One run of our `fence_vmware_soap` through a fresh proxy (bounded to 30 s); exit code,
/// stdout, stderr and the proxy.
fn agent_through_proxy(sim: &Sim, password: &str, action: &[&str]) -> (i32, String, String, Proxy) {
    let proxy = Proxy::start(sim.port, None, None);
    let port = proxy.port.to_string();
    let mut args = vec!["-a", "127.0.0.1", "-u", &port, "-l", USER, "-p", password];
    args.extend_from_slice(action);
    let mut child = spawn_ours(&args);
    // Small outputs: the pipes do not fill before the exit.
    let st = wait_child(&mut child, Duration::from_secs(30)).expect("agent exits within 30 s");
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (st.code().unwrap_or(-1), stdout, stderr, proxy)
}

/// Logout on the wire: for status, off, on, reboot, list, monitor and an unknown VM (exit 1)
/// every successful `Login` of the run is followed by a `Logout` the server answers 200; with a
/// wrong password the `Login` fails and no `Logout` is sent for a session that does not exist.
#[test]
fn agent_logs_out_on_the_wire_after_every_run() {
    let sim = Sim::local(5, false);
    let cases: [(&[&str], i32, &str); 7] = [
        (&["-o", "status", "-n", VM1], 0, "Status: ON\n"),
        (&["-o", "off", "-n", VM1], 0, "Success: Powered OFF\n"),
        (&["-o", "on", "-n", VM1], 0, "Success: Powered ON\n"),
        (&["-o", "reboot", "-n", VM1_UUID], 0, "Success: Rebooted\n"),
        (&["-o", "list"], 0, ""),
        (&["-o", "monitor"], 0, ""),
        (&["-o", "status", "-n", "nosuchvm"], 1, ""),
    ];
    for (action, code, stdout) in cases {
        let (c, out, err, proxy) = agent_through_proxy(&sim, PASS, action);
        assert_eq!(c, code, "{action:?}: {err}");
        if action[1] == "list" {
            assert_eq!(out.lines().count(), 5, "{action:?}: {out}");
        } else {
            assert_eq!(out, stdout, "{action:?}: {err}");
        }
        // The agent read the Logout answer before exiting, so the proxy has recorded it; the
        // bounded wait only covers the recording thread's scheduling.
        let end = Instant::now() + Duration::from_secs(5);
        while !logins_logged_out(&proxy.exchanges()) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let ex = proxy.exchanges();
        assert!(
            ex.iter().any(|e| *e == ("Login".to_string(), Some(200))),
            "{action:?}: no successful Login: {ex:?}"
        );
        assert!(
            logins_logged_out(&ex),
            "{action:?}: a session was left open: {ex:?}"
        );
        assert_eq!(
            ex.last().map(|e| e.0.as_str()),
            Some("Logout"),
            "{action:?}: Logout is the last call: {ex:?}"
        );
    }

    let (c, out, err, proxy) = agent_through_proxy(&sim, "wrong", &["-o", "status", "-n", VM1]);
    assert_eq!((c, out.as_str()), (1, ""), "{err}");
    let ex = proxy.exchanges();
    let logins: Vec<_> = ex.iter().filter(|e| e.0 == "Login").collect();
    assert!(!logins.is_empty(), "a Login was tried: {ex:?}");
    assert!(
        logins.iter().all(|e| e.1.is_some_and(|s| s != 200)),
        "the wrong password is refused: {ex:?}"
    );
    assert!(
        ex.iter().all(|e| e.0 != "Logout"),
        "no Logout without a session: {ex:?}"
    );
}

#[test]
fn scanner_finds_split_markers() {
    let mut s = Scanner::new(b"<soapenv:Body><");
    assert!(s.feed(b"xx<soapenv:Bo").is_empty());
    assert!(s.feed(b"dy><Log").is_empty());
    assert_eq!(s.feed(b"in xmlns=\"urn:vim25\">"), vec!["Login"]);
    assert_eq!(
        s.feed(b"<soapenv:Body><Logout xmlns=\"\"><soapenv:Body><A>"),
        vec!["Logout", "A"]
    );
}
