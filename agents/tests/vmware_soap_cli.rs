//! `fence_vmware_soap` without a network: `-h`, metadata and manpage byte-compared with what
//! the reference `/usr/sbin/fence_vmware_soap` (Debian fence-agents 4.12.1) prints when run
//! here (it must be installed: missing is a failure), RelaxNG validation, parse errors,
//! validation messages, exit codes. Reference stderr is normalised (timestamps, Python's
//! `ERROR:root:` duplicates, blank lines) because only the messages are part of the contract.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const REFERENCE: &str = "/usr/sbin/fence_vmware_soap";
const RNG: &str = "/usr/share/cluster/relaxng/metadata.rng";

fn ours() -> PathBuf {
    assert_cmd::cargo::cargo_bin("fence_vmware_soap")
}

fn reference() -> PathBuf {
    let p = PathBuf::from(REFERENCE);
    assert!(
        p.exists(),
        "{REFERENCE} missing: apt-get install fence-agents (scripts/install-peers.sh)"
    );
    p
}

fn run(prog: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(prog);
    c.args(args)
        .env_remove("PCMK_service")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn agent");
    let mut si = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        si.write_all(s.as_bytes()).unwrap();
    }
    drop(si);
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Message lines as `LEVEL: text`, without timestamps, blank lines or duplicates.
fn norm_stderr(s: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in s.lines() {
        let l = l.trim_end();
        if l.is_empty() {
            continue;
        }
        let b = l.as_bytes();
        let l = if b.len() > 24 && b[4] == b'-' && b[10] == b' ' && b[19] == b',' {
            l[24..].to_string()
        } else if let Some((lvl, rest)) = l.split_once(":root:") {
            format!("{lvl}: {rest}")
        } else {
            l.to_string()
        };
        if !v.contains(&l) {
            v.push(l);
        }
    }
    v
}

/// Stdout of the reference run with `args`, which must exit 0.
fn reference_stdout(args: &[&str]) -> String {
    let (rc, out, _) = run(&reference(), args, None);
    assert_eq!(rc, 0, "reference {args:?}");
    out
}

#[test]
fn help_is_byte_equal_to_reference() {
    let (rc, out, _) = run(&ours(), &["-h"], None);
    assert_eq!(rc, 0);
    assert_eq!(out, reference_stdout(&["-h"]));
}

#[test]
fn metadata_and_manpage_equal_reference_and_validate() {
    for args in [&["-o", "metadata"][..], &["-o", "manpage"][..]] {
        let (rc, out, _) = run(&ours(), args, None);
        assert_eq!(rc, 0);
        assert_eq!(out, reference_stdout(args), "{args:?}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.xml");
        std::fs::write(&f, &out).unwrap();
        let st = Command::new("xmllint")
            .args(["--noout", "--relaxng", RNG])
            .arg(&f)
            .status()
            .expect("xmllint (libxml2-utils)");
        assert!(st.success(), "{args:?} does not validate against {RNG}");
    }
    // stdin, and the ipport default following --ssl, as the reference.
    for (args, stdin) in [
        (&[][..], Some("action=metadata\n")),
        (&["-o", "metadata", "--ssl"][..], None),
        (&["-o", "meta-data"][..], None),
    ] {
        assert_eq!(
            run(&ours(), args, stdin),
            run(&reference(), args, stdin),
            "{args:?} {stdin:?}"
        );
    }
}

#[test]
fn version_and_precedence_as_reference() {
    for args in [
        &["-V"][..],
        &["-V", "-o", "metadata"][..],
        &["-V", "-h"][..],
        &["-h", "-o", "metadata"][..],
    ] {
        let (rc, out, _) = run(&ours(), args, None);
        let (rrc, rout, _) = run(&reference(), args, None);
        assert_eq!((rc, out), (rrc, rout), "{args:?}");
    }
}

/// Usage errors and validation: same exit code, same stdout, same messages.
#[test]
fn parse_and_validation_errors_as_reference() {
    let cases: &[(&[&str], Option<&str>)] = &[
        (&[], Some("action=validate-all\n")),
        (&[], Some("action=validate-all\nipaddr=1.2.3.4\nlogin=u\npasswd=p\nport=vm1\n")),
        (
            &[],
            Some("action=validate-all\nip=1.2.3.4\nusername=u\npassword-script=echo p\nplug=vm1\npower-timeout=abc\n"),
        ),
        (&[], Some("action=validate-all\nip=h\nusername=u\npasswd=p\nplug=v\nretry_on=x\ndelay=y\n")),
        (&[], Some("action=validate-all\nip=h\nusername=u\npasswd=p\n")),
        (&[], Some("action=monitor\nip=h\nusername=u\npasswd=p\nbogus=1\nnodename=n\nverbose_level=x\naction=frob\n")),
        (&["-o", "foo", "-a", "x", "-l", "u", "-p", "p", "-n", "x"], None),
        (&["--foo"], None),
        (&["-o", "status", "-a", "h", "-l", "u", "-p", "p"], None),
        (&["-o", "status", "-l", "u", "-p", "p", "-n", "x"], None),
        (&["-o", "off", "-a", "h", "-l", "u", "-p", "p", "-n", "x", "--power-timeout=abc", "--retry-on=x"], None),
        (&["-o", "validate-all", "-a", "h", "-l", "u", "-p", "p", "-n", "x", "--ssl-insecure"], None),
        (&["-o", "VALIDATE-ALL", "-a", "h", "-l", "u", "-S", "echo x", "-n", "x"], None),
        (&["-o", "status", "-a", "h", "-l", "u", "-n", "x", "-q"], None),
        // Leftover words: a warning with a Python list repr, also under -q, then carry on.
        (&["-o", "validate-all", "foo", "-a", "h", "-l", "u", "-p", "p", "-n", "x", "b c", "it's"], None),
        (&["-o", "metadata", "extra"], None),
    ];
    for (args, stdin) in cases {
        let (rc, out, err) = run(&ours(), args, *stdin);
        let (rrc, rout, rerr) = run(&reference(), args, *stdin);
        assert_eq!((rc, &out), (rrc, &rout), "{args:?} {stdin:?}");
        assert!(rc == 0 || rc == 1, "{rc}");
        assert_eq!(norm_stderr(&err), norm_stderr(&rerr), "{args:?} {stdin:?}");
    }
    // Under -q the warning is still printed, as by the reference; the reference then also
    // prints its errors despite -q (its early warning configured Python's root logger), a
    // side effect we do not copy: -q stays quiet after the warning.
    let args = [
        "-o", "status", "-a", "h", "-l", "u", "-n", "x", "-q", "word",
    ];
    let (rc, out, err) = run(&ours(), &args, None);
    let (rrc, rout, rerr) = run(&reference(), &args, None);
    assert_eq!((rc, &out), (rrc, &rout));
    let warning = "WARNING: Unused arguments on command line: ['word']";
    assert_eq!(norm_stderr(&err), [warning]);
    assert_eq!(norm_stderr(&rerr)[0], warning);
}

