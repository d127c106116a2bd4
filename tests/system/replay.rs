//! Duplicate suppression and tampering, per (agent, daemon) pairing: a request with the same
//! op, seqno and domain within 10 s is dropped whatever its random bytes, another op with the
//! same seqno is served, and a request whose hash field was altered is rejected.
//!
//! A multicast tap on a side port captures the pair's agent's real request and relays it to the
//! daemon, so the agent still gets its answer; the captured datagram is then replayed raw, and
//! re-signed variants with another op, other random bytes, or a corrupted hash field are sent.
//! Whether the daemon accepted a datagram is observed by whether it connects back to the
//! request's address and port (the C daemon does so only for a verified, non-duplicate
//! request), where the test listens.

use std::time::{Duration, Instant};

use fence_system_tests::agent::Input;
use fence_system_tests::wire::{
    accept_within, group_listener_v4, recv_request, resign, send_to_group_v4, tcp_listener,
    REQUEST_LEN,
};
use fence_system_tests::{Agent, Daemon, DaemonConfig, Family, Netns, Pair};

use crate::matrix::assert_vm_state;

const DAEMON_PORT: u16 = 1229;
const AGENT_PORT: u16 = 1300;

fn run(pair: Pair) {
    let ns = Netns::new();
    let cfg = DaemonConfig::multicast(Family::V4);
    let d = Daemon::start(&ns, pair.daemon, &cfg);
    let key = d.key_path().display().to_string();
    let tap = group_listener_v4(&ns, AGENT_PORT);
    let args: Vec<String> = [
        "-p", "1300", "-o", "off", "-H", "vm1", "-k", &key, "-t", "10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let agent = Agent::fence_xvm(pair.agent).spawn(&ns, Input::Argv(&args));
    let captured = recv_request(&tap, Duration::from_secs(5)).expect("agent sent no request");
    assert_eq!(captured.len(), REQUEST_LEN, "request size");
    // The daemon's 10 s history window opens no earlier than this.
    let relayed = Instant::now();
    send_to_group_v4(&ns, DAEMON_PORT, captured.clone());
    let out = agent.wait(Duration::from_secs(20));
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, ""),
        "{pair}: relayed off: {out:?}"
    );
    drop(tap);

    // The two replays that depend on the 10 s history come first, right after the agent's
    // answer (the VM state is checked at the end), so that slow steps cannot push them past
    // the window; each one's quiet period is cut short rather than overrun it.
    // The connect-back port is the one written in the request: the C agent reuses its
    // multicast port (1300 here); ours listens on a port of its own.
    let back_port = u16::from_le_bytes([captured[96], captured[97]]);
    let back = tcp_listener(&ns, back_port);
    let quiet = Duration::from_millis(1500);
    let window_quiet = || {
        let left = Duration::from_secs(9).saturating_sub(relayed.elapsed());
        assert!(
            left >= Duration::from_millis(500),
            "{pair}: the relayed off took {:?}: no time left in the 10 s history window",
            relayed.elapsed()
        );
        quiet.min(left)
    };
    let mut original = [0u8; REQUEST_LEN];
    original.copy_from_slice(&captured);

    send_to_group_v4(&ns, DAEMON_PORT, original.to_vec());
    assert!(
        accept_within(&back, window_quiet()).is_none(),
        "{pair}: identical replay within 10 s must be dropped"
    );

    let mut new_random = original;
    new_random[0x62..0x68].iter_mut().for_each(|b| *b ^= 0x5a);
    resign(&mut new_random, cfg.key.as_slice());
    send_to_group_v4(&ns, DAEMON_PORT, new_random.to_vec());
    assert!(
        accept_within(&back, window_quiet()).is_none(),
        "{pair}: same op/seqno/domain with other random bytes must be dropped"
    );

    let mut other_op = original;
    other_op[0] = 3; // ON
    resign(&mut other_op, cfg.key.as_slice());
    let mut corrupt = other_op;
    corrupt[REQUEST_LEN - 1] ^= 1;
    send_to_group_v4(&ns, DAEMON_PORT, corrupt.to_vec());
    assert!(
        accept_within(&back, quiet).is_none(),
        "{pair}: request with a corrupted hash field must be rejected"
    );

    send_to_group_v4(&ns, DAEMON_PORT, other_op.to_vec());
    let conn = accept_within(&back, Duration::from_secs(5));
    assert!(
        conn.is_some(),
        "{pair}: same seqno with a different op must be processed (daemon connects back)"
    );
    // We cannot answer the challenge without implementing the agent: the daemon must give up
    // without acting.
    drop(conn);
    drop(back);
    assert_vm_state(
        &ns,
        Family::V4,
        &key,
        "vm1",
        false,
        "after the relayed off; the unauthenticated ON must not act",
    );
}

#[test]
fn replay_c_agent_c_daemon() {
    run(Pair::C_C)
}

#[test]
fn replay_ours_agent_c_daemon() {
    run(Pair::OURS_C)
}

#[test]
fn replay_c_agent_ours_daemon() {
    run(Pair::C_OURS)
}

#[test]
fn replay_ours_agent_ours_daemon() {
    run(Pair::OURS_OURS)
}
