//! Running a `fence_virtd` (reference or ours) inside a [`Netns`]: writes `fence_virt.conf`,
//! the key (both mode 0600, else the C daemon chmods them), and a libvirt test-driver node into
//! a temp dir, starts the daemon with the reference flags `-F -d 99 -f CONF -p PIDFILE` under
//! `stdbuf -oL` (line-buffered logs), captures stdout/stderr to files and waits until its
//! socket is bound and, for multicast, the group is joined (read from the daemon's own
//! `/proc/PID/net/*`, so no log wording is assumed). Stopped on drop.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::agent::{Agent, AgentOutput};
use crate::bins::{self, Impl};
use crate::libvirt_test::TestNode;
use crate::netns::Netns;
use crate::process::{poll_until, stop};

/// Address family of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (group 225.0.0.12).
    V4,
    /// IPv6 (group ff05::3:1, interface v0 of [`Netns::with_ipv6`]).
    V6,
}

/// Default IPv4 multicast group of agents and daemons.
pub const GROUP_V4: &str = "225.0.0.12";
/// Default IPv6 multicast group of agents and daemons.
pub const GROUP_V6: &str = "ff05::3:1";

/// The `listeners { … }` part of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerConfig {
    /// `multicast` listener on the default group of `family`.
    Multicast {
        /// Address family (selects the group and, for V6, `interface = "v0"`).
        family: Family,
        /// UDP port.
        port: u16,
    },
    /// `tcp` listener.
    Tcp {
        /// Address family.
        family: Family,
        /// Bind address (`127.0.0.1`, `::1`, …).
        address: String,
        /// TCP port.
        port: u16,
    },
    /// `vsock` listener on `VMADDR_CID_ANY`.
    Vsock {
        /// vsock port.
        port: u32,
    },
    /// `serial` listener; `mode` is `serial` or `vmchannel`, `path` the socket directory filter.
    Serial {
        /// `serial` or `vmchannel`.
        mode: String,
        /// Optional socket directory filter.
        path: Option<PathBuf>,
    },
}

impl ListenerConfig {
    /// Multicast on the default port 1229 (each test has its own namespace, so no clash).
    pub fn multicast(family: Family) -> ListenerConfig {
        ListenerConfig::Multicast { family, port: 1229 }
    }

    fn name(&self) -> &'static str {
        match self {
            ListenerConfig::Multicast { .. } => "multicast",
            ListenerConfig::Tcp { .. } => "tcp",
            ListenerConfig::Vsock { .. } => "vsock",
            ListenerConfig::Serial { .. } => "serial",
        }
    }
}

/// One `group { … }` of the static access map (`groups` in fence_virt.conf).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// Informational name.
    pub name: Option<String>,
    /// Requester IPs (`ip = "…"`).
    pub ips: Vec<String>,
    /// Targets (`uuid = "…"`, names allowed).
    pub uuids: Vec<String>,
}

/// Everything that goes into one daemon's config directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// The listener block.
    pub listener: ListenerConfig,
    /// `hash = "…"` (None: daemon default sha256).
    pub hash: Option<String>,
    /// `auth = "…"` (None: daemon default sha256).
    pub auth: Option<String>,
    /// Key file content.
    pub key: Vec<u8>,
    /// VMs of the libvirt test driver.
    pub node: TestNode,
    /// `groups { … }`; empty = no groups section (wide open).
    pub groups: Vec<Group>,
    /// Raw text appended to the config.
    pub extra: String,
    /// Backend URI instead of a test-driver node file written from `node` (e.g. a private
    /// libvirtd's, see [`crate::libvirtd`]).
    pub uri: Option<String>,
    /// Another backend instead of libvirt: its name and the body of its `backends/<name>`
    /// block (our daemon only).
    pub backend: Option<(String, String)>,
    /// `host_status = "pm-monitor"` with this body of `backends/pm-monitor` (our daemon only).
    pub host_status: Option<String>,
    /// Extra environment of the daemon process (e.g. `CIB_file` for crm_mon).
    pub env: Vec<(String, String)>,
}

/// The key used by default, the one of the compatibility vectors in `fence-proto`
/// (`proto/testdata/fence-virt-test-key`).
pub const TEST_KEY: &[u8] = b"fence-virt-test-key\n";

