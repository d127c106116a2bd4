//! The backends: one module per backend, each owning its `backends/<name>` block (the keys in
//! the schema, a typed configuration read and validated through it) and the construction of
//! its driver, behind its cargo feature. [`REGISTRY`] lists them; start-up, `-l`, the wizard
//! and the configuration reader only ever go through it, so adding a backend is a module here
//! plus one line in [`REGISTRY`].
//!
//! A module provides a [`BackendEntry`] constant (conventionally `ENTRY`):
//! * `name`: the value of `fence_virtd/@backend` that selects it;
//! * `keys`: the [`KeySpec`]s of its block (`block: "backends/<name>"`), documented in
//!   `man/fence_virt.conf.5` (a test checks);
//! * `built`: `cfg!(feature = "…")` when it needs a cargo feature, else `true`;
//! * `read`: turns the block, through a [`Section`], into its typed configuration (a
//!   [`BackendSpec`]), with file/line/column errors;
//! * the [`BackendSpec`] implementation's `build` constructs the driver (only called when
//!   `built`).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use fence_drivers::Driver;

use crate::config::reader::Section;
use crate::config::schema::KeySpec;
use crate::config::ConfigError;

pub mod agent;
pub mod cpg;
pub mod libvirt;
pub mod sim;
pub mod vmrun;
pub mod vmware_soap;
pub mod xenapi;

/// Why a driver could not be constructed.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// The password a backend logs in with: `password` as written, else the output of
/// `password_script` (run with the daemon's bound, [`crate::startup::run_password_script`]),
/// else none. Shared by the backends that take both keys.
pub fn password(
    password: &Option<String>,
    password_script: &Option<String>,
) -> Result<Option<String>, BuildError> {
    match (password, password_script) {
        (Some(p), _) => Ok(Some(p.clone())),
        (None, Some(script)) => {
            crate::startup::run_password_script(script, crate::startup::PASSWORD_SCRIPT_TIMEOUT)
                .map(Some)
                .map_err(|e| format!("password_script: {e}").into())
        }
        (None, None) => Ok(None),
    }
}

/// Every backend this daemon knows, built into this binary or not, in the order `-l` lists
/// them. A backend that is known but not built (`built: false`) still has its block read and
/// checked, and start-up refuses it by name.
pub const REGISTRY: &[BackendEntry] = &[
    libvirt::ENTRY,
    sim::ENTRY,
    vmware_soap::ENTRY,
    xenapi::ENTRY,
    vmrun::ENTRY,
    agent::ENTRY,
    cpg::ENTRY,
];

/// One backend in the [`REGISTRY`].
#[derive(Debug)]
pub struct BackendEntry {
    /// The name in `fence_virtd/@backend` (compared without regard to case).
    pub name: &'static str,
    /// The keys of `backends/<name>`.
    pub keys: &'static [KeySpec],
    /// Whether this binary can construct it (its cargo feature is on).
    pub built: bool,
    /// Read and check `backends/<name>`.
    pub read: fn(&Section<'_>) -> Result<Arc<dyn BackendSpec>, ConfigError>,
}

impl BackendEntry {
    /// The block path, `backends/<name>`.
    pub fn block(&self) -> String {
        format!("backends/{}", self.name)
    }
}

/// The registry entry named `name` (without regard to case).
pub fn find(name: &str) -> Option<&'static BackendEntry> {
    REGISTRY.iter().find(|b| b.name.eq_ignore_ascii_case(name))
}

/// The backends this binary can run, in registry order.
pub fn built() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().filter(|b| b.built).map(|b| b.name)
}

/// A backend's typed configuration, read from its block; it knows how to construct the
/// driver.
pub trait BackendSpec: DynEq + fmt::Debug + Send + Sync {
    /// Construct the driver (this may connect to a hypervisor or run a password script).
    /// Only called for a backend whose entry is `built`.
    fn build(&self) -> Result<Arc<dyn Driver>, BuildError>;
}

