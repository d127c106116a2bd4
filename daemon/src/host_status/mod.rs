//! Host status for guest clusters: the `pm-monitor` provider behind `host_status =
//! "pm-monitor"`, answering op 32 (HOSTSTATUS) with one attribute of this host as the host's
//! Pacemaker cluster sees it.
//!
//! **Source of truth: `crm_mon --output-as=xml -1 -A`**, not `cibadmin -Q`. crm_mon's XML is a
//! stable, schema-validated API (`/usr/share/pacemaker/api/crm_mon-*.rng`) in which Pacemaker
//! itself has already computed each node's state (online, standby, maintenance, unclean) from
//! membership, the CIB status section and cluster options; from the raw CIB we would have to
//! re-implement those rules (in_ccm/crmd/join/expected, standby nvpairs vs. `-l reboot`
//! attributes, the cluster-wide `maintenance-mode`). crm_mon also merges permanent and transient
//! node attributes, and honours `CIB_file=` so tests run the real program on hand-written CIBs.
//!
//! One reading serves every asker for `cache` seconds; at most one crm_mon runs at a time and
//! askers arriving while it runs share its result (an asker never gets a reading that started
//! before it asked once `cache` has passed). crm_mon runs under a deadline and is killed when it
//! passes; failures (Pacemaker down, too slow, garbage) are cached like readings, so a storm of
//! guests cannot start a storm of crm_mon runs, and logged at most once a minute.
//!
//! Pseudo-attributes, always allowed: `#state` (`online`, `standby`, `maintenance`,
//! `offline`, `unclean`) and `#node` (the node name used). Other attributes must be on the
//! `attributes` allow-list; one the node does not have is answered with an empty value (as
//! `attrd_updater -Q` prints a deleted attribute). Values pass through the [`rules`] first.

pub mod crm_xml;
pub mod rules;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::config::PmMonitorConfig;
use crm_xml::Snapshot;
use rules::{Rules, RulesError};

/// How long one crm_mon (or crm_node) run may take before it is killed.
pub const PACEMAKER_DEADLINE: Duration = Duration::from_secs(5);
/// Largest crm_mon output accepted.
pub const MAX_OUTPUT: u64 = 8 << 20;
/// Minimum spacing of repeated failure log lines of one kind.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Why an attribute cannot be answered (the requester gets RESP_FAIL).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HostStatusError {
    /// Not on the allow-list.
    #[error("attribute {0:?} is not on the pm-monitor allow-list")]
    NotAllowed(String),
    /// Pacemaker could not be read (not running, too slow, garbage).
    #[error("cannot read Pacemaker state: {0}")]
    Pacemaker(String),
    /// Pacemaker does not list this node.
    #[error("Pacemaker does not list node {0:?}")]
    UnknownNode(String),
    /// The (converted) value does not fit the 63-byte answer field.
    #[error("value of {0:?} is longer than 63 bytes")]
    TooLong(String),
}

/// The programs run (replaceable for tests).
#[derive(Debug, Clone)]
pub struct Commands {
    /// `crm_mon`.
    pub crm_mon: PathBuf,
    /// `crm_node` (asked for this node's name when `node` is not configured).
    pub crm_node: PathBuf,
    /// Extra environment (tests: `CIB_file`).
    pub env: Vec<(String, String)>,
    /// Deadline of one run.
    pub deadline: Duration,
}

impl Default for Commands {
    fn default() -> Commands {
        Commands {
            crm_mon: "crm_mon".into(),
            crm_node: "crm_node".into(),
            env: Vec::new(),
            deadline: PACEMAKER_DEADLINE,
        }
    }
}

/// One reading (or failure) and when it started.
struct Reading {
    started: Instant,
    result: Result<(Arc<Snapshot>, String), String>,
}

