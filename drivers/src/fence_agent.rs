//! A [`Driver`] that runs an installed fence agent (`/usr/sbin/fence_*`) for every call, so
//! any of the agents fence-agents ships (fence_virsh, fence_ipmilan, fence_redfish, …) or our
//! own (`fence_xvm`, `fence_vmware_soap`) can serve guests through `fence_virtd`.
//!
//! Compatible with the fence-agents agent API (fence-agents 4.12.1 `lib/fencing.py` and
//! fence-virt's agents): the agent is started with no arguments beyond `argv[0]` and reads
//! `key=value` lines on stdin (`action=`, `port=`, then the configured pairs); the exit code
//! carries the answer: 0 success (`status`: on), 2 `status`: off, 1 or anything else failure.
//! `AGENT -o metadata` prints the resource-agent XML listing the agent's parameters and
//! actions; [`FenceAgentDriver::new`] reads it once and refuses a configuration the agent
//! would not understand (fencing.py agents only log and ignore an unknown key, which would
//! turn a typo in a password key into a failed fence at the worst moment).
//!
//! Safety rules of this driver:
//! - a failed `status` is an error, never "off" (an unknown VM included: agents report it as
//!   a generic failure, so it is [`DriverError::Platform`], not [`DriverError::NotFound`]);
//! - a `status` whose output contradicts its exit code (`Status: ON` with exit 2) is an error;
//! - VM names an agent would read as something else are refused before any agent runs: line
//!   breaks or NUL (they would add stdin lines, e.g. a second `action=`), the plug separator
//!   (fencing.py splits `port` on it and would fence several plugs), surrounding whitespace or
//!   double quotes (fencing.py strips them and would address another VM);
//! - the configuration may not set what the driver sets per call (`action`, `port`, `plug`,
//!   `nodename`) nor keys that override the per-call VM (`uuid`, `domain`), and its values
//!   must reach the agent unchanged (no line breaks, no surrounding whitespace or double
//!   quotes, which fencing.py strips);
//! - every call has a deadline: the agent runs in its own process group, which is killed
//!   (SIGKILL) when the deadline passes ([`DriverError::Timeout`]) and after the agent exits
//!   (helpers it left behind in its group); its output is read bounded ([`MAX_OUTPUT`]).
//!
//! The agent's stderr is logged line by line (`warn` when the call failed, `debug` otherwise).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::vm::{normalize_uuid, sort_by_name};
use crate::{Driver, DriverError, PowerState, VmInfo, VmRef};

/// Most bytes kept of an agent's stdout or stderr (each); more is read and dropped. Metadata
/// longer than this is refused rather than parsed truncated.
pub use crate::process::MAX_OUTPUT;
use crate::process::{run_agent, RunOutput};

/// Deepest element nesting accepted in an agent's metadata (real metadata is 4 levels deep).
pub const MAX_METADATA_DEPTH: usize = 16;

/// Most elements accepted in an agent's metadata (fence_ipmilan, one of the largest, has
/// about 250).
pub const MAX_METADATA_ELEMENTS: usize = 20_000;

/// Most stderr lines logged per call (the rest are counted).
const MAX_LOGGED_LINES: usize = 64;

/// Longest stderr line logged or quoted in an error, in characters.
const MAX_LINE_CHARS: usize = 512;

/// Directory a bare agent name is looked up in.
const AGENT_DIR: &str = "/usr/sbin";

/// Keys the driver writes itself on every call.
const PER_CALL_KEYS: [&str; 4] = ["action", "port", "plug", "nodename"];

/// Keys some agents read as the VM to act on instead of `port` (fencing.py's `uuid`,
/// fence_xvm's deprecated `domain`): configured once, they would redirect every call.
const VM_OVERRIDE_KEYS: [&str; 2] = ["uuid", "domain"];

/// How to run one fence agent. Its `Debug` form shows the configured keys, not their values
/// (passwords are among them).
#[derive(Clone)]
pub struct FenceAgentOptions {
    /// The agent: an absolute path, or a bare name looked up in `/usr/sbin`. Its file name
    /// must start with `fence_`.
    pub agent: PathBuf,
    /// The `key=value` pairs written on the agent's stdin after `action` and `port`, in this
    /// order (e.g. `ip`, `username`, `password_script`, `ssl_insecure`). Each key must be a
    /// parameter the agent's metadata declares.
    pub args: Vec<(String, String)>,
    /// Deadline of each agent run (metadata, status, off, on, list, monitor).
    pub timeout: Duration,
}

