//! Unit-test access to the installed reference agents: the expected texts (help, metadata) are
//! produced by running the reference at test time instead of being stored. A missing reference
//! is a test failure, never a skip.

use std::process::{Command, Stdio};

/// Stdout of `/usr/sbin/<agent> <args>`, which must exit 0.
pub(crate) fn reference_stdout(agent: &str, args: &[&str]) -> String {
    let path = format!("/usr/sbin/{agent}");
    assert!(
        std::path::Path::new(&path).exists(),
        "reference {path} is missing: install it with scripts/install-peers.sh \
         (Debian fence-agents / fence-virt 4.12.1)"
    );
    let out = Command::new(&path)
        .args(args)
        .env_remove("PCMK_service")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {path}: {e}"));
    assert!(out.status.success(), "{path} {args:?}: {}", out.status);
    String::from_utf8(out.stdout).expect("reference output is UTF-8")
}
