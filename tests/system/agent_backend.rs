//! The `agent` backend end to end with a real agent: our fence_virtd runs `fence_virt -T` as
//! its backend, which asks a second fence_virtd (tcp listener, libvirt test driver) in the
//! same namespace. The C `fence_xvm` fences through the first daemon; the VM's state is read
//! from the second. An agent option the agent does not declare stops the first daemon at
//! start-up.

use std::time::Duration;

use fence_system_tests::bins::{self, Impl};
use fence_system_tests::daemon::ListenerConfig;
use fence_system_tests::{Agent, Daemon, DaemonConfig, Family, Netns};

const RUN_LIMIT: Duration = Duration::from_secs(60);
const TCP_PORT: u16 = 1239;

fn tcp_daemon(ns: &Netns) -> Daemon {
    Daemon::start(
        ns,
        Impl::Ours,
        &DaemonConfig::new(ListenerConfig::Tcp {
            family: Family::V4,
            address: "127.0.0.1".into(),
            port: TCP_PORT,
        }),
    )
}

fn state_via_tcp(ns: &Netns, key: &str, vm: &str) -> (i32, String) {
    let out = Agent::fence_virt(Impl::Ours).run_args(
        ns,
        &[
            "-T",
            "127.0.0.1",
            "-p",
            &TCP_PORT.to_string(),
            "-k",
            key,
            "-o",
            "status",
            "-H",
            vm,
        ],
        RUN_LIMIT,
    );
    (out.code, out.stdout)
}

fn agent_block(key: &str, extra: &str) -> (String, String) {
    let fence_virt = bins::path(Impl::Ours, "fence_virt");
    (
        "agent".into(),
        format!(
            "\t\tagent = \"{}\";\n\t\ttimeout = \"20\";\n\t\toptions {{\n\t\t\tipaddr = \"127.0.0.1\";\n\
             \t\t\tipport = \"{TCP_PORT}\";\n\t\t\tkey_file = \"{key}\";\n{extra}\t\t}}",
            fence_virt.display()
        ),
    )
}

#[test]
fn fence_xvm_fences_through_an_agent_backend() {
    let ns = Netns::new();
    let inner = tcp_daemon(&ns);
    let key = inner.key_path().display().to_string();
    let mut cfg = DaemonConfig::multicast(Family::V4);
    cfg.backend = Some(agent_block(&key, ""));
    let outer = Daemon::start(&ns, Impl::Ours, &cfg);
    let okey = outer.key_path().display().to_string();
    let xvm = |args: &[&str]| {
        let mut a = vec!["-k", okey.as_str(), "-t", "30"];
        a.extend_from_slice(args);
        Agent::fence_xvm(Impl::C).run_args(&ns, &a, RUN_LIMIT)
    };
    let out = xvm(&["-o", "status", "-H", "vm1"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Status: ON\n"),
        "{out:?}"
    );
    let out = xvm(&["-o", "off", "-H", "vm1"]);
    assert_eq!(out.code, 0, "off through the agent backend: {out:?}");
    assert_eq!(state_via_tcp(&ns, &key, "vm1"), (2, "Status: OFF\n".into()));
    let out = xvm(&["-o", "status", "-H", "vm1"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (2, "Status: OFF\n"),
        "{out:?}"
    );
    let out = xvm(&["-o", "on", "-H", "vm1"]);
    assert_eq!(out.code, 0, "on: {out:?}");
    assert_eq!(state_via_tcp(&ns, &key, "vm1"), (0, "Status: ON\n".into()));
    // An unknown VM is a failure, never "off".
    let out = xvm(&["-o", "off", "-H", "nosuchvm"]);
    assert_eq!(out.code, 1, "{out:?}");
    let out = xvm(&["-o", "status", "-H", "nosuchvm"]);
    assert_eq!(out.code, 1, "{out:?}");
    // The host list comes from the agent's list.
    let out = xvm(&["-o", "list"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("vm1"), "{out:?}");
    drop(outer);
    drop(inner);
}

#[test]
fn an_option_the_agent_does_not_declare_stops_start_up() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, "k").unwrap();
    let mut cfg = DaemonConfig::multicast(Family::V4);
    let (name, body) = agent_block(&key.display().to_string(), "\t\t\tpasword = \"x\";\n");
    cfg.backend = Some((name, body));
    let conf = dir.path().join("fence_virt.conf");
    let ckey = dir.path().join("fence_xvm.key");
    fence_system_tests::daemon::write_private(&ckey, b"key");
    fence_system_tests::daemon::write_private(
        &conf,
        cfg.render(&ckey, "test:///default").as_bytes(),
    );
    let out = ns
        .cmd(bins::path(Impl::Ours, "fence_virtd"))
        .args(["-F", "-f"])
        .arg(&conf)
        .arg("-p")
        .arg(dir.path().join("pid"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("\"pasword\""), "{err}");
}
