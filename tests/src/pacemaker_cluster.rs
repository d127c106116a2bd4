//! A live one-node Pacemaker cluster (corosync + `pacemakerd`, Debian `pacemaker`) inside a
//! test's [`Netns`], for host-status tests: the host cluster a `fence_virtd` with pm-monitor
//! reads, or a guest cluster `vm-client` writes attributes into.
//!
//! Each cluster gets a [`Holder`] process (`unshare --mount --uts`) that owns its filesystem view:
//! its own `/var/lib/pacemaker` (bind mount of a temp dir holding a pre-written CIB with
//! `dc-deadtime=2s` and `stonith-enabled=false`, so the node is online and DC in about 5 s), a
//! tmpfs on `/run` (corosync's fixed lock file; `HA_RSCTMP`) and the node name as host name.
//! corosync, pacemakerd and every client tool run there through `nsenter`. Client IPC (libqb)
//! uses abstract unix sockets, which belong to the network namespace, and `/dev/shm`, which is
//! left shared: a program started with plain `ip netns exec` (a `Daemon`) reaches the cluster
//! too. Stopped on drop: SIGTERM to pacemakerd (a clean stop, ~2 s), then corosync, then the
//! holder.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::bins;
use crate::holder::{Holder, HolderSpec};
use crate::netns::Netns;
use crate::process::{poll_until, stop};

pub use crate::corosync_cluster::COROSYNC;
/// pacemakerd (Debian `pacemaker`).
pub const PACEMAKERD: &str = "/usr/sbin/pacemakerd";
pub use crate::holder::NSENTER;

/// A running one-node cluster.
#[derive(Debug)]
pub struct Cluster {
    name: String,
    // Declared before `dir`: killed before the directory it bind-mounts is deleted.
    holder: Holder,
    dir: TempDir,
    corosync: Option<Child>,
    pacemakerd: Option<Child>,
}

fn corosync_conf(name: &str, addr: &str, state_dir: &Path) -> String {
    crate::corosync_cluster::corosync_conf(
        name,
        &[(1, name.to_string(), addr.to_string())],
        state_dir,
        None,
    )
}

/// The initial CIB: no nodes or resources yet, quick DC election, no fencing.
const CIB: &str = r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config><cluster_property_set id="cib-bootstrap-options">
      <nvpair id="opt-stonith" name="stonith-enabled" value="false"/>
      <nvpair id="opt-dc-deadtime" name="dc-deadtime" value="2s"/>
    </cluster_property_set></crm_config>
    <nodes/><resources/><constraints/>
  </configuration>
  <status/>
</cib>
"#;

/// Prepares `dir` (made traversable: the cluster daemons run as hacluster) for one Pacemaker
/// node: `dir/lib`, to be bind-mounted on `/var/lib/pacemaker`, holding the initial [`CIB`],
/// and `dir/log` for its log, both owned by hacluster. Returns `dir/lib`.
pub fn prepare_node_dirs(dir: &Path) -> PathBuf {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let lib = dir.join("lib");
    for sub in ["cib", "pengine", "blackbox", "cores"] {
        fs::create_dir_all(lib.join(sub)).unwrap();
    }
    fs::create_dir_all(dir.join("log")).unwrap();
    fs::write(lib.join("cib/cib.xml"), CIB).unwrap();
    let st = Command::new("/bin/chown")
        .args(["-R", "hacluster:haclient"])
        .arg(&lib)
        .arg(dir.join("log"))
        .status()
        .expect("chown");
    assert!(st.success(), "chown hacluster:haclient failed");
    lib
}

/// Spawns `pacemakerd` (`cmd`: it, run inside the node's holder) logging to
/// `dir/log/pacemaker.log` and `dir/pacemakerd.err`.
pub fn spawn_pacemakerd(mut cmd: Command, dir: &Path) -> Child {
    cmd.env("PCMK_logfile", dir.join("log/pacemaker.log"))
        .env("PCMK_logfacility", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join("pacemakerd.err")).unwrap())
        .spawn()
        .expect("spawn pacemakerd")
}

