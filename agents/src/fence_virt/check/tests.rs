//! Unit tests of the check's parts that need no daemon: option dispatch, the key step, the
//! report's exit codes and text. The steps against real daemons are in
//! `tests/system/check.rs`.

use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn flavor_from_first_word_or_options() {
    let a = s(&["fence_virt", "-k", "k"]);
    assert_eq!(flavor_of(&a).0, Flavor::Virt);
    assert_eq!(flavor_of(&a).1.len(), 2);
    assert_eq!(flavor_of(&s(&["xvm", "-a", "225.0.0.12"])).0, Flavor::Xvm);
    assert_eq!(
        flavor_of(&s(&["-T", "10.0.0.1", "-H", "vm1"])).0,
        Flavor::Virt
    );
    assert_eq!(flavor_of(&s(&["-S3"])).0, Flavor::Virt);
    assert_eq!(flavor_of(&s(&["-D", "/dev/ttyS1"])).0, Flavor::Virt);
    assert_eq!(
        flavor_of(&s(&["-a", "225.0.0.12", "-k", "/k"])).0,
        Flavor::Xvm
    );
    assert_eq!(flavor_of(&s(&[])).0, Flavor::Xvm);
}

#[test]
fn bad_options_fail_the_options_step_with_the_agents_message() {
    let r = check(&s(&["fence_xvm", "-c", "md5"]));
    assert_eq!(r.failed_step(), Some(StepName::Options));
    assert_eq!(r.exit_code(), 1);
    assert!(
        r.render().contains("Unsupported hash: md5"),
        "{}",
        r.render()
    );
    // -T is fence_virt's: given to fence_xvm it is an unknown option.
    let r = check(&s(&["fence_xvm", "-T", "127.0.0.1"]));
    assert_eq!(r.failed_step(), Some(StepName::Options));
}

#[test]
fn unreadable_or_empty_key_fails_the_key_step() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.key");
    std::fs::write(&empty, b"").unwrap();
    let r = check(&s(&[
        "fence_virt",
        "-T",
        "127.0.0.1",
        "-k",
        empty.to_str().unwrap(),
    ]));
    assert_eq!(r.failed_step(), Some(StepName::Key), "{}", r.render());
    assert_eq!(r.exit_code(), 2);
    assert!(r.render().contains("is empty"));
    // A directory exists (the option parser accepts it) but cannot be read as a key.
    let r = check(&s(&[
        "fence_virt",
        "-T",
        "127.0.0.1",
        "-k",
        dir.path().to_str().unwrap(),
    ]));
    assert_eq!(r.failed_step(), Some(StepName::Key), "{}", r.render());
    // Later steps are listed as not reached.
    assert_eq!(r.step(StepName::Vm).unwrap().status, Status::Skip);
}

#[test]
fn key_step_prints_the_fingerprint_the_host_prints() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, b"fence-virt-test-key\n").unwrap();
    // Nothing listens on port 1 of loopback: the check goes on to the connect step and fails
    // there, after the key step passed.
    let r = check(&s(&[
        "fence_virt",
        "-T",
        "127.0.0.1",
        "-p",
        "1",
        "-t",
        "2",
        "-k",
        key.to_str().unwrap(),
    ]));
    let k = r.step(StepName::Key).unwrap();
    assert_eq!(k.status, Status::Ok);
    assert!(
        k.summary.contains("SHA256:aab7395bb04eac3e"),
        "{}",
        k.summary
    );
    assert!(k.summary.contains("20 bytes"));
    assert_eq!(r.failed_step(), Some(StepName::Connect), "{}", r.render());
    assert_eq!(r.exit_code(), 3);
}

#[test]
fn serial_needs_no_key() {
    let r = check(&s(&["fence_virt", "-D", "/nonexistent/tty", "-t", "1"]));
    assert_eq!(r.step(StepName::Key).unwrap().status, Status::Skip);
    assert_eq!(r.failed_step(), Some(StepName::Connect), "{}", r.render());
}

#[test]
fn render_names_the_failing_step_and_the_possible_causes() {
    let r = Report {
        setup: "x".into(),
        steps: vec![StepReport {
            step: StepName::ConnectBack,
            status: Status::Fail,
            summary: "none".into(),
            details: vec!["lo 127.0.0.1: sent".into()],
        }],
        verdict: Some(Verdict {
            step: StepName::Authentication,
            cause: "dropped".into(),
            possible: vec!["key".into(), "route".into()],
        }),
    };
    let t = r.render();
    assert!(t.contains("FAIL  connect-back"));
    assert!(t.contains("result: FAILED at step authentication (exit 5): dropped"));
    assert!(t.contains("  - key\n  - route\n"));
    assert_eq!(r.exit_code(), 5);
    assert_eq!(Report::default().exit_code(), 0);
}

/// Without root the packet socket cannot be opened: the guest's own firewall then stays among
/// the possible causes, and the report says how to rule it out.
#[test]
fn without_the_syn_watcher_the_guest_firewall_stays_a_possible_cause() {
    let ctx = Ctx {
        ch: Channel::Multicast {
            group: "225.0.0.12".parse().unwrap(),
            port: 1229,
            retrans: Duration::from_secs(2),
        },
        // No key: no sha512 retry is sent.
        cfg: ClientConfig {
            hash: HashAlg::Sha256,
            auth: HashAlg::Sha256,
            key: None,
            timeout: Duration::from_secs(1),
        },
        use_uuid: false,
        later: vec![
            StepName::ConnectBack,
            StepName::Authentication,
            StepName::Vm,
        ],
        channel_step: StepName::Multicast,
    };
    let p = Probe {
        sent: vec![Sent {
            from: LocalAddr {
                iface: "eth0".into(),
                ip: "192.0.2.10".parse().unwrap(),
                loopback: false,
                up: true,
            },
            error: None,
        }],
        back_port: Some(40000),
        peer: None,
        outcome: Outcome::NoConnectBack {
            syns: Err(
                "cannot watch for the host's SYNs (Operation not permitted; root needed)".into(),
            ),
        },
    };
    let r = ctx.diagnose(
        Run {
            report: Report::default(),
        },
        p,
    );
    let text = r.render();
    assert!(
        matches!(
            r.failed_step(),
            Some(StepName::Authentication | StepName::Multicast)
        ),
        "{text}"
    );
    assert!(text.contains("root needed"), "{text}");
    assert!(
        text.contains("this guest's firewall blocks the connect-back (run the check as root"),
        "{text}"
    );
    assert_eq!(r.step(StepName::Vm).unwrap().status, Status::Skip);
}
