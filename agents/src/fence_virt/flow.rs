//! The `fence_xvm` / `fence_virt` program flow (fence-agents 4.12.1 `agents/virt/client/main.c`):
//! parse (argv or stdin, never both), help, version, finalize, validation, metadata, delay,
//! key file, transport call, output and exit status.
//!
//! The transport is behind [`VirtTransport`] so that the flow is testable without a network;
//! [`super::client::ClientTransport`] is the real one (fence-virt wire protocol).
//! All result-to-exit-code mapping is in [`report`]: the process exits with the result, the
//! response byte read as a signed char (so 0 success, 1 failure, 2 off, 3 permission denied) or
//! an internal code (1, or -1 which the exit status truncates to 255); failure texts go to
//! **stdout** as in 4.12.1.

use super::args::{basename, parse_argv, parse_stdin, Flavor, Mode, VirtArgs, XVM_VERSION};
use super::docs::{help, metadata, usage};
use crate::FENCE_RELEASE;
use fence_proto::{Family, HashAlg, Op};
use std::io::{Read, Write};
use std::time::Duration;

/// One VM of a host list: the wire entry.
pub use fence_proto::hostlist::HostEntry as HostLine;

/// What the daemon answered: the client's reply (one type from the transports to the report).
pub use super::client::Reply as VirtReply;

/// A transport-level failure: the text the reference prints (stdout) and the internal result
/// (1 for timeouts/connect/auth failures, -1 for "no answer"), which [`report`] then maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFailure {
    /// Message line(s) to print first, if any.
    pub message: Option<String>,
    /// Internal result code as in C (`1`, `-1`, …).
    pub result: i32,
}

/// Everything the transport needs for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtCall<'a> {
    /// Parsed and finalized arguments (mode, addresses, ports, timeout, op, domain …).
    pub args: &'a VirtArgs,
    /// Request hash after key-file fallback.
    pub hash: HashAlg,
    /// Challenge/response algorithm after key-file fallback.
    pub auth: HashAlg,
    /// Key bytes (at most 4096), if any.
    pub key: Option<Vec<u8>>,
    /// The domain field: VM for fencing ops, attribute name for host-status, empty otherwise.
    pub domain: String,
}

