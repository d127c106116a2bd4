//! A private network namespace per test: loopback up with multicast enabled and the IPv4
//! multicast range routed to `lo`, so that the C `fence_xvm` (which multicasts from every local
//! address) only ever talks to the daemon of this test. Optionally a veth pair `v0`/`v1` with
//! `fd00:fb::1/64` on `v0` and `ff05::/16` routed to `v0`, because the C agent never sends from
//! `::1`.
//!
//! The namespace is deleted on drop, after killing every process still inside it (all of them
//! were started by this test: the namespace name is unique to this process and counter).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::Signal;

use crate::process::{poll_until, signal};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Path of the `ip` tool.
pub const IP: &str = "/usr/sbin/ip";

/// The IPv6 address given to `v0` by [`Netns::with_ipv6`].
pub const V6_ADDR: &str = "fd00:fb::1";

/// A network namespace owned by the current test.
#[derive(Debug)]
pub struct Netns {
    name: String,
    ipv6: bool,
}

fn run_checked(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn require_root_and_ip() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "system tests need root (network namespaces, bind mounts)"
    );
    assert!(
        Path::new(IP).is_file(),
        "{IP} is missing: install iproute2 (scripts/install-peers.sh)"
    );
}

impl Netns {
    /// Creates `fencetest-<pid>-<n>` with loopback multicast (IPv4 only).
    pub fn new() -> Netns {
        Self::create(false)
    }

    /// Like [`Netns::new`], plus the veth pair `v0`/`v1` carrying `fd00:fb::1/64` (nodad) on
    /// `v0` and `ff05::/16 dev v0 table local`, for IPv6 multicast with the C agent.
    pub fn with_ipv6() -> Netns {
        Self::create(true)
    }

    fn create(ipv6: bool) -> Netns {
        require_root_and_ip();
        let name = format!(
            "fencetest-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run_checked(Command::new(IP).args(["netns", "add", &name]));
        // From here on, Drop cleans up even if a later step panics.
        let ns = Netns { name, ipv6 };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["link", "set", "lo", "multicast", "on"]);
        ns.ip(&["route", "replace", "224.0.0.0/4", "dev", "lo"]);
        if ipv6 {
            ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
            ns.ip(&["link", "set", "v0", "up"]);
            ns.ip(&["link", "set", "v1", "up"]);
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{V6_ADDR}/64"),
                "dev",
                "v0",
                "nodad",
            ]);
            ns.ip(&[
                "-6",
                "route",
                "replace",
                "ff05::/16",
                "dev",
                "v0",
                "table",
                "local",
            ]);
        }
        ns
    }

    /// The namespace name (`fencetest-…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the IPv6 veth pair was set up.
    pub fn has_ipv6(&self) -> bool {
        self.ipv6
    }

    /// Runs `ip ARGS` inside the namespace and panics on failure.
    pub fn ip(&self, args: &[&str]) -> Output {
        run_checked(self.cmd(IP).args(args))
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`).
    ///
    /// `ip netns exec` execs the program, so the child's pid is the program's pid.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(IP);
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Path of the namespace handle (`/run/netns/NAME`).
    pub fn handle_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `f` on a fresh thread that has joined this namespace and returns its result.
    ///
    /// Sockets created by `f` stay in the namespace after they are returned, so the test process
    /// can talk to daemons inside it directly.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let handle = File::open(self.handle_path())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.handle_path().display()));
        std::thread::spawn(move || {
            setns(&handle, CloneFlags::CLONE_NEWNET).expect("setns into test namespace");
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// Pids of the processes currently inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        let out = Command::new(IP)
            .args(["netns", "pids", &self.name])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill on every pass: a process still on its way in (`ip netns exec` joins after its
        // spawn returned) shows up only on a later listing.
        poll_until(Duration::from_secs(5), || {
            let pids = self.pids();
            for &pid in &pids {
                signal(pid, Signal::SIGKILL);
            }
            pids.is_empty()
        });
        let st = Command::new(IP)
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(st, Ok(s) if s.success()) && !std::thread::panicking() {
            panic!("could not delete network namespace {}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_created_configured_and_removed() {
        let ns = Netns::with_ipv6();
        let path = ns.handle_path();
        assert!(path.exists());
        let routes = ns.ip(&["route", "show", "table", "all"]);
        let routes = String::from_utf8_lossy(&routes.stdout);
        assert!(routes.contains("224.0.0.0/4 dev lo"), "{routes}");
        let addrs = ns.ip(&["-6", "addr", "show", "dev", "v0"]);
        assert!(String::from_utf8_lossy(&addrs.stdout).contains("fd00:fb::1/64"));
        let mut sleeper = ns.cmd("sleep").arg("60").spawn().unwrap();
        // `ip netns exec` joins the namespace after the spawn returns: wait for it to get there.
        let id = sleeper.id();
        assert!(
            poll_until(Duration::from_secs(10), || ns.pids().contains(&id)),
            "the child never showed up in the namespace"
        );
        drop(ns);
        assert!(!path.exists());
        assert!(sleeper.wait().is_ok());
    }

    #[test]
    fn run_in_sees_only_the_namespace_interfaces() {
        let ns = Netns::new();
        let v = ns.run_in(|| std::fs::read_to_string("/proc/thread-self/net/dev").unwrap());
        assert!(v.contains("lo:"), "{v}");
        assert_eq!(v.lines().count(), 3, "only lo expected: {v}");
    }
}