impl DaemonConfig {
    /// `listener`, libvirt test driver with [`TestNode::standard`], the test key ([`TEST_KEY`]),
    /// default hash/auth, no groups.
    pub fn new(listener: ListenerConfig) -> DaemonConfig {
        DaemonConfig {
            listener,
            ..DaemonConfig::multicast(Family::V4)
        }
    }

    /// Multicast listener of `family`, libvirt test driver with [`TestNode::standard`], the
    /// test key ([`TEST_KEY`]), default hash/auth, no groups.
    pub fn multicast(family: Family) -> DaemonConfig {
        DaemonConfig {
            listener: ListenerConfig::multicast(family),
            hash: None,
            auth: None,
            key: TEST_KEY.to_vec(),
            node: TestNode::standard(),
            groups: Vec::new(),
            extra: String::new(),
            uri: None,
            backend: None,
            host_status: None,
            env: Vec::new(),
        }
    }

    /// Renders `fence_virt.conf` for a key at `key_path` and libvirt `uri`.
    pub fn render(&self, key_path: &Path, uri: &str) -> String {
        let mut s = String::new();
        let l = &self.listener;
        let backend = self.backend.as_ref().map_or("libvirt", |(n, _)| n.as_str());
        // Our daemon keeps a fence journal (default under /var/lib) and an admin socket
        // (default under /run), and here writes a host map: all in the test's own directory,
        // beside the key. The C daemon ignores these keys (every C-daemon test reads them).
        let journal = key_path.with_file_name("journal.jsonl");
        let _ = writeln!(
            s,
            "fence_virtd {{\n\tlistener = \"{}\";\n\tbackend = \"{backend}\";\n\tjournal = \"{}\";\n\
             \tadmin_socket = \"{}\";\n\thostmap_file = \"{}\";\n\thostmap_rules = \"lower,nofqdn\";\n\
             \thostmap_interval = \"60\";\n{}}}\n",
            l.name(),
            journal.display(),
            key_path.with_file_name("admin.sock").display(),
            key_path.with_file_name("hostmap.json").display(),
            if self.host_status.is_some() {
                "\thost_status = \"pm-monitor\";\n"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "listeners {{\n\t{} {{", l.name());
        let _ = writeln!(s, "\t\tkey_file = \"{}\";", key_path.display());
        if let Some(h) = &self.hash {
            let _ = writeln!(s, "\t\thash = \"{h}\";");
        }
        if let Some(a) = &self.auth {
            let _ = writeln!(s, "\t\tauth = \"{a}\";");
        }
        match l {
            ListenerConfig::Multicast { family, port } => {
                let _ = writeln!(s, "\t\tport = \"{port}\";");
                match family {
                    Family::V4 => {
                        let _ =
                            writeln!(s, "\t\tfamily = \"ipv4\";\n\t\taddress = \"{GROUP_V4}\";");
                    }
                    Family::V6 => {
                        let _ = writeln!(
                            s,
                            "\t\tfamily = \"ipv6\";\n\t\taddress = \"{GROUP_V6}\";\n\t\tinterface = \"v0\";"
                        );
                    }
                }
            }
            ListenerConfig::Tcp {
                family,
                address,
                port,
            } => {
                let fam = if *family == Family::V4 {
                    "ipv4"
                } else {
                    "ipv6"
                };
                let _ = writeln!(
                    s,
                    "\t\tfamily = \"{fam}\";\n\t\taddress = \"{address}\";\n\t\tport = \"{port}\";"
                );
            }
            ListenerConfig::Vsock { port } => {
                let _ = writeln!(s, "\t\tport = \"{port}\";");
            }
            ListenerConfig::Serial { mode, path } => {
                let _ = writeln!(s, "\t\turi = \"{uri}\";\n\t\tmode = \"{mode}\";");
                if let Some(p) = path {
                    let _ = writeln!(s, "\t\tpath = \"{}\";", p.display());
                }
            }
        }
        let _ = writeln!(s, "\t}}\n}}\n");
        let pm = match &self.host_status {
            Some(body) => format!("\tpm-monitor {{\n{body}\n\t}}\n"),
            None => String::new(),
        };
        match &self.backend {
            Some((name, body)) => {
                let _ = writeln!(s, "backends {{\n\t{name} {{\n{body}\n\t}}\n{pm}}}\n");
            }
            None => {
                let _ = writeln!(
                    s,
                    "backends {{\n\tlibvirt {{\n\t\turi = \"{uri}\";\n\t}}\n{pm}}}\n"
                );
            }
        }
        if !self.groups.is_empty() {
            s.push_str("groups {\n");
            for g in &self.groups {
                s.push_str("\tgroup {\n");
                if let Some(n) = &g.name {
                    let _ = writeln!(s, "\t\tname = \"{n}\";");
                }
                for ip in &g.ips {
                    let _ = writeln!(s, "\t\tip = \"{ip}\";");
                }
                for u in &g.uuids {
                    let _ = writeln!(s, "\t\tuuid = \"{u}\";");
                }
                s.push_str("\t}\n");
            }
            s.push_str("}\n");
        }
        s.push_str(&self.extra);
        s
    }
}

/// Writes `content` to `path` with mode 0600.
pub fn write_private(path: &Path, content: &[u8]) {
    fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
}

/// A running daemon. Stopped (SIGTERM, then SIGKILL) on drop; its logs are printed to stderr
/// when dropped during a panic.
#[derive(Debug)]
pub struct Daemon {
    which: Impl,
    child: Child,
    dir: TempDir,
    key_path: PathBuf,
    conf_path: PathBuf,
    uri: String,
    listener: ListenerConfig,
}

/// A `/proc/net/{udp,tcp}[6]` table contains a local socket on `port` in state `state` (hex).
fn proc_net_has(table: &str, port: u16, state: &str) -> bool {
    let want = format!(":{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1].ends_with(&want) && f[3] == state
    })
}