/// A way to send one request to fence_virtd.
pub trait VirtTransport {
    /// Sends the request and waits for the answer.
    fn request(&mut self, call: &VirtCall<'_>) -> Result<VirtReply, TransportFailure>;
}

/// C `args_finalize`: multicast group default and address family.
pub fn finalize(args: &mut VirtArgs, out: &mut dyn Write) {
    if args.mcast_addr.is_none() {
        let family = args.family.unwrap_or(Family::V4);
        args.mcast_addr = Some(family.default_group().to_string());
    }
    if args.family.is_some() {
        return;
    }
    let addr = args.mcast_addr.as_deref().unwrap_or_default();
    // Reference order: a '.' wins over a ':' (checked last).
    if addr.contains(':') {
        args.family = Some(Family::V6);
    }
    if addr.contains('.') {
        args.family = Some(Family::V4);
    }
    if args.family.is_none() {
        let _ = writeln!(out, "Could not determine address family");
        args.err = true;
    }
}

/// Best-effort syslog (ident = program name, facility daemon) through `/dev/log`.
fn syslog(ident: &str, priority: u8, msg: &str) {
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let line = format!(
        "<{}>{}[{}]: {}",
        3 * 8 + priority,
        ident,
        std::process::id(),
        msg
    );
    let _ = sock.send_to(line.as_bytes(), "/dev/log");
}
const LOG_NOTICE: u8 = 5;

/// Maps a reply (or failure) to output and the process exit status, in one place. Returns the
/// value for `exit()` (the caller truncates to 8 bits like C does).
pub fn report(
    ident: &str,
    args: &VirtArgs,
    reply: Result<VirtReply, TransportFailure>,
    out: &mut dyn Write,
) -> i32 {
    let ret: i32 = match reply {
        Err(f) => {
            if let Some(m) = f.message {
                let _ = writeln!(out, "{m}");
            }
            f.result
        }
        // A host list answers only a host-list request: to any other op (an off!) it proves
        // nothing, so it is an unknown response as in C, never success.
        Ok(VirtReply::HostList(_)) if args.op != Op::HostList => {
            i32::from(fence_proto::RESP_HOSTLIST as i8)
        }
        Ok(VirtReply::HostList(list)) => {
            for h in list {
                let state = if h.state == 1 { "on" } else { "off" };
                let _ = writeln!(out, "{:<32} {} {}", h.name, h.uuid, state);
            }
            0
        }
        Ok(VirtReply::HostStatus(v)) => {
            if args.op == Op::HostStatus {
                let _ = writeln!(
                    out,
                    "{}={}",
                    args.attribute.as_deref().unwrap_or_default(),
                    v
                );
                return 0;
            }
            // A host-status answer to any other request is not something the C agent knows.
            i32::from(fence_proto::RESP_HOSTSTATUS as i8)
        }
        // The C client reads the byte into a (signed) char.
        Ok(VirtReply::Code(b)) => i32::from(b as i8),
    };
    if args.op == Op::HostStatus {
        // Our addition (host status): every failure is exit 1 with a clear message.
        let attr = args.attribute.as_deref().unwrap_or_default();
        let why = match ret {
            1 => "the daemon refused: the attribute is not allowed or Pacemaker cannot be read now, or the daemon does not offer host status (no host_status backend, or the C fence_virtd)".to_string(),
            3 => "permission denied".to_string(),
            n => format!("unexpected response ({n})"),
        };
        let _ = writeln!(out, "Host status '{attr}' not available: {why}");
        syslog(
            ident,
            LOG_NOTICE,
            &format!("Host status '{attr}' not available: {why}"),
        );
        return 1;
    }
    let domain = args.domain.as_deref();
    match ret {
        2 => {
            if args.op == Op::Status {
                let _ = writeln!(out, "Status: OFF");
            } else if let Some(d) = domain {
                syslog(ident, LOG_NOTICE, &format!("Domain \"{d}\" is OFF"));
            }
        }
        0 => {
            if args.op == Op::Status {
                let _ = writeln!(out, "Status: ON");
            } else if let Some(d) = domain {
                syslog(ident, LOG_NOTICE, &format!("Domain \"{d}\" is ON"));
            }
        }
        1 => {
            match domain {
                Some(d) => syslog(
                    ident,
                    LOG_NOTICE,
                    &format!("Fence operation failed for domain \"{d}\""),
                ),
                None => syslog(ident, LOG_NOTICE, "Fence operation failed"),
            }
            let _ = writeln!(out, "Operation failed");
        }
        3 => {
            match domain {
                Some(d) => syslog(
                    ident,
                    LOG_NOTICE,
                    &format!("Permission denied for Fence operation for domain \"{d}\""),
                ),
                None => syslog(ident, LOG_NOTICE, "Permission denied for fence operation"),
            }
            let _ = writeln!(out, "Permission denied");
        }
        n => {
            match domain {
                Some(d) => syslog(
                    ident,
                    LOG_NOTICE,
                    &format!("Unknown response ({n}) for domain \"{d}\""),
                ),
                None => syslog(ident, LOG_NOTICE, &format!("Unknown response ({n})")),
            }
            let _ = writeln!(out, "Unknown response ({n})");
        }
    }
    ret
}

/// Runs one agent invocation. `argv[0]` selects the flavor. Returns the exit status (0..=255).
pub fn run(
    argv: &[String],
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
    transport: &mut dyn VirtTransport,
) -> i32 {
    let argv0 = argv.first().map(String::as_str).unwrap_or("fence_virt");
    let flavor = Flavor::from_argv0(argv0);
    let ident = basename(argv0).to_string();
    let from_stdin = argv.len() <= 1;
    let mut args = if from_stdin {
        match crate::cli::read_stdin(stdin) {
            Ok(input) => parse_stdin(flavor, &input, out, err),
            Err(e) => {
                let _ = writeln!(out, "Invalid input: {e}");
                return 1;
            }
        }
    } else {
        parse_argv(flavor, argv0, &argv[1..], out, err)
    };

    if args.help {
        let _ = out.write_all(help(flavor, argv0).as_bytes());
        // The reference exits 0 here even for an unknown option; we say it failed.
        return i32::from(args.bad_option);
    }
    if args.version {
        let _ = writeln!(
            out,
            "{} {XVM_VERSION}\nfence release {FENCE_RELEASE}",
            ident
        );
        return 0;
    }

    finalize(&mut args, out);
    if args.debug > 0 {
        let _ = writeln!(out, "-- args --\n{args:#?}\n-- end args --");
    }

    if args.domain.is_none()
        && !matches!(
            args.op,
            Op::DevStatus | Op::HostList | Op::Metadata | Op::HostStatus
        )
    {
        let _ = writeln!(out, "No domain specified!");
        syslog(&ident, LOG_NOTICE, "No domain specified");
        args.err = true;
    }
    if args.op == Op::HostStatus && args.attribute.is_none() {
        let _ = writeln!(out, "No attribute specified! (use --attribute NAME)");
        args.err = true;
    }
    if args.ipaddr.is_some() {
        args.mode = Mode::Tcp;
    }
    if args.cid >= 2 {
        args.mode = Mode::Vsock;
    }
    if args.err {
        if args.op != Op::ValidateAll {
            let _ = out.write_all(usage(flavor, argv0, from_stdin).as_bytes());
        }
        return 1;
    }
    if args.op == Op::ValidateAll {
        return 0;
    }
    if args.op == Op::Metadata {
        let _ = out.write_all(metadata(flavor, argv0).as_bytes());
        return 0;
    }
    if args.delay > 0
        && !matches!(
            args.op,
            Op::Status | Op::DevStatus | Op::HostList | Op::HostStatus
        )
    {
        let _ = out.flush();
        std::thread::sleep(Duration::from_secs(args.delay as u64));
    }

    let (hash, auth, mut key) = (args.hash, args.auth, None);
    if args.mode != Mode::Serial && (auth != HashAlg::None || hash != HashAlg::None) {
        // Fail closed: C carries on without authentication, which no authenticating host
        // answers, so the guest waits out its whole timeout for nothing.
        match fence_drivers::secrets::read_key(std::path::Path::new(&args.key_file)) {
            Ok(k) => key = Some(k),
            Err(e) => {
                let _ = writeln!(
                    out,
                    "Could not read the key file {}: {}; not sending an unauthenticated \
                     request (if the host's fence_virtd runs without authentication, say so \
                     with -C none -c none, or auth=none and hash=none on stdin)",
                    args.key_file,
                    fence_drivers::error_chain(&e)
                );
                return 1;
            }
        }
    }
    let domain = match args.op {
        Op::HostStatus => args.attribute.clone().unwrap_or_default(),
        _ => args.domain.clone().unwrap_or_default(),
    };
    let call = VirtCall {
        args: &args,
        hash,
        auth,
        key,
        domain,
    };
    let _ = out.flush();
    let reply = transport.request(&call);
    report(&ident, &args, reply, out) & 0xff
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        reply: Result<VirtReply, TransportFailure>,
        seen: Vec<(u8, String, HashAlg, Mode)>,
    }
    impl VirtTransport for Fake {
        fn request(&mut self, c: &VirtCall<'_>) -> Result<VirtReply, TransportFailure> {
            self.seen
                .push((c.args.op.code(), c.domain.clone(), c.hash, c.args.mode));
            self.reply.clone()
        }
    }

