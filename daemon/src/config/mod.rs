//! `fence_virt.conf`: the generic tree ([`tree`], read by `lexer` and `parser`, looked up
//! through `paths`), the table of every key ([`schema`]), the typed daemon configuration
//! ([`types`]) and its reader ([`reader`]), the `groups` access-control map ([`groups`]) and
//! the atomic writer used by `fence_virtd -c`. Compatible with the "simpleconfig" reader and
//! the key handling of fence-agents 4.12.1 `fence_virtd` (`agents/virt/config/`,
//! `server/static_map.c`, `server/config.c`): every file the reference reads as its author
//! meant loads here with the same meaning. Files the reference silently misreads
//! (`port = "1229x"`, `foreground = "yes"`, a stray `"`) are rejected with file, line and
//! column; [`tree`] and [`reader`] list each such difference.

pub mod groups;
mod lexer;
mod parser;
mod paths;
pub mod reader;
pub mod schema;
pub mod tree;
pub mod types;

use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use crate::backends::BackendChoice;
pub use groups::{is_canonical_uuid, Group, Groups};
pub use reader::{parse_int, Section};
pub use schema::{KeySpec, KeyType, DEFAULT_JOURNAL, DEFAULT_KEY_FILE};
pub use tree::{Block, ConfigTree, Entry, Pos, SetError};
pub use types::{
    Config, DaemonSection, Family, FleetConfig, ListenerConfig, MetricsAddr, MulticastConfig,
    PmMonitorConfig, SerialConfig, SerialMode, TcpConfig, TelemetryConfig, VsockConfig,
};

/// The configuration file the daemon reads when `-f` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/fence_virt.conf";

/// Why a configuration could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The text does not follow the simpleconfig grammar.
    #[error("{file}:{pos}: {message}")]
    Syntax {
        /// The file name.
        file: String,
        /// Where the problem is.
        pos: Pos,
        /// What was expected and what was found.
        message: String,
    },
    /// A required setting is absent.
    #[error("{file}: missing required setting {key}: {hint}")]
    Missing {
        /// The file name.
        file: String,
        /// The lookup path, e.g. `fence_virtd/@backend`.
        key: String,
        /// How to fix it.
        hint: String,
    },
    /// A setting has a value we cannot use.
    #[error("{file}:{pos}: invalid value \"{value}\" for {key}: expected {expected}")]
    Invalid {
        /// The file name.
        file: String,
        /// Where the value is.
        pos: Pos,
        /// The lookup path, e.g. `listeners/multicast/@port`.
        key: String,
        /// The value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A setting that would be read, but whose effect is unsafe enough to refuse.
    #[error("{file}:{pos}: {message}")]
    Unsafe {
        /// The file name.
        file: String,
        /// Where the setting is.
        pos: Pos,
        /// What is wrong and how to say what was meant.
        message: String,
    },
    /// `fence_virtd/@backend` names a backend this build cannot run (the reference would look
    /// for a plugin of that name and fail the backend's init).
    #[error("{file}:{pos}: backend \"{name}\" {why} (this build has: {built})")]
    Backend {
        /// The file name.
        file: String,
        /// Where the value is.
        pos: Pos,
        /// The name as written.
        name: String,
        /// `is not known` or `is not built into this fence_virtd`.
        why: &'static str,
        /// The backends this build has, comma-separated.
        built: String,
    },
}

/// Write `text` to `path` atomically with mode 0600, as `fence_virtd -c` does: a temporary file
/// is created in the same directory with mode 0600 (never readable by others, even briefly),
/// written and synced, then renamed over `path`. On failure the temporary file is removed and
/// `path` is untouched.
pub fn write_config_file(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?
        .to_string_lossy()
        .into_owned();
    let mut attempt = 0u32;
    let (tmp, mut file) = loop {
        let suffix: u64 = rand::random();
        let tmp = dir.join(format!(".{base}.{suffix:016x}.tmp"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        // The creation mode is filtered by the umask; make it exactly 0600.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename durable; failure to sync a directory is not worth failing the write.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_config_file_is_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fence_virt.conf");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_config_file(&path, "fence_virtd {\n}\n\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "fence_virtd {\n}\n\n"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Only the target is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("fence_virt.conf")]);
    }

    #[test]
    fn write_config_file_failure_leaves_target_alone() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails.
        let target = dir.path().join("conf");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), "x").unwrap();
        assert!(write_config_file(&target, "a = \"b\";\n").is_err());
        assert!(target.join("keep").exists());
        let count = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(count, 1, "temporary file must be removed");
    }

    #[test]
    fn error_messages_name_file_line_and_column() {
        let e = ConfigError::Invalid {
            file: "/etc/fence_virt.conf".into(),
            pos: Pos {
                line: 12,
                column: 9,
            },
            key: "listeners/multicast/@port".into(),
            value: "x".into(),
            expected: "a port number 1-65535".into(),
        };
        assert_eq!(
            e.to_string(),
            "/etc/fence_virt.conf:12:9: invalid value \"x\" for listeners/multicast/@port: \
             expected a port number 1-65535"
        );
    }
}
