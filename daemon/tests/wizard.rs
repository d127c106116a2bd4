//! `fence_virtd -c` against the reference wizard (`/usr/sbin/fence_virtd -c`, fence-agents
//! 4.12.1): the same scripted answers must meet the same questions in the same order, and the
//! files both write must mean the same (compared key by key through
//! [`ConfigTree`]). Every file our wizard writes must load with our [`Config::load`] and parse
//! in the reference daemon (`fence_virtd -F -d 4`, run in an empty network namespace so it can
//! never touch a real network).
//!
//! The reference is required: these tests fail, not skip, when it is missing.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fence_virtd::config::{Config, ConfigTree};

const REFERENCE: &str = "/usr/sbin/fence_virtd";
const OURS: &str = env!("CARGO_BIN_EXE_fence_virtd");

/// Debian's shipped `/etc/fence_virt.conf`.
const DEBIAN: &str = include_str!("data/debian-fence_virt.conf");
/// Upstream's sample.
const UPSTREAM: &str = include_str!("data/upstream-fence_virt.conf");

/// Every setting the wizard may touch; compared between the two results.
const KEYS: &[&str] = &[
    "fence_virtd/@listener",
    "fence_virtd/@backend",
    "listeners/multicast/@address",
    "listeners/multicast/@family",
    "listeners/multicast/@port",
    "listeners/multicast/@interface",
    "listeners/multicast/@key_file",
    "listeners/multicast/@hash",
    "listeners/multicast/@auth",
    "listeners/tcp/@address",
    "listeners/tcp/@family",
    "listeners/tcp/@port",
    "listeners/tcp/@key_file",
    "listeners/serial/@uri",
    "listeners/serial/@path",
    "listeners/serial/@mode",
    "backends/libvirt/@uri",
    "backends/cpg/@uri",
    "backends/cpg/@name_mode",
];