#[test]
fn unreachable_device_fails_quickly_with_login_error() {
    let (_down, port) = common::refused_port();
    let port = port.to_string();
    let t = std::time::Instant::now();
    let (rc, out, err) = run(
        &ours(),
        &[
            "-o",
            "status",
            "-a",
            "127.0.0.1",
            "-u",
            &port,
            "-l",
            "u",
            "-p",
            "p",
            "-n",
            "x",
        ],
        None,
    );
    assert_eq!((rc, out.as_str()), (1, ""));
    assert!(
        err.contains("Unable to connect/login to fencing device"),
        "{err}"
    );
    // A refused connect is not retried until a timeout: hang guard well below the waits a
    // retrying login would add up to.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn non_utf8_argument_and_stdin_are_clear_errors() {
    use std::os::unix::ffi::OsStringExt;
    let out = assert_cmd::Command::new(ours())
        .args([
            "-o",
            "status",
            "-a",
            "127.0.0.1",
            "-l",
            "u",
            "-p",
            "p",
            "-n",
        ])
        .arg(std::ffi::OsString::from_vec(b"vm\xff1".to_vec()))
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "ERROR: Failed: argument 10 is not valid UTF-8: 'vm\u{FFFD}1'\n"
    );
    let out = assert_cmd::Command::new(ours())
        .env_remove("PCMK_service")
        .write_stdin(
            b"action=status\nip=127.0.0.1\nusername=u\npassword=p\nplug=vm\xff1\n".to_vec(),
        )
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "ERROR: Failed: stdin line 5 is not valid UTF-8: 'plug=vm\u{FFFD}1'\n"
    );
}

#[test]
fn out_of_range_ipport_fails_like_the_reference() {
    // The reference cannot connect with such a port and says so (exit 1); we used to fall
    // back silently to port 80. argv and stdin alike.
    let argv = |port: &str| {
        vec![
            "-o".to_string(),
            "status".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-l".into(),
            "u".into(),
            "-p".into(),
            "p".into(),
            "-n".into(),
            "x".into(),
            format!("--ipport={port}"),
        ]
    };
    let stdin = |port: &str| {
        format!("action=status\nip=127.0.0.1\nusername=u\npassword=p\nplug=x\nipport={port}\n")
    };
    let login = "ERROR: Unable to connect/login to fencing device";
    for port in ["65536", "0", "-1", "99999"] {
        let a = argv(port);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let s = stdin(port);
        for (args, input) in [(&a[..], None), (&[][..], Some(s.as_str()))] {
            let (rc, out, err) = run(&ours(), args, input);
            let (rrc, rout, rerr) = run(&reference(), args, input);
            assert_eq!((rc, &out), (rrc, &rout), "{port} {input:?}: {err}");
            assert_eq!(rc, 1);
            assert!(norm_stderr(&rerr).iter().any(|l| l == login), "{rerr}");
            assert_eq!(
                norm_stderr(&err),
                [
                    format!("ERROR: invalid ipport \"{port}\": not a TCP port (1-65535)"),
                    login.to_string()
                ],
                "{port} {input:?}"
            );
        }
    }
}

#[test]
fn password_script_that_never_ends_is_killed() {
    // The reference waits for the script forever; ours kills it (and what it started) after
    // fence_drivers::secrets::PASSWORD_SCRIPT_TIMEOUT and fails. The 120 s limit is
    // only a hang guard.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pgid");
    let script = format!("echo $$ > {}; sleep 1000; echo pw", f.display());
    let out = assert_cmd::Command::new(ours())
        .env_remove("PCMK_service")
        .args([
            "-o",
            "status",
            "-a",
            "127.0.0.1",
            "-l",
            "u",
            "-n",
            "x",
            "-S",
            &script,
        ])
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "ERROR: Failed: password script did not finish within 30s; killed\n"
    );
    let pgid: i32 = std::fs::read_to_string(&f).unwrap().trim().parse().unwrap();
    let alive = || nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok();
    let guard = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while alive() && std::time::Instant::now() < guard {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!alive(), "the script's sleep survived");
}
