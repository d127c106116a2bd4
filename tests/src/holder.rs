//! A "holder" process that owns one cluster node's filesystem view and host name: started as
//! `ip netns exec NS unshare --mount --uts --propagation private`, it bind-mounts the node's own
//! directories, mounts a tmpfs on `/run` (corosync's fixed lock file `/run/corosync.pid`) and
//! optionally on `/dev/shm` (libqb ring buffers and blackbox files stay private and vanish with
//! the node), sets the host name, then sleeps. Every daemon and client of that node is started
//! with `nsenter -t HOLDER -m -n -u`, so they all share the node's network, mount and UTS
//! namespaces (`ip netns exec` alone would make a new mount namespace per call).
//!
//! Killed (by pid) on drop.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::bins;
use crate::netns::Netns;
use crate::process::{poll_until, stop};

/// nsenter (util-linux).
pub const NSENTER: &str = "/usr/bin/nsenter";
/// unshare (util-linux).
pub const UNSHARE: &str = "/usr/bin/unshare";

/// What a holder sets up.
#[derive(Debug, Clone, Default)]
pub struct HolderSpec {
    /// Host name inside the node's UTS namespace.
    pub hostname: String,
    /// `(source, target)` bind mounts.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Also a private tmpfs on `/dev/shm`.
    pub private_shm: bool,
}

/// A running holder.
#[derive(Debug)]
pub struct Holder {
    child: Child,
    err: PathBuf,
}

impl Holder {
    /// Starts a holder in `ns`; its stderr goes to `err`. Panics if it has not finished its
    /// mounts within 10 s.
    pub fn start(ns: &Netns, spec: &HolderSpec, err: &Path) -> Holder {
        bins::system_tool(NSENTER);
        bins::system_tool(UNSHARE);
        // Paths are passed as positional parameters: no quoting of test paths in the script.
        let mut script = String::new();
        let mut args: Vec<&OsStr> = Vec::new();
        for (src, dst) in &spec.binds {
            let n = args.len();
            script.push_str(&format!("mount --bind \"${}\" \"${}\" && ", n + 1, n + 2));
            args.push(src.as_os_str());
            args.push(dst.as_os_str());
        }
        script.push_str("mount -t tmpfs tmpfs /run && ");
        if spec.private_shm {
            script.push_str("mount -t tmpfs tmpfs /dev/shm && ");
        }
        args.push(OsStr::new(&spec.hostname));
        script.push_str(&format!("hostname \"${}\" && exec sleep 86400", args.len()));
        let child = ns
            .cmd(UNSHARE)
            .args([
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "/bin/sh",
                "-c",
            ])
            .arg(&script)
            .arg("sh")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(err).expect("holder log"))
            .spawn()
            .expect("spawn holder");
        let mut h = Holder {
            child,
            err: err.to_path_buf(),
        };
        let pid = h.child.id();
        let ok = poll_until(Duration::from_secs(10), || {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|s| s.trim() == "sleep")
        });
        assert!(
            ok && matches!(h.child.try_wait(), Ok(None)),
            "holder did not set up its mounts: {}",
            fs::read_to_string(&h.err).unwrap_or_default()
        );
        h
    }

    /// Pid of the holder (the `sleep`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A command running `program` in the holder's network, mount and UTS namespaces.
    /// `nsenter` execs the program (no pid namespace), so the child's pid is the program's.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(NSENTER);
        c.args(["-t", &self.child.id().to_string(), "-m", "-n", "-u", "--"])
            .arg(program);
        c
    }

    /// Runs `argv` there, bounded to `limit` by coreutils `timeout`, and returns its output.
    pub fn run(&self, argv: &[&str], limit: Duration) -> Output {
        self.cmd("/usr/bin/timeout")
            .arg(format!("{}", limit.as_secs().max(1)))
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("run in holder")
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(2));
    }
}