impl std::fmt::Debug for FenceAgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceAgentOptions")
            .field("agent", &self.agent)
            .field("keys", &keys_only(&self.args))
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn keys_only(args: &[(String, String)]) -> Vec<&str> {
    args.iter().map(|(k, _)| k.as_str()).collect()
}

/// What an agent's `-o metadata` declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentMetadata {
    /// `<resource-agent name=…>`.
    pub name: String,
    /// Every parameter name, and every name a parameter `obsoletes` (fencing.py lists the old
    /// name as its own deprecated parameter too; fence-virt's agents may not).
    pub parameters: BTreeSet<String>,
    /// Names of the parameters marked `required="1"`.
    pub required: BTreeSet<String>,
    /// `(name, obsoleted name)` for every parameter that `obsoletes` another.
    pub renamed: Vec<(String, String)>,
    /// Every `<action name=…>`.
    pub actions: BTreeSet<String>,
}

impl AgentMetadata {
    /// True if `key` is a parameter name or an obsoleted name the agent accepts.
    pub fn accepts(&self, key: &str) -> bool {
        self.parameters.contains(key)
    }

    /// Every name that satisfies the parameter `name`: itself, what it obsoletes and what
    /// obsoletes it.
    pub fn aliases<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        let mut v = vec![name];
        for (new, old) in &self.renamed {
            if new == name {
                v.push(old);
            } else if old == name {
                v.push(new);
            }
        }
        v
    }

    /// True if the agent declares `action`.
    pub fn has_action(&self, action: &str) -> bool {
        self.actions.contains(action)
    }
}

/// Why metadata could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable fence agent metadata: {0}")]
pub struct MetadataError(String);

/// Parse `-o metadata` output (a `<resource-agent>` document). Bounded: at most
/// [`MAX_OUTPUT`] bytes, [`MAX_METADATA_DEPTH`] levels, [`MAX_METADATA_ELEMENTS`] elements.
pub fn parse_metadata(xml: &str) -> Result<AgentMetadata, MetadataError> {
    if xml.len() > MAX_OUTPUT {
        return Err(MetadataError(format!("longer than {MAX_OUTPUT} bytes")));
    }
    let root = crate::xml::parse_limited(xml, MAX_METADATA_ELEMENTS, MAX_METADATA_DEPTH)
        .map_err(|e| MetadataError(e.0))?;
    if root.name != "resource-agent" {
        return Err(MetadataError(format!(
            "root element is <{}>, not <resource-agent>",
            root.name
        )));
    }
    // Attributes by local name (the tree keeps them as written).
    let attr = |e: &crate::xml::Element, key: &str| -> Option<String> {
        e.attrs
            .iter()
            .find(|(k, _)| k.rsplit(':').next() == Some(key))
            .map(|(_, v)| v.clone())
    };
    let mut md = AgentMetadata {
        name: attr(&root, "name").unwrap_or_default(),
        ..AgentMetadata::default()
    };
    for p in root
        .children_named("parameters")
        .flat_map(|ps| ps.children_named("parameter"))
    {
        let pname = attr(p, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| MetadataError("a <parameter> has no name".into()))?;
        if let Some(old) = attr(p, "obsoletes").filter(|n| !n.is_empty()) {
            md.parameters.insert(old.clone());
            md.renamed.push((pname.clone(), old));
        }
        if attr(p, "required").as_deref() == Some("1") {
            md.required.insert(pname.clone());
        }
        md.parameters.insert(pname);
    }
    for a in root
        .children_named("actions")
        .flat_map(|acts| acts.children_named("action"))
    {
        let aname = attr(a, "name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| MetadataError("an <action> has no name".into()))?;
        md.actions.insert(aname);
    }
    Ok(md)
}

/// Parse the output of `-o list` / `-o list-status` into VMs, sorted by name.
///
/// Understands fencing.py's `id<SEP>alias` and `id<SEP>alias<SEP>STATE` lines (with
/// `list_status` the state is the last field, so an alias containing the separator stays
/// whole) and fence-virt's `name uuid on|off` lines (fence_xvm, fence_virt). `uuid` is the
/// alias or the id when either is UUID-shaped, else empty; `state` is On/Off only when the
/// agent said `on`/`off`, else Unknown. Lines that fit neither form (notices) are skipped.
pub fn parse_list(out: &str, separator: &str, list_status: bool) -> Vec<VmInfo> {
    let mut vms = Vec::new();
    for line in out.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(vm) = parse_list_line(line, separator, list_status) {
            vms.push(vm);
        } else {
            tracing::debug!(line = %truncate(line), "fence agent list: line skipped");
        }
    }
    sort_by_name(&mut vms);
    vms
}

