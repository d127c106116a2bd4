//! Regression: `fence_xvm -t 1` must time out. The C agent computes its rounds as
//! timeout·10/retrans, which is 0 for `-t 1` with the default 2 s retransmit period, and then
//! never gives up; ours bounds the whole wait by the timeout and says why it gave up.

use std::time::Duration;

use fence_system_tests::daemon::write_private;
use fence_system_tests::{Impl, Netns};

#[test]
fn fence_xvm_t1_times_out_when_no_daemon_answers() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("fence_xvm.key");
    write_private(&key, b"no daemon has this key\n");
    let key = key.display().to_string();
    let out = fence_system_tests::agent::Agent::fence_xvm(Impl::Ours).run_args(
        &ns,
        &["-t", "1", "-o", "status", "-H", "vm1", "-k", &key],
        Duration::from_secs(20),
    );
    assert!(!out.timed_out, "agent did not give up: {out:?}");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "Timed out waiting for response"),
        "{out:?}"
    );
    assert!(out.stdout.contains("likely causes"), "{out:?}");
}
