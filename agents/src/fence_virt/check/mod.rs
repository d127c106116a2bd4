//! `fence_virtctl check`: the set-up check for a guest. It takes the agent's own options
//! (`fence_xvm`'s for multicast, `fence_virt`'s for tcp, vsock, serial and vmchannel, parsed
//! by the same option tables, [`super::args`]), sends harmless requests the way the agent does
//! (`monitor`, then `status` and, when needed, `list` for the VM given with `-H`; never a power
//! action) and reports each step of the exchange — key file and fingerprint, multicast sent
//! (interfaces, TTL, route), connection back, the host's authentication verdict, `groups`,
//! backend, VM — naming the first one that fails and why ([`Report`]). Exit status 0 when
//! everything passed, else the failing step's code ([`StepName::exit_code`]).
//!
//! What a guest can and cannot tell (the protocol gives it few signals, and the C and our
//! fence_virtd behave alike here):
//! * **multicast, no connection back.** fence_virtd drops a request whose hash does not
//!   verify without a word, so "wrong key", "multicast never reached the host" and "fence_virtd
//!   not running" look the same. The check narrows it down: a SYN to the connect-back port seen
//!   by a packet socket (below the firewall) but never accepted means this guest's firewall
//!   dropped it ([`sniff`], needs root); a second request signed with sha512 that does get an
//!   answer means the hash was below the daemon's floor; no route for the group here means the
//!   request probably never left. What remains is reported as the list of possible causes, with
//!   the key's fingerprint to compare with the host's (`fence_virtctl health`).
//! * **tcp/vsock.** A daemon that rejects the request closes the connection before answering
//!   our challenge: key, hash below the floor, or a replay of the same seqno within 10 s (our
//!   seqnos are random, so practically never). The sha512 retry separates hash from key.
//! * **challenge-response.** A wrong answer to our challenge (or a close after our answer to
//!   the daemon's) after the request verified means the `auth` algorithm differs.
//! * **groups.** `status` answers permission denied (3).
//! * **unknown VM.** Our fence_virtd answers failure to `status`; the C fence_virtd answers
//!   "off", so an "off" or a failure is followed by a host list that must contain the VM.
//! * **backend.** Our fence_virtd asks the hypervisor for `monitor`; the C fence_virtd answers
//!   success without asking, so against it this step proves only that the daemon answers.

mod probe;
mod sniff;

pub use probe::{LocalAddr, Outcome, Probe, Sent};
pub use sniff::{syn_source, Syns};

use super::args::{parse_argv, Flavor, Mode, VirtArgs};
use super::client::{channel, Channel, ClientConfig, Reply};
use super::flow::{finalize, VirtCall};
use fence_proto::{HashAlg, Key, Op};
use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// The steps of a request, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepName {
    /// The agent options.
    Options,
    /// The key file (readable, not empty) and its fingerprint.
    Key,
    /// Multicast: the request sent from each local address.
    Multicast,
    /// tcp, vsock, serial, vmchannel: the connection to the daemon or channel.
    Connect,
    /// Multicast: the daemon's TCP connection back to the guest.
    ConnectBack,
    /// The host's verdict on the request and the challenge-response.
    Authentication,
    /// The `groups` map.
    Access,
    /// The daemon's backend (hypervisor) answers.
    Backend,
    /// The VM given with `-H` is known.
    Vm,
}

impl StepName {
    /// Name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Options => "options",
            StepName::Key => "key",
            StepName::Multicast => "multicast",
            StepName::Connect => "connect",
            StepName::ConnectBack => "connect-back",
            StepName::Authentication => "authentication",
            StepName::Access => "access",
            StepName::Backend => "backend",
            StepName::Vm => "vm",
        }
    }

    /// Exit status of `fence_virtctl check` when this step fails.
    pub fn exit_code(self) -> u8 {
        match self {
            StepName::Options => 1,
            StepName::Key => 2,
            StepName::Multicast | StepName::Connect => 3,
            StepName::ConnectBack => 4,
            StepName::Authentication => 5,
            StepName::Access => 6,
            StepName::Backend => 7,
            StepName::Vm => 8,
        }
    }
}

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Passed.
    Ok,
    /// Passed, with something worth knowing.
    Warn,
    /// Failed.
    Fail,
    /// Not run (not needed, or an earlier step failed).
    Skip,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// Which step.
    pub step: StepName,
    /// How it went.
    pub status: Status,
    /// One line.
    pub summary: String,
    /// More lines (per interface, …).
    pub details: Vec<String>,
}