impl Cluster {
    /// Starts node `name` in `ns` on a veth pair whose end `v0` carries `addr/24` (corosync's
    /// ring address). Panics (with the logs) if it is not online and DC within 40 s.
    pub fn start(ns: &Netns, name: &str, addr: &str) -> Cluster {
        for tool in [
            COROSYNC,
            PACEMAKERD,
            NSENTER,
            "/usr/bin/unshare",
            "/usr/sbin/crm_mon",
        ] {
            bins::system_tool(tool);
        }
        let dir = tempfile::Builder::new()
            .prefix("fence-cluster-")
            .tempdir()
            .expect("tempdir");
        let lib = prepare_node_dirs(dir.path());
        fs::create_dir_all(dir.path().join("corosync")).unwrap();
        fs::write(
            dir.path().join("corosync.conf"),
            corosync_conf(name, addr, &dir.path().join("corosync")),
        )
        .unwrap();
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "v0"]);
        ns.ip(&["link", "set", "v0", "up"]);
        ns.ip(&["link", "set", "v1", "up"]);
        let holder = Holder::start(
            ns,
            &HolderSpec {
                hostname: name.to_string(),
                binds: vec![(lib.clone(), PathBuf::from("/var/lib/pacemaker"))],
                private_shm: false,
            },
            &dir.path().join("holder.err"),
        );
        let mut c = Cluster {
            name: name.to_string(),
            dir,
            holder,
            corosync: None,
            pacemakerd: None,
        };
        let conf = c.dir.path().join("corosync.conf");
        c.corosync = Some(
            c.cmd(COROSYNC)
                .arg("-f")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(c.dir.path().join("corosync.err")).unwrap())
                .spawn()
                .expect("spawn corosync"),
        );
        assert!(
            poll_until(Duration::from_secs(15), || c
                .run(&["corosync-cfgtool", "-s"])
                .status
                .success()),
            "corosync did not come up:\n{}",
            c.log("corosync.err")
        );
        c.pacemakerd = Some(spawn_pacemakerd(c.cmd(PACEMAKERD), c.dir.path()));
        let up = poll_until(Duration::from_secs(40), || {
            let o = c.run(&["crm_mon", "--output-as=xml", "-1"]);
            let x = String::from_utf8_lossy(&o.stdout);
            x.lines().any(|l| {
                l.contains("<node name=")
                    && l.contains(r#"online="true""#)
                    && l.contains(r#"is_dc="true""#)
            })
        });
        assert!(up, "cluster {name} not online within 40 s:\n{}", c.logs());
        c
    }

    /// The node (and cluster) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command running `program` in the cluster's namespaces (network, mount, uts).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.holder.cmd(program)
    }

    /// Runs `argv` there (bounded to 30 s by coreutils `timeout`) and returns its output.
    pub fn run(&self, argv: &[&str]) -> Output {
        self.cmd("/usr/bin/timeout")
            .arg("30")
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("run in cluster")
    }

    /// Like [`run`](Self::run), panicking unless it exits 0; returns stdout.
    pub fn check(&self, argv: &[&str]) -> String {
        let o = self.run(argv);
        assert!(
            o.status.success(),
            "{argv:?} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The node attributes `crm_mon -A` shows for this node (name → value).
    pub fn node_attributes(&self) -> Vec<(String, String)> {
        let x = self.check(&["crm_mon", "--output-as=xml", "-1", "-A"]);
        x.lines()
            .filter_map(|l| {
                let l = l.trim();
                let rest = l.strip_prefix("<attribute name=\"")?;
                let (n, rest) = rest.split_once('"')?;
                let v = rest.split("value=\"").nth(1)?.split('"').next()?;
                Some((n.to_string(), v.to_string()))
            })
            .collect()
    }

    /// The cluster's private directory (logs).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// All logs, for failure messages.
    pub fn logs(&self) -> String {
        let tail = |s: String| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        format!(
            "---- corosync ----\n{}\n---- pacemakerd ----\n{}\n---- pacemaker.log (tail) ----\n{}",
            tail(self.log("corosync.err")),
            tail(self.log("pacemakerd.err")),
            tail(self.log("log/pacemaker.log"))
        )
    }

    /// Stops Pacemaker (clean: SIGTERM, up to 15 s), leaving corosync running.
    pub fn stop_pacemaker(&mut self) {
        if let Some(mut p) = self.pacemakerd.take() {
            stop(&mut p, Duration::from_secs(15));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- cluster {} ----\n{}", self.name, self.logs());
        }
        self.stop_pacemaker();
        if let Some(mut c) = self.corosync.take() {
            stop(&mut c, Duration::from_secs(5));
        }
        // The holder is dropped (killed) after this.
    }
}