/// `/proc/net/igmp` (IPv4, little-endian hex per group) or `igmp6` lists `group`.
fn group_joined(pid: u32, family: Family) -> bool {
    match family {
        Family::V4 => fs::read_to_string(format!("/proc/{pid}/net/igmp"))
            // 225.0.0.12 as the kernel prints it (host byte order hex).
            .map(|t| t.contains("0C0000E1"))
            .unwrap_or(false),
        Family::V6 => fs::read_to_string(format!("/proc/{pid}/net/igmp6"))
            .map(|t| t.contains("ff050000000000000000000000030001"))
            .unwrap_or(false),
    }
}

impl Daemon {
    /// Starts `which` fence_virtd in `ns` with `cfg`; panics if it exits or is not ready
    /// within 10 s (with its logs in the message).
    pub fn start(ns: &Netns, which: Impl, cfg: &DaemonConfig) -> Daemon {
        Self::start_with(which, cfg, |program| ns.cmd(program))
    }

    /// Like [`start`](Self::start), with `launch(program)` making the command that runs a
    /// program where the daemon belongs (e.g. a cluster node's
    /// [`Holder::cmd`](crate::holder::Holder::cmd)); it must exec the program, not fork it, so
    /// the child's pid is the daemon's.
    pub fn start_with(
        which: Impl,
        cfg: &DaemonConfig,
        launch: impl Fn(&Path) -> std::process::Command,
    ) -> Daemon {
        let bin = bins::path(which, "fence_virtd");
        let dir = tempfile::Builder::new()
            .prefix("fence-daemon-")
            .tempdir()
            .expect("tempdir");
        let key_path = dir.path().join("fence_xvm.key");
        write_private(&key_path, &cfg.key);
        let uri = match &cfg.uri {
            Some(u) => u.clone(),
            None => cfg.node.write(dir.path()),
        };
        let conf_path = dir.path().join("fence_virt.conf");
        write_private(&conf_path, cfg.render(&key_path, &uri).as_bytes());
        let pid_path = dir.path().join("fence_virtd.pid");
        let stdout = File::create(dir.path().join("stdout.log")).expect("log file");
        let stderr = File::create(dir.path().join("stderr.log")).expect("log file");
        let child = launch(&bins::system_tool("/usr/bin/stdbuf"))
            .arg("-oL")
            .arg(&bin)
            .args(["-F", "-d", "99", "-f"])
            .arg(&conf_path)
            .arg("-p")
            .arg(&pid_path)
            .envs(cfg.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut d = Daemon {
            which,
            child,
            dir,
            key_path,
            conf_path,
            uri,
            listener: cfg.listener.clone(),
        };
        d.wait_ready(&cfg.listener);
        d
    }

    fn wait_ready(&mut self, l: &ListenerConfig) {
        let pid = self.child.id();
        let mut exited = None;
        let ready = poll_until(Duration::from_secs(10), || {
            if let Ok(Some(st)) = self.child.try_wait() {
                exited = Some(st);
                return true;
            }
            let read =
                |t: &str| fs::read_to_string(format!("/proc/{pid}/net/{t}")).unwrap_or_default();
            match l {
                ListenerConfig::Multicast { family, port } => {
                    let table = if *family == Family::V4 { "udp" } else { "udp6" };
                    proc_net_has(&read(table), *port, "07") && group_joined(pid, *family)
                }
                ListenerConfig::Tcp { port, .. } => {
                    proc_net_has(&read("tcp"), *port, "0A")
                        || proc_net_has(&read("tcp6"), *port, "0A")
                }
                ListenerConfig::Vsock { .. } | ListenerConfig::Serial { .. } => {
                    // No socket of its own: ready once it has written its first log line
                    // (C logs to stdout, ours to stderr).
                    !self.stdout().is_empty() || !self.stderr().is_empty()
                }
            }
        });
        if let Some(st) = exited {
            panic!(
                "{} fence_virtd exited during start-up ({st})\nconfig:\n{}\nstdout:\n{}\nstderr:\n{}",
                self.which,
                fs::read_to_string(&self.conf_path).unwrap_or_default(),
                self.stdout(),
                self.stderr()
            );
        }
        assert!(
            ready,
            "{} fence_virtd not ready after 10 s\nstdout:\n{}\nstderr:\n{}",
            self.which,
            self.stdout(),
            self.stderr()
        );
    }

    /// Path of the key file (give it to the agents with `-k`).
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The daemon's private directory (config, key, node.xml, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The libvirt URI of its test node.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Pid of the daemon process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Run `which` agent in `ns` against this daemon with its key and `-t timeout_s`: fence_xvm
    /// for a multicast listener, fence_virt `-T address -p port` for a tcp one. Bounded by the
    /// agent's timeout plus 15 s.
    pub fn agent(&self, ns: &Netns, which: Impl, args: &[&str], timeout_s: u32) -> AgentOutput {
        let key = self.key_path.display().to_string();
        let t = timeout_s.to_string();
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["-k", &key, "-t", &t]);
        let limit = Duration::from_secs(u64::from(timeout_s) + 15);
        match &self.listener {
            ListenerConfig::Tcp { address, port, .. } => {
                let port = port.to_string();
                v.extend(["-T", address, "-p", &port]);
                Agent::fence_virt(which).run_args(ns, &v, limit)
            }
            ListenerConfig::Multicast { .. } => Agent::fence_xvm(which).run_args(ns, &v, limit),
            other => panic!("Daemon::agent: no agent for {other:?}"),
        }
    }