/// The conclusion: the failing step, why, and what else could explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The step blamed.
    pub step: StepName,
    /// The cause as far as the guest can tell.
    pub cause: String,
    /// Other causes the guest cannot rule out.
    pub possible: Vec<String>,
}

/// The whole check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// One line on what was checked (agent, channel, algorithms).
    pub setup: String,
    /// The steps, in order.
    pub steps: Vec<StepReport>,
    /// `None` when every step passed.
    pub verdict: Option<Verdict>,
}

impl Report {
    /// The step that failed, if any.
    pub fn failed_step(&self) -> Option<StepName> {
        self.verdict.as_ref().map(|v| v.step)
    }

    /// 0 when everything passed, else the failing step's code.
    pub fn exit_code(&self) -> u8 {
        self.failed_step().map_or(0, StepName::exit_code)
    }

    /// The step's report, if it was recorded.
    pub fn step(&self, step: StepName) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.step == step)
    }

    /// Human-readable text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.setup.is_empty() {
            let _ = writeln!(s, "fence_virtctl check: {}", self.setup);
        }
        for st in &self.steps {
            let tag = match st.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            let _ = writeln!(s, "  {tag:<5} {:<15} {}", st.step.as_str(), st.summary);
            for d in &st.details {
                let _ = writeln!(s, "        {:<15} {d}", "");
            }
        }
        match &self.verdict {
            None => {
                let _ = writeln!(s, "result: all steps passed");
            }
            Some(v) => {
                let _ = writeln!(
                    s,
                    "result: FAILED at step {} (exit {}): {}",
                    v.step.as_str(),
                    v.step.exit_code(),
                    v.cause
                );
                if !v.possible.is_empty() {
                    let _ = writeln!(
                        s,
                        "  other possible causes (the guest cannot rule them out):"
                    );
                    for p in &v.possible {
                        let _ = writeln!(s, "  - {p}");
                    }
                }
            }
        }
        s
    }
}

/// Usage of `fence_virtctl check`.
pub const USAGE: &str =
    "usage: fence_virtctl check [fence_xvm|fence_virt] [AGENT OPTIONS] [-H VM]\n\
    \x20 Runs each step of a request with the agent's channel options (fence_xvm's for multicast,\n\
    \x20 fence_virt's for -T tcp, -S vsock, -D serial, vmchannel) and names the first that fails.\n\
    \x20 Sends only monitor, status and list; -o is ignored. Without the agent name, fence_virt\n\
    \x20 is assumed when -T, -S, -D, -P or -A is given, else fence_xvm. Exit 0: all passed;\n\
    \x20 1 options, 2 key, 3 multicast/connect, 4 connect-back, 5 authentication, 6 access\n\
    \x20 (groups), 7 backend, 8 vm. Run it as root: watching for a blocked connect-back needs it.";

/// The `fence_virtctl check` command: `args` are the words after `check`. Prints the report
/// on stdout and returns its exit status.
pub fn run(args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h" || a == "-?") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let report = check(args);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.render().as_bytes());
    let _ = out.flush();
    ExitCode::from(report.exit_code())
}

