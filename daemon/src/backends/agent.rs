//! `agent`: fences through any installed fence agent (`/usr/sbin/fence_*`: fence_virsh,
//! fence_ipmilan, fence_redfish, … or ours), run once per status/off/on/list with the
//! fence-agents interface (stdin `key=value`, exit codes 0/1/2, `-o metadata`), with the
//! `fence_agent` cargo feature. Not known to the C daemon.
//!
//! ```text
//! backends {
//!     agent {
//!         agent = "fence_virsh";       # a bare name under /usr/sbin, or an absolute path
//!         timeout = "20";              # seconds per agent run
//!         options {                    # written to the agent's stdin, checked against
//!             ip = "kvm1.example";     # its `-o metadata` at start-up
//!             username = "root";
//!             identity_file = "/root/.ssh/id_ed25519";
//!         }
//!     }
//! }
//! ```
//! The `options` block is free-form on purpose: its keys are the agent's parameters, which
//! only the agent's own metadata can tell, so they are checked against it when the driver
//! starts (an unknown key stops start-up naming the key and the agent), not against the
//! daemon's schema. `action`, `port`, `plug`, `nodename`, `uuid` and `domain` are set per call
//! and refused there.

use std::sync::Arc;

use fence_drivers::Driver;

use super::{BackendEntry, BackendSpec, BuildError};
use crate::config::reader::Section;
use crate::config::schema::{KeySpec, KeyType};
use crate::config::ConfigError;

/// The registry entry.
pub const ENTRY: BackendEntry = BackendEntry {
    name: "agent",
    keys: KEYS,
    built: cfg!(feature = "fence_agent"),
    read: |s| Ok(Arc::new(AgentConfig::read(s)?)),
};

const B: &str = "backends/agent";

const KEYS: &[KeySpec] = &[
    KeySpec::new(
        B,
        "agent",
        KeyType::NonEmpty,
        "the fence agent: a name under /usr/sbin (fence_virsh) or an absolute path",
    )
    .required()
    .ours(),
    KeySpec::new(
        B,
        "timeout",
        KeyType::Int { min: 1, max: 3600 },
        "seconds one run of the agent may take before it is killed",
    )
    .default("20")
    .ours(),
];

/// `backends { agent { … } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The agent (`agent`).
    pub agent: String,
    /// Seconds per agent run (`timeout`).
    pub timeout_secs: u64,
    /// The `options { … }` block's assignments, in file order.
    pub options: Vec<(String, String)>,
}

impl AgentConfig {
    /// Read `backends/agent` and its `options` block.
    pub fn read(s: &Section<'_>) -> Result<AgentConfig, ConfigError> {
        let agent = s.text("agent")?.ok_or_else(|| {
            s.missing("agent", "the fence agent to run: agent = \"fence_virsh\";")
        })?;
        let options = s
            .tree()
            .find_block(&format!("{B}/options"))
            // The tree keeps entries in the reference's storage order (last written first).
            .map(|b| {
                b.entries
                    .iter()
                    .rev()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(AgentConfig {
            agent,
            timeout_secs: s.int("timeout")? as u64,
            options,
        })
    }
}

impl BackendSpec for AgentConfig {
    #[cfg(feature = "fence_agent")]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        use fence_drivers::fence_agent::{FenceAgentDriver, FenceAgentOptions};
        let d = FenceAgentDriver::new(FenceAgentOptions {
            agent: self.agent.clone().into(),
            args: self.options.clone(),
            timeout: std::time::Duration::from_secs(self.timeout_secs),
        })?;
        Ok(Arc::new(d))
    }

    #[cfg(not(feature = "fence_agent"))]
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        Err("the agent backend is not built into this fence_virtd".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigTree};

    fn read(text: &str) -> Result<AgentConfig, ConfigError> {
        let t = ConfigTree::parse("t.conf", text).unwrap();
        AgentConfig::read(&Section::new(&t, B))
    }

    #[test]
    fn agent_timeout_and_options_in_file_order() {
        let c = read(
            "backends { agent { agent = \"fence_virsh\"; timeout = \"7\";\n\
             options { ip = \"kvm1\"; username = \"root\"; ip = \"kvm2\"; } } }",
        )
        .unwrap();
        assert_eq!(c.agent, "fence_virsh");
        assert_eq!(c.timeout_secs, 7);
        assert_eq!(
            c.options,
            [("ip", "kvm1"), ("username", "root"), ("ip", "kvm2")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let d = read("backends { agent { agent = \"/opt/fence_x\"; } }").unwrap();
        assert_eq!((d.timeout_secs, d.options.len()), (20, 0));
    }

    #[test]
    fn missing_agent_and_bad_timeout_name_their_place() {
        let e = read("backends { agent { timeout = \"5\"; } }").unwrap_err();
        assert!(e.to_string().contains("backends/agent/@agent"), "{e}");
        let e =
            read("backends { agent { agent = \"fence_virsh\"; timeout = \"0\"; } }").unwrap_err();
        assert!(e.to_string().contains("t.conf:1:"), "{e}");
        // the whole config selects it through the registry
        let t = ConfigTree::parse(
            "t.conf",
            "fence_virtd { listener = \"tcp\"; backend = \"agent\"; }\n\
             listeners { tcp { } }\nbackends { agent { agent = \"fence_virsh\"; } }",
        )
        .unwrap();
        let cfg = Config::from_tree(&t).unwrap();
        assert_eq!(cfg.backend.name(), "agent");
    }
}
