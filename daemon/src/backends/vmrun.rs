//! `vmrun`: fences VMware Workstation / Fusion / Player guests of this host (or the VMs of a
//! VMware Server / ESX host) through VMware VIX's `vmrun` command line (not known to the C
//! daemon), with the `vmrun` cargo feature. Every request runs `vmrun` with a deadline (its
//! process group is killed on expiry); VMs are named by their `.vmx` path, or, on this host, by
//! the `displayName` in their `.vmx` file (a name two VMs share is refused).

use std::path::PathBuf;
use std::sync::Arc;

use fence_drivers::Driver;

use super::{BackendEntry, BackendSpec, BuildError};
use crate::config::reader::Section;
use crate::config::schema::{KeySpec, KeyType};
use crate::config::ConfigError;

/// The registry entry.
pub const ENTRY: BackendEntry = BackendEntry {
    name: "vmrun",
    keys: KEYS,
    built: cfg!(feature = "vmrun"),
    read: |s| Ok(Arc::new(VmrunConfig::read(s)?)),
};

const B: &str = "backends/vmrun";

const TYPES: &[&str] = &["ws", "fusion", "player", "server", "server1", "esx"];

const KEYS: &[KeySpec] = &[
    KeySpec::new(B, "vmrun", KeyType::Path, "the vmrun executable")
        .default("/usr/bin/vmrun")
        .ours(),
    KeySpec::new(
        B,
        "type",
        KeyType::Word(TYPES),
        "vmrun -T: ws, fusion, player (this host) or server, server1, esx",
    )
    .default("ws")
    .ours(),
    KeySpec::new(
        B,
        "host",
        KeyType::NonEmpty,
        "server types: vmrun -h (e.g. https://esx1/sdk)",
    )
    .ours()
    .offer("none"),
    KeySpec::new(
        B,
        "port",
        KeyType::Int { min: 1, max: 65535 },
        "server1: vmrun -P",
    )
    .ours()
    .offer("none"),
    KeySpec::new(B, "login", KeyType::NonEmpty, "server types: the user name")
        .ours()
        .offer("none"),
    KeySpec::new(B, "password", KeyType::Text, "server types: the password").ours(),
    KeySpec::new(
        B,
        "password_script",
        KeyType::NonEmpty,
        "server types: a command printing the password",
    )
    .ours()
    .offer("none"),
    KeySpec::new(
        B,
        "vm_dir",
        KeyType::List { commas: true },
        "this host's types: directories holding .vmx files (VMs that are off)",
    )
    .ours()
    .offer("none"),
    KeySpec::new(
        B,
        "timeout",
        KeyType::Int {
            min: 1,
            max: u32::MAX as i64,
        },
        "seconds one vmrun run may take",
    )
    .default("30")
    .ours(),
];

/// `backends { vmrun { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmrunConfig {
    /// The executable (`vmrun`).
    pub vmrun: PathBuf,
    /// `-T` (`type`), lower-case.
    pub host_type: String,
    /// `-h` (`host`, server types).
    pub host: Option<String>,
    /// `-P` (`port`, server1).
    pub port: Option<u16>,
    /// `-u` (`login`).
    pub login: Option<String>,
    /// `-p` (`password`).
    pub password: Option<String>,
    /// Command printing the password (`password_script`).
    pub password_script: Option<String>,
    /// Directories searched for `.vmx` files (`vm_dir`).
    pub vm_dirs: Vec<PathBuf>,
    /// Per-run timeout in seconds (`timeout`).
    pub timeout_secs: u64,
}

impl VmrunConfig {
    /// Read `backends/vmrun`: the server types need `host`, `login` and one of `password` and
    /// `password_script`; the local types take none of them; `port` only with `server1`.
    pub fn read(s: &Section<'_>) -> Result<VmrunConfig, ConfigError> {
        let vmrun = PathBuf::from(s.text_or_default("vmrun")?);
        let host_type = s.word_or_default("type")?.to_string();
        let host = s.text("host")?;
        let login = s.text("login")?;
        let password = s.text("password")?;
        let password_script = s.text("password_script")?;
        let port = s.opt_int("port")?.map(|p| p as u16);
        let server = matches!(host_type.as_str(), "server" | "server1" | "esx");
        if server {
            if host.is_none() {
                return Err(s.missing("host", "the server: host = \"https://esx1/sdk\";"));
            }
            if login.is_none() {
                return Err(s.missing("login", "the user: login = \"root\";"));
            }
            if password.is_none() && password_script.is_none() {
                return Err(s.missing(
                    "password",
                    "set password = \"…\"; or password_script = \"/path/to/script\";",
                ));
            }
        } else {
            for key in ["host", "login", "password", "password_script", "port"] {
                if let Some(e) = s.entry(key) {
                    return Err(s.invalid(
                        key,
                        e,
                        "nothing: vmrun reaches this host's VMs without it (server types only)",
                    ));
                }
            }
        }
        if host_type != "server1" {
            if let Some(e) = s.entry("port") {
                return Err(s.invalid("port", e, "nothing: only type = \"server1\" takes a port"));
            }
        }
        Ok(VmrunConfig {
            vmrun,
            host_type,
            host,
            port,
            login,
            password,
            password_script,
            vm_dirs: s.list("vm_dir").into_iter().map(PathBuf::from).collect(),
            timeout_secs: s.int("timeout")? as u64,
        })
    }
}

impl BackendSpec for VmrunConfig {
    #[cfg(feature = "vmrun")]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        use fence_drivers::vmrun::{HostType, VmrunDriver, VmrunOptions};
        use std::time::Duration;
        let host_type = HostType::parse(&self.host_type)
            .ok_or_else(|| format!("unknown vmrun type {:?}", self.host_type))?;
        let password = super::password(&self.password, &self.password_script)?;
        let d = VmrunDriver::new(VmrunOptions {
            vmrun: self.vmrun.clone(),
            host_type,
            host: self.host.clone(),
            port: self.port,
            login: self.login.clone(),
            password,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
            vm_dirs: self.vm_dirs.clone(),
        })?;
        Ok(Arc::new(d) as Arc<dyn Driver>)
    }

    #[cfg(not(feature = "vmrun"))]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        Err("built without the vmrun feature".into())
    }
}