/// Rate limit for one kind of log line.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(suppressed count)` when a line may be written now.
    fn pass(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The pm-monitor host-status provider.
pub struct PmMonitor {
    node: Option<String>,
    allow: Vec<String>,
    rules_path: Option<PathBuf>,
    rules: parking_lot::RwLock<Arc<Rules>>,
    cache: Duration,
    commands: Commands,
    reading: tokio::sync::Mutex<Option<Reading>>,
    resolved_node: parking_lot::Mutex<Option<String>>,
    fail_log: parking_lot::Mutex<Throttle>,
    deny_log: parking_lot::Mutex<Throttle>,
    failing: std::sync::atomic::AtomicBool,
    runs: AtomicU64,
}

impl PmMonitor {
    /// A provider for `cfg`, running the real Pacemaker tools; reads the rules file (a bad one
    /// is an error here: the daemon does not start with it).
    pub fn new(cfg: &PmMonitorConfig) -> Result<PmMonitor, RulesError> {
        PmMonitor::with_commands(cfg, Commands::default())
    }

    /// Like [`new`](Self::new) with other programs or environment.
    pub fn with_commands(
        cfg: &PmMonitorConfig,
        commands: Commands,
    ) -> Result<PmMonitor, RulesError> {
        let rules = match &cfg.rules {
            Some(p) => Rules::load(p)?,
            None => Rules::default(),
        };
        Ok(PmMonitor {
            node: cfg.node.clone(),
            allow: cfg.attributes.clone(),
            rules_path: cfg.rules.clone(),
            rules: parking_lot::RwLock::new(Arc::new(rules)),
            cache: Duration::from_secs(cfg.cache_secs),
            commands,
            reading: tokio::sync::Mutex::new(None),
            resolved_node: parking_lot::Mutex::new(None),
            fail_log: Default::default(),
            deny_log: Default::default(),
            failing: Default::default(),
            runs: AtomicU64::new(0),
        })
    }

    /// How many times crm_mon was started.
    pub fn crm_mon_runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Re-read the rules file (SIGHUP). A file that cannot be read or has a bad line leaves
    /// the rules in force unchanged; the error names file and line.
    pub fn reload_rules(&self) -> Result<(), RulesError> {
        let Some(p) = &self.rules_path else {
            return Ok(());
        };
        match Rules::load(p) {
            Ok(r) => {
                *self.rules.write() = Arc::new(r);
                tracing::info!(rules = %p.display(), "pm-monitor rules reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "pm-monitor rules not reloaded; keeping the previous rules");
                Err(e)
            }
        }
    }

    /// The answer for `attribute`, logging failures (rate-limited).
    pub async fn answer(&self, attribute: &str, src: &str) -> Result<String, HostStatusError> {
        let r = self.ask(attribute).await;
        match &r {
            Ok(v) => tracing::debug!(attribute, value = %v, src, "host status answered"),
            Err(e @ HostStatusError::NotAllowed(_)) => {
                if let Some(suppressed) = self.deny_log.lock().pass() {
                    tracing::warn!(error = %e, src, suppressed, "host status refused");
                }
            }
            // Pacemaker failures are logged once per reading by `reading`.
            Err(HostStatusError::Pacemaker(_)) => {}
            Err(e) => {
                if let Some(suppressed) = self.fail_log.lock().pass() {
                    tracing::error!(error = %e, src, suppressed, "host status failed");
                }
            }
        }
        r
    }

    /// The answer for `attribute`.
    pub async fn ask(&self, attribute: &str) -> Result<String, HostStatusError> {
        let pseudo = attribute == "#state" || attribute == "#node";
        if !pseudo && !self.allow.iter().any(|a| a == attribute) {
            return Err(HostStatusError::NotAllowed(attribute.to_string()));
        }
        let (snap, node) = self.reading().await.map_err(HostStatusError::Pacemaker)?;
        let value = match attribute {
            "#node" => node.clone(),
            "#state" => snap
                .state(&node)
                .ok_or_else(|| HostStatusError::UnknownNode(node.clone()))?
                .to_string(),
            _ => {
                if !snap.nodes.contains_key(&node) {
                    return Err(HostStatusError::UnknownNode(node));
                }
                match snap.attributes.get(&node).and_then(|a| a.get(attribute)) {
                    Some(v) => v.clone(),
                    None => return Ok(String::new()),
                }
            }
        };
        let rules = self.rules.read().clone();
        let out = rules.apply(attribute, &value);
        if out.len() >= fence_proto::HOSTSTATUS_VALUE_LEN || out.contains('\0') {
            return Err(HostStatusError::TooLong(attribute.to_string()));
        }
        Ok(out.to_string())
    }

    /// A reading no older than `cache`, and never one that started before this call once the
    /// cache period has passed; at most one crm_mon at a time.
    async fn reading(&self) -> Result<(Arc<Snapshot>, String), String> {
        let asked = Instant::now();
        let mut slot = self.reading.lock().await;
        if let Some(r) = slot.as_ref() {
            if r.started >= asked || r.started.elapsed() < self.cache {
                return r.result.clone();
            }
        }
        let started = Instant::now();
        let result = self.read_pacemaker().await;
        match &result {
            Ok(_) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("Pacemaker state readable again");
                }
            }
            Err(e) => {
                self.failing.store(true, Ordering::Relaxed);
                if let Some(suppressed) = self.fail_log.lock().pass() {
                    tracing::error!(error = %e, suppressed, "cannot read Pacemaker state; answering host status with failure");
                }
            }
        }
        *slot = Some(Reading {
            started,
            result: result.clone(),
        });
        result
    }

    async fn read_pacemaker(&self) -> Result<(Arc<Snapshot>, String), String> {
        let node = self.node_name().await;
        self.runs.fetch_add(1, Ordering::Relaxed);
        let out = self
            .run(&self.commands.crm_mon, &["--output-as=xml", "-1", "-A"])
            .await
            .map_err(|e| format!("crm_mon: {e}"))?;
        let text =
            String::from_utf8(out).map_err(|_| "crm_mon: output is not UTF-8".to_string())?;
        let snap = crm_xml::parse(&text).map_err(|e| format!("crm_mon: {e}"))?;
        Ok((Arc::new(snap), node))
    }

    /// The configured node name, else what `crm_node -n` says (remembered once it answered),
    /// else the host name.
    async fn node_name(&self) -> String {
        if let Some(n) = &self.node {
            return n.clone();
        }
        if let Some(n) = self.resolved_node.lock().clone() {
            return n;
        }
        match self.run(&self.commands.crm_node, &["-n"]).await {
            Ok(out) => {
                let n = String::from_utf8_lossy(&out).trim().to_string();
                if !n.is_empty() && !n.contains(char::is_whitespace) {
                    *self.resolved_node.lock() = Some(n.clone());
                    return n;
                }
            }
            Err(e) => tracing::debug!(error = %e, "crm_node -n failed; using the host name"),
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    }

    /// Run a Pacemaker tool: stdout (at most [`MAX_OUTPUT`] bytes) when it exits 0 in time;
    /// killed at the deadline.
    async fn run(&self, program: &std::path::Path, args: &[&str]) -> Result<Vec<u8>, String> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        for (k, v) in &self.commands.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let mut stdout = child.stdout.take().expect("piped");
        let work = async {
            let mut out = Vec::new();
            (&mut stdout)
                .take(MAX_OUTPUT + 1)
                .read_to_end(&mut out)
                .await
                .map_err(|e| format!("reading output: {e}"))?;
            if out.len() as u64 > MAX_OUTPUT {
                return Err(format!("output larger than {MAX_OUTPUT} bytes"));
            }
            let st = child.wait().await.map_err(|e| format!("waiting: {e}"))?;
            if !st.success() {
                return Err(format!("exited with {st}"));
            }
            Ok(out)
        };
        match tokio::time::timeout(self.commands.deadline, work).await {
            Ok(r) => r,
            // Dropping `work` drops the child: kill_on_drop kills it, tokio reaps it.
            Err(_) => Err(format!(
                "no answer within {:?}; killed",
                self.commands.deadline
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    pub(crate) const ONLINE: &str =
        r#"in_ccm="true" crmd="online" join="member" expected="member""#;
    const DOWN: &str = r#"in_ccm="false" crmd="offline" join="down" expected="down""#;
    const LOST: &str = r#"in_ccm="false" crmd="offline" join="down" expected="member""#;

    /// A hand-written CIB: node host1 with `state` (node_state attributes), permanent
    /// `nvpairs` and transient `transient` attributes; host2 online with pingd 7.
    pub(crate) fn cib(options: &str, state: &str, nvpairs: &str, transient: &str) -> String {
        format!(
            r#"<cib crm_feature_set="3.16.1" validate-with="pacemaker-3.9" epoch="5" num_updates="0" admin_epoch="0" have-quorum="1" dc-uuid="2">
  <configuration>
    <crm_config><cluster_property_set id="opts">{options}</cluster_property_set></crm_config>
    <nodes>
      <node id="1" uname="host1"><instance_attributes id="n1">{nvpairs}</instance_attributes></node>
      <node id="2" uname="host2"/>
    </nodes>
    <resources/><constraints/>
  </configuration>
  <status>
    <node_state id="1" uname="host1" {state}>
      <transient_attributes id="1"><instance_attributes id="t1">{transient}</instance_attributes></transient_attributes>
    </node_state>
    <node_state id="2" uname="host2" {ONLINE}>
      <transient_attributes id="2"><instance_attributes id="t2"><nvpair id="t2p" name="pingd" value="7"/></instance_attributes></transient_attributes>
    </node_state>
  </status>
</cib>"#
        )
    }

    pub(crate) fn nv(name: &str, value: &str) -> String {
        format!(
            r#"<nvpair id="{name}-{}" name="{name}" value="{value}"/>"#,
            value.len()
        )
    }

    fn cfg(
        node: Option<&str>,
        attributes: &[&str],
        rules: Option<&Path>,
        cache: u64,
    ) -> PmMonitorConfig {
        PmMonitorConfig {
            node: node.map(str::to_string),
            attributes: attributes.iter().map(|s| s.to_string()).collect(),
            rules: rules.map(Path::to_path_buf),
            cache_secs: cache,
        }
    }

    /// A monitor of `node` reading `cib_file` through the real crm_mon.
    pub(crate) fn on_file(
        cib_file: &Path,
        node: Option<&str>,
        rules: Option<&Path>,
        cache: u64,
    ) -> PmMonitor {
        PmMonitor::with_commands(
            &cfg(node, &["pingd", "long", "rack"], rules, cache),
            Commands {
                env: vec![("CIB_file".into(), cib_file.display().to_string())],
                deadline: Duration::from_secs(20),
                ..Commands::default()
            },
        )
        .unwrap()
    }

    async fn state_of(cib_text: &str) -> Result<String, HostStatusError> {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("cib.xml");
        std::fs::write(&f, cib_text).unwrap();
        on_file(&f, Some("host1"), None, 2).ask("#state").await
    }

    const NO_STONITH: &str = r#"<nvpair id="o1" name="stonith-enabled" value="false"/>"#;
    const STONITH: &str = r#"<nvpair id="o1" name="stonith-enabled" value="true"/>"#;

    #[tokio::test]
    async fn state_follows_the_cib() {
        let ok = |s: &str| Ok::<_, HostStatusError>(s.to_string());
        assert_eq!(
            state_of(&cib(NO_STONITH, ONLINE, "", "")).await,
            ok("online")
        );
        assert_eq!(
            state_of(&cib(NO_STONITH, DOWN, "", "")).await,
            ok("offline")
        );
        assert_eq!(state_of(&cib(STONITH, LOST, "", "")).await, ok("unclean"));
        assert_eq!(
            state_of(&cib(NO_STONITH, ONLINE, &nv("standby", "on"), "")).await,
            ok("standby")
        );
        assert_eq!(
            state_of(&cib(NO_STONITH, ONLINE, &nv("maintenance", "true"), "")).await,
            ok("maintenance")
        );
        let cluster_maint = format!("{NO_STONITH}{}", nv("maintenance-mode", "true"));
        assert_eq!(
            state_of(&cib(&cluster_maint, ONLINE, "", "")).await,
            ok("maintenance")
        );
        // Offline wins over standby; unclean over everything.
        assert_eq!(
            state_of(&cib(NO_STONITH, DOWN, &nv("standby", "on"), "")).await,
            ok("offline")
        );
        // A partition without quorum: not "online" (nor standby/maintenance); offline and
        // unclean still win.
        let noq = |c: String| c.replace(r#"have-quorum="1""#, r#"have-quorum="0""#);
        assert_eq!(
            state_of(&noq(cib(NO_STONITH, ONLINE, "", ""))).await,
            ok("noquorum")
        );
        assert_eq!(
            state_of(&noq(cib(NO_STONITH, ONLINE, &nv("standby", "on"), ""))).await,
            ok("noquorum")
        );
        assert_eq!(
            state_of(&noq(cib(NO_STONITH, DOWN, "", ""))).await,
            ok("offline")
        );
        assert_eq!(
            state_of(&noq(cib(STONITH, LOST, "", ""))).await,
            ok("unclean")
        );
    }

    #[tokio::test]
    async fn attributes_allow_list_missing_and_too_long() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("cib.xml");
        let long = "v".repeat(64);
        std::fs::write(
            &f,
            cib(
                NO_STONITH,
                ONLINE,
                &nv("rack", "A"),
                &format!(
                    "{}{}{}",
                    nv("pingd", "100"),
                    nv("long", &long),
                    nv("secret", "s")
                ),
            ),
        )
        .unwrap();
        let m = on_file(&f, Some("host1"), None, 2);
        assert_eq!(m.ask("pingd").await.unwrap(), "100");
        assert_eq!(
            m.ask("rack").await.unwrap(),
            "A",
            "permanent attributes too"
        );
        assert_eq!(m.ask("#node").await.unwrap(), "host1");
        assert_eq!(
            m.ask("secret").await,
            Err(HostStatusError::NotAllowed("secret".into()))
        );
        assert_eq!(
            m.ask("long").await,
            Err(HostStatusError::TooLong("long".into()))
        );
        // 63 bytes fit.
        std::fs::write(&f, cib(NO_STONITH, ONLINE, "", &nv("long", &long[..63]))).unwrap();
        let m = on_file(&f, Some("host1"), None, 0);
        assert_eq!(m.ask("long").await.unwrap(), long[..63]);
        assert_eq!(
            m.ask("pingd").await.unwrap(),
            "",
            "missing attribute: empty value"
        );
        // Offline: the transient attributes are gone.
        std::fs::write(&f, cib(NO_STONITH, DOWN, "", &nv("pingd", "100"))).unwrap();
        assert_eq!(m.ask("pingd").await.unwrap(), "");
        // Another node's attributes are not ours; a node Pacemaker does not know is an error.
        let other = on_file(&f, Some("host2"), None, 0);
        assert_eq!(other.ask("pingd").await.unwrap(), "7");
        let nobody = on_file(&f, Some("host9"), None, 0);
        assert_eq!(
            nobody.ask("pingd").await,
            Err(HostStatusError::UnknownNode("host9".into()))
        );
        assert_eq!(
            nobody.ask("#state").await,
            Err(HostStatusError::UnknownNode("host9".into()))
        );
    }

    #[tokio::test]
    async fn rules_convert_and_sighup_keeps_old_rules_on_a_bad_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("cib.xml");
        let r = d.path().join("pm-monitor.conf");
        std::fs::write(&f, cib(NO_STONITH, ONLINE, "", &nv("pingd", "50"))).unwrap();
        std::fs::write(
            &r,
            "[pingd]\nred = eq 0\nyellow = lt 100\ngreen = gte 100\n[#state]\nup = eq online\n",
        )
        .unwrap();
        let m = on_file(&f, Some("host1"), Some(&r), 0);
        assert_eq!(m.ask("pingd").await.unwrap(), "yellow");
        assert_eq!(m.ask("#state").await.unwrap(), "up");
        std::fs::write(&r, "[pingd]\nred = eq 0\nbroken = about 3\n").unwrap();
        let e = m.reload_rules().unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:3:", r.display())), "{e}");
        assert_eq!(m.ask("pingd").await.unwrap(), "yellow", "old rules kept");
        std::fs::write(&r, "[pingd]\nlow = lte 50\n").unwrap();
        m.reload_rules().unwrap();
        assert_eq!(m.ask("pingd").await.unwrap(), "low");
        std::fs::remove_file(&r).unwrap();
        assert!(m.reload_rules().is_err());
        assert_eq!(
            m.ask("pingd").await.unwrap(),
            "low",
            "unreadable file: old rules kept"
        );
        // A bad file at start-up is an error.
        std::fs::write(&r, "[pingd]\nx = lt many\n").unwrap();
        assert!(PmMonitor::new(&cfg(None, &[], Some(&r), 2)).is_err());
    }

    /// A fake crm_mon: a shell script.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn faked(crm_mon: PathBuf, cache: u64, deadline: Duration) -> PmMonitor {
        PmMonitor::with_commands(
            &cfg(Some("host1"), &["pingd"], None, cache),
            Commands {
                crm_mon,
                crm_node: "/nonexistent/crm_node".into(),
                env: vec![],
                deadline,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn pacemaker_down_slow_or_garbage_fails_quickly() {
        let d = tempfile::tempdir().unwrap();
        let slow = script(d.path(), "slow", "exec sleep 30");
        let m = faked(slow, 0, Duration::from_millis(300));
        let t0 = Instant::now();
        let e = m.ask("pingd").await.unwrap_err();
        assert!(
            matches!(&e, HostStatusError::Pacemaker(s) if s.contains("killed")),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(10), "hang guard");
        for body in [
            "echo 'not xml'",
            "echo '<pacemaker-result><status code=\"102\" message=\"Not connected\"/></pacemaker-result>'; exit 102",
            "head -c 9000000 /dev/zero",
            "exit 0",
        ] {
            let m = faked(script(d.path(), "bad", body), 0, Duration::from_secs(20));
            assert!(
                matches!(m.ask("pingd").await, Err(HostStatusError::Pacemaker(_))),
                "{body}"
            );
        }
        let m = faked("/nonexistent/crm_mon".into(), 0, Duration::from_secs(20));
        assert!(matches!(
            m.ask("#state").await,
            Err(HostStatusError::Pacemaker(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_askers_share_one_reading_and_the_cache_expires() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("cib.xml");
        std::fs::write(&f, cib(NO_STONITH, ONLINE, "", &nv("pingd", "1"))).unwrap();
        // crm_mon on the file, slowed down so that the askers overlap.
        let slow = script(
            d.path(),
            "crm_mon",
            &format!("sleep 0.3; CIB_file={} exec crm_mon \"$@\"", f.display()),
        );
        let m = Arc::new(faked(slow.clone(), 3600, Duration::from_secs(20)));
        let asks: Vec<_> = (0..50)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move { m.ask("pingd").await })
            })
            .collect();
        for a in asks {
            assert_eq!(a.await.unwrap().unwrap(), "1");
        }
        assert_eq!(m.crm_mon_runs(), 1, "50 askers, one crm_mon");
        std::fs::write(&f, cib(NO_STONITH, ONLINE, "", &nv("pingd", "2"))).unwrap();
        assert_eq!(
            m.ask("pingd").await.unwrap(),
            "1",
            "within the cache period"
        );
        assert_eq!(m.crm_mon_runs(), 1);
        // cache = 0: every ask that comes after a reading started gets a new one.
        let m = faked(slow, 0, Duration::from_secs(20));
        assert_eq!(m.ask("pingd").await.unwrap(), "2");
        std::fs::write(&f, cib(NO_STONITH, ONLINE, "", &nv("pingd", "3"))).unwrap();
        assert_eq!(
            m.ask("pingd").await.unwrap(),
            "3",
            "never older than the cache allows"
        );
        assert_eq!(m.crm_mon_runs(), 2);
    }

    /// Op 32 over the tcp listener: answered after authentication; a wrong key, a replayed
    /// request and a requester in no group are refused exactly as fencing requests are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn op32_over_tcp_authenticated_replay_and_groups() {
        use crate::config::Group;
        use crate::listener::{tcp, test_agent, test_context_with, AuthSettings};
        use fence_proto::{decode_host_status, HashAlg, Op, RESP_FAIL, RESP_PERM};
        const KEY: &[u8] = b"pm-monitor-test-key\n";
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("cib.xml");
        std::fs::write(&f, cib(NO_STONITH, ONLINE, "", &nv("pingd", "100"))).unwrap();
        let pm = Arc::new(on_file(&f, Some("host1"), None, 0));
        let serve = |groups: Vec<Group>| {
            let ctx = test_context_with(
                groups,
                AuthSettings::new(Some(KEY.to_vec()), HashAlg::Sha256, HashAlg::Sha256),
                Some(pm.clone()),
            );
            let l = tcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = l.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let h = tokio::spawn(tcp::serve(l, ctx, async {
                let _ = stopped.await;
            }));
            (addr, stop, h)
        };
        async fn ask(addr: std::net::SocketAddr, attr: &str, seqno: u32, key: &[u8]) -> Vec<u8> {
            tokio::time::timeout(Duration::from_secs(20), async {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                test_agent(&mut s, Op::HostStatus, attr, seqno, key).await
            })
            .await
            .expect("hang guard")
        }
        let (addr, stop, h) = serve(vec![]);
        assert_eq!(
            decode_host_status(&ask(addr, "pingd", 1, KEY).await).unwrap(),
            "100"
        );
        assert_eq!(
            decode_host_status(&ask(addr, "#state", 2, KEY).await).unwrap(),
            "online"
        );
        assert_eq!(
            ask(addr, "secret", 3, KEY).await,
            [RESP_FAIL],
            "not on the allow-list"
        );
        assert_eq!(
            ask(addr, "pingd", 4, b"wrong key").await,
            Vec::<u8>::new(),
            "wrong key"
        );
        assert_eq!(
            ask(addr, "pingd", 1, KEY).await,
            Vec::<u8>::new(),
            "replayed request"
        );
        stop.send(()).unwrap();
        h.await.unwrap().unwrap();
        // groups: 127.0.0.1 is in no group → RESP_PERM; once listed, answered.
        let other = Group {
            name: None,
            uuids: vec!["vm1".into()],
            ips: vec!["192.0.2.9".into()],
        };
        let (addr, stop, h) = serve(vec![other.clone()]);
        assert_eq!(ask(addr, "pingd", 10, KEY).await, [RESP_PERM]);
        stop.send(()).unwrap();
        h.await.unwrap().unwrap();
        let mine = Group {
            name: None,
            uuids: vec!["vm1".into()],
            ips: vec!["127.0.0.1".into()],
        };
        let (addr, stop, h) = serve(vec![other, mine]);
        assert_eq!(
            decode_host_status(&ask(addr, "pingd", 11, KEY).await).unwrap(),
            "100"
        );
        stop.send(()).unwrap();
        h.await.unwrap().unwrap();
    }
}
