//! `fence_virtctl check` (the library entry [`fence_agents::fence_virt::check::check`]) against
//! the reference C fence_virtd and ours, each in its own network namespace with the libvirt
//! test driver: a good set-up passes; a wrong key, a hash below the daemon's floor, a different
//! auth algorithm, multicast that is not routed, a connect-back dropped by an nftables or
//! iptables rule, a `groups` denial and an unknown VM each fail at the step that names them;
//! over serial and vmchannel (no key), a good set-up passes and an unknown VM is named.
//!
//! The check runs on a thread that joined the test's namespace ([`Netns::run_in`]), so its
//! sockets, its view of the interfaces and its packet socket are the namespace's.

use crate::channels::{Chan, World};
use fence_agents::fence_virt::check::{check, Report, Status, StepName};
use fence_system_tests::{Daemon, DaemonConfig, Family, Group, Impl, ListenerConfig, Netns};

const TCP_PORT: u16 = 1239;

fn run_check(ns: &Netns, args: &[&str]) -> Report {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    ns.run_in(move || check(&args))
}

/// `check` with fence_virt's tcp options against the daemon's port on the namespace's loopback.
fn run_tcp_check(ns: &Netns, key: &str, vm: &str, timeout: &str) -> Report {
    let port = TCP_PORT.to_string();
    run_check(
        ns,
        &[
            "-T",
            "127.0.0.1",
            "-p",
            &port,
            "-k",
            key,
            "-H",
            vm,
            "-t",
            timeout,
        ],
    )
}

fn assert_fails_at(r: &Report, step: StepName, words: &[&str], what: &str) {
    let text = r.render();
    eprintln!("---- {what}\n{text}");
    assert_eq!(r.failed_step(), Some(step), "{what}:\n{text}");
    assert_eq!(r.exit_code(), step.exit_code(), "{what}");
    for w in words {
        assert!(text.contains(w), "{what}: {w:?} missing from:\n{text}");
    }
}