/// Which agent's options `args` are: an explicit first word, else by the options used.
fn flavor_of(args: &[String]) -> (Flavor, &[String]) {
    match args.first().map(String::as_str) {
        Some("fence_xvm" | "xvm") => return (Flavor::Xvm, &args[1..]),
        Some("fence_virt" | "virt") => return (Flavor::Virt, &args[1..]),
        _ => {}
    }
    let virt_only = args.iter().any(|a| {
        a.starts_with('-')
            && !a.starts_with("--")
            && a[1..].starts_with(|c: char| "TSDPA".contains(c))
    });
    (if virt_only { Flavor::Virt } else { Flavor::Xvm }, args)
}

fn channel_text(ch: &Channel) -> String {
    match ch {
        Channel::Multicast { group, port, .. } => format!("multicast {group} port {port}"),
        Channel::Tcp { addr, port } => format!("tcp {addr} port {port}"),
        Channel::Vsock { cid, port } => format!("vsock cid {cid} port {port}"),
        Channel::Serial { device, params } => {
            format!("serial {} ({params})", device.display())
        }
        Channel::VmChannel { addr, port } => format!("vmchannel {addr} port {port}"),
    }
}

/// A recorder of steps that stops at the first verdict.
struct Run {
    report: Report,
}

impl Run {
    fn step(&mut self, step: StepName, status: Status, summary: impl Into<String>) {
        self.report.steps.push(StepReport {
            step,
            status,
            summary: summary.into(),
            details: Vec::new(),
        });
    }

    /// Records a step, replacing an earlier record of it (a later probe saw more).
    fn set(&mut self, step: StepName, status: Status, summary: impl Into<String>) {
        match self.report.steps.iter_mut().find(|s| s.step == step) {
            Some(s) => {
                s.status = status;
                s.summary = summary.into();
            }
            None => self.step(step, status, summary),
        }
    }

    fn detail(&mut self, d: impl Into<String>) {
        if let Some(s) = self.report.steps.last_mut() {
            s.details.push(d.into());
        }
    }

    /// Records the failing step and the verdict; the remaining `later` steps are skipped.
    fn fail(
        mut self,
        step: StepName,
        summary: impl Into<String>,
        cause: impl Into<String>,
        possible: Vec<String>,
        later: &[StepName],
    ) -> Report {
        match self.report.steps.iter_mut().find(|s| s.step == step) {
            Some(s) => {
                s.status = Status::Fail;
                s.summary = summary.into();
            }
            None => self.step(step, Status::Fail, summary),
        }
        for l in later {
            if *l != step && self.report.step(*l).is_none() {
                self.step(*l, Status::Skip, "not reached");
            }
        }
        self.report.verdict = Some(Verdict {
            step,
            cause: cause.into(),
            possible,
        });
        self.report
    }
}

/// Runs the check for the agent options `args` (the words after `check`) and returns the
/// report; nothing is printed.
pub fn check(args: &[String]) -> Report {
    let (flavor, rest) = flavor_of(args);
    let argv0 = match flavor {
        Flavor::Xvm => "fence_xvm",
        Flavor::Virt => "fence_virt",
    };
    let mut msgs: Vec<u8> = Vec::new();
    let mut errs: Vec<u8> = Vec::new();
    let mut a = parse_argv(flavor, argv0, rest, &mut msgs, &mut errs);
    finalize(&mut a, &mut msgs);
    if a.ipaddr.is_some() {
        a.mode = Mode::Tcp;
    }
    if a.cid >= 2 {
        a.mode = Mode::Vsock;
    }
    let mut run = Run {
        report: Report::default(),
    };
    if a.err || a.help || a.bad_option {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&errs),
            String::from_utf8_lossy(&msgs)
        );
        run.step(StepName::Options, Status::Fail, format!("{argv0} options"));
        for l in text.lines().filter(|l| !l.is_empty()) {
            run.detail(l.to_string());
        }
        return run.fail(
            StepName::Options,
            format!("{argv0} options"),
            "the options are not valid for the agent (see above)",
            vec![],
            &[],
        );
    }
    check_parsed(run, flavor, &a)
}

