//! `vmware_soap`: fences the VMs of a VMware vCenter or ESXi host through its SOAP API (not
//! known to the C daemon), with the `vmware_soap` cargo feature. One logged-in session serves
//! the daemon's life: the driver logs in again on NotAuthenticated (expired session, restarted
//! endpoint) and opens a new TCP connection on the next call after a dead one.

use std::path::PathBuf;
use std::sync::Arc;

use fence_drivers::Driver;

use super::{BackendEntry, BackendSpec, BuildError};
use crate::config::reader::Section;
use crate::config::schema::{KeySpec, KeyType, PORT};
use crate::config::ConfigError;

/// The registry entry.
pub const ENTRY: BackendEntry = BackendEntry {
    name: "vmware_soap",
    keys: KEYS,
    built: cfg!(feature = "vmware_soap"),
    read: |s| Ok(Arc::new(VmwareSoapConfig::read(s)?)),
};

const B: &str = "backends/vmware_soap";

const KEYS: &[KeySpec] = &[
    KeySpec::new(
        B,
        "address",
        KeyType::NonEmpty,
        "host name or address of vCenter/ESXi",
    )
    .required()
    .ours(),
    KeySpec::new(B, "port", PORT, "port (default 443, or 80 with ssl = none)").ours(),
    KeySpec::new(B, "login", KeyType::NonEmpty, "the user name")
        .required()
        .ours(),
    KeySpec::new(B, "password", KeyType::Text, "the password").ours(),
    KeySpec::new(
        B,
        "password_script",
        KeyType::NonEmpty,
        "a command printing the password",
    )
    .ours()
    .offer("none"),
    KeySpec::new(
        B,
        "ssl",
        KeyType::Word(&["secure", "insecure", "none"]),
        "HTTPS with certificate checks, HTTPS without them, or plain HTTP",
    )
    .default("secure")
    .ours(),
    KeySpec::new(
        B,
        "ca_file",
        KeyType::Path,
        "CA certificates (PEM) trusted instead of the system store",
    )
    .ours()
    .offer("none"),
    KeySpec::new(
        B,
        "datacenter",
        KeyType::NonEmpty,
        "only consider machines of this datacenter",
    )
    .ours(),
    KeySpec::new(
        B,
        "timeout",
        KeyType::Int {
            min: 1,
            max: u32::MAX as i64,
        },
        "seconds one call to the server may take",
    )
    // One call normally takes milliseconds, and a whole request (lookup, power task,
    // confirmation) must fit well inside the agents' 30 s.
    .default("10")
    .ours(),
];

/// How the vmware_soap backend uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `ssl = "none"`: plain HTTP.
    Plain,
    /// `ssl = "secure"` (default): HTTPS with certificate verification.
    Verify,
    /// `ssl = "insecure"`: HTTPS without certificate verification.
    Insecure,
}

/// `backends { vmware_soap { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmwareSoapConfig {
    /// Host name or address of vCenter/ESXi (`address`, required).
    pub address: String,
    /// Port (`port`); the driver's default for the TLS mode if absent.
    pub port: Option<u16>,
    /// User (`login`, required).
    pub login: String,
    /// Password (`password`).
    pub password: Option<String>,
    /// Command printing the password (`password_script`).
    pub password_script: Option<String>,
    /// TLS mode (`ssl`).
    pub ssl: TlsMode,
    /// CA certificates (PEM) trusted instead of the system store (`ca_file`; only with
    /// `ssl = "secure"`).
    pub ca_file: Option<PathBuf>,
    /// Limit to one datacenter (`datacenter`).
    pub datacenter: Option<String>,
    /// Per-call timeout in seconds (`timeout`).
    pub timeout_secs: u64,
}

impl VmwareSoapConfig {
    /// Read `backends/vmware_soap`: `address`, `login` and one of `password` and
    /// `password_script` are required; blank values are refused with their position, not at
    /// connect time; `ca_file` only goes with `ssl = "secure"`.
    pub fn read(s: &Section<'_>) -> Result<VmwareSoapConfig, ConfigError> {
        // Present but blank is as good as missing, and said so with its position.
        let address = s.text("address")?;
        let login = s.text("login")?;
        let datacenter = s.text("datacenter")?;
        let password_script = s.text("password_script")?;
        let address = address.ok_or_else(|| {
            s.missing(
                "address",
                "the vCenter/ESXi host: address = \"vc.example\";",
            )
        })?;
        let login = login.ok_or_else(|| s.missing("login", "the user: login = \"fence\";"))?;
        let password = s.text("password")?;
        if password.is_none() && password_script.is_none() {
            return Err(s.missing(
                "password",
                "set password = \"…\"; or password_script = \"/path/to/script\";",
            ));
        }
        let port = s.opt_int("port")?.map(|p| p as u16);
        let ssl = match s.word_or_default("ssl")? {
            "insecure" => TlsMode::Insecure,
            "none" => TlsMode::Plain,
            _ => TlsMode::Verify,
        };
        let ca_file = match s.entry("ca_file") {
            Some(e) if ssl != TlsMode::Verify => {
                return Err(s.invalid(
                    "ca_file",
                    e,
                    "no ca_file: certificates are only checked with ssl = \"secure\"",
                ))
            }
            Some(e) if e.value.trim().is_empty() => {
                return Err(s.invalid("ca_file", e, "a PEM file path"))
            }
            Some(e) => Some(PathBuf::from(e.value.trim())),
            None => None,
        };
        Ok(VmwareSoapConfig {
            address,
            port,
            login,
            password,
            password_script,
            ssl,
            ca_file,
            datacenter,
            timeout_secs: s.int("timeout")? as u64,
        })
    }
}

impl BackendSpec for VmwareSoapConfig {
    #[cfg(feature = "vmware_soap")]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        use fence_drivers::vmware_soap::{Tls, VmwareSoapDriver, VmwareSoapOptions};
        use std::time::Duration;
        let password = super::password(&self.password, &self.password_script)?
            .ok_or("backends/vmware_soap needs password or password_script")?;
        let tls = match self.ssl {
            TlsMode::Plain => Tls::Plain,
            TlsMode::Verify => Tls::Verify {
                ca: self.ca_file.clone(),
            },
            TlsMode::Insecure => Tls::Insecure,
        };
        let port = self
            .port
            .unwrap_or(if tls == Tls::Plain { 80 } else { 443 });
        VmwareSoapDriver::connect(VmwareSoapOptions {
            host: self.address.clone(),
            port,
            tls,
            login: self.login.clone(),
            password,
            datacenter: self.datacenter.clone(),
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
        })
        .map(|d| Arc::new(d) as Arc<dyn Driver>)
        .map_err(|e| Box::new(e) as BuildError)
    }

    #[cfg(not(feature = "vmware_soap"))]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        Err("built without the vmware_soap feature".into())
    }
}