/// Comparison and downcasting of [`BackendSpec`] trait objects (implemented for every
/// `PartialEq` type).
pub trait DynEq: Any {
    /// `self` as [`Any`], to downcast.
    fn as_any(&self) -> &dyn Any;
    /// Whether `other` is the same type with an equal value.
    fn dyn_eq(&self, other: &dyn Any) -> bool;
}

impl<T: Any + PartialEq> DynEq for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn dyn_eq(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

/// `fence_virtd/@backend` as read: the name as written, and for a known backend its entry
/// and typed configuration.
#[derive(Debug, Clone)]
pub struct BackendChoice {
    /// The name as written.
    pub written: String,
    /// The entry and the block read by it; `None` when no backend has this name.
    pub known: Option<(&'static BackendEntry, Arc<dyn BackendSpec>)>,
}

impl PartialEq for BackendChoice {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
            && match (&self.known, &other.known) {
                (None, None) => true,
                (Some((a, x)), Some((b, y))) => a.name == b.name && x.dyn_eq((**y).as_any()),
                _ => false,
            }
    }
}

impl Eq for BackendChoice {}

/// A choice equals a typed configuration when it holds an equal one.
impl<T: BackendSpec + PartialEq> PartialEq<T> for BackendChoice {
    fn eq(&self, other: &T) -> bool {
        self.settings::<T>() == Some(other)
    }
}

impl BackendChoice {
    /// Read `fence_virtd/@backend`'s block through the registry: a known name has its block
    /// read and checked (built or not); an unknown one is kept for start-up to refuse.
    pub fn read(written: &str, tree: &crate::config::ConfigTree) -> Result<Self, ConfigError> {
        let known = match find(written) {
            None => None,
            Some(entry) => {
                let block = entry.block();
                let section = Section::new(tree, &block);
                section.note_unknown();
                Some((entry, (entry.read)(&section)?))
            }
        };
        Ok(BackendChoice {
            written: written.to_string(),
            known,
        })
    }

    /// The backend's name: the registry's spelling when known, else as written.
    pub fn name(&self) -> &str {
        match &self.known {
            Some((e, _)) => e.name,
            None => &self.written,
        }
    }

    /// Whether this binary can run it.
    pub fn is_built(&self) -> bool {
        self.known.as_ref().is_some_and(|(e, _)| e.built)
    }

    /// The typed configuration, if it is a `T`.
    pub fn settings<T: BackendSpec>(&self) -> Option<&T> {
        self.known
            .as_ref()
            .and_then(|(_, s)| (**s).as_any().downcast_ref::<T>())
    }

    /// Construct the driver; a backend that is unknown or not built is an error naming the
    /// backends this build has.
    pub fn build(&self) -> Result<Arc<dyn Driver>, BuildError> {
        match &self.known {
            Some((e, spec)) if e.built => spec.build(),
            _ => Err(format!(
                "this backend is not available in this build (it has: {})",
                built().collect::<Vec<_>>().join(", ")
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_blocks_are_theirs() {
        for (i, b) in REGISTRY.iter().enumerate() {
            assert!(
                REGISTRY[..i]
                    .iter()
                    .all(|o| !o.name.eq_ignore_ascii_case(b.name)),
                "{} registered twice",
                b.name
            );
            for k in b.keys {
                assert_eq!(k.block, b.block(), "{} lists {}", b.name, k.path());
            }
        }
    }

    #[test]
    fn built_follows_the_cargo_features() {
        let built: Vec<_> = built().collect();
        assert_eq!(
            built.contains(&"libvirt"),
            cfg!(feature = "libvirt"),
            "{built:?}"
        );
        assert_eq!(
            built.contains(&"vmware_soap"),
            cfg!(feature = "vmware_soap"),
            "{built:?}"
        );
        assert!(built.contains(&"sim"));
        assert_eq!(built.contains(&"cpg"), cfg!(feature = "cpg"), "{built:?}");
    }
}