    /// Stop it (SIGTERM, then SIGKILL after `grace`) and say how it ended.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        crate::process::stop(&mut self.child, grace)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Captured stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Captured stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_secs(3));
        if std::thread::panicking() {
            eprintln!(
                "---- {} fence_virtd stdout ----\n{}\n---- stderr ----\n{}",
                self.which,
                self.stdout(),
                self.stderr()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_parsing() {
        let t = "  sl  local_address rem_address   st\n   0: 00000000:04CD 00000000:0000 07 x\n";
        assert!(proc_net_has(t, 1229, "07"));
        assert!(!proc_net_has(t, 1229, "0A"));
        assert!(!proc_net_has(t, 1230, "07"));
    }

    #[test]
    fn render_has_listener_groups_and_uri() {
        let mut c = DaemonConfig::multicast(Family::V6);
        c.hash = Some("sha512".into());
        c.groups.push(Group {
            name: None,
            ips: vec!["127.0.0.1".into()],
            uuids: vec!["vm2".into()],
        });
        let t = c.render(Path::new("/k"), "test:///n.xml");
        assert!(t.contains("listener = \"multicast\";"));
        assert!(t.contains("interface = \"v0\";"));
        assert!(t.contains("hash = \"sha512\";"));
        assert!(t.contains("uri = \"test:///n.xml\";"));
        assert!(t.contains("ip = \"127.0.0.1\";"));
    }

    #[test]
    fn reference_daemon_starts_and_stops() {
        let ns = Netns::new();
        let mut d = Daemon::start(&ns, Impl::C, &DaemonConfig::multicast(Family::V4));
        assert!(d.is_running());
        let mode = fs::metadata(d.key_path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let pid = d.pid();
        drop(d);
        assert!(!ns.pids().contains(&pid));
    }
}