fn parse_list_line(line: &str, sep: &str, list_status: bool) -> Option<VmInfo> {
    let state_of = |s: &str| {
        let s = s.trim();
        if s.eq_ignore_ascii_case("on") {
            PowerState::On
        } else if s.eq_ignore_ascii_case("off") {
            PowerState::Off
        } else {
            PowerState::Unknown
        }
    };
    let uuid_of = |id: &str, alias: &str| {
        normalize_uuid(alias)
            .or_else(|| normalize_uuid(id))
            .unwrap_or_default()
    };
    if !sep.is_empty() && line.contains(sep) {
        let (rest, state) = match line.rsplit_once(sep) {
            Some((rest, st)) if list_status && rest.contains(sep) => (rest, state_of(st)),
            _ => (line, PowerState::Unknown),
        };
        let (id, alias) = rest.split_once(sep)?;
        if id.is_empty() {
            return None;
        }
        return Some(VmInfo {
            name: id.to_string(),
            uuid: uuid_of(id, alias),
            state,
        });
    }
    // fence-virt: "%-32s %s %s" name, uuid, on/off.
    let mut it = line.split_whitespace();
    let (name, uuid, st) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let uuid = normalize_uuid(uuid)?;
    if !(st == "on" || st == "off") {
        return None;
    }
    Some(VmInfo {
        name: name.to_string(),
        uuid,
        state: state_of(st),
    })
}

/// Runs one fence agent per call. See the module documentation. Its `Debug` form leaves out
/// the configured values.
pub struct FenceAgentDriver {
    agent: PathBuf,
    /// File name, for logs and errors.
    name: String,
    args: Vec<(String, String)>,
    timeout: Duration,
    metadata: AgentMetadata,
    /// `list-status` when declared, else `list`, else none.
    list_action: Option<&'static str>,
    /// `monitor` when declared, else `list`, else none.
    check_action: Option<&'static str>,
    /// `separator` as configured (the list output's field separator), default `,`.
    separator: String,
    /// `plug_separator` as configured, default `,`.
    plug_separator: String,
}

impl std::fmt::Debug for FenceAgentDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FenceAgentDriver")
            .field("agent", &self.agent)
            .field("keys", &keys_only(&self.args))
            .field("timeout", &self.timeout)
            .field("list_action", &self.list_action)
            .field("check_action", &self.check_action)
            .finish_non_exhaustive()
    }
}

impl FenceAgentDriver {
    /// Resolve the agent, run `AGENT -o metadata` (bounded by `opts.timeout`), and check the
    /// configuration against it: every key declared, none the driver sets per call, values
    /// that fit on one stdin line, and actions `status`, `off`, `on` present.
    pub fn new(opts: FenceAgentOptions) -> Result<Self, DriverError> {
        let agent = resolve_agent(&opts.agent)?;
        let name = agent
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if opts.timeout.is_zero() {
            return Err(DriverError::Platform(format!(
                "fence agent {name}: the per-call timeout must be more than zero"
            )));
        }
        for (k, v) in &opts.args {
            check_config_pair(&name, k, v)?;
        }
        let run = run_agent(
            &agent,
            &["-o", "metadata"],
            b"",
            opts.timeout,
            &format!("{name} -o metadata"),
        )?;
        log_stderr(&name, "metadata", None, &run);
        if run.code != Some(0) {
            return Err(DriverError::Platform(format!(
                "fence agent {name}: -o metadata failed ({}){}",
                run.describe_exit(),
                run.reason_suffix()
            )));
        }
        if run.stdout_truncated {
            return Err(DriverError::Platform(format!(
                "fence agent {name}: metadata longer than {MAX_OUTPUT} bytes"
            )));
        }
        let text = String::from_utf8_lossy(&run.stdout);
        let metadata = parse_metadata(&text)
            .map_err(|e| DriverError::Platform(format!("fence agent {name}: {e}")))?;
        Self::with_metadata(agent, name, opts, metadata)
    }

