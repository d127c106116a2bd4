//! A stand-alone Pacemaker fencer for end-to-end tests: `pacemaker-fenced -s -l LOGFILE` runs
//! inside the test's [`Netns`] (its IPC uses abstract unix sockets, which belong to the network
//! namespace, so `stonith_admin` must run in the same one) and inside a private mount namespace
//! (`unshare -m`) in which the binary under test is bind-mounted over `/usr/sbin/<agent>`,
//! because the fencer only looks agents up there. Every action is then run by the fencer
//! exactly as in a cluster: no argv, parameters on stdin.

use std::fs::{self, File};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::agent::AgentOutput;
use crate::bins;
use crate::netns::Netns;
use crate::process::{poll_until, stop};

/// Path of the fencer daemon (Debian `pacemaker`).
pub const FENCED: &str = "/usr/lib/pacemaker/pacemaker-fenced";
/// Path of `stonith_admin` (Debian `pacemaker-cli-utils`).
pub const STONITH_ADMIN: &str = "/usr/sbin/stonith_admin";

/// A running stand-alone fencer; killed on drop (its log is printed if the test panicked).
#[derive(Debug)]
pub struct Fencer {
    child: Child,
    dir: TempDir,
}

impl Fencer {
    /// Starts the fencer in `ns` with `binary` visible to it as `/usr/sbin/<agent_name>`.
    /// Panics if the fencer does not answer `stonith_admin --list-registered` within 20 s.
    pub fn start(ns: &Netns, agent_name: &str, binary: &Path) -> Fencer {
        let fenced = bins::system_tool(FENCED);
        bins::system_tool(STONITH_ADMIN);
        let target = Path::new(bins::REFERENCE_DIR).join(agent_name);
        assert!(
            target.is_file(),
            "{} must exist to be a bind-mount target",
            target.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("fence-pcmk-")
            .tempdir()
            .expect("tempdir");
        let log = dir.path().join("fenced.log");
        let child = ns
            .cmd(bins::system_tool("/usr/bin/unshare"))
            .args(["-m", "--propagation", "private", "/bin/sh", "-c"])
            // `cmp`: the agent the fencer will run is byte for byte the one under test.
            .arg(r#"mount --bind "$1" "$2" && cmp -s "$1" "$2" && exec "$3" -s -l "$4""#)
            .arg("sh")
            .arg(binary)
            .arg(&target)
            .arg(&fenced)
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(File::create(dir.path().join("stdout")).expect("log"))
            .stderr(File::create(dir.path().join("stderr")).expect("log"))
            .spawn()
            .expect("spawn pacemaker-fenced");
        let mut f = Fencer { child, dir };
        let mut exited = false;
        let up = poll_until(Duration::from_secs(20), || {
            if !matches!(f.child.try_wait(), Ok(None)) {
                exited = true;
                return true;
            }
            f.admin(ns, &["--list-registered"], Duration::from_secs(5))
                .code
                == 0
        });
        assert!(
            up && !exited,
            "pacemaker-fenced did not come up:\n{}",
            f.log()
        );
        f
    }

    /// Runs `stonith_admin ARGS` in `ns` (which must be the fencer's namespace).
    pub fn admin(&self, ns: &Netns, args: &[&str], timeout: Duration) -> AgentOutput {
        let mut cmd = ns.cmd(STONITH_ADMIN);
        cmd.args(args);
        crate::agent::run_bounded(cmd, timeout)
    }

    /// The fencer's log file and its stdout/stderr.
    pub fn log(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "---- fenced.log ----\n{}\n---- stdout ----\n{}\n---- stderr ----\n{}",
            read("fenced.log"),
            read("stdout"),
            read("stderr")
        )
    }
}

impl Drop for Fencer {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

/// `pacemaker-fenced` with our `fence_xvm` as its agent, through a daemon reachable in `ns`:
/// register a device with `key` and `host_map` (`node:vm;…`), then fence `victim` (it must be
/// off), unfence it (on again) and reboot `rebooted` (on afterwards). `power(node)` is the VM's
/// state: `Some(true)` on, `Some(false)` off, `None` not known (which fails every check);
/// `op_timeout` bounds each fencer operation and `agent_timeout` is the agent's `timeout`.
pub fn fence_unfence_reboot(
    ns: &Netns,
    key: &Path,
    host_map: &str,
    (victim, rebooted): (&str, &str),
    (agent_timeout, op_timeout): (u32, u32),
    power: &dyn Fn(&str) -> Option<bool>,
) {
    let fencer = Fencer::start(
        ns,
        "fence_xvm",
        &crate::agent::Agent::fence_xvm(bins::Impl::Ours).path(),
    );
    let admin = |args: &[&str]| {
        let out = fencer.admin(ns, args, Duration::from_secs(90));
        assert!(!out.timed_out, "stonith_admin {args:?} hung: {out:?}");
        out
    };
    let key_opt = format!("key_file={}", key.display());
    let timeout_opt = format!("timeout={agent_timeout}");
    let map_opt = format!("pcmk_host_map={host_map}");
    let out = admin(&[
        "--register",
        "dev",
        "--agent",
        "fence_xvm",
        "--option",
        &key_opt,
        "--option",
        &timeout_opt,
        "--option",
        &map_opt,
    ]);
    assert_eq!(out.code, 0, "register: {out:?}");
    let t = op_timeout.to_string();
    let out = admin(&["--fence", victim, "--timeout", &t]);
    assert_eq!(out.code, 0, "fence {victim}: {out:?}\n{}", fencer.log());
    assert_eq!(power(victim), Some(false), "{victim} after the fence");
    let out = admin(&["--unfence", victim, "--timeout", &t]);
    assert_eq!(out.code, 0, "unfence {victim}: {out:?}");
    assert_eq!(power(victim), Some(true), "{victim} after unfencing");
    let out = admin(&["--reboot", rebooted, "--timeout", &t]);
    assert_eq!(out.code, 0, "reboot {rebooted}: {out:?}");
    assert_eq!(power(rebooted), Some(true), "{rebooted} after the reboot");
}
