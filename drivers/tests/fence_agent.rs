//! FenceAgentDriver against the reference agent `fence_virsh` (Debian fence-agents,
//! `scripts/install-peers.sh`) and against small fake agents written here.
//!
//! fence_virsh logs in with ssh and types `virsh` commands at a shell prompt. Its transport is
//! faked: `ssh_path` points at a script that starts a local bash with fence_virsh's prompt,
//! whose PATH finds a fake `virsh` keeping domain states in a file (each real `virsh -c
//! test:///…` process would start from the node file again). The peer under test is
//! fence_virsh itself: its stdin parsing, actions, output and exit codes.
//! A missing fence_virsh is a test failure, not a skip.
#![cfg(feature = "fence_agent")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fence_drivers::fence::{self, FenceOptions, FenceOutcome};
use fence_drivers::fence_agent::{parse_metadata, FenceAgentDriver, FenceAgentOptions};
use fence_drivers::{Driver, DriverError, PowerState, VmRef};

const UUID1: &str = "6695eb01-f6a4-8304-79aa-97f2502e1931";

/// `virsh` over a state file of `name uuid running|shut_off` lines: `list --all`, `domstate`,
/// `start`, `destroy`, by name or UUID, printing what virsh prints.
const FAKE_VIRSH: &str = r#"#!/bin/sh
state="$FAKE_VIRSH_STATE"
case "$1" in --connect|-c) shift 2 ;; esac
cmd="$1"; shift
case "$cmd" in
  list)
    printf ' %-5s%-20s%s\n' Id Name State
    echo '-----------------------------------'
    i=1
    while read -r n u s; do
      if [ "$s" = running ]; then printf ' %-5s%-20s%s\n' "$i" "$n" running; i=$((i+1))
      else printf ' %-5s%-20s%s\n' - "$n" "shut off"; fi
    done < "$state"
    echo ;;
  domstate|start|destroy)
    dom="$1"; found=
    while read -r n u s; do
      if [ "$n" = "$dom" ] || [ "$u" = "$dom" ]; then found="$n $u $s"; fi
    done < "$state"
    if [ -z "$found" ]; then echo "error: failed to get domain '$dom'" >&2; exit 1; fi
    set -- $found
    case "$cmd" in
      domstate) if [ "$3" = running ]; then echo running; else echo "shut off"; fi; echo ;;
      start) sed -i "s/^$1 $2 .*/$1 $2 running/" "$state"; echo "Domain '$1' started" ;;
      destroy) sed -i "s/^$1 $2 .*/$1 $2 shut_off/" "$state"; echo "Domain '$1' destroyed" ;;
    esac ;;
  *) echo "error: unknown command $cmd" >&2; exit 1 ;;
esac
"#;