    fn with_metadata(
        agent: PathBuf,
        name: String,
        opts: FenceAgentOptions,
        metadata: AgentMetadata,
    ) -> Result<Self, DriverError> {
        for (k, _) in &opts.args {
            if !metadata.accepts(k) {
                let mut known: Vec<&str> = metadata
                    .parameters
                    .iter()
                    .map(String::as_str)
                    .filter(|p| !PER_CALL_KEYS.contains(p) && !VM_OVERRIDE_KEYS.contains(p))
                    .collect();
                known.sort_unstable();
                return Err(DriverError::Platform(format!(
                    "fence agent {name} has no parameter {k:?} (it declares: {})",
                    known.join(", ")
                )));
            }
        }
        for action in ["status", "off", "on"] {
            if !metadata.has_action(action) {
                return Err(DriverError::Platform(format!(
                    "fence agent {name} does not declare the action {action:?}, which \
                     fencing a VM needs"
                )));
            }
        }
        if !metadata.accepts("port") && !metadata.accepts("plug") {
            return Err(DriverError::Platform(format!(
                "fence agent {name} has no port/plug parameter: it cannot address a VM"
            )));
        }
        for req in &metadata.required {
            let group = metadata.aliases(req);
            let covered = group
                .iter()
                .any(|g| PER_CALL_KEYS.contains(g) || opts.args.iter().any(|(k, _)| k == g));
            if !covered {
                // Not fatal: some agents mark parameters required that they can also take
                // from elsewhere (environment, a default file, another parameter).
                tracing::warn!(
                    agent = %name,
                    parameter = %group.join("/"),
                    "fence agent declares this parameter required but it is not configured"
                );
            }
        }
        let list_action = if metadata.has_action("list-status") {
            Some("list-status")
        } else if metadata.has_action("list") {
            Some("list")
        } else {
            None
        };
        let check_action = if metadata.has_action("monitor") {
            Some("monitor")
        } else if metadata.has_action("list") {
            Some("list")
        } else {
            None
        };
        let configured = |key: &str| {
            opts.args
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let separator = configured("separator").unwrap_or_else(|| ",".into());
        let plug_separator = configured("plug_separator").unwrap_or_else(|| ",".into());
        Ok(FenceAgentDriver {
            agent,
            name,
            args: opts.args,
            timeout: opts.timeout,
            metadata,
            list_action,
            check_action,
            separator,
            plug_separator,
        })
    }

    /// The agent's metadata as read at construction.
    pub fn metadata(&self) -> &AgentMetadata {
        &self.metadata
    }

    /// The resolved agent path.
    pub fn agent(&self) -> &Path {
        &self.agent
    }

    /// The stdin text of one call.
    fn stdin_for(&self, action: &str, vm: Option<&VmRef>) -> Vec<u8> {
        let mut s = format!("action={action}\n");
        if let Some(vm) = vm {
            s.push_str(&format!("port={}\n", vm.as_str()));
        }
        for (k, v) in &self.args {
            s.push_str(&format!("{k}={v}\n"));
        }
        s.into_bytes()
    }

    /// Refuse a VM reference the agent would read as something else.
    fn check_vm(&self, vm: &VmRef) -> Result<(), DriverError> {
        let s = vm.as_str();
        let why = if s.is_empty() {
            Some("is empty")
        } else if s.contains(['\n', '\r', '\0']) {
            Some("contains a line break or NUL")
        } else if s.trim() != s {
            Some("starts or ends with whitespace")
        } else if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
            Some("is enclosed in double quotes")
        } else if !self.plug_separator.is_empty() && s.contains(self.plug_separator.as_str()) {
            Some("contains the agent's plug separator")
        } else {
            None
        };
        match why {
            Some(why) => Err(DriverError::Platform(format!(
                "fence agent {}: VM name {s:?} {why}; the agent would address another plug",
                self.name
            ))),
            None => Ok(()),
        }
    }

    /// Run one action and return its outcome (stderr already logged).
    fn call(&self, action: &str, vm: Option<&VmRef>) -> Result<RunOutput, DriverError> {
        if let Some(vm) = vm {
            self.check_vm(vm)?;
        }
        let what = match vm {
            Some(vm) => format!("{} {action} {vm}", self.name),
            None => format!("{} {action}", self.name),
        };
        let run = run_agent(
            &self.agent,
            &[],
            &self.stdin_for(action, vm),
            self.timeout,
            &what,
        )?;
        log_stderr(&self.name, action, vm, &run);
        Ok(run)
    }

