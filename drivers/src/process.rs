//! Running a helper program with a deadline, shared by the fence agent driver (any installed
//! fence agent), vmrun, and password scripts. The program runs in its own process group with no
//! shell of ours in between, its stdin written from a thread (a program that does not read it
//! cannot block us), stdout and stderr read bounded ([`MAX_OUTPUT`] each). On the deadline the
//! whole group is killed ([`DriverError::Timeout`]); after the program exits, what it left in
//! its group is killed too ([`AfterExit::KillGroup`]) or left alone ([`AfterExit::LeaveGroup`]).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::DriverError;

/// Most bytes kept of a program's stdout or stderr (each); more is read and dropped.
pub const MAX_OUTPUT: usize = 1 << 20;

/// What one agent run produced.
#[derive(Debug, Default)]
pub struct RunOutput {
    /// Exit code; `None` if killed by a signal.
    pub code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// Its stdout, at most [`MAX_OUTPUT`] bytes.
    pub stdout: Vec<u8>,
    /// Whether stdout went beyond [`MAX_OUTPUT`].
    pub stdout_truncated: bool,
    /// Its stderr, at most [`MAX_OUTPUT`] bytes.
    pub stderr: Vec<u8>,
}

enum Chunk {
    Out(Vec<u8>),
    Err(Vec<u8>),
    OutEof,
    ErrEof,
}

/// Read a pipe to its end, passing chunks on; stops when the receiver is gone.
fn pump(mut r: impl Read, tx: mpsc::Sender<Chunk>, wrap: fn(Vec<u8>) -> Chunk, eof: Chunk) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(wrap(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(eof);
}

fn append_bounded(dst: &mut Vec<u8>, chunk: &[u8]) -> bool {
    let room = MAX_OUTPUT.saturating_sub(dst.len());
    dst.extend_from_slice(&chunk[..chunk.len().min(room)]);
    chunk.len() > room
}

/// Run the agent with `argv` (beyond argv[0]) and `stdin`, in its own process group, bounded
/// by `timeout`. On the deadline the group is killed and the call is [`DriverError::Timeout`];
/// after the agent exits, whatever it left in its group is killed too. Also runs `vmrun` for
/// [`crate::vmrun`].
#[cfg(feature = "fence_agent")]
pub(crate) fn run_agent(
    agent: &Path,
    argv: &[&str],
    stdin: &[u8],
    timeout: Duration,
    what: &str,
) -> Result<RunOutput, DriverError> {
    run_process(agent, argv, stdin, timeout, what, AfterExit::KillGroup)
}

/// What happens to the processes a command leaves in its group when it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Killed: a fence agent's leftovers are helpers that would hold its pipes.
    KillGroup,
    /// Left alone, and their hold on the output pipes is waited for only briefly
    /// ([`DETACH_GRACE`]): `vmrun start` on Workstation leaves the VM's own process behind.
    /// Killing the group on the deadline, before the command exited, still happens.
    LeaveGroup,
}

/// How long output is still read after a [`AfterExit::LeaveGroup`] command exited.
const DETACH_GRACE: Duration = Duration::from_millis(500);

/// [`run_agent`] with the choice of what happens to the group after the command exits.
pub fn run_process(
    agent: &Path,
    argv: &[&str],
    stdin: &[u8],
    timeout: Duration,
    what: &str,
    after_exit: AfterExit,
) -> Result<RunOutput, DriverError> {
    let mut deadline = Instant::now() + timeout;
    let mut child = Command::new(agent)
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| DriverError::Platform(format!("cannot run {}: {e}", agent.display())))?;
    let raw_pid = i32::try_from(child.id())
        .map_err(|_| DriverError::Platform(format!("{what}: process id out of range")))?;
    let pid = Pid::from_raw(raw_pid);

    // The writer gets its own thread: an agent that does not read its stdin must not block us.
    if let Some(mut w) = child.stdin.take() {
        let data = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || pump(out, tx, Chunk::Out, Chunk::OutEof));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        std::thread::spawn(move || pump(err, tx, Chunk::Err, Chunk::ErrEof));
    }
    drop(tx);

    let mut run = RunOutput::default();
    let (mut out_eof, mut err_eof) = (false, false);
    let mut exited = false;
    let poll = Duration::from_millis(10);
    loop {
        if !exited {
            // Look without reaping: while the agent is an unreaped zombie its pid (= the
            // group id) cannot be reused, so killing the group below hits only its processes.
            match waitid(
                Id::Pid(pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            ) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(_) => {
                    exited = true;
                    match after_exit {
                        // Helpers the agent left in its group (its pipes' other holders) go
                        // too.
                        AfterExit::KillGroup => {
                            let _ = killpg(pid, Signal::SIGKILL);
                        }
                        AfterExit::LeaveGroup => {
                            deadline = deadline.min(Instant::now() + DETACH_GRACE);
                        }
                    }
                }
                Err(e) => {
                    let _ = killpg(pid, Signal::SIGKILL);
                    let _ = child.wait();
                    return Err(DriverError::Platform(format!(
                        "{what}: waiting failed: {e}"
                    )));
                }
            }
        }
        if exited && out_eof && err_eof {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            if exited {
                // It answered; a descendant (that left its group, or that we leave alone)
                // keeps a pipe open. Use what we have.
                if after_exit == AfterExit::LeaveGroup {
                    break;
                }
                tracing::warn!(
                    "{what}: agent exited but its output did not end before the deadline; \
                     using what it wrote"
                );
                break;
            }
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = child.wait();
            drop(rx);
            tracing::warn!("{what}: no answer within {timeout:?}; agent killed");
            return Err(DriverError::Timeout(format!(
                "{what} (fence agent, {timeout:?})"
            )));
        }
        let wait = if out_eof && err_eof {
            poll
        } else {
            poll.min(deadline - now)
        };
        match rx.recv_timeout(wait) {
            Ok(Chunk::Out(c)) => run.stdout_truncated |= append_bounded(&mut run.stdout, &c),
            Ok(Chunk::Err(c)) => {
                append_bounded(&mut run.stderr, &c);
            }
            Ok(Chunk::OutEof) => out_eof = true,
            Ok(Chunk::ErrEof) => err_eof = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                out_eof = true;
                err_eof = true;
                if !exited {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| DriverError::Platform(format!("{what}: waiting failed: {e}")))?;
    run.code = status.code();
    run.signal = std::os::unix::process::ExitStatusExt::signal(&status);
    Ok(run)
}