fn write_script(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A temporary "host": fake ssh + fake virsh + state file.
struct FakeHost {
    dir: tempfile::TempDir,
}

impl FakeHost {
    fn new() -> FakeHost {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        write_script(&bin.join("virsh"), FAKE_VIRSH);
        let state = dir.path().join("state");
        fs::write(
            &state,
            format!("vm1 {UUID1} running\nvm2 6695eb01-f6a4-8304-79aa-97f2502e1932 shut_off\n"),
        )
        .unwrap();
        // Ignores its arguments (user@host -i key -p 22 -t '…'), as a host with this key would
        // accept them, and gives fence_virsh the shell and prompt its ssh_options ask for.
        let ssh = format!(
            "#!/bin/sh\nexport PATH='{bin}':\"$PATH\" FAKE_VIRSH_STATE='{state}' PS1='[EXPECT]# '\n\
             exec /bin/bash --noprofile --norc\n",
            bin = bin.display(),
            state = state.display()
        );
        write_script(&dir.path().join("ssh"), &ssh);
        fs::write(dir.path().join("id_fake"), "not a key\n").unwrap();
        FakeHost { dir }
    }

    fn args(&self) -> Vec<(String, String)> {
        let p = |f: &str| self.dir.path().join(f).display().to_string();
        [
            ("ip", "host.invalid".to_string()),
            ("username", "root".to_string()),
            ("identity_file", p("id_fake")),
            ("ssh_path", p("ssh")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn state(&self) -> String {
        fs::read_to_string(self.dir.path().join("state")).unwrap()
    }

    fn driver(&self) -> FenceAgentDriver {
        FenceAgentDriver::new(FenceAgentOptions {
            agent: "fence_virsh".into(),
            args: self.args(),
            timeout: Duration::from_secs(60),
        })
        .expect("fence_virsh (apt-get install fence-agents)")
    }
}

fn opts() -> FenceOptions {
    FenceOptions {
        confirm_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(10),
    }
}

fn name(s: &str) -> VmRef {
    VmRef::Name(s.into())
}

#[test]
fn fence_virsh_status_list_off_on() {
    let host = FakeHost::new();
    let d = host.driver();
    assert_eq!(d.kind(), "agent");
    assert_eq!(d.agent(), Path::new("/usr/sbin/fence_virsh"));
    d.check().unwrap();

    assert_eq!(d.status(&name("vm1")).unwrap(), PowerState::On);
    assert_eq!(d.status(&VmRef::parse(UUID1)).unwrap(), PowerState::On);
    assert_eq!(d.status(&name("vm2")).unwrap(), PowerState::Off);

    // fence_virsh advertises list-status: states come with the list.
    let list = d.list().unwrap();
    let got: Vec<(&str, &str, PowerState)> = list
        .iter()
        .map(|v| (v.name.as_str(), v.uuid.as_str(), v.state))
        .collect();
    assert_eq!(
        got,
        [("vm1", "", PowerState::On), ("vm2", "", PowerState::Off)]
    );

    assert_eq!(
        fence::off(&d, &name("vm1"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert!(host.state().contains(&format!("vm1 {UUID1} shut_off")));
    assert_eq!(d.status(&name("vm1")).unwrap(), PowerState::Off);
    assert_eq!(
        fence::off(&d, &name("vm1"), &opts()).unwrap(),
        FenceOutcome::AlreadyInState
    );
    assert_eq!(
        fence::on(&d, &VmRef::parse(UUID1), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&name("vm1")).unwrap(), PowerState::On);
    // The driver's own power calls, without the fence layer.
    d.power_off(&name("vm1")).unwrap();
    assert_eq!(d.status(&name("vm1")).unwrap(), PowerState::Off);
    d.power_on(&name("vm1")).unwrap();
    assert_eq!(d.status(&name("vm1")).unwrap(), PowerState::On);
}

#[test]
fn fence_virsh_unknown_vm_is_an_error_never_off() {
    let host = FakeHost::new();
    let d = host.driver();
    let e = d.status(&name("nosuchvm")).unwrap_err();
    match &e {
        DriverError::Platform(m) => {
            assert!(m.contains("fence_virsh status nosuchvm"), "{m}");
            assert!(m.contains("exit code 1"), "{m}");
            // the agent's own reason
            assert!(m.contains("existing name/UUID"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let r = fence::off(&d, &name("nosuchvm"), &opts());
    assert!(r.is_err(), "{r:?}");
    // A name the agent would split into two plugs is refused before it runs.
    assert!(d.status(&name("vm1,vm2")).is_err());
    assert!(d.power_off(&name("vm1,vm2")).is_err());
    assert!(host.state().contains(&format!("vm1 {UUID1} running")));
}

#[test]
fn fence_virsh_metadata_refuses_unknown_and_per_call_keys() {
    let host = FakeHost::new();
    let mut args = host.args();
    args.push(("pasword".into(), "x".into()));
    let e = FenceAgentDriver::new(FenceAgentOptions {
        agent: "/usr/sbin/fence_virsh".into(),
        args,
        timeout: Duration::from_secs(60),
    })
    .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("fence_virsh has no parameter \"pasword\""),
        "{m}"
    );
    // The deprecated and obsoleted names fence_virsh lists are accepted.
    let mut args = host.args();
    args.retain(|(k, _)| k != "ip" && k != "username");
    args.push(("ipaddr".into(), "host.invalid".into()));
    args.push(("login".into(), "root".into()));
    args.push(("missing_as_off".into(), "0".into()));
    FenceAgentDriver::new(FenceAgentOptions {
        agent: "fence_virsh".into(),
        args,
        timeout: Duration::from_secs(60),
    })
    .unwrap();
    for key in ["port", "plug", "action", "nodename"] {
        let mut args = host.args();
        args.push((key.into(), "vm2".into()));
        let e = FenceAgentDriver::new(FenceAgentOptions {
            agent: "fence_virsh".into(),
            args,
            timeout: Duration::from_secs(60),
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("may not be configured"),
            "{key}: {e}"
        );
    }
}

#[test]
fn installed_agents_metadata_parses() {
    for agent in [
        "fence_virsh",
        "fence_ipmilan",
        "fence_redfish",
        "fence_apc",
        "fence_scsi",
        "fence_xvm",
        "fence_virt",
        "fence_vmware_soap",
    ] {
        let path = Path::new("/usr/sbin").join(agent);
        let out = std::process::Command::new(&path)
            .args(["-o", "metadata"])
            .output()
            .unwrap_or_else(|e| panic!("{agent}: {e}"));
        assert!(out.status.success(), "{agent}: {:?}", out.status);
        let md = parse_metadata(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or_else(|e| panic!("{agent}: {e}"));
        assert_eq!(md.name, agent);
        assert!(md.has_action("off") && md.has_action("monitor"), "{agent}");
        assert!(md.accepts("port"), "{agent}");
    }
    // fence_ipmilan has no list: the driver is built, list fails, the rest is configured.
    let d = FenceAgentDriver::new(FenceAgentOptions {
        agent: "fence_ipmilan".into(),
        args: vec![
            ("ip".into(), "192.0.2.1".into()),
            ("username".into(), "admin".into()),
            ("password".into(), "x".into()),
            ("lanplus".into(), "1".into()),
        ],
        timeout: Duration::from_secs(60),
    })
    .unwrap();
    let e = d.list().unwrap_err();
    assert!(e.to_string().contains("cannot list"), "{e}");
}

/// A fake agent: `-o metadata` prints a minimal fencing.py-like document; any other run
/// executes `body` (sh) with the stdin lines in "$in" and records argv count and stdin.
fn fake_agent(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let rec = dir.join("record");
    let script = format!(
        r#"#!/bin/sh
if [ "$1" = -o ] && [ "$2" = metadata ]; then
cat <<'XML'
<?xml version="1.0" ?>
<resource-agent name="{name}" shortdesc="fake">
<parameters>
	<parameter name="plug" unique="0" required="1" obsoletes="port"><content type="string"/></parameter>
	<parameter name="port" unique="0" required="1" deprecated="1"><content type="string"/></parameter>
	<parameter name="ip" unique="0" required="0"><content type="string"/></parameter>
</parameters>
<actions><action name="on"/><action name="off"/><action name="status"/><action name="list"/><action name="monitor"/></actions>
</resource-agent>
XML
exit 0
fi
in=$(cat)
printf 'argc=%s\n%s\n' "$#" "$in" > '{rec}'
{body}
"#,
        rec = rec.display()
    );
    write_script(&path, &script);
    path
}

fn fake_driver(agent: PathBuf, timeout: Duration) -> FenceAgentDriver {
    FenceAgentDriver::new(FenceAgentOptions {
        agent,
        args: vec![("ip".into(), "h=1".into())],
        timeout,
    })
    .unwrap()
}

#[test]
fn stdin_argv_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"case "$in" in
  *action=status*port=on*) echo "Status: ON"; exit 0 ;;
  *action=status*port=off*) echo "Status: OFF"; exit 2 ;;
  *action=status*port=liar*) echo "Status: ON"; exit 2 ;;
  *action=status*port=bye*) echo "2026-01-01 ERROR: Failed: Unable to obtain correct plug status or plug is not available" >&2; echo "usage hint" >&2; exit 1 ;;
  *action=status*port=weird*) exit 3 ;;
  *action=list*) printf 'on,\noff,6695eb01-f6a4-8304-79aa-97f2502e1932\n'; exit 0 ;;
  *action=off*) exit 0 ;;
esac
exit 1"#;
    let d = fake_driver(
        fake_agent(dir.path(), "fence_fake", body),
        Duration::from_secs(30),
    );
    assert_eq!(d.status(&name("on")).unwrap(), PowerState::On);
    let rec = fs::read_to_string(dir.path().join("record")).unwrap();
    assert_eq!(rec, "argc=0\naction=status\nport=on\nip=h=1\n");
    assert_eq!(d.status(&name("off")).unwrap(), PowerState::Off);
    // Output contradicting the exit code is not believed.
    let e = d.status(&name("liar")).unwrap_err();
    assert!(e.to_string().contains("contradicts"), "{e}");
    let e = d.status(&name("bye")).unwrap_err();
    assert!(
        matches!(&e, DriverError::Platform(m) if m.contains("plug is not available")),
        "{e:?}"
    );
    assert!(matches!(
        d.status(&name("weird")),
        Err(DriverError::Platform(_))
    ));
    d.power_off(&name("x")).unwrap();
    assert!(d.power_on(&name("x")).is_err());
    let list = d.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].name, "off");
    assert_eq!(list[0].uuid, "6695eb01-f6a4-8304-79aa-97f2502e1932");
    assert_eq!(list[1].state, PowerState::Unknown);
    assert!(d.check().is_err());
}

fn gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for its (new) parent to reap it is not running.
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn hung_agent_is_killed_with_its_children_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let body = format!(
        "trap '' TERM HUP INT\nsleep 600 &\necho $$ $! > '{}'\nwait\n",
        pids.display()
    );
    let d = fake_driver(
        fake_agent(dir.path(), "fence_hang", &body),
        Duration::from_secs(2),
    );
    let start = Instant::now();
    let e = d.status(&name("vm1")).unwrap_err();
    // hang guard only: the deadline is 2 s
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(matches!(e, DriverError::Timeout(_)), "{e:?}");
    assert!(e.to_string().contains("fence_hang status vm1"), "{e}");
    let text = fs::read_to_string(&pids).unwrap();
    let ids: Vec<i32> = text
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{text}");
    // The agent itself is reaped by the driver; its child is killed with the group and
    // reaped by whoever inherits it. Bounded wait for that reaping.
    for pid in ids {
        let mut n = 0;
        while !gone(pid) && n < 500 {
            std::thread::sleep(Duration::from_millis(10));
            n += 1;
        }
        assert!(
            gone(pid),
            "process {pid} of the hung agent is still running"
        );
    }
}

#[test]
fn agent_that_exits_leaves_no_helper_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // Answers at once but leaves a background helper holding its stdout.
    let body = format!(
        "sleep 600 &\necho $! > '{}'\necho 'Status: ON'\nexit 0\n",
        pids.display()
    );
    let d = fake_driver(
        fake_agent(dir.path(), "fence_leaky", &body),
        Duration::from_secs(60),
    );
    let start = Instant::now();
    assert_eq!(d.status(&name("vm1")).unwrap(), PowerState::On);
    assert!(
        start.elapsed() < Duration::from_secs(50),
        "waited for the helper"
    );
    let pid: i32 = fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
    let mut n = 0;
    while !gone(pid) && n < 500 {
        std::thread::sleep(Duration::from_millis(10));
        n += 1;
    }
    assert!(gone(pid), "helper {pid} still running");
}