    fn failed(&self, action: &str, vm: Option<&VmRef>, run: &RunOutput) -> DriverError {
        let target = vm.map(|v| format!(" {v}")).unwrap_or_default();
        DriverError::Platform(format!(
            "fence agent {} {action}{target} failed ({}){}",
            self.name,
            run.describe_exit(),
            run.reason_suffix()
        ))
    }

    fn power(&self, action: &str, vm: &VmRef) -> Result<(), DriverError> {
        let run = self.call(action, Some(vm))?;
        if run.code == Some(0) {
            Ok(())
        } else {
            Err(self.failed(action, Some(vm), &run))
        }
    }
}

impl Driver for FenceAgentDriver {
    fn kind(&self) -> &'static str {
        "agent"
    }

    fn status(&self, vm: &VmRef) -> Result<PowerState, DriverError> {
        let run = self.call("status", Some(vm))?;
        let out = String::from_utf8_lossy(&run.stdout);
        let says = |word: &str| {
            out.lines()
                .any(|l| l.trim().eq_ignore_ascii_case(&format!("Status: {word}")))
        };
        match run.code {
            Some(0) if !says("OFF") => Ok(PowerState::On),
            // Exit 2 alone is no proof (a shell's misuse code, Python's "can't open file"):
            // off also needs the contract's "Status: OFF" line, which every agent prints.
            Some(2) if says("OFF") => Ok(PowerState::Off),
            Some(0) | Some(2) => Err(DriverError::Platform(format!(
                "fence agent {} status {vm}: its output contradicts its exit code ({})",
                self.name,
                run.describe_exit()
            ))),
            _ => Err(self.failed("status", Some(vm), &run)),
        }
    }

    fn power_off(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.power("off", vm)
    }

    fn power_on(&self, vm: &VmRef) -> Result<(), DriverError> {
        self.power("on", vm)
    }

    fn list(&self) -> Result<Vec<VmInfo>, DriverError> {
        let Some(action) = self.list_action else {
            return Err(DriverError::Platform(format!(
                "fence agent {} cannot list VMs (no list action)",
                self.name
            )));
        };
        let run = self.call(action, None)?;
        if run.code != Some(0) {
            return Err(self.failed(action, None, &run));
        }
        if run.stdout_truncated {
            return Err(DriverError::Platform(format!(
                "fence agent {} {action}: output longer than {MAX_OUTPUT} bytes",
                self.name
            )));
        }
        let out = String::from_utf8_lossy(&run.stdout);
        if out
            .lines()
            .any(|l| l.starts_with("NOTICE: List option is not working"))
        {
            return Err(DriverError::Platform(format!(
                "fence agent {} cannot list VMs on this device",
                self.name
            )));
        }
        Ok(parse_list(&out, &self.separator, action == "list-status"))
    }

    fn check(&self) -> Result<(), DriverError> {
        let Some(action) = self.check_action else {
            // Nothing cheap to ask; the agent ran at construction.
            return Ok(());
        };
        let run = self.call(action, None)?;
        if run.code == Some(0) {
            Ok(())
        } else {
            Err(self.failed(action, None, &run))
        }
    }
}

/// Resolve the configured agent to an absolute path named `fence_*`.
fn resolve_agent(agent: &Path) -> Result<PathBuf, DriverError> {
    let bad = |why: &str| DriverError::Platform(format!("fence agent {}: {why}", agent.display()));
    let path = if agent.is_absolute() {
        agent.to_path_buf()
    } else if agent.components().count() == 1 {
        Path::new(AGENT_DIR).join(agent)
    } else {
        return Err(bad(&format!(
            "must be an absolute path or a bare name looked up in {AGENT_DIR}"
        )));
    };
    let fname = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("has no file name"))?;
    if !fname.starts_with("fence_") || fname.len() == "fence_".len() {
        return Err(bad("the agent's file name must start with fence_"));
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(bad("is not a file")),
        Err(e) => Err(DriverError::Platform(format!(
            "fence agent {}: {e}",
            path.display()
        ))),
    }
}

