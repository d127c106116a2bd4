//! Faults in the middle of a fence, for every (agent, daemon) pairing that involves ours and
//! the C/C baseline: the daemon stopped or killed while the agent waits, and the hypervisor
//! (a private libvirtd) stopped under the daemon. The rule checked everywhere: no agent reports
//! success for a fence nobody confirmed, and a request whose agent already gave up is not
//! carried out later behind its back.

use std::time::Duration;

use fence_system_tests::libvirtd::{LibvirtdEnv, TEST_DOMAIN_UUID};
use fence_system_tests::process::signal;
use fence_system_tests::{Agent, Daemon, DaemonConfig, Family, Impl, Netns, Pair};
use nix::sys::signal::Signal;

use crate::matrix::assert_vm_state;

const RUN_LIMIT: Duration = Duration::from_secs(30);

/// The daemon is stopped (SIGSTOP) when the agent asks: the agent gives up after its `-t`
/// with failure. Resumed, the daemon finds the queued requests' agent gone and must not
/// power the VM off (the off was never confirmed to anyone).
fn daemon_stopped(pair: Pair) {
    let ns = Netns::new();
    let d = Daemon::start(&ns, pair.daemon, &DaemonConfig::multicast(Family::V4));
    let key = d.key_path().display().to_string();
    signal(d.pid(), Signal::SIGSTOP);
    let out = Agent::fence_xvm(pair.agent).run_args(
        &ns,
        &["-o", "off", "-H", "vm1", "-k", &key, "-t", "3"],
        RUN_LIMIT,
    );
    signal(d.pid(), Signal::SIGCONT);
    assert_eq!(out.code, 1, "{pair}: off against a stopped daemon: {out:?}");
    // Give the resumed daemon its queued datagrams; an off carried out now would show below.
    std::thread::sleep(Duration::from_secs(1));
    assert_vm_state(
        &ns,
        Family::V4,
        &key,
        "vm1",
        true,
        "after the agent gave up",
    );
    drop(d);
}

/// The daemon dies while the agent waits for it: failure, never success.
fn daemon_killed(pair: Pair) {
    let ns = Netns::new();
    let mut d = Daemon::start(&ns, pair.daemon, &DaemonConfig::multicast(Family::V4));
    let key = d.key_path().display().to_string();
    signal(d.pid(), Signal::SIGSTOP);
    let args: Vec<String> = ["-o", "off", "-H", "vm1", "-k", &key, "-t", "4"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let agent =
        Agent::fence_xvm(pair.agent).spawn(&ns, fence_system_tests::agent::Input::Argv(&args));
    std::thread::sleep(Duration::from_millis(500));
    signal(d.pid(), Signal::SIGKILL);
    let out = agent.wait(RUN_LIMIT);
    assert_eq!(out.code, 1, "{pair}: off while the daemon died: {out:?}");
    assert!(!d.is_running());
}

/// The hypervisor stops answering (libvirtd SIGSTOPped) during the fence: the daemon has
/// accepted the request but cannot confirm, so the agent reports failure when its timeout
/// ends ("Unknown response (-1)", exit 255, as the C agent does).
fn hypervisor_stopped(pair: Pair) {
    let ns = Netns::new();
    let env = LibvirtdEnv::new();
    let libvirtd = env.start();
    let mut cfg = DaemonConfig::multicast(Family::V4);
    cfg.uri = Some(env.uri());
    let d = Daemon::start(&ns, pair.daemon, &cfg);
    let key = d.key_path().display().to_string();
    assert_vm_state(&ns, Family::V4, &key, "test", true, "before");
    signal(libvirtd.pid(), Signal::SIGSTOP);
    // -t 10: the connect-back and handshake must finish within it on a loaded machine (the
    // timeout that ends the run is the wait for the hypervisor's confirmation).
    let out = Agent::fence_xvm(pair.agent).run_args(
        &ns,
        &["-o", "off", "-H", TEST_DOMAIN_UUID, "-k", &key, "-t", "10"],
        RUN_LIMIT,
    );
    signal(libvirtd.pid(), Signal::SIGCONT);
    assert_eq!(
        (out.code, out.stdout.lines().last()),
        (255, Some("Unknown response (-1)")),
        "{pair}: off with the hypervisor stopped: {out:?}"
    );
    if pair.agent == Impl::Ours {
        // The daemon was reached and took the request: the hint names the hypervisor, not
        // keys or multicast.
        assert!(
            out.stdout.contains("hypervisor did not confirm"),
            "{pair}: {out:?}"
        );
    }
    drop(d);
    drop(libvirtd);
}

#[test]
fn daemon_stopped_c_agent_c_daemon() {
    daemon_stopped(Pair::C_C)
}

#[test]
fn daemon_stopped_ours_agent_ours_daemon() {
    daemon_stopped(Pair::OURS_OURS)
}

#[test]
fn daemon_stopped_c_agent_ours_daemon() {
    daemon_stopped(Pair::C_OURS)
}

#[test]
fn daemon_stopped_ours_agent_c_daemon() {
    daemon_stopped(Pair::OURS_C)
}

#[test]
fn daemon_killed_ours_agent_ours_daemon() {
    daemon_killed(Pair::OURS_OURS)
}

#[test]
fn daemon_killed_c_agent_ours_daemon() {
    daemon_killed(Pair::C_OURS)
}

#[test]
fn daemon_killed_ours_agent_c_daemon() {
    daemon_killed(Pair::OURS_C)
}

#[test]
fn hypervisor_stopped_c_agent_c_daemon() {
    hypervisor_stopped(Pair::C_C)
}

#[test]
fn hypervisor_stopped_ours_agent_ours_daemon() {
    hypervisor_stopped(Pair::OURS_OURS)
}

#[test]
fn hypervisor_stopped_c_agent_ours_daemon() {
    hypervisor_stopped(Pair::C_OURS)
}
