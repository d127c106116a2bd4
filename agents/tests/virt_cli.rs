//! CLI tests of `fence_xvm` / `fence_virt`: byte comparison with the reference binaries
//! (`/usr/sbin/fence_xvm`, `/usr/sbin/fence_virt`, Debian fence-virt 4.12.1) for everything that
//! needs no network, metadata schema validation, and man page freshness. The expected texts are
//! produced by running the references here; a missing reference fails the test.

use assert_cmd::Command;
use fence_agents::fence_virt::args::Flavor;
use fence_agents::fence_virt::docs::{
    man_page, strip_additions_from_help, strip_additions_from_metadata,
};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

fn ours(name: &str) -> PathBuf {
    assert_cmd::cargo::cargo_bin(name)
}

fn reference(name: &str) -> PathBuf {
    let p = PathBuf::from(format!("/usr/sbin/{name}"));
    assert!(
        p.exists(),
        "reference binary {} is missing: install Debian fence-virt (scripts/install-peers.sh)",
        p.display()
    );
    p
}

/// Runs `program` with argv[0] = `name` (so usage/metadata texts are comparable).
fn run(program: &Path, name: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut std_cmd = std::process::Command::new(program);
    std_cmd.arg0(name).args(args);
    let mut cmd = Command::from_std(std_cmd);
    cmd.timeout(std::time::Duration::from_secs(20));
    cmd.write_stdin(stdin.unwrap_or(""));
    let out = cmd.output().expect("run");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Stdout of the reference `name` run with `args` (argv[0] = `name`), which must exit 0.
fn reference_stdout(name: &str, args: &[&str]) -> String {
    let (rc, out, err) = run(&reference(name), name, args, None);
    assert_eq!((rc, err.as_str()), (0, ""), "reference {name} {args:?}");
    out
}

#[test]
fn help_equals_reference_apart_from_additions() {
    for name in ["fence_xvm", "fence_virt"] {
        for flag in ["-h", "-?"] {
            let expected = reference_stdout(name, &[flag]);
            let (rc, out, err) = run(&ours(name), name, &[flag], None);
            assert_eq!((rc, err.as_str()), (0, ""));
            assert!(
                out.contains("--attribute <name>"),
                "addition documented in help"
            );
            assert_eq!(strip_additions_from_help(&out), expected, "{name} {flag}");
        }
    }
}

#[test]
fn metadata_equals_reference_apart_from_additions() {
    for name in ["fence_xvm", "fence_virt"] {
        let expected = reference_stdout(name, &["-o", "metadata"]);
        let (rc, out, err) = run(&ours(name), name, &["-o", "metadata"], None);
        assert_eq!((rc, err.as_str()), (0, ""));
        assert!(out.contains("<parameter name=\"attribute\""));
        assert!(out.contains("<action name=\"host-status\" />"));
        assert_eq!(strip_additions_from_metadata(&out), expected, "{name}");
        // stdin channel, as Pacemaker asks.
        let (rc, out2, _) = run(&ours(name), name, &[], Some("action=metadata\n"));
        assert_eq!((rc, &out2), (0, &out));
    }
}

#[test]
fn metadata_validates_against_fence_agents_schema() {
    let rng = "/usr/share/cluster/relaxng/metadata.rng";
    assert!(
        Path::new(rng).exists(),
        "{rng} missing (Debian fence-agents)"
    );
    let dir = tempfile::tempdir().unwrap();
    for name in ["fence_xvm", "fence_virt"] {
        let (_, out, _) = run(&ours(name), name, &["-o", "metadata"], None);
        let f = dir.path().join(format!("{name}.xml"));
        std::fs::write(&f, out).unwrap();
        let st = std::process::Command::new("xmllint")
            .args(["--noout", "--relaxng", rng])
            .arg(&f)
            .output()
            .expect("xmllint must be installed (libxml2-utils)");
        assert!(
            st.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
}

#[test]
fn version_output() {
    for name in ["fence_xvm", "fence_virt"] {
        let (rc, out, _) = run(&ours(name), name, &["-V"], None);
        assert_eq!(rc, 0);
        assert_eq!(out, format!("{name} 1.9.0\nfence release 4.12.1\n"));
    }
}

/// Cases that never reach the network (help, metadata, validate-all, parse errors).
const CASES: &[(&[&str], Option<&str>)] = &[
    (&["-V"], None),
    (&["-h"], None),
    (&["-o", "validate-all"], None),
    (&["-o", "validate-all", "-n", "vm1"], None),
    (&["-o", "VALIDATE-ALL", "-H", "vm1"], None),
    (&["-o", "metadata", "-n", "x", "extra-word"], None),
    (&["-z"], None),
    (&["--foo"], None),
    (&["-o"], None),
    (&["-M", "foo", "-n", "x"], None),
    (&["-o", "bogus", "-n", "x"], None),
    (&["-p", "0x10", "-o", "validate-all", "-n", "x"], None),
    (&["-p", "010", "-o", "validate-all", "-n", "x"], None),
    (&["-p", "12abc", "-n", "x"], None),
    (&["-p", "65536", "-n", "x"], None),
    (&["-p", "0", "-n", "x", "-o", "validate-all"], None),
    (&["-t", "0", "-n", "x", "-o", "validate-all"], None),
    (&["-t", "-5", "-n", "x"], None),
    (&["-w", "-1", "-n", "x"], None),
    (&["-r", "0", "-n", "x"], None),
    (&["-i", "ipv5", "-n", "x"], None),
    (&["-a", "foo", "-n", "x", "-o", "validate-all"], None),
    (&["-c", "md5", "-C", "sha3", "-n", "x"], None),
    (
        &["-k", "/nonexistent/key", "-o", "validate-all", "-n", "x"],
        None,
    ),
    (&["-n", "x", "-H", "y", "-o", "validate-all"], None),
    (&["-n", "", "-o", "validate-all"], None),
    (
        &[
            "-n",
            "0123456789012345678901234567890123456789012345678901234567890123",
            "-o",
            "validate-all",
        ],
        None,
    ),
    (&["-S3", "-n", "x", "-o", "validate-all"], None),
    (&["-S", "3", "-n", "x", "-o", "validate-all"], None),
    (&["-S1", "-n", "x", "-o", "validate-all"], None),
    (
        &["-S0x10", "-T", "::1", "-n", "x", "-o", "validate-all"],
        None,
    ),
    (
        &[
            "-D",
            "/dev/null",
            "-P",
            "9600,8N1",
            "-A",
            "1.2.3.4",
            "-n",
            "x",
            "-o",
            "validate-all",
        ],
        None,
    ),
    (&["-u", "-n", "x", "-o", "validate-all"], None),
    (&["-V", "-h"], None),
    (&["-n", "x", "-o", "off", "-z"], None),
    // stdin
    (&[], Some("action=validate-all\nplug=vm1\n")),
    (&[], Some("action=validate-all\n")),
    (&[], Some("action=off\n")),
    (
        &[],
        Some("# comment\n\n   \n  ACTION=validate-all trailing words\nPlug=my vm\n"),
    ),
    (&[], Some("action=validate-all\nport=a\nplug=b\n")),
    (&[], Some("action=validate-all\ndomain=a\n")),
    (
        &[],
        Some("option=validate-all\nnodename=n1\nagent=fence_xvm\nself=x\nplug=a\n"),
    ),
    (
        &[],
        Some("action=validate-all\nvsock=3\nip_family=ipv6\nmulticast_address=ff05::3:1\nplug=a\n"),
    ),
    (
        &[],
        Some(
            "action=validate-all\nipaddr=127.0.0.1\nretrans=5\nserial_device=/dev/ttyS1\nplug=a\n",
        ),
    ),
    (
        &[],
        Some("action=validate-all\ninterface=lo\nbogus\n=x\nplug=a\n"),
    ),
    (
        &[],
        Some("action=list\nipport=99999\ntimeout=abc\ndelay=-1\n"),
    ),
    (
        &[],
        Some("action=validate-all\nplug=a\nkey_file=/nonexistent\n"),
    ),
    (
        &[],
        Some("action=validate-all\nplug=a\nuse_uuid=1\ndebug=0\nhash=SHA512\nauth=none\n"),
    ),
    (&[], Some("action=nonsense\nplug=a\n")),
    (&[], Some("action=metadata\nplug=a\nplug=b\n")),
    (&[], Some("action=validate-all\r\nplug=a\r\n")),
    (&[], Some("\taction=validate-all\nplug=a")),
    (&[], Some("action=metadata")),
];

/// True when glibc getopt rejected an option (unknown option, missing argument): the
/// reference then prints the help and exits 0, ours prints the same and exits 1 (a deliberate
/// difference: `-o off -X` must not look like a successful fence).
fn getopt_error(stderr: &str) -> bool {
    stderr.contains(": invalid option -- ") || stderr.contains(": option requires an argument")
}

#[test]
fn same_output_as_reference_binaries() {
    let mut failures = Vec::new();
    let mut getopt_cases = 0;
    for name in ["fence_xvm", "fence_virt"] {
        let refbin = reference(name);
        for (args, stdin) in CASES {
            let mut r = run(&refbin, name, args, *stdin);
            let o = run(&ours(name), name, args, *stdin);
            if getopt_error(&r.2) {
                getopt_cases += 1;
                if (r.0, o.0) != (0, 1) {
                    failures.push(format!(
                        "{name} {args:?}: exit codes reference {} ours {} (want 0 and 1)",
                        r.0, o.0
                    ));
                }
                // Everything else must still match.
                r.0 = o.0;
            }
            let o = (
                o.0,
                strip_additions_from_metadata(&strip_additions_from_help(&o.1)),
                o.2,
            );
            if r != o {
                failures.push(format!(
                    "{name} {args:?} stdin={stdin:?}\n reference: {r:?}\n ours:      {o:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        getopt_cases >= 8,
        "the getopt-error cases are still covered"
    );
}

#[test]
fn unknown_option_prints_help_and_exits_1() {
    for name in ["fence_xvm", "fence_virt"] {
        let (rc, out, err) = run(&ours(name), name, &["-o", "off", "-n", "vm1", "-X"], None);
        assert_eq!(rc, 1, "{name}: {out}");
        assert_eq!(err, format!("{name}: invalid option -- 'X'\n"));
        assert_eq!(
            strip_additions_from_help(&out),
            reference_stdout(name, &["-h"])
        );
    }
}

#[test]
fn argv_means_stdin_is_never_read() {
    // With any argument the stdin lines must be ignored (one input channel per run).
    let (rc, out, _) = run(
        &ours("fence_xvm"),
        "fence_xvm",
        &["-o", "validate-all"],
        Some("plug=vm1\n"),
    );
    assert_eq!((rc, out.as_str()), (1, "No domain specified!\n"));
}

#[test]
fn host_status_addition_validation() {
    let (rc, out, _) = run(
        &ours("fence_virt"),
        "fence_virt",
        &["-o", "validate-all", "-n", "vm1", "--attribute", "pingd"],
        None,
    );
    assert_eq!((rc, out.as_str()), (0, ""));
    let (rc, out, _) = run(
        &ours("fence_virt"),
        "fence_virt",
        &[],
        Some("action=host-status\n"),
    );
    assert_eq!(rc, 1);
    assert!(out.starts_with("No attribute specified!"), "{out}");
    let long = format!("--attribute={}", "a".repeat(64));
    let (rc, out, _) = run(
        &ours("fence_xvm"),
        "fence_xvm",
        &["-o", "host-status", &long],
        None,
    );
    assert_eq!(rc, 1);
    assert!(out.starts_with("Invalid attribute name"), "{out}");
}

#[test]
fn committed_man_pages_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
    for (flavor, file) in [(Flavor::Xvm, "fence_xvm.8"), (Flavor::Virt, "fence_virt.8")] {
        let generated = man_page(flavor);
        let path = dir.join(file);
        if std::env::var_os("FENCE_RS_UPDATE_MAN").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; regenerate with FENCE_RS_UPDATE_MAN=1 cargo test -p fence-agents --test virt_cli", path.display()));
        assert_eq!(
            committed, generated,
            "{} is stale; regenerate with FENCE_RS_UPDATE_MAN=1 cargo test -p fence-agents --test virt_cli",
            path.display()
        );
        assert!(generated.contains("host\\-status") && generated.contains("\\-\\-attribute"));
    }
}

#[test]
fn non_utf8_argument_is_a_clear_error() {
    use std::os::unix::ffi::OsStringExt;
    for name in ["fence_xvm", "fence_virt"] {
        let bad = std::ffi::OsString::from_vec(b"vm\xff1".to_vec());
        let out = Command::new(ours(name))
            .args(["-o", "off", "-n"])
            .arg(&bad)
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert_eq!(
            err,
            format!("{name}: argument 4 is not valid UTF-8: 'vm\u{FFFD}1'\n")
        );
        assert!(out.stdout.is_empty(), "{name}");
    }
}

#[test]
fn non_utf8_stdin_line_is_a_clear_error() {
    for name in ["fence_xvm", "fence_virt"] {
        let out = Command::new(ours(name))
            .write_stdin(b"action=off\nplug=vm\xff1\n".to_vec())
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: {text}");
        assert!(
            text.starts_with("Invalid input: stdin line 'plug=vm\u{FFFD}1' is not valid UTF-8\n"),
            "{name}: {text}"
        );
        // Nothing was sent: the request would have named a VM nobody asked for.
        assert!(!text.contains("Timed out"), "{text}");
    }
}