/// A configured pair must be a plain key and a value that stays on its stdin line.
fn check_config_pair(agent: &str, key: &str, value: &str) -> Result<(), DriverError> {
    let err = |why: String| Err(DriverError::Platform(format!("fence agent {agent}: {why}")));
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return err(format!(
            "{key:?} is not a parameter name (letters, digits, _ and - only)"
        ));
    }
    if PER_CALL_KEYS.contains(&key) {
        return err(format!(
            "{key:?} may not be configured: the driver sets action and port for every call"
        ));
    }
    if VM_OVERRIDE_KEYS.contains(&key) {
        return err(format!(
            "{key:?} may not be configured: the agent would act on it instead of the VM of each \
             call"
        ));
    }
    if value.contains(['\n', '\r', '\0']) {
        return err(format!(
            "the value of {key:?} contains a line break or NUL, which the agent would read as \
             another parameter"
        ));
    }
    // fencing.py strips both from every stdin line: a password ending in a space would
    // silently become another password and fail only when a fence is needed.
    if value.trim() != value {
        return err(format!(
            "the value of {key:?} starts or ends with whitespace, which the agent strips"
        ));
    }
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        return err(format!(
            "the value of {key:?} is enclosed in double quotes, which the agent strips"
        ));
    }
    Ok(())
}

impl RunOutput {
    fn describe_exit(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "no exit status".into(),
        }
    }

    /// `": <the agent's reason>"`: its last stderr line saying `Failed` (fencing.py's reason
    /// lines; a usage hint may follow them), else its last `ERROR` line, else its last stderr
    /// line, else its last stdout line; empty if it said nothing.
    fn reason_suffix(&self) -> String {
        let err = String::from_utf8_lossy(&self.stderr);
        let out = String::from_utf8_lossy(&self.stdout);
        let nonempty = |s: &str| !s.trim().is_empty();
        let line = err
            .lines()
            .rfind(|l| l.contains("Failed"))
            .or_else(|| err.lines().rfind(|l| l.contains("ERROR")))
            .or_else(|| err.lines().rfind(|l| nonempty(l)))
            .or_else(|| out.lines().rfind(|l| nonempty(l)));
        match line {
            Some(l) => format!(": {}", truncate(l.trim())),
            None => String::new(),
        }
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_LINE_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_LINE_CHARS).collect();
        t.push('…');
        t
    }
}