fn check_parsed(mut run: Run, flavor: Flavor, a: &VirtArgs) -> Report {
    let multicast = a.mode == Mode::Multicast;
    let serial = a.mode == Mode::Serial;
    let channel_step = if multicast {
        StepName::Multicast
    } else {
        StepName::Connect
    };
    let mut later = vec![StepName::Key, channel_step];
    if multicast {
        later.push(StepName::ConnectBack);
    }
    later.extend([
        StepName::Authentication,
        StepName::Access,
        StepName::Backend,
        StepName::Vm,
    ]);

    // Key.
    let mut key = None;
    let (hash, auth) = (a.hash, a.auth);
    if serial {
        run.step(
            StepName::Key,
            Status::Skip,
            "serial and vmchannel requests carry no key",
        );
    } else if hash == HashAlg::None && auth == HashAlg::None {
        run.step(
            StepName::Key,
            Status::Skip,
            "hash and auth are none: no key is used",
        );
    } else {
        match fence_drivers::secrets::read_key(std::path::Path::new(&a.key_file)) {
            Ok(k) if k.is_empty() => {
                return run.fail(
                    StepName::Key,
                    format!("{} is empty", a.key_file),
                    format!(
                        "the key file {} is empty: fence_virtd rejects every request signed with it",
                        a.key_file
                    ),
                    vec![],
                    &later,
                );
            }
            Ok(k) => {
                let fp = Key::from_bytes(&k).fingerprint_text();
                run.step(
                    StepName::Key,
                    Status::Ok,
                    format!(
                        "{}: {} bytes, fingerprint {fp} (the host's `fence_virtctl health` must show the same)",
                        a.key_file,
                        k.len()
                    ),
                );
                key = Some(k);
            }
            Err(e) => {
                return run.fail(
                    StepName::Key,
                    format!("cannot read {}: {e}", a.key_file),
                    format!(
                        "the key file {} cannot be read ({e}); the agent would send unsigned \
                         requests, which fence_virtd refuses unless its hash is none",
                        a.key_file
                    ),
                    vec![],
                    &later,
                );
            }
        }
    }

    let domain = a.domain.clone().unwrap_or_default();
    let call = VirtCall {
        args: a,
        hash,
        auth,
        key: key.clone(),
        domain: domain.clone(),
    };
    let ch = match channel(&call) {
        Ok(c) => c,
        Err(f) => {
            let m = f.message.unwrap_or_default();
            return run.fail(channel_step, m.clone(), m, vec![], &later);
        }
    };
    let timeout = Duration::from_secs(a.timeout.max(1) as u64);
    run.report.setup = format!(
        "{} options, {}{}, timeout {} s{}",
        match flavor {
            Flavor::Xvm => "fence_xvm",
            Flavor::Virt => "fence_virt",
        },
        channel_text(&ch),
        if serial {
            String::new()
        } else {
            format!(", hash {hash}, auth {auth}")
        },
        timeout.as_secs(),
        if domain.is_empty() {
            String::from(", no VM given (-H): the vm step is skipped")
        } else {
            format!(", VM {domain}")
        }
    );
    let cfg = ClientConfig {
        hash,
        auth,
        key,
        timeout,
    };
    let ctx = Ctx {
        ch,
        cfg,
        use_uuid: a.use_uuid,
        later,
        channel_step,
    };

    // monitor: channel, connect-back, authentication, backend.
    let p = probe::run(&ctx.ch, &ctx.cfg, Op::DevStatus, "", false, true);
    let code = match ctx.settle(&mut run, &p, true) {
        Ok(c) => c,
        Err(()) => return ctx.diagnose(run, p),
    };
    match code {
        0 => run.step(
            StepName::Backend,
            Status::Ok,
            "fence_virtd answered monitor with success (our fence_virtd asks its hypervisor; \
             the C fence_virtd answers success without asking)",
        ),
        1 => {
            return run.fail(
                StepName::Backend,
                "fence_virtd answered monitor with failure",
                "fence_virtd cannot reach its backend (hypervisor): see its log on the host",
                vec![],
                &ctx.later,
            )
        }
        c => run.step(
            StepName::Backend,
            Status::Warn,
            format!("fence_virtd answered monitor with {c}"),
        ),
    }

    // The VM: status, then the host list when status cannot prove it is known.
    if domain.is_empty() {
        run.step(StepName::Vm, Status::Skip, "no VM given (-H)");
        return run.report;
    }
    let p = probe::run(&ctx.ch, &ctx.cfg, Op::Status, &domain, ctx.use_uuid, true);
    let code = match ctx.settle(&mut run, &p, false) {
        Ok(c) => c,
        Err(()) => return ctx.diagnose(run, p),
    };
    if code == fence_proto::RESP_PERM {
        return run.fail(
            StepName::Access,
            format!("fence_virtd refused status of {domain}: permission denied"),
            format!(
                "the host's `groups` map does not allow this guest to fence {domain}: the \
                 requester ({}) must be in a group that lists {domain} (as uuid = \"…\", by \
                 the name or UUID the agent sends)",
                match &ctx.ch {
                    Channel::Multicast { .. } =>
                        "the address written in the request: each local address, whichever copy arrives first",
                    Channel::Tcp { .. } => "the address the host sees the connection from",
                    Channel::Vsock { .. } => "this guest's vsock CID",
                    _ => "the VM's UUID",
                }
            ),
            vec![],
            &ctx.later,
        );
    }
    run.step(
        StepName::Access,
        Status::Ok,
        "groups allow status of the VM",
    );
    if code == fence_proto::RESP_SUCCESS {
        run.step(
            StepName::Vm,
            Status::Ok,
            format!("{domain} is known and on"),
        );
        return run.report;
    }
    let listed = probe::run(&ctx.ch, &ctx.cfg, Op::HostList, "", false, false);
    let found = match &listed.outcome {
        Outcome::Answered(Reply::HostList(l)) => Some(
            l.iter()
                .any(|h| h.name == domain || h.uuid.eq_ignore_ascii_case(&domain)),
        ),
        _ => None,
    };
    match (code, found) {
        (fence_proto::RESP_OFF, Some(true)) => {
            run.step(
                StepName::Vm,
                Status::Ok,
                format!("{domain} is known and off"),
            );
            run.report
        }
        (fence_proto::RESP_OFF | fence_proto::RESP_FAIL, Some(false)) => run.fail(
            StepName::Vm,
            format!(
                "{domain} is not in fence_virtd's host list (status answered {})",
                if code == fence_proto::RESP_OFF {
                    "off"
                } else {
                    "failure"
                }
            ),
            format!(
                "fence_virtd's backend does not know {domain} (the C fence_virtd answers \"off\" \
                 for a VM it does not know, ours answers failure)"
            ),
            if ctx.is_multicast() {
                vec![
                    "with several hosts on the multicast group, another host answered the list"
                        .into(),
                ]
            } else {
                vec![]
            },
            &ctx.later,
        ),
        (fence_proto::RESP_FAIL, Some(true)) => run.fail(
            StepName::Backend,
            format!("fence_virtd knows {domain} but answered status with failure"),
            "fence_virtd's backend failed to read the VM's state: see its log on the host",
            vec![],
            &ctx.later,
        ),
        (c, _) => run.fail(
            StepName::Vm,
            format!("status of {domain} answered {c}; the host list is not available"),
            format!("fence_virtd does not confirm that it knows {domain}"),
            vec![
                format!("{domain} unknown to the backend"),
                "the backend failed".into(),
            ],
            &ctx.later,
        ),
    }
}