struct Run {
    code: i32,
    /// Everything printed, with the temporary directory replaced by `DIR`.
    out: String,
    /// The file afterwards (None if absent).
    file: Option<String>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

fn run_wizard(program: &str, initial: Option<&str>, answers: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fence_virt.conf");
    if let Some(text) = initial {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    assert!(
        Path::new(program).exists(),
        "{program} is missing (install the fence-virtd package)"
    );
    let mut child = Command::new("timeout")
        .args(["-s", "KILL", "20", program, "-c", "-f"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let dir_s = dir.path().display().to_string();
    Run {
        code: o.status.code().expect("killed: the wizard hung"),
        out: String::from_utf8_lossy(&o.stdout).replace(&dir_s, "DIR"),
        file: std::fs::read_to_string(&path).ok(),
        path,
        _dir: dir,
    }
}

/// The questions asked, in order, with the default shown: every `Question [default]: ` and
/// `Question [y/N]? ` (each starts a line in both programs).
fn questions(out: &str) -> Vec<(String, String)> {
    let mut qs = Vec::new();
    let mut rest = out;
    while let Some(end) = [rest.find("]: "), rest.find("]? ")]
        .into_iter()
        .flatten()
        .min()
    {
        let head = &rest[..end];
        let line = &head[head.rfind('\n').map_or(0, |i| i + 1)..];
        let open = line.rfind(" [").expect("prompt with a default");
        qs.push((line[..open].to_string(), line[open + 2..].to_string()));
        rest = &rest[end + 3..];
    }
    qs
}

fn tree(text: &str) -> ConfigTree {
    ConfigTree::parse("written", text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Compare the question sequences (defaults too, except for the questions in
/// `default_differs`) and the written files key by key (except `keys_differ`).
fn compare(
    initial: Option<&str>,
    answers: &str,
    default_differs: &[&str],
    keys_differ: &[&str],
) -> (Run, Run) {
    let c = run_wizard(REFERENCE, initial, answers);
    let r = run_wizard(OURS, initial, answers);
    let cq = questions(&c.out);
    let rq = questions(&r.out);
    let names = |q: &[(String, String)]| q.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&rq),
        names(&cq),
        "question sequence differs\n--- ours:\n{}\n--- reference:\n{}",
        r.out,
        c.out
    );
    assert!(!cq.is_empty());
    for ((name, ours), (_, theirs)) in rq.iter().zip(&cq) {
        if name != "Module search path" && !default_differs.contains(&name.as_str()) {
            assert_eq!(ours, theirs, "default of {name:?}");
        }
    }
    assert_eq!(r.code, c.code, "exit code\n{}\n{}", r.out, c.out);
    if r.code != 0 {
        // Nothing written by either.
        assert_eq!(r.file.as_deref(), initial);
        assert_eq!(c.file.as_deref(), initial);
        return (r, c);
    }
    match (&r.file, &c.file) {
        (Some(ours), Some(theirs)) => {
            let (ot, tt) = (tree(ours), tree(theirs));
            for key in KEYS.iter().filter(|k| !keys_differ.contains(k)) {
                assert_eq!(
                    ot.get(key),
                    tt.get(key),
                    "{key}\n--- ours:\n{ours}\n--- reference:\n{theirs}"
                );
            }
        }
        other => panic!("a file is missing after a successful run: {other:?}"),
    }
    (r, c)
}

/// The file was written by our wizard: mode 0600, loads with our reader, and the reference
/// daemon parses it and gets as far as naming the listener.
fn check_written(r: &Run, listener: &str) {
    assert_eq!(r.code, 0, "{}", r.out);
    let mode = std::fs::metadata(&r.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (cfg, _) = Config::load(&r.path).unwrap_or_else(|e| panic!("{e}\n{:?}", r.file));
    assert_eq!(cfg.daemon.listener, listener);
    reference_parses(&r.path, listener);
}

fn reference_parses(path: &Path, listener: &str) {
    let pid = path.with_file_name("pid");
    // An empty network namespace: whatever the reference gets to, it cannot reach a network.
    let o = Command::new("timeout")
        .args([
            "-s", "KILL", "10", "unshare", "-n", REFERENCE, "-F", "-d", "4", "-f",
        ])
        .arg(path)
        .arg("-p")
        .arg(&pid)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("Failed to parse") && out.contains(&format!("Listener plugin: {listener}")),
        "the reference did not parse {}:\n{out}\n{}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn debian_file_all_defaults() {
    let (r, c) = compare(Some(DEBIAN), "\n\n\n\n\n\n\n\ny\n", &[], &[]);
    assert_eq!(r.code, 0);
    assert!(c.file.is_some());
    let asked: Vec<String> = questions(&r.out).into_iter().map(|(q, _)| q).collect();
    assert_eq!(
        asked,
        [
            "Module search path",
            "Listener module",
            "Multicast IP Address",
            "Multicast IP Port",
            "Interface",
            "Key File",
            "Backend module",
            "Libvirt URI",
            "Replace DIR/fence_virt.conf with the above",
        ]
    );
    check_written(&r, "multicast");
    // The family is derived and written, as the reference does.
    assert_eq!(
        tree(r.file.as_deref().unwrap()).get("listeners/multicast/@family"),
        Some("ipv4")
    );
}

#[test]
fn ipv6_group_without_interface_or_key_file() {
    let answers = "\n\nff05::3:1\n1230\nnone\nnone\n\ntest:///default\ny\n";
    let (r, _) = compare(Some(DEBIAN), answers, &[], &[]);
    check_written(&r, "multicast");
    let t = tree(r.file.as_deref().unwrap());
    assert_eq!(t.get("listeners/multicast/@interface"), None);
    assert_eq!(t.get("listeners/multicast/@key_file"), None);
    assert_eq!(t.get("listeners/multicast/@family"), Some("ipv6"));
}

#[test]
fn from_scratch_tcp() {
    // The reference's tcp address default is the multicast group (its bug); ours is
    // 127.0.0.1. The answer is given explicitly so the files can be compared.
    let answers = "y\n\ntcp\n127.0.0.1\n4321\n/etc/cluster/fence_xvm.key\nlibvirt\n\ny\n";
    let (r, c) = compare(None, answers, &["TCP Listen IP Address"], &[]);
    assert!(c.out.contains("TCP Listen IP Address [225.0.0.12]: "));
    assert!(r.out.contains("TCP Listen IP Address [127.0.0.1]: "));
    check_written(&r, "tcp");
}

#[test]
fn serial_listener() {
    let answers = "\nserial\ntest:///default\n/var/run/cluster/fence\nvmchannel\n\n\ny\n";
    // The reference reads the serial URI and drops it; we store it.
    let (r, c) = compare(Some(UPSTREAM), answers, &[], &["listeners/serial/@uri"]);
    assert_eq!(
        tree(c.file.as_deref().unwrap()).get("listeners/serial/@uri"),
        None
    );
    assert_eq!(
        tree(r.file.as_deref().unwrap()).get("listeners/serial/@uri"),
        Some("test:///default")
    );
    check_written(&r, "serial");
}

#[test]
fn declining_keeps_the_file_and_exits_1() {
    let (r, _) = compare(Some(DEBIAN), "\n\n\n\n\n\n\n\nn\n", &[], &[]);
    assert_eq!(r.code, 1);
    assert_eq!(r.file.as_deref(), Some(DEBIAN));
    // Unparsable file, no to starting from scratch.
    let (r, c) = compare(Some("fence_virtd {"), "n\n", &[], &[]);
    assert_eq!((r.code, c.code), (1, 1));
    assert!(r.out.contains("Start from scratch [y/N]? "));
    assert_eq!(r.file.as_deref(), Some("fence_virtd {"));
}

#[test]
fn vsock_and_our_backends_parse_in_the_reference() {
    // The reference wizard cannot configure vsock; its daemon reads the result.
    let r = run_wizard(
        OURS,
        None,
        "y\n\nvsock\n2000\n/etc/cluster/fence_xvm.key\nsim\ny\n",
    );
    check_written(&r, "vsock");
    let r = run_wizard(
        OURS,
        Some(DEBIAN),
        "\n\n\n\n\n\nvmware_soap\nvc.example\nfence\n/usr/local/bin/vc-password\n\n\
         /nonexistent/ca.pem\n/etc/hostname\ny\n",
    );
    check_written(&r, "multicast");
    assert!(
        r.out.contains("No such file: /nonexistent/ca.pem"),
        "{}",
        r.out
    );
    let t = tree(r.file.as_deref().unwrap());
    assert_eq!(
        t.get("backends/vmware_soap/@password_script"),
        Some("/usr/local/bin/vc-password")
    );
    assert_eq!(t.get("backends/vmware_soap/@ssl"), Some("secure"));
    assert_eq!(
        t.get("backends/vmware_soap/@ca_file"),
        Some("/etc/hostname")
    );
}
