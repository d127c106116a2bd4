//! One run of an agent (`fence_xvm`, `fence_virt`; reference or ours) inside a [`Netns`],
//! either with command-line arguments or, like Pacemaker's fencer does, with no arguments and
//! `key=value` lines on stdin. Output goes to temp files (no pipe deadlock) and the run is
//! bounded by a timeout after which the agent is killed.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::bins::{self, Impl};
use crate::netns::Netns;
use crate::process::{code_of, stop, wait_bounded};

/// An agent program of one implementation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Which implementation.
    pub which: Impl,
    /// Program name (`fence_xvm`, `fence_virt`).
    pub name: String,
}

/// Result of a finished agent run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOutput {
    /// Exit code (`128 + signal` if killed by a signal).
    pub code: i32,
    /// Whether the harness had to kill it at the timeout.
    pub timed_out: bool,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// Input of an agent run.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Command-line arguments, stdin closed.
    Argv(&'a [String]),
    /// No arguments; these lines (each followed by `\n`) on stdin, then EOF.
    Stdin(&'a [String]),
}

/// A running agent (see [`Agent::spawn`]); killed on drop if still running.
#[derive(Debug)]
pub struct RunningAgent {
    child: Child,
    dir: TempDir,
}

impl Agent {
    /// `fence_xvm` of `which`.
    pub fn fence_xvm(which: Impl) -> Agent {
        Agent {
            which,
            name: "fence_xvm".into(),
        }
    }

    /// `fence_virt` of `which`.
    pub fn fence_virt(which: Impl) -> Agent {
        Agent {
            which,
            name: "fence_virt".into(),
        }
    }

    /// Path of the binary (panics if missing).
    pub fn path(&self) -> PathBuf {
        bins::path(self.which, &self.name)
    }

    /// Starts the agent in `ns` without waiting.
    pub fn spawn(&self, ns: &Netns, input: Input<'_>) -> RunningAgent {
        self.spawn_with(input, |program| ns.cmd(program))
    }

    /// Like [`spawn`](Self::spawn), with `launch(program)` making the command that runs a
    /// program where the agent belongs (e.g. a cluster node's
    /// [`Holder::cmd`](crate::holder::Holder::cmd)).
    pub fn spawn_with(
        &self,
        input: Input<'_>,
        launch: impl Fn(&std::path::Path) -> std::process::Command,
    ) -> RunningAgent {
        let bin = self.path();
        let dir = tempfile::Builder::new()
            .prefix("fence-agent-")
            .tempdir()
            .expect("tempdir");
        let out = File::create(dir.path().join("stdout")).expect("stdout file");
        let err = File::create(dir.path().join("stderr")).expect("stderr file");
        let mut cmd = launch(&bin);
        cmd.stdout(out).stderr(err);
        let stdin_text = match input {
            Input::Argv(args) => {
                cmd.args(args).stdin(Stdio::null());
                None
            }
            Input::Stdin(lines) => {
                cmd.stdin(Stdio::piped());
                Some(lines.iter().map(|l| format!("{l}\n")).collect::<String>())
            }
        };
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        if let Some(text) = stdin_text {
            let mut sin = child.stdin.take().expect("stdin pipe");
            // An agent may exit before reading everything; that is its business.
            let _ = sin.write_all(text.as_bytes());
        }
        RunningAgent { child, dir }
    }

    /// Runs the agent to completion (killed after `timeout`).
    pub fn run(&self, ns: &Netns, input: Input<'_>, timeout: Duration) -> AgentOutput {
        self.spawn(ns, input).wait(timeout)
    }

    /// Runs with argv.
    pub fn run_args(&self, ns: &Netns, args: &[&str], timeout: Duration) -> AgentOutput {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.run(ns, Input::Argv(&v), timeout)
    }

    /// Runs with stdin lines.
    pub fn run_stdin(&self, ns: &Netns, lines: &[&str], timeout: Duration) -> AgentOutput {
        let v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        self.run(ns, Input::Stdin(&v), timeout)
    }
}

/// Runs `cmd` (stdin empty, output to temporary files) to completion, killed after `timeout`.
pub fn run_bounded(mut cmd: std::process::Command, timeout: Duration) -> AgentOutput {
    let dir = tempfile::Builder::new()
        .prefix("fence-run-")
        .tempdir()
        .expect("tempdir");
    let out = File::create(dir.path().join("stdout")).expect("stdout file");
    let err = File::create(dir.path().join("stderr")).expect("stderr file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    RunningAgent { child, dir }.wait(timeout)
}

impl RunningAgent {
    /// Pid of the agent.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits at most `timeout`, killing the agent if it is still running, and collects output.
    pub fn wait(mut self, timeout: Duration) -> AgentOutput {
        let (status, timed_out) = match wait_bounded(&mut self.child, timeout) {
            Some(st) => (st, false),
            None => (
                stop(&mut self.child, Duration::from_millis(500)).expect("reap agent"),
                true,
            ),
        };
        let read = |n: &str| fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        AgentOutput {
            code: code_of(status),
            timed_out,
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_validate_all_runs_without_daemon() {
        let ns = Netns::new();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, b"k").unwrap();
        let key = key.display().to_string();
        let a = Agent::fence_xvm(Impl::C);
        let out = a.run_args(
            &ns,
            &["-o", "validate-all", "-H", "x", "-k", &key],
            Duration::from_secs(10),
        );
        assert_eq!((out.code, out.timed_out), (0, false), "{out:?}");
        let lines = [
            "action=validate-all".to_string(),
            "plug=x".into(),
            format!("key_file={key}"),
        ];
        let out = a.run(&ns, Input::Stdin(&lines), Duration::from_secs(10));
        assert_eq!(out.code, 0, "{out:?}");
        let out = a.run_args(
            &ns,
            &["-o", "validate-all", "-k", &key],
            Duration::from_secs(10),
        );
        assert_eq!(out.code, 1, "no domain must fail: {out:?}");
    }

    #[test]
    fn timeout_kills_agent() {
        let ns = Netns::new();
        let a = Agent {
            which: Impl::C,
            name: "fence_xvm".into(),
        };
        // No daemon in the namespace and a 60 s agent timeout: the harness must cut it short.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, b"k").unwrap();
        let out = a.run_args(
            &ns,
            &["-o", "list", "-t", "60", "-k", key.to_str().unwrap()],
            Duration::from_millis(500),
        );
        assert!(out.timed_out, "{out:?}");
    }
}