/// What the probes share.
struct Ctx {
    ch: Channel,
    cfg: ClientConfig,
    use_uuid: bool,
    later: Vec<StepName>,
    channel_step: StepName,
}

impl Ctx {
    fn is_multicast(&self) -> bool {
        matches!(self.ch, Channel::Multicast { .. })
    }

    /// Records the channel, connect-back and authentication steps of a probe that got a
    /// result code (`first`: the first probe, whose steps are not recorded yet). `Err` when
    /// the probe did not get one: [`Ctx::diagnose`] then explains.
    fn settle(&self, run: &mut Run, p: &Probe, first: bool) -> Result<u8, ()> {
        let code = match &p.outcome {
            Outcome::Answered(Reply::Code(c)) => Some(*c),
            _ => None,
        };
        if first {
            self.channel_step(run, p);
            if code.is_none() {
                return Err(());
            }
            if let Some(peer) = p.peer {
                run.step(
                    StepName::ConnectBack,
                    Status::Ok,
                    format!("from {peer} to port {}", p.back_port.unwrap_or(0)),
                );
            }
            if matches!(self.ch, Channel::Serial { .. } | Channel::VmChannel { .. }) {
                run.step(
                    StepName::Authentication,
                    Status::Skip,
                    "serial and vmchannel requests are not signed: fence_virtd knows the VM \
                     by the socket the request came on",
                );
                return code.ok_or(());
            }
            run.step(
                StepName::Authentication,
                Status::Ok,
                if self.cfg.auth == HashAlg::None {
                    "fence_virtd accepted the request (auth none: no challenge-response)"
                        .to_string()
                } else {
                    format!(
                        "fence_virtd accepted the request ({}) and passed the {} challenge-response both ways",
                        self.cfg.hash, self.cfg.auth
                    )
                },
            );
        }
        code.ok_or(())
    }