    fn go(
        argv: &[&str],
        stdin: &str,
        reply: Result<VirtReply, TransportFailure>,
    ) -> (i32, String, String, Fake) {
        let mut t = Fake {
            reply,
            seen: vec![],
        };
        let mut argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let mut stdin = stdin.to_string();
        // A readable key unless the test names one (keys are read before anything is sent).
        let key = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(key.path(), b"a test key").unwrap();
        let key_path = key.path().to_str().unwrap().to_string();
        if argv.len() > 1 && !argv.iter().any(|a| a == "-k") {
            argv.extend(["-k".to_string(), key_path]);
        } else if argv.len() == 1 && !stdin.contains("key_file=") {
            stdin.push_str(&format!("key_file={key_path}\n"));
        }
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let rc = run(&argv, &mut stdin.as_bytes(), &mut o, &mut e, &mut t);
        (
            rc,
            String::from_utf8(o).unwrap(),
            String::from_utf8(e).unwrap(),
            t,
        )
    }

    #[test]
    fn status_results_and_exit_codes() {
        // A key path that exists but cannot be read as a key (a directory).
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().to_str().unwrap();
        // No key file: refused before anything is sent (fail closed).
        let (rc, o, _, t) = go(
            &["fence_xvm", "-o", "status", "-n", "vm1", "-k", k],
            "",
            Ok(VirtReply::Code(2)),
        );
        assert_eq!(rc, 1);
        assert!(
            o.starts_with(&format!("Could not read the key file {k}: "))
                && o.contains("-C none -c none"),
            "{o}"
        );
        assert!(t.seen.is_empty());
        // Authentication off on purpose: no key needed.
        let (rc, o, _, t) = go(
            &[
                "fence_xvm",
                "-o",
                "status",
                "-n",
                "vm1",
                "-k",
                k,
                "-C",
                "none",
                "-c",
                "none",
            ],
            "",
            Ok(VirtReply::Code(2)),
        );
        assert_eq!((rc, o.as_str()), (2, "Status: OFF\n"));
        assert_eq!(
            t.seen,
            vec![(4, "vm1".to_string(), HashAlg::None, Mode::Multicast)]
        );
        let (rc, o, _, _) = go(
            &["fence_virt", "-o", "off", "-n", "vm1"],
            "",
            Ok(VirtReply::Code(3)),
        );
        assert_eq!((rc, o.as_str()), (3, "Permission denied\n"));
        let (rc, o, _, _) = go(&["fence_virt", "-n", "vm1"], "", Ok(VirtReply::Code(0xfd)));
        assert_eq!((rc, o.as_str()), (253, "Unknown response (-3)\n"));
        // A host list sent back to an off is no proof of anything: unknown response, not 0.
        let (rc, o, _, _) = go(
            &["fence_virt", "-o", "off", "-n", "vm1"],
            "",
            Ok(VirtReply::HostList(vec![])),
        );
        assert_eq!((rc, o.as_str()), (253, "Unknown response (-3)\n"));
        let (rc, o, _, _) = go(
            &["fence_virt", "-n", "vm1"],
            "",
            Err(TransportFailure {
                message: None,
                result: -1,
            }),
        );
        assert_eq!((rc, o.as_str()), (255, "Unknown response (-1)\n"));
    }