fn log_stderr(agent: &str, action: &str, vm: Option<&VmRef>, run: &RunOutput) {
    let failed = match action {
        "status" => !matches!(run.code, Some(0) | Some(2)),
        _ => run.code != Some(0),
    };
    let vm = vm.map(|v| v.as_str()).unwrap_or("");
    let text = String::from_utf8_lossy(&run.stderr);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    for line in lines.by_ref().take(MAX_LOGGED_LINES) {
        let line = truncate(line);
        if failed {
            tracing::warn!(agent, action, vm, "agent: {line}");
        } else {
            tracing::debug!(agent, action, vm, "agent: {line}");
        }
    }
    let more = lines.count();
    if more > 0 {
        tracing::debug!(
            agent,
            action,
            vm,
            "agent: {more} more stderr lines not logged"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRSH_LIKE: &str = r#"<?xml version="1.0" ?>
<resource-agent name="fence_x" shortdesc="x" >
<longdesc>text &amp; more</longdesc>
<parameters>
	<parameter name="action" unique="0" required="1">
		<getopt mixed="-o, --action=[action]" />
		<content type="string" default="reboot"  />
	</parameter>
	<parameter name="ip" unique="0" required="1" obsoletes="ipaddr">
		<content type="string"  />
	</parameter>
	<parameter name="username" unique="0" required="1" obsoletes="login">
		<content type="string"  />
	</parameter>
	<parameter name="plug" unique="0" required="1" obsoletes="port">
		<content type="string"  />
	</parameter>
	<parameter name="auth" unique="0" required="0">
		<content type="select"><option value="md5" /><option value="none" /></content>
	</parameter>
</parameters>
<actions>
	<action name="on" automatic="0"/>
	<action name="off" />
	<action name="status" />
	<action name="list-status" />
	<action name="monitor" />
</actions>
</resource-agent>
"#;

    #[test]
    fn metadata_parameters_obsoleted_names_and_actions() {
        let md = parse_metadata(VIRSH_LIKE).unwrap();
        assert_eq!(md.name, "fence_x");
        for p in [
            "action", "ip", "ipaddr", "username", "login", "plug", "port", "auth",
        ] {
            assert!(md.accepts(p), "{p}");
        }
        // <option> and <content> are not parameters
        assert!(!md.accepts("md5") && !md.accepts("content"));
        assert!(!md.accepts("passwd"));
        assert_eq!(
            md.actions.iter().map(String::as_str).collect::<Vec<_>>(),
            ["list-status", "monitor", "off", "on", "status"]
        );
        assert!(md.required.contains("ip") && !md.required.contains("auth"));
        assert_eq!(md.aliases("ip"), ["ip", "ipaddr"]);
        assert_eq!(md.aliases("login"), ["login", "username"]);
    }

    #[test]
    fn metadata_is_bounded_and_must_be_a_resource_agent() {
        let n = 100_000;
        let deep = format!(
            "<resource-agent>{}{}</resource-agent>",
            "<a>".repeat(n),
            "</a>".repeat(n)
        );
        let e = parse_metadata(&deep).unwrap_err();
        assert!(e.to_string().contains("deeper than 16"), "{e}");
        let wide = format!(
            "<resource-agent><parameters>{}</parameters></resource-agent>",
            "<parameter name=\"p\"/>".repeat(MAX_METADATA_ELEMENTS)
        );
        let e = parse_metadata(&wide).unwrap_err();
        assert!(e.to_string().contains("more than 20000 elements"), "{e}");
        let huge = format!(
            "<resource-agent>{}</resource-agent>",
            "x".repeat(MAX_OUTPUT)
        );
        assert!(parse_metadata(&huge)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
        for bad in [
            "",
            "not xml",
            "<html/>",
            "<resource-agent><parameters>",
            "<resource-agent/><resource-agent/>",
            "<resource-agent><parameters><parameter/></parameters></resource-agent>",
        ] {
            assert!(parse_metadata(bad).is_err(), "{bad:?}");
        }
        // exactly at the depth bound is fine
        let d = MAX_METADATA_DEPTH - 1;
        let ok = format!(
            "<resource-agent>{}{}</resource-agent>",
            "<a>".repeat(d),
            "</a>".repeat(d)
        );
        assert!(parse_metadata(&ok).is_ok());
    }

    #[test]
    fn list_formats() {
        // fencing.py list: id,alias
        let vms = parse_list(
            "vm2,\nvm1,6695EB01-F6A4-8304-79AA-97F2502E193F\n\n",
            ",",
            false,
        );
        assert_eq!(
            vms,
            vec![
                VmInfo {
                    name: "vm1".into(),
                    uuid: "6695eb01-f6a4-8304-79aa-97f2502e193f".into(),
                    state: PowerState::Unknown
                },
                VmInfo {
                    name: "vm2".into(),
                    uuid: String::new(),
                    state: PowerState::Unknown
                },
            ]
        );
        // list-status: id,alias,STATE; an alias containing the separator stays whole
        let vms = parse_list("b,,off\na,x,y,ON\nc,,UNKNOWN\n", ",", true);
        let got: Vec<(&str, PowerState)> = vms.iter().map(|v| (v.name.as_str(), v.state)).collect();
        assert_eq!(
            got,
            [
                ("a", PowerState::On),
                ("b", PowerState::Off),
                ("c", PowerState::Unknown)
            ]
        );
        // an id that is a UUID
        let vms = parse_list("6695eb01-f6a4-8304-79aa-97f2502e193f;web\n", ";", false);
        assert_eq!(vms[0].uuid, "6695eb01-f6a4-8304-79aa-97f2502e193f");
        // fence-virt's host list
        let out = format!(
            "{:<32} {} {}\n{:<32} {} {}\n",
            "guest1",
            "6695eb01-f6a4-8304-79aa-97f2502e193f",
            "on",
            "guest2",
            "6695eb01-f6a4-8304-79aa-97f2502e1930",
            "off"
        );
        let vms = parse_list(&out, ",", true);
        assert_eq!(vms.len(), 2);
        assert_eq!(vms[0].name, "guest1");
        assert_eq!(vms[0].state, PowerState::On);
        assert_eq!(vms[1].state, PowerState::Off);
        // notices and other prose are skipped
        assert!(parse_list("N/A\nSome words here now\n,x\n", ",", false).is_empty());
    }

    fn driver_with(md: &str, args: &[(&str, &str)]) -> Result<FenceAgentDriver, DriverError> {
        let opts = FenceAgentOptions {
            agent: "/usr/sbin/fence_x".into(),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout: Duration::from_secs(5),
        };
        for (k, v) in &opts.args {
            check_config_pair("fence_x", k, v)?;
        }
        FenceAgentDriver::with_metadata(
            opts.agent.clone(),
            "fence_x".into(),
            opts,
            parse_metadata(md).unwrap(),
        )
    }

    #[test]
    fn configuration_is_checked_against_metadata() {
        let d = driver_with(VIRSH_LIKE, &[("ipaddr", "h"), ("username", "u")]).unwrap();
        assert_eq!(d.list_action, Some("list-status"));
        assert_eq!(d.check_action, Some("monitor"));
        let e = driver_with(VIRSH_LIKE, &[("ip", "h"), ("pasword", "x")]).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("fence_x") && m.contains("\"pasword\""), "{m}");
        for key in ["action", "port", "plug", "nodename", "uuid", "domain"] {
            let e = driver_with(VIRSH_LIKE, &[(key, "x")]).unwrap_err();
            assert!(
                e.to_string().contains("may not be configured"),
                "{key}: {e}"
            );
        }
        let e = driver_with(VIRSH_LIKE, &[("ip", "h\naction=off")]).unwrap_err();
        assert!(e.to_string().contains("line break"), "{e}");
        for v in ["pass ", " pass", "\"pass\""] {
            let e = driver_with(VIRSH_LIKE, &[("ip", v)]).unwrap_err();
            assert!(e.to_string().contains("strips"), "{v:?}: {e}");
        }
        driver_with(VIRSH_LIKE, &[("ip", "a b\"c"), ("username", "")]).unwrap();
        let e = driver_with(VIRSH_LIKE, &[("ip x", "h")]).unwrap_err();
        assert!(e.to_string().contains("not a parameter name"), "{e}");
        let no_status = VIRSH_LIKE.replace("<action name=\"status\" />", "");
        let e = driver_with(&no_status, &[]).unwrap_err();
        assert!(e.to_string().contains("\"status\""), "{e}");
        let no_port = VIRSH_LIKE.replace(
            "name=\"plug\" unique=\"0\" required=\"1\" obsoletes=\"port\"",
            "name=\"x\"",
        );
        let e = driver_with(&no_port, &[]).unwrap_err();
        assert!(e.to_string().contains("port/plug"), "{e}");
    }

    #[test]
    fn vm_names_the_agent_would_misread_are_refused() {
        let d = driver_with(VIRSH_LIKE, &[("ip", "h")]).unwrap();
        for bad in [
            "a,b",
            "a\naction=off",
            "a\r",
            " a",
            "a ",
            "\"a\"",
            "",
            "a\0",
        ] {
            let e = d.check_vm(&VmRef::Name(bad.into())).unwrap_err();
            assert!(matches!(e, DriverError::Platform(_)), "{bad:?}");
        }
        for good in ["a", "a b", "a\"b", "vm-1.example"] {
            d.check_vm(&VmRef::Name(good.into())).unwrap();
        }
        let d = driver_with(VIRSH_LIKE, &[("ip", "h"), ("plug_separator", ":")]);
        // plug_separator is not declared by this metadata, so it is refused
        assert!(d.is_err());
        let md = VIRSH_LIKE.replace(
            "</parameters>",
            "<parameter name=\"plug_separator\"/></parameters>",
        );
        let d = driver_with(&md, &[("plug_separator", ":")]).unwrap();
        d.check_vm(&VmRef::Name("a,b".into())).unwrap();
        assert!(d.check_vm(&VmRef::Name("a:b".into())).is_err());
    }

    #[test]
    fn debug_output_leaves_out_values() {
        let d = driver_with(VIRSH_LIKE, &[("ip", "h"), ("username", "s3cret-user")]).unwrap();
        let opts = FenceAgentOptions {
            agent: "fence_x".into(),
            args: vec![("username".into(), "s3cret-user".into())],
            timeout: Duration::from_secs(1),
        };
        for text in [format!("{d:?}"), format!("{opts:?}")] {
            assert!(text.contains("username"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn stdin_carries_action_port_then_configuration() {
        let d = driver_with(VIRSH_LIKE, &[("ip", "h"), ("username", "u=v")]).unwrap();
        let s = d.stdin_for("status", Some(&VmRef::Name("vm1".into())));
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "action=status\nport=vm1\nip=h\nusername=u=v\n"
        );
        let s = d.stdin_for("list-status", None);
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "action=list-status\nip=h\nusername=u=v\n"
        );
    }

    #[test]
    fn agent_names_are_resolved_and_checked() {
        for bad in [
            "virsh",
            "bin/fence_virsh",
            "fence_",
            "/bin/sh",
            "../fence_virsh",
        ] {
            assert!(resolve_agent(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