fn write_key(dir: &tempfile::TempDir, content: &[u8]) -> String {
    let p = dir.path().join("guest.key");
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

fn tcp_config() -> DaemonConfig {
    DaemonConfig::new(ListenerConfig::Tcp {
        family: Family::V4,
        address: "127.0.0.1".into(),
        port: TCP_PORT,
    })
}

fn good_multicast_case(which: Impl) {
    let ns = Netns::new();
    let d = Daemon::start(&ns, which, &DaemonConfig::multicast(Family::V4));
    let key = d.key_path().display().to_string();
    let r = run_check(&ns, &["fence_xvm", "-k", &key, "-H", "vm1", "-t", "5"]);
    let text = r.render();
    assert_eq!(r.failed_step(), None, "{which}: {text}");
    assert_eq!(r.exit_code(), 0);
    for s in [
        StepName::Key,
        StepName::Multicast,
        StepName::ConnectBack,
        StepName::Authentication,
        StepName::Access,
        StepName::Backend,
        StepName::Vm,
    ] {
        let st = r
            .step(s)
            .unwrap_or_else(|| panic!("{which}: no {s:?} step: {text}"));
        assert!(
            matches!(st.status, Status::Ok | Status::Warn),
            "{which}: {s:?}: {text}"
        );
    }
    assert!(text.contains("SHA256:aab7395bb04eac3e"), "{text}");
    assert!(text.contains("lo 127.0.0.1 (loopback): sent"), "{text}");
    assert!(text.contains("vm1 is known and on"), "{text}");
    // An off VM is known too (the C daemon's "off" is confirmed by the host list).
    let r = run_check(&ns, &["fence_xvm", "-k", &key, "-H", "vm3", "-t", "5"]);
    assert_eq!(r.failed_step(), None, "{which}: {}", r.render());
    assert!(r.render().contains("vm3 is known and off"));
}

fn good_multicast_v6_case(which: Impl) {
    let ns = Netns::with_ipv6();
    let d = Daemon::start(&ns, which, &DaemonConfig::multicast(Family::V6));
    let key = d.key_path().display().to_string();
    let r = run_check(
        &ns,
        &[
            "fence_xvm",
            "-a",
            "ff05::3:1",
            "-k",
            &key,
            "-H",
            "vm1",
            "-t",
            "5",
        ],
    );
    assert_eq!(r.failed_step(), None, "{which}: {}", r.render());
    assert!(r.render().contains("v0 fd00:fb::1: sent"), "{}", r.render());
}

fn wrong_hash_tcp_case(which: Impl) {
    let ns = Netns::new();
    let mut cfg = tcp_config();
    cfg.hash = Some("sha512".into());
    let d = Daemon::start(&ns, which, &cfg);
    let key = d.key_path().display().to_string();
    let r = run_tcp_check(&ns, &key, "vm1", "10");
    assert_fails_at(
        &r,
        StepName::Authentication,
        &["hash sha256 is below fence_virtd's `hash` floor"],
        &format!("{which} tcp hash below the floor"),
    );
}

fn good_tcp_case(which: Impl) {
    let ns = Netns::new();
    let d = Daemon::start(&ns, which, &tcp_config());
    let key = d.key_path().display().to_string();
    let r = run_tcp_check(&ns, &key, "vm2", "5");
    assert_eq!(r.failed_step(), None, "{which}: {}", r.render());
    assert_eq!(r.step(StepName::Connect).unwrap().status, Status::Ok);
}

fn wrong_key_multicast_case(which: Impl) {
    let ns = Netns::new();
    let _d = Daemon::start(&ns, which, &DaemonConfig::multicast(Family::V4));
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(&dir, b"some other key\n");
    let r = run_check(&ns, &["fence_xvm", "-k", &key, "-H", "vm1", "-t", "3"]);
    // The guest cannot tell a wrong key from lost multicast: the step is the host's verdict,
    // the key comes first among the causes, the sha512 retry rules out the hash and the packet
    // socket rules out this guest's firewall.
    assert_fails_at(
        &r,
        StepName::Authentication,
        &[
            "the key differs from the host's",
            "it is not the hash",
            "no SYN for it reached this machine",
        ],
        &format!("{which} multicast wrong key"),
    );
    assert_eq!(r.step(StepName::ConnectBack).unwrap().status, Status::Fail);
}

fn wrong_key_tcp_case(which: Impl) {
    let ns = Netns::new();
    let _d = Daemon::start(&ns, which, &tcp_config());
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(&dir, b"some other key\n");
    let r = run_tcp_check(&ns, &key, "vm1", "10");
    assert_fails_at(
        &r,
        StepName::Authentication,
        &[
            "before answering our challenge",
            "the key differs from the host's",
            "not the hash",
        ],
        &format!("{which} tcp wrong key"),
    );
}

fn wrong_hash_multicast_case(which: Impl) {
    let ns = Netns::new();
    let mut cfg = DaemonConfig::multicast(Family::V4);
    cfg.hash = Some("sha512".into());
    let d = Daemon::start(&ns, which, &cfg);
    let key = d.key_path().display().to_string();
    let r = run_check(&ns, &["fence_xvm", "-k", &key, "-H", "vm1", "-t", "10"]);
    assert_fails_at(
        &r,
        StepName::Authentication,
        &["hash sha256 is below fence_virtd's `hash` floor"],
        &format!("{which} multicast hash below the floor"),
    );
}

fn wrong_auth_multicast_case(which: Impl) {
    let ns = Netns::new();
    let d = Daemon::start(&ns, which, &DaemonConfig::multicast(Family::V4));
    let key = d.key_path().display().to_string();
    let r = run_check(
        &ns,
        &[
            "fence_xvm",
            "-k",
            &key,
            "-C",
            "sha512",
            "-H",
            "vm1",
            "-t",
            "10",
        ],
    );
    assert_fails_at(
        &r,
        StepName::Authentication,
        &["the auth algorithm differs", "challenge"],
        &format!("{which} multicast auth differs"),
    );
    // The connection back did come.
    assert_eq!(r.step(StepName::ConnectBack).unwrap().status, Status::Ok);
}

fn multicast_not_routed_case(which: Impl) {
    let host = Netns::new();
    let _d = Daemon::start(&host, which, &DaemonConfig::multicast(Family::V4));
    let guest = Netns::new();
    guest.ip(&["route", "del", "224.0.0.0/4", "dev", "lo"]);
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(&dir, fence_system_tests::daemon::TEST_KEY);
    let r = run_check(&guest, &["fence_xvm", "-k", &key, "-H", "vm1", "-t", "3"]);
    assert_fails_at(
        &r,
        StepName::Multicast,
        &["no route for 225.0.0.12", "route for 225.0.0.12: none"],
        &format!("{which} multicast not routed"),
    );
}

/// Drops every incoming TCP SYN in the namespace (the daemon's connect-back included).
fn block_syns(ns: &Netns, with: &str) {
    let run = |prog: &str, args: &[&str]| {
        let out = ns
            .cmd(fence_system_tests::bins::system_tool(prog))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{prog}: {e}"));
        assert!(
            out.status.success(),
            "{prog} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    match with {
        "nft" => {
            run("/usr/sbin/nft", &["add", "table", "inet", "fchk"]);
            run(
                "/usr/sbin/nft",
                &[
                    "add",
                    "chain",
                    "inet",
                    "fchk",
                    "input",
                    "{ type filter hook input priority 0 ; policy accept ; }",
                ],
            );
            run(
                "/usr/sbin/nft",
                &[
                    "add",
                    "rule",
                    "inet",
                    "fchk",
                    "input",
                    "tcp",
                    "flags",
                    "&",
                    "(syn|ack)",
                    "==",
                    "syn",
                    "drop",
                ],
            );
        }
        _ => run(
            "/usr/sbin/iptables",
            &["-A", "INPUT", "-p", "tcp", "--syn", "-j", "DROP"],
        ),
    }
}

fn connect_back_blocked_case(which: Impl, with: &str) {
    let ns = Netns::new();
    let d = Daemon::start(&ns, which, &DaemonConfig::multicast(Family::V4));
    block_syns(&ns, with);
    let key = d.key_path().display().to_string();
    let r = run_check(&ns, &["fence_xvm", "-k", &key, "-H", "vm1", "-t", "4"]);
    assert_fails_at(
        &r,
        StepName::ConnectBack,
        &[
            "SYN(s) from 127.0.0.1",
            "this guest dropped the connection: a firewall",
        ],
        &format!("{which} connect-back blocked by {with}"),
    );
}

fn groups_denial_case(which: Impl) {
    let ns = Netns::new();
    let mut cfg = DaemonConfig::multicast(Family::V4);
    cfg.groups.push(Group {
        name: None,
        ips: vec!["127.0.0.1".into()],
        uuids: vec!["vm2".into()],
    });
    let d = Daemon::start(&ns, which, &cfg);
    let key = d.key_path().display().to_string();
    let r = run_check(&ns, &["fence_xvm", "-k", &key, "-H", "vm1", "-t", "5"]);
    assert_fails_at(
        &r,
        StepName::Access,
        &[
            "permission denied",
            "`groups` map does not allow this guest to fence vm1",
        ],
        &format!("{which} groups denial"),
    );
    // vm2 is allowed.
    let r = run_check(&ns, &["fence_xvm", "-k", &key, "-H", "vm2", "-t", "5"]);
    assert_eq!(r.failed_step(), None, "{which}: {}", r.render());
}

fn unknown_vm_case(which: Impl) {
    let ns = Netns::new();
    let d = Daemon::start(&ns, which, &DaemonConfig::multicast(Family::V4));
    let key = d.key_path().display().to_string();
    let r = run_check(&ns, &["fence_xvm", "-k", &key, "-H", "nosuchvm", "-t", "5"]);
    assert_fails_at(
        &r,
        StepName::Vm,
        &["nosuchvm is not in fence_virtd's host list"],
        &format!("{which} unknown VM"),
    );
    // Everything before it passed.
    assert_eq!(r.step(StepName::Access).unwrap().status, Status::Ok);
}

/// Serial (a pty bridged to vm1's socket) and vmchannel (a guestfwd-like relay): no key;
/// the channel, backend and VM steps.
fn guest_channel_case(which: Impl, chan: Chan) {
    let w = World::start(chan, which, |_| {});
    let argv = w.argv();
    let mut args: Vec<&str> = vec!["fence_virt"];
    args.extend(argv.iter().map(String::as_str));
    let mut good = args.clone();
    good.extend(["-H", "vm2"]);
    let r = run_check(&w.ns, &good);
    assert_eq!(r.failed_step(), None, "{which} {chan:?}: {}", r.render());
    assert_eq!(r.step(StepName::Key).unwrap().status, Status::Skip);
    assert_eq!(
        r.step(StepName::Authentication).unwrap().status,
        Status::Skip
    );
    assert_eq!(r.step(StepName::Connect).unwrap().status, Status::Ok);
    let mut unknown = args.clone();
    unknown.extend(["-H", "nosuchvm"]);
    let r = run_check(&w.ns, &unknown);
    assert_fails_at(
        &r,
        StepName::Vm,
        &["nosuchvm is not in fence_virtd's host list"],
        &format!("{which} {chan:?} unknown VM"),
    );
}

/// A backend slower than the agent's timeout: authenticated, then no result (our daemon's
/// `sim` backend with latency; the C daemon has no such backend).
#[test]
fn slow_backend_fails_the_backend_step_our_daemon() {
    let ns = Netns::new();
    let mut cfg = tcp_config();
    cfg.backend = Some((
        "sim".into(),
        "\t\tvms = \"vm1\";\n\t\tlatency_ms = \"4000\";".into(),
    ));
    let d = Daemon::start(&ns, Impl::Ours, &cfg);
    let key = d.key_path().display().to_string();
    let r = run_tcp_check(&ns, &key, "vm1", "2");
    assert_fails_at(
        &r,
        StepName::Backend,
        &[
            "authenticated, then no result",
            "its backend is slow or stuck",
        ],
        "ours, slow backend",
    );
    assert_eq!(r.step(StepName::Authentication).unwrap().status, Status::Ok);
}

macro_rules! both_daemons {
    ($($name:ident => $body:expr;)*) => {
        mod c_daemon {
            use super::*;
            $( #[test] fn $name() { let f: fn(Impl) = $body; f(Impl::C) } )*
        }
        mod our_daemon {
            use super::*;
            $( #[test] fn $name() { let f: fn(Impl) = $body; f(Impl::Ours) } )*
        }
    };
}

both_daemons! {
    good_setup_multicast => good_multicast_case;
    good_setup_multicast_ipv6 => good_multicast_v6_case;
    good_setup_tcp => good_tcp_case;
    wrong_hash_tcp => wrong_hash_tcp_case;
    wrong_key_multicast => wrong_key_multicast_case;
    wrong_key_tcp => wrong_key_tcp_case;
    wrong_hash_multicast => wrong_hash_multicast_case;
    wrong_auth_multicast => wrong_auth_multicast_case;
    multicast_not_routed => multicast_not_routed_case;
    connect_back_blocked_nft => |w| connect_back_blocked_case(w, "nft");
    connect_back_blocked_iptables => |w| connect_back_blocked_case(w, "iptables");
    groups_denial => groups_denial_case;
    serial_good_and_unknown_vm => |w| guest_channel_case(w, Chan::Serial);
    vmchannel_good_and_unknown_vm => |w| guest_channel_case(w, Chan::VmChannel);
    unknown_vm => unknown_vm_case;
}
