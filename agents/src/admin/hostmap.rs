//! `fence_virtctl hostmap`: the monitoring host map in Shinken's `hot_dependencies` format
//! ([`fence_drivers::hostmap`]), for its `mapping_file` or as its `mapping_command`.
//!
//! * From the running daemon: its last VM table, named with its `hostmap_rules` (or `-r`)
//!   and its rename table.
//! * `--vsphere`: standalone, straight from a vCenter or ESXi with our vSphere driver (one
//!   paged property collection), with `fence_vmware_soap`'s connection options (`-a`, `-u`,
//!   `-l`, `-p`/`-S`, `-z`, `--ssl-insecure`, `-s` datacenter) and `--rename FILE`. This
//!   replaces the script pair sites run from `mapping_command` today.
//!
//! `-o FILE` writes the file atomically and only when its content changed; otherwise the map
//! goes to stdout.

use std::path::Path;
use std::process::ExitCode;

use fence_drivers::hostmap::{self, Rules};
use fence_proto::admin::{Request, Response};

use super::{client, fail, parse, socket_of, usage_error};

/// Run the command.
pub fn main(args: &[String]) -> ExitCode {
    let mut o = getopts::Options::new();
    o.optopt(
        "o",
        "output",
        "write the map to FILE (atomically, only when changed)",
        "FILE",
    );
    o.optopt("r", "rules", "name rules: lower, nofqdn or both", "RULES");
    o.optflag(
        "",
        "vsphere",
        "ask a vCenter/ESXi directly instead of the daemon",
    );
    o.optopt(
        "",
        "rename",
        "with --vsphere: a file of \"FROM TO\" lines",
        "FILE",
    );
    o.optopt("a", "ip", "vCenter/ESXi address", "HOST");
    o.optopt("u", "ipport", "port (default 80, 443 with -z)", "PORT");
    o.optopt("l", "username", "login", "LOGIN");
    o.optopt("p", "password", "password", "PASSWORD");
    o.optopt(
        "S",
        "password-script",
        "a script printing the password",
        "SCRIPT",
    );
    o.optflag("z", "ssl", "HTTPS, certificate verified");
    o.optflag("", "ssl-insecure", "HTTPS without verification");
    o.optflag("", "ssl-secure", "HTTPS, certificate verified");
    o.optopt("s", "vmware-datacenter", "only this datacenter", "DC");
    o.optopt(
        "",
        "timeout",
        "seconds each vSphere call may take (default 60)",
        "SECONDS",
    );
    let m = match parse("hostmap", o, args) {
        Ok(m) => m,
        Err(c) => return c,
    };
    let rules = match m.opt_str("r").map(|r| Rules::parse(&r)).transpose() {
        Ok(r) => r,
        Err(e) => return usage_error("hostmap", &e.to_string()),
    };
    let text = if m.opt_present("vsphere") {
        match vsphere(&m, rules.unwrap_or_default()) {
            Ok(t) => t,
            Err(Failure::Usage(e)) => return usage_error("hostmap", &e),
            Err(Failure::Failed(e)) => return fail("hostmap", &e),
        }
    } else {
        for o in ["a", "l", "p", "S", "s", "u", "rename"] {
            if m.opt_present(o) {
                return usage_error(
                    "hostmap",
                    &format!("-{o} only goes with --vsphere (the daemon uses its own names)"),
                );
            }
        }
        let req = Request::Hostmap {
            rules: rules.map(|r| r.to_string()),
        };
        match client::ask(&socket_of(&m), &req) {
            Ok(Response::Hostmap(t)) => t,
            Ok(other) => return fail("hostmap", &format!("unexpected answer {other:?}")),
            Err(e) => return fail("hostmap", &fence_drivers::error_chain(&e)),
        }
    };
    match m.opt_str("o") {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(f) => match hostmap::write_if_changed(Path::new(&f), &text) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail("hostmap", &format!("cannot write {f}: {e}")),
        },
    }
}

enum Failure {
    #[cfg_attr(not(feature = "vmware_soap"), allow(dead_code))]
    Usage(String),
    Failed(String),
}

#[cfg(feature = "vmware_soap")]
fn vsphere(m: &getopts::Matches, rules: Rules) -> Result<String, Failure> {
    use fence_drivers::hostmap::{Naming, Renames};
    use fence_drivers::vmware_soap::{Tls, VmwareSoapDriver, VmwareSoapOptions};
    use fence_drivers::Driver;
    use std::time::Duration;
    let need = |o: &str, what: &str| {
        m.opt_str(o)
            .ok_or_else(|| Failure::Usage(format!("--vsphere needs -{o} ({what})")))
    };
    let host = need("a", "the vCenter or ESXi address")?;
    let login = need("l", "the login")?;
    let password = match (m.opt_str("p"), m.opt_str("S")) {
        (Some(p), _) => p,
        (None, Some(script)) => {
            let out = fence_drivers::secrets::run_password_script(
                &script,
                fence_drivers::secrets::PASSWORD_SCRIPT_TIMEOUT,
            )
            .map_err(|e| Failure::Failed(format!("password script: {e}")))?;
            if !out.status.success() {
                return Err(Failure::Failed(format!(
                    "password script exited with {}",
                    out.status
                )));
            }
            out.password
        }
        (None, None) => {
            return Err(Failure::Usage(
                "--vsphere needs -p PASSWORD or -S SCRIPT".into(),
            ))
        }
    };
    let tls = if m.opt_present("ssl-insecure") {
        Tls::Insecure
    } else if m.opt_present("z") || m.opt_present("ssl-secure") {
        Tls::Verify { ca: None }
    } else {
        Tls::Plain
    };
    let port = match m.opt_str("u") {
        None if tls == Tls::Plain => 80,
        None => 443,
        Some(p) => p
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| Failure::Usage(format!("-u {p:?} is not a TCP port")))?,
    };
    let timeout = match m.opt_str("timeout") {
        None => Duration::from_secs(60),
        Some(t) => t
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&t| t > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| Failure::Usage(format!("--timeout {t:?} is not a number of seconds")))?,
    };
    let renames = match m.opt_str("rename") {
        None => Renames::default(),
        Some(f) => {
            let text =
                std::fs::read_to_string(&f).map_err(|e| Failure::Failed(format!("{f}: {e}")))?;
            Renames::parse(&text).map_err(|e| Failure::Failed(format!("{f}: {e}")))?
        }
    };
    let d = VmwareSoapDriver::connect(VmwareSoapOptions {
        host,
        port,
        tls,
        login,
        password,
        datacenter: m.opt_str("s"),
        timeout,
    })
    .map_err(|e| Failure::Failed(fence_drivers::error_chain(&e)))?;
    let rows = d
        .inventory()
        .map_err(|e| Failure::Failed(fence_drivers::error_chain(&e)))?;
    drop(d); // logs out
    Ok(hostmap::render(&hostmap::links(
        &rows,
        &Naming { rules, renames },
    )))
}

#[cfg(not(feature = "vmware_soap"))]
fn vsphere(_: &getopts::Matches, _: Rules) -> Result<String, Failure> {
    Err(Failure::Failed(
        "this fence_virtctl is built without the vmware_soap feature".into(),
    ))
}