    fn channel_step(&self, run: &mut Run, p: &Probe) {
        match &self.ch {
            Channel::Multicast { group, port, .. } => {
                let ok = p.sent.iter().filter(|s| s.error.is_none()).count();
                let route = probe::group_route(*group, *port);
                let status = if ok == 0 {
                    Status::Fail
                } else if route.is_err() || p.sent.iter().all(|s| s.from.loopback) {
                    Status::Warn
                } else {
                    Status::Ok
                };
                run.step(
                    StepName::Multicast,
                    status,
                    format!(
                        "sent to {group} port {port} from {ok} of {} local addresses, TTL 2, \
                         connect-back port {}",
                        p.sent.len(),
                        p.back_port.unwrap_or(0)
                    ),
                );
                for s in &p.sent {
                    run.detail(format!(
                        "{} {}{}{}: {}",
                        s.from.iface,
                        s.from.ip,
                        if s.from.loopback { " (loopback)" } else { "" },
                        if s.from.up { "" } else { " (down)" },
                        s.error.as_deref().unwrap_or("sent")
                    ));
                }
                if ok > 0 && p.sent.iter().all(|s| s.from.loopback) {
                    run.detail(
                        "only loopback addresses: only a fence_virtd on this machine (or in \
                         this network namespace) can hear the request",
                    );
                }
                match route {
                    Ok(()) => run.detail(format!("route for {group}: present")),
                    Err(e) => run.detail(format!(
                        "route for {group}: none ({e}): add one, e.g. `ip route add {} dev IFACE`",
                        if group.is_ipv6() {
                            "ff00::/8"
                        } else {
                            "224.0.0.0/4"
                        }
                    )),
                }
            }
            ch => {
                if !matches!(p.outcome, Outcome::ChannelFailed(_)) {
                    run.step(StepName::Connect, Status::Ok, channel_text(ch));
                }
            }
        }
    }

