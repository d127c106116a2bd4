//! `fence_virtctl`'s command line without a daemon: usage errors exit 2, an unreachable daemon
//! exits 1 naming the socket, `journal -f` reads a journal file (rotated part included) in
//! the daemon's line format, `-c` is refused with a pointer to `-f`. The commands that need a
//! daemon or a vCenter are tested in tests/system/fleet.rs.

use assert_cmd::Command;
use predicates::str::contains;

fn ctl() -> Command {
    Command::cargo_bin("fence_virtctl").unwrap()
}

#[test]
fn usage_errors_exit_2() {
    ctl()
        .assert()
        .code(2)
        .stderr(contains("usage: fence_virtctl"));
    ctl()
        .arg("reboot")
        .assert()
        .code(2)
        .stderr(contains("unknown command"));
    ctl().args(["vms", "--bogus"]).assert().code(2);
    ctl().args(["hostmap", "-r", "upper"]).assert().code(2);
    ctl()
        .args(["hostmap", "-a", "vc"])
        .assert()
        .code(2)
        .stderr(contains("--vsphere"));
    ctl()
        .args(["hostmap", "--vsphere", "-l", "u", "-p", "p"])
        .assert()
        .code(2)
        .stderr(contains("-a"));
    ctl().args(["journal", "-n", "x"]).assert().code(2);
    ctl()
        .arg("confirm-fenced")
        .assert()
        .code(2)
        .stderr(contains("which host"));
    ctl()
        .args(["confirm-fenced", "n1", "n2"])
        .assert()
        .code(2)
        .stderr(contains("unexpected argument \"n2\""));
    ctl()
        .args(["journal", "-c", "/etc/fence_virt.conf"])
        .assert()
        .code(2)
        .stderr(contains("-f FILE"));
    ctl()
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("hostmap"));
}

#[test]
fn no_daemon_is_a_failure_naming_the_socket() {
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("admin.sock");
    for cmd in [
        &["vms"][..],
        &["health"],
        &["hostmap"],
        &["journal"],
        &["confirm-fenced", "n3"],
    ] {
        ctl()
            .args(cmd)
            .arg("--socket")
            .arg(&sock)
            .assert()
            .code(1)
            .stderr(contains(sock.display().to_string()));
    }
}

#[test]
fn journal_from_a_file() {
    let d = tempfile::tempdir().unwrap();
    let j = d.path().join("journal.jsonl");
    let line = |i: u32| {
        format!(
            "{{\"time\":\"2026-01-01T00:00:0{i}Z\",\"listener\":\"tcp\",\"requester\":\"192.0.2.1\",\
             \"vm\":\"vm{i}\",\"op\":\"off\",\"result\":\"success\",\"duration_ms\":3,\
             \"backend\":\"sim\",\"polls\":1,\"detail\":\"done\"}}"
        )
    };
    std::fs::write(
        d.path().join("journal.jsonl.1"),
        format!("{}\n{}\n", line(1), line(2)),
    )
    .unwrap();
    std::fs::write(&j, format!("{}\n", line(3))).unwrap();
    ctl()
        .args(["journal", "-n", "2", "-f"])
        .arg(&j)
        .assert()
        .success()
        .stdout(format!("{}\n{}\n", line(2), line(3)));
    ctl()
        .args(["journal", "-f"])
        .arg(d.path().join("nothing"))
        .assert()
        .success()
        .stdout("");
}