    #[test]
    fn list_output_format_and_modes() {
        let list = vec![
            HostLine {
                name: "guest1".into(),
                uuid: "u-1".into(),
                state: 1,
            },
            HostLine {
                name: "p".into(),
                uuid: "u-2".into(),
                state: 3,
            },
        ];
        let (rc, o, _, t) = go(
            &["fence_virt", "-T", "127.0.0.1", "-S4", "-o", "list"],
            "",
            Ok(VirtReply::HostList(list)),
        );
        assert_eq!(rc, 0);
        assert_eq!(o.lines().last().unwrap(), format!("{:<32} u-2 off", "p"));
        assert!(o.contains(&format!("{:<32} u-1 on\n", "guest1")));
        assert_eq!(t.seen[0].3, Mode::Vsock);
    }

    #[test]
    fn host_status_addition() {
        let (rc, o, _, t) = go(
            &["fence_virt"],
            "action=host-status\nattribute=pingd\n",
            Ok(VirtReply::HostStatus("100".into())),
        );
        assert_eq!((rc, o.as_str()), (0, "pingd=100\n"));
        assert_eq!(t.seen[0].0, 32);
        assert_eq!(t.seen[0].1, "pingd");
        let (rc, o, _, _) = go(
            &["fence_virt", "-o", "host-status", "--attribute=x"],
            "",
            Ok(VirtReply::Code(1)),
        );
        assert_eq!(rc, 1);
        assert!(o.contains("not available"));
        let (rc, o, _, t) = go(
            &["fence_virt", "-o", "host-status"],
            "",
            Ok(VirtReply::Code(0)),
        );
        assert_eq!(rc, 1);
        assert!(o.starts_with("No attribute specified!"));
        assert!(t.seen.is_empty());
    }

    #[test]
    fn stdin_beyond_its_bound_is_refused_without_a_request() {
        let mut long = String::from("action=off\nport=vm1\n");
        long.push_str(&"#".repeat(crate::cli::MAX_STDIN));
        let (rc, o, _, t) = go(&["fence_xvm"], &long, Ok(VirtReply::Code(0)));
        assert_eq!(rc, 1);
        assert_eq!(o, "Invalid input: stdin is longer than 1048576 bytes\n");
        assert!(t.seen.is_empty());
    }

    #[test]
    fn stdin_errors_print_stdin_usage_only() {
        let (rc, o, e, t) = go(
            &["fence_xvm"],
            "action=off\nbogus=1\n",
            Ok(VirtReply::Code(0)),
        );
        assert_eq!(rc, 1);
        assert!(o.starts_with("No domain specified!\n  debug "));
        assert_eq!(e, "Parse error: Ignoring unknown option 'bogus'\n");
        assert!(t.seen.is_empty());
    }
}
