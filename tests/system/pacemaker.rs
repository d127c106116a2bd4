//! Pacemaker end to end: a stand-alone `pacemaker-fenced` with the agent under test as
//! `/usr/sbin/fence_xvm` registers a device with `pcmk_host_map`, then `stonith_admin` lists
//! targets, fences, unfences and reboots nodes; the VM states are checked through the daemon
//! afterwards.

use std::time::Duration;

use fence_system_tests::{Agent, Daemon, DaemonConfig, Family, Fencer, Netns, Pair};

use crate::matrix::assert_vm_state;

const LIMIT: Duration = Duration::from_secs(90);

fn run(pair: Pair) {
    let ns = Netns::new();
    let d = Daemon::start(&ns, pair.daemon, &DaemonConfig::multicast(Family::V4));
    let key = d.key_path().display().to_string();
    let fencer = Fencer::start(&ns, "fence_xvm", &Agent::fence_xvm(pair.agent).path());
    let admin = |args: &[&str]| {
        let out = fencer.admin(&ns, args, LIMIT);
        assert!(
            !out.timed_out,
            "{pair}: stonith_admin {args:?} hung: {out:?}"
        );
        out
    };

    let key_opt = format!("key_file={key}");
    let out = admin(&[
        "--register",
        "xvm",
        "--agent",
        "fence_xvm",
        "--option",
        &key_opt,
        "--option",
        "timeout=5",
        "--option",
        "pcmk_host_map=node1:vm1;node2:vm2;node3:vm3",
    ]);
    assert_eq!(out.code, 0, "{pair}: register: {out:?}");

    let out = admin(&["--list-targets", "xvm"]);
    assert_eq!(out.code, 0, "{pair}: list-targets: {out:?}");
    for t in ["vm1", "vm2", "vm3", "11111111-2222-3333-4444-555555555555"] {
        assert!(
            out.stdout.lines().any(|l| l.trim() == t),
            "{pair}: target {t} missing: {out:?}"
        );
    }

    let out = admin(&["--fence", "node2", "--timeout", "30"]);
    assert_eq!(out.code, 0, "{pair}: fence node2: {out:?}");
    assert_vm_state(&ns, Family::V4, &key, "vm2", false, "after --fence node2");
    assert_vm_state(&ns, Family::V4, &key, "vm1", true, "after --fence node2");

    let out = admin(&["--unfence", "node2", "--timeout", "30"]);
    assert_eq!(out.code, 0, "{pair}: unfence node2: {out:?}");
    assert_vm_state(&ns, Family::V4, &key, "vm2", true, "after --unfence node2");

    let out = admin(&["--reboot", "node1", "--timeout", "30"]);
    assert_eq!(out.code, 0, "{pair}: reboot node1: {out:?}");
    assert_vm_state(&ns, Family::V4, &key, "vm1", true, "after --reboot node1");

    // Fencing an already-off VM is success (spec: already off = success).
    let out = admin(&["--fence", "node3", "--timeout", "30"]);
    assert_eq!(out.code, 0, "{pair}: fence node3 (already off): {out:?}");
    assert_vm_state(&ns, Family::V4, &key, "vm3", false, "after --fence node3");

    // A node no device can fence must fail.
    let out = admin(&["--fence", "node9", "--timeout", "10"]);
    assert_ne!(
        out.code, 0,
        "{pair}: fencing an unmapped node must fail: {out:?}"
    );
}

#[test]
fn pacemaker_c_agent_c_daemon() {
    run(Pair::C_C)
}

#[test]
fn pacemaker_ours_agent_c_daemon() {
    run(Pair::OURS_C)
}

#[test]
fn pacemaker_c_agent_ours_daemon() {
    run(Pair::C_OURS)
}

#[test]
fn pacemaker_ours_agent_ours_daemon() {
    run(Pair::OURS_OURS)
}
