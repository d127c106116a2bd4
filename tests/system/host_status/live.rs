//! Host status on live Pacemaker clusters (see `fence_system_tests::pacemaker_cluster`): a
//! one-node host cluster whose state a `fence_virtd` with pm-monitor reports, and a one-node
//! guest cluster into which `vm-client` publishes it.

use std::process::Stdio;
use std::time::Duration;

use fence_system_tests::daemon::ListenerConfig;
use fence_system_tests::pacemaker_cluster::Cluster;
use fence_system_tests::process::{poll_until, signal};
use fence_system_tests::{bins, Agent, Daemon, DaemonConfig, Family, Impl, Netns};
use nix::sys::signal::Signal;

const RUN_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for a change to show (cache = 1 s; this is a hang guard, not a timing claim).
const FOLLOW: Duration = Duration::from_secs(15);

fn tcp_daemon(ns: &Netns, address: &str, pm: String) -> Daemon {
    let mut cfg = DaemonConfig::new(ListenerConfig::Tcp {
        family: Family::V4,
        address: address.into(),
        port: 1229,
    });
    cfg.host_status = Some(pm);
    Daemon::start(ns, Impl::Ours, &cfg)
}

fn ask(ns: &Netns, d: &Daemon, attr: &str) -> (i32, String) {
    let key = d.key_path().display().to_string();
    let o = Agent::fence_virt(Impl::Ours).run_args(
        ns,
        &[
            "-T",
            "127.0.0.1",
            "-p",
            "1229",
            "-k",
            &key,
            "-t",
            "5",
            "-o",
            "host-status",
            "--attribute",
            attr,
        ],
        RUN_LIMIT,
    );
    (o.code, o.stdout)
}

fn follows(ns: &Netns, d: &Daemon, attr: &str, want: &str) {
    let line = format!("{attr}={want}\n");
    let mut last = (0, String::new());
    let ok = poll_until(FOLLOW, || {
        last = ask(ns, d, attr);
        last == (0, line.clone())
    });
    assert!(
        ok,
        "{attr} never became {want:?}; last answer {last:?}\ndaemon:\n{}",
        d.stderr()
    );
}

/// The host cluster drives the answers: node attributes set with attrd_updater, standby and
/// maintenance with crm_attribute; rules reloaded on SIGHUP (a bad file keeps the old ones);
/// Pacemaker stopped → failure, not a stale value.
#[test]
fn live_host_cluster_drives_host_status() {
    let ns = Netns::new();
    let mut host = Cluster::start(&ns, "phost", "10.99.0.1");
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("pm-monitor.conf");
    std::fs::write(&rules, "[score]\nred = lt 50\ngreen = gte 50\n").unwrap();
    // No `node`: the daemon asks crm_node for this host's name.
    let d = tcp_daemon(
        &ns,
        "127.0.0.1",
        format!(
            "\t\tattributes = \"pingd score\";\n\t\tcache = \"1\";\n\t\trules = \"{}\";\n",
            rules.display()
        ),
    );
    assert_eq!(ask(&ns, &d, "#node"), (0, "#node=phost\n".into()));
    assert_eq!(ask(&ns, &d, "#state"), (0, "#state=online\n".into()));
    assert_eq!(ask(&ns, &d, "pingd"), (0, "pingd=\n".into()), "not set yet");
    host.check(&["attrd_updater", "-n", "pingd", "-U", "100"]);
    follows(&ns, &d, "pingd", "100");
    host.check(&["attrd_updater", "-n", "pingd", "-U", "0"]);
    follows(&ns, &d, "pingd", "0");
    host.check(&["crm_attribute", "-N", "phost", "-n", "standby", "-v", "on"]);
    follows(&ns, &d, "#state", "standby");
    host.check(&["crm_attribute", "-N", "phost", "-n", "standby", "-v", "off"]);
    follows(&ns, &d, "#state", "online");
    host.check(&[
        "crm_attribute",
        "-N",
        "phost",
        "-n",
        "maintenance",
        "-v",
        "true",
    ]);
    follows(&ns, &d, "#state", "maintenance");
    host.check(&["crm_attribute", "-N", "phost", "-n", "maintenance", "-D"]);
    follows(&ns, &d, "#state", "online");
    // A permanent node attribute, converted by the rules.
    host.check(&["crm_attribute", "-N", "phost", "-n", "score", "-v", "70"]);
    follows(&ns, &d, "score", "green");
    // SIGHUP with a bad file: the old rules stay (and the error names file and line).
    std::fs::write(&rules, "[score]\nred = lt 50\ngreen = above 50\n").unwrap();
    signal(d.pid(), Signal::SIGHUP);
    assert!(
        poll_until(FOLLOW, || d
            .stderr()
            .contains(&format!("{}:3", rules.display()))),
        "no error naming the rules file and line:\n{}",
        d.stderr()
    );
    assert_eq!(ask(&ns, &d, "score"), (0, "score=green\n".into()));
    std::fs::write(&rules, "[score]\nlow = lt 100\n").unwrap();
    signal(d.pid(), Signal::SIGHUP);
    follows(&ns, &d, "score", "low");
    assert_eq!(ask(&ns, &d, "secret").0, 1, "not on the allow-list");
    // Pacemaker gone: a failure, never the last value.
    host.stop_pacemaker();
    let mut last = (0, String::new());
    assert!(
        poll_until(FOLLOW, || {
            last = ask(&ns, &d, "pingd");
            last.0 == 1
        }),
        "still answering {last:?} with Pacemaker stopped"
    );
}

