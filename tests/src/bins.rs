//! Locating the programs under test: the reference C binaries from the Debian `fence-virt` /
//! `fence-virtd` packages in `/usr/sbin`, and ours in the cargo target directory that built the
//! running test executable.
//!
//! A missing binary is a test failure (panic), never a skip.

use std::fmt;
use std::path::{Path, PathBuf};

/// Which implementation of a program to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Impl {
    /// The reference C implementation (Debian fence-agents 4.12.1), `/usr/sbin/<name>`.
    C,
    /// Our Rust implementation, `<target dir>/<profile>/<name>`.
    Ours,
}

impl fmt::Display for Impl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Impl::C => "C",
            Impl::Ours => "ours",
        })
    }
}

/// An (agent, daemon) pairing of the interop matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pair {
    /// Implementation of the agent (`fence_xvm`).
    pub agent: Impl,
    /// Implementation of the daemon (`fence_virtd`).
    pub daemon: Impl,
}

impl Pair {
    /// Reference agent against reference daemon: the baseline that defines expectations.
    pub const C_C: Pair = Pair {
        agent: Impl::C,
        daemon: Impl::C,
    };
    /// Our agent against the reference daemon.
    pub const OURS_C: Pair = Pair {
        agent: Impl::Ours,
        daemon: Impl::C,
    };
    /// The reference agent against our daemon.
    pub const C_OURS: Pair = Pair {
        agent: Impl::C,
        daemon: Impl::Ours,
    };
    /// Our agent against our daemon.
    pub const OURS_OURS: Pair = Pair {
        agent: Impl::Ours,
        daemon: Impl::Ours,
    };
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} agent -> {} daemon", self.agent, self.daemon)
    }
}

/// Directory of the reference binaries.
pub const REFERENCE_DIR: &str = "/usr/sbin";

/// The cargo profile directory (`<target>/<profile>`) that holds the running test binary.
///
/// Test executables live in `<target>/<profile>/deps/`; the workspace binaries one level up.
pub fn our_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent directory");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// Path of program `name` for implementation `which`; panics if it does not exist.
pub fn path(which: Impl, name: &str) -> PathBuf {
    let p = match which {
        Impl::C => Path::new(REFERENCE_DIR).join(name),
        Impl::Ours => our_bin_dir().join(name),
    };
    if !p.is_file() {
        match which {
            Impl::C => panic!(
                "reference binary {} is missing: the peer is required (run scripts/install-peers.sh)",
                p.display()
            ),
            Impl::Ours => panic!(
                "our binary {} is missing: run cargo build --workspace first",
                p.display()
            ),
        }
    }
    p
}

/// Path of an arbitrary system tool; panics with a clear message when it is missing.
pub fn system_tool(path_str: &str) -> PathBuf {
    let p = PathBuf::from(path_str);
    assert!(
        p.is_file(),
        "required tool {path_str} is missing (run scripts/install-peers.sh)"
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_dir_is_profile_dir() {
        let d = our_bin_dir();
        assert!(d.is_dir(), "{}", d.display());
        assert_ne!(d.file_name().unwrap(), "deps");
    }

    #[test]
    fn reference_fence_xvm_found() {
        assert_eq!(path(Impl::C, "fence_xvm"), Path::new("/usr/sbin/fence_xvm"));
    }

    #[test]
    #[should_panic(expected = "run cargo build --workspace first")]
    fn missing_ours_panics_with_hint() {
        path(Impl::Ours, "no_such_fence_binary");
    }
}
