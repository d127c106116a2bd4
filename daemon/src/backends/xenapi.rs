//! `xenapi`: fences the VMs of a XenServer / Citrix Hypervisor / XCP-ng pool through XenAPI
//! (not known to the C daemon), with the `xenapi` cargo feature. One session serves the
//! daemon's life: the driver logs in again once when a call is answered `SESSION_INVALID`,
//! follows `HOST_IS_SLAVE` to the pool master (the configured URL may name any pool host), and
//! keeps a bounded cache of VM references (not of power states), so a status with a known VM
//! costs one `VM.get_record`. Plain Xen hosts (xl/libxl) are served by the `libvirt` backend
//! with a `xen://` URI instead.

use std::path::PathBuf;
use std::sync::Arc;

use fence_drivers::Driver;

use super::{BackendEntry, BackendSpec, BuildError};
use crate::config::reader::Section;
use crate::config::schema::{KeySpec, KeyType};
use crate::config::ConfigError;

/// The registry entry.
pub const ENTRY: BackendEntry = BackendEntry {
    name: "xenapi",
    keys: KEYS,
    built: cfg!(feature = "xenapi"),
    read: |s| Ok(Arc::new(XenApiConfig::read(s)?)),
};

const B: &str = "backends/xenapi";

const KEYS: &[KeySpec] = &[
    KeySpec::new(
        B,
        "url",
        KeyType::NonEmpty,
        "http:// or https:// URL of any pool host",
    )
    .required()
    .ours(),
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
        KeyType::Word(&["secure", "insecure"]),
        "for https URLs: certificate checks on or off",
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
        "timeout",
        KeyType::Int {
            min: 1,
            max: u32::MAX as i64,
        },
        "seconds one call to the server may take",
    )
    .default("10")
    .ours(),
];

/// `backends { xenapi { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XenApiConfig {
    /// `http[s]://host[:port][/path]` of any pool host (`url`, required).
    pub url: String,
    /// User (`login`, required).
    pub login: String,
    /// Password (`password`).
    pub password: Option<String>,
    /// Command printing the password (`password_script`).
    pub password_script: Option<String>,
    /// Certificate checks for https (`ssl = "secure"`, the default) or not.
    pub verify: bool,
    /// CA certificates (PEM) trusted instead of the system store (`ca_file`).
    pub ca_file: Option<PathBuf>,
    /// Per-call timeout in seconds (`timeout`).
    pub timeout_secs: u64,
}

impl XenApiConfig {
    /// Read `backends/xenapi`: `url` (http or https), `login` and one of `password` and
    /// `password_script` are required; `ca_file` only goes with `ssl = "secure"`.
    pub fn read(s: &Section<'_>) -> Result<XenApiConfig, ConfigError> {
        let url = s.text("url")?;
        let login = s.text("login")?;
        let password_script = s.text("password_script")?;
        let url =
            url.ok_or_else(|| s.missing("url", "a pool host: url = \"https://xen1.example\";"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            if let Some(e) = s.entry("url") {
                return Err(s.invalid("url", e, "an http:// or https:// URL"));
            }
        }
        let login = login.ok_or_else(|| s.missing("login", "the user: login = \"root\";"))?;
        let password = s.text("password")?;
        if password.is_none() && password_script.is_none() {
            return Err(s.missing(
                "password",
                "set password = \"…\"; or password_script = \"/path/to/script\";",
            ));
        }
        let verify = s.word_or_default("ssl")? != "insecure";
        let ca_file = match s.entry("ca_file") {
            Some(e) if !verify => {
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
        Ok(XenApiConfig {
            url,
            login,
            password,
            password_script,
            verify,
            ca_file,
            timeout_secs: s.int("timeout")? as u64,
        })
    }
}

impl BackendSpec for XenApiConfig {
    #[cfg(feature = "xenapi")]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        use fence_drivers::xenapi::{Tls, XenApiDriver, XenApiOptions};
        use std::time::Duration;
        let password = super::password(&self.password, &self.password_script)?
            .ok_or("backends/xenapi needs password or password_script")?;
        let tls = if self.verify {
            Tls::Verify {
                ca: self.ca_file.clone(),
            }
        } else {
            Tls::Insecure
        };
        XenApiDriver::connect(XenApiOptions {
            url: self.url.clone(),
            tls,
            login: self.login.clone(),
            password,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
        })
        .map(|d| Arc::new(d) as Arc<dyn Driver>)
        .map_err(|e| Box::new(e) as BuildError)
    }

    #[cfg(not(feature = "xenapi"))]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        Err("built without the xenapi feature".into())
    }
}