    /// Explains a first probe that got no result code, sending a sha512-signed request to tell
    /// a hash below the daemon's floor from a wrong key.
    fn diagnose(&self, mut run: Run, p: Probe) -> Report {
        let later = self.later.clone();
        match p.outcome {
            Outcome::Answered(r) => run.fail(
                StepName::Backend,
                format!("unexpected answer to monitor: {r:?}"),
                "fence_virtd answered monitor with something that is not a result code",
                vec![],
                &later,
            ),
            Outcome::ChannelFailed(e) => run.fail(
                self.channel_step,
                e.clone(),
                format!("the request could not be sent: {e}"),
                vec![],
                &later,
            ),
            Outcome::Other(e) => run.fail(
                self.channel_step,
                e.clone(),
                format!("the request failed: {e}"),
                vec![],
                &later,
            ),
            Outcome::NoResult(e) => {
                if self.is_multicast()
                    || matches!(self.ch, Channel::Tcp { .. } | Channel::Vsock { .. })
                {
                    if let Some(peer) = p.peer {
                        run.set(
                            StepName::ConnectBack,
                            Status::Ok,
                            format!("from {peer} to port {}", p.back_port.unwrap_or(0)),
                        );
                    }
                    run.set(
                        StepName::Authentication,
                        Status::Ok,
                        "fence_virtd accepted the request and the challenge-response",
                    );
                    run.fail(
                        StepName::Backend,
                        format!("authenticated, then no result: {e}"),
                        "fence_virtd took the request but did not answer in time: its backend is \
                         slow or stuck (see its log on the host)",
                        vec![],
                        &later,
                    )
                } else {
                    run.fail(
                        StepName::Connect,
                        format!("no answer on the channel: {e}"),
                        "nothing answered on the serial/vmchannel channel",
                        vec![
                            "fence_virtd's serial listener is not running or does not serve this VM's socket (mode, path)".into(),
                            "the VM's serial port or channel is not connected to a host socket".into(),
                        ],
                        &later,
                    )
                }
            }
            Outcome::AuthFailed(e) => {
                if let Some(peer) = p.peer {
                    run.set(
                        StepName::ConnectBack,
                        Status::Ok,
                        format!("from {peer} to port {}", p.back_port.unwrap_or(0)),
                    );
                }
                let cause = if self.cfg.hash != HashAlg::None {
                    format!(
                        "the auth algorithm differs: fence_virtd verified the request (so the key \
                         matches) but the challenge-response with auth {} failed; set -C to the \
                         host's `auth`",
                        self.cfg.auth
                    )
                } else {
                    format!(
                        "the key or the auth algorithm ({}) differs from fence_virtd's",
                        self.cfg.auth
                    )
                };
                run.fail(StepName::Authentication, e, cause, vec![], &later)
            }
            Outcome::RequestRejected(e) => {
                let retry = self.retry_sha512();
                match retry {
                    Some(true) => run.fail(
                        StepName::Authentication,
                        format!("{e}: rejected with hash {}", self.cfg.hash),
                        format!(
                            "hash {} is below fence_virtd's `hash` floor: a request signed with \
                             sha512 was accepted; set -c to the host's hash",
                            self.cfg.hash
                        ),
                        vec![],
                        &later,
                    ),
                    _ => run.fail(
                        StepName::Authentication,
                        e,
                        format!(
                            "fence_virtd rejected the request: the key differs from the host's \
                             (compare fingerprint {} with `fence_virtctl health` on the host){}",
                            self.fingerprint(),
                            if retry == Some(false) {
                                "; a request signed with sha512 was rejected too, so it is not the hash"
                            } else {
                                ""
                            }
                        ),
                        vec!["a replay: the same seqno within 10 s (our seqnos are random, so hardly ever)".into()],
                        &later,
                    ),
                }
            }
            Outcome::NoConnectBack { .. } if p.sent.iter().all(|s| s.error.is_some()) => run.fail(
                StepName::Multicast,
                "the request could not be sent from any local address",
                "sending the multicast request failed on every interface (see above)",
                vec![],
                &later,
            ),
            Outcome::NoConnectBack { syns } => {
                let secs = self.cfg.timeout.as_secs();
                match &syns {
                    Ok(s) if s.count > 0 => {
                        let from: Vec<String> = s.sources.iter().map(|i| i.to_string()).collect();
                        return run.fail(
                            StepName::ConnectBack,
                            format!(
                                "{} SYN(s) from {} reached this machine for port {}, no connection was accepted",
                                s.count,
                                from.join(", "),
                                p.back_port.unwrap_or(0)
                            ),
                            format!(
                                "fence_virtd verified the request and tried to connect back, but \
                                 this guest dropped the connection: a firewall (nftables/iptables \
                                 input rule) blocks TCP from the host to the agent's port; allow \
                                 TCP from {} to this guest",
                                from.join(", ")
                            ),
                            vec![],
                            &later,
                        );
                    }
                    _ => {}
                }
                run.set(
                    StepName::ConnectBack,
                    Status::Fail,
                    format!(
                        "no connection back within {secs} s{}",
                        match &syns {
                            Ok(_) => " and no SYN for it reached this machine (so not this guest's firewall)".to_string(),
                            Err(e) => format!(" ({e})"),
                        }
                    ),
                );
                let retry = self.retry_sha512();
                if retry == Some(true) {
                    return run.fail(
                        StepName::Authentication,
                        format!("fence_virtd ignored requests signed with {}", self.cfg.hash),
                        format!(
                            "hash {} is below fence_virtd's `hash` floor: a request signed with \
                             sha512 was answered; set -c to the host's hash",
                            self.cfg.hash
                        ),
                        vec![],
                        &later,
                    );
                }
                let Channel::Multicast { group, port, .. } = self.ch else {
                    unreachable!("only multicast waits for a connect-back")
                };
                let mut possible = vec![
                    format!(
                        "the key differs from the host's: fence_virtd drops such requests without \
                         a word (compare fingerprint {} with `fence_virtctl health` on the host){}",
                        self.fingerprint(),
                        if retry == Some(false) {
                            "; it is not the hash: a request signed with sha512 got no answer either"
                        } else {
                            ""
                        }
                    ),
                    format!(
                        "the multicast does not reach the host (wrong interface, a switch's IGMP \
                         snooping, more than one router away: TTL 2)"
                    ),
                    format!(
                        "fence_virtd is not running, or listens on another group, port or family \
                         than {group} port {port}"
                    ),
                ];
                if syns.is_ok() {
                    possible.push(format!(
                        "a firewall on the host or between it and this guest blocks the \
                         connect-back (TCP from the host to port {} here): no SYN arrived",
                        p.back_port.unwrap_or(0)
                    ));
                }
                if syns.is_err() {
                    possible.push(
                        "this guest's firewall blocks the connect-back (run the check as root to \
                         see it)"
                            .into(),
                    );
                }
                if probe::group_route(group, port).is_err() {
                    possible.rotate_left(1);
                    return run.fail(
                        StepName::Multicast,
                        format!("no route for {group} here and no host answered"),
                        format!(
                            "the multicast request most likely never left this guest: there is no \
                             route for {group}"
                        ),
                        possible,
                        &later,
                    );
                }
                run.fail(
                    StepName::Authentication,
                    "no host accepted the request",
                    "fence_virtd dropped the request or never received it",
                    possible,
                    &later,
                )
            }
        }
    }

    fn fingerprint(&self) -> String {
        match &self.cfg.key {
            Some(k) => Key::from_bytes(k).fingerprint_text(),
            None => "(no key)".into(),
        }
    }

    /// Sends monitor signed with sha512 (accepted by every `hash` floor): `Some(true)` if the
    /// daemon took it, `Some(false)` if not, `None` if not tried (already sha512, or no key).
    fn retry_sha512(&self) -> Option<bool> {
        if self.cfg.hash == HashAlg::Sha512 || self.cfg.key.is_none() {
            return None;
        }
        let cfg = ClientConfig {
            hash: HashAlg::Sha512,
            ..self.cfg.clone()
        };
        let p = probe::run(&self.ch, &cfg, Op::DevStatus, "", false, false);
        Some(!matches!(
            p.outcome,
            Outcome::NoConnectBack { .. } | Outcome::RequestRejected(_) | Outcome::ChannelFailed(_)
        ))
    }
}

#[cfg(test)]
mod tests;