/// A guest cluster: `ocf-tester` passes for vm-client talking to the host's daemon, and after
/// start/monitor the guest cluster shows the host's attributes, mapped by the host's rules;
/// stop removes them.
#[test]
fn vm_client_publishes_host_status_in_a_guest_cluster() {
    let hns = Netns::new();
    let gns = Netns::new();
    let host = Cluster::start(&hns, "phost", "10.99.0.1");
    let guest = Cluster::start(&gns, "guest1", "10.99.0.1");
    // The "virtual network" between guest and host.
    hns.ip(&[
        "link",
        "add",
        "h0",
        "type",
        "veth",
        "peer",
        "name",
        "g0",
        "netns",
        gns.name(),
    ]);
    hns.ip(&["addr", "add", "192.168.77.1/24", "dev", "h0"]);
    hns.ip(&["link", "set", "h0", "up"]);
    gns.ip(&["addr", "add", "192.168.77.2/24", "dev", "g0"]);
    gns.ip(&["link", "set", "g0", "up"]);
    let rules_dir = tempfile::tempdir().unwrap();
    let rules = rules_dir.path().join("pm-monitor.conf");
    std::fs::write(&rules, "[pingd]\nred = lt 50\ngreen = gte 50\n").unwrap();
    let pm = format!(
        "\t\tnode = \"phost\";\n\t\tattributes = \"pingd\";\n\t\tcache = \"1\";\n\t\trules = \"{}\";\n",
        rules.display()
    );
    let d = tcp_daemon(&hns, "192.168.77.1", pm.clone());
    host.check(&["attrd_updater", "-n", "pingd", "-U", "100"]);
    let vm_client = bins::path(Impl::Ours, "vm-client");
    // The guest's copy of the key (the daemon's own goes away with it).
    let key_copy = rules_dir.path().join("fence_xvm.key");
    std::fs::copy(d.key_path(), &key_copy).unwrap();
    let key = key_copy.display().to_string();
    let params = [
        ("attribute_list", "pingd #state"),
        ("ipaddr", "192.168.77.1"),
        ("ipport", "1229"),
        ("key_file", key.as_str()),
        ("dampen", "0"),
        ("timeout", "5"),
    ];
    // ocf-tester runs in the guest (it calls attrd_updater there).
    let mut tester = guest.cmd("/usr/sbin/ocf-tester");
    tester.args(["-n", "hoststatus"]);
    for (k, v) in params {
        tester.arg("-o").arg(format!("{k}={v}"));
    }
    let o = tester
        .arg(&vm_client)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && text.contains("passed all tests"),
        "ocf-tester:\n{text}"
    );
    let action = |a: &str| {
        let mut c = guest.cmd(&vm_client);
        c.arg(a)
            .env("OCF_ROOT", "/usr/lib/ocf")
            .env("OCF_RESOURCE_INSTANCE", "hoststatus");
        for (k, v) in params {
            c.env(format!("OCF_RESKEY_{k}"), v);
        }
        let o = c.stdin(Stdio::null()).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let shows = |want: &[(&str, &str)]| {
        let mut last = Vec::new();
        let ok = poll_until(FOLLOW, || {
            last = guest.node_attributes();
            want.iter()
                .all(|(n, v)| last.iter().any(|(a, b)| a == n && b == v))
        });
        assert!(ok, "guest crm_mon never showed {want:?}; last {last:?}");
    };
    assert_eq!(action("monitor").0, 7, "not running before start");
    let (code, err) = action("start");
    assert_eq!(code, 0, "{err}");
    shows(&[("pingd", "green"), ("host-state", "online")]);
    host.check(&["attrd_updater", "-n", "pingd", "-U", "10"]);
    host.check(&["crm_attribute", "-N", "phost", "-n", "standby", "-v", "on"]);
    let mut last = Vec::new();
    assert!(
        poll_until(FOLLOW, || {
            let (code, err) = action("monitor");
            assert_eq!(code, 0, "{err}");
            last = guest.node_attributes();
            last.iter().any(|(a, b)| a == "pingd" && b == "red")
                && last
                    .iter()
                    .any(|(a, b)| a == "host-state" && b == "standby")
        }),
        "guest never followed the host: {last:?}"
    );
    // The host's daemon goes away (as during a live migration) and comes back while a monitor
    // runs: the monitor keeps asking within its operation timeout and succeeds.
    drop(d);
    let log = rules_dir.path().join("monitor.err");
    let mut c = guest.cmd(&vm_client);
    c.arg("monitor")
        .env("OCF_RESOURCE_INSTANCE", "hoststatus")
        .env("OCF_RESKEY_CRM_meta_timeout", "60000");
    for (k, v) in params {
        c.env(format!("OCF_RESKEY_{k}"), v);
    }
    let mut monitor = c
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(
        poll_until(Duration::from_secs(30), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("retrying")),
        "monitor did not retry: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let _d = tcp_daemon(&hns, "192.168.77.1", pm);
    let st = fence_system_tests::process::wait_bounded(&mut monitor, Duration::from_secs(60))
        .expect("monitor finished within its timeout");
    assert!(
        st.success(),
        "monitor across the daemon's absence: {st}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let (code, err) = action("stop");
    assert_eq!(code, 0, "{err}");
    assert!(
        poll_until(FOLLOW, || guest
            .node_attributes()
            .iter()
            .all(|(a, _)| a != "pingd" && a != "host-state")),
        "attributes left after stop: {:?}",
        guest.node_attributes()
    );
    assert_eq!(action("monitor").0, 7);
}
