//! QEMU stand-ins for the serial listener's guest channels. The daemon connects to a unix
//! socket that QEMU listens on (`<source mode='bind' path='…'/>`); the guest sees the other end
//! as a serial port or, with `guestfwd`, as a TCP address.
//!
//! * [`PtyBridge`]: `socat UNIX-LISTEN:<sock> PTY,link=<tty>,raw,echo=0` — the daemon's
//!   connection becomes a pty, so `fence_virt -D <tty>` talks to the daemon as a guest's
//!   `/dev/ttyS1` would. socat accepts one connection and opens the pty only then, so the
//!   link appearing means the daemon has connected.
//! * [`GuestFwd`]: a relay listening on the unix socket (the daemon's side, re-accepted when the
//!   daemon reconnects) and on `127.0.0.1:<port>` inside a [`Netns`] (the guest side, one
//!   client at a time, as QEMU's guestfwd maps every guest connection onto the one chardev);
//!   `fence_virt -A 127.0.0.1 -p <port>` is then a vmchannel guest.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::bins::system_tool;
use crate::netns::Netns;
use crate::process::{poll_until, stop};

/// socat bridging a domain's unix socket to a pty.
#[derive(Debug)]
pub struct PtyBridge {
    child: Child,
    tty: PathBuf,
}

impl PtyBridge {
    /// Listen on `sock`; the pty will be linked at `tty` once the daemon connects.
    pub fn start(sock: &Path, tty: &Path) -> PtyBridge {
        let socat = system_tool("/usr/bin/socat");
        let child = Command::new(socat)
            .arg(format!("UNIX-LISTEN:{}", sock.display()))
            .arg(format!("PTY,link={},raw,echo=0", tty.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat");
        let mut b = PtyBridge {
            child,
            tty: tty.to_path_buf(),
        };
        let listening = poll_until(Duration::from_secs(5), || sock.exists());
        assert!(listening, "socat did not listen on {}", sock.display());
        assert!(b.is_running(), "socat exited at start");
        b
    }

    /// The pty link (exists once the daemon connected).
    pub fn tty(&self) -> &Path {
        &self.tty
    }

    /// Waits until the daemon has connected (the pty link exists).
    pub fn wait_connected(&self, limit: Duration) -> bool {
        poll_until(limit, || self.tty.exists())
    }

    /// Whether socat still runs (it exits when the daemon closes its connection).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for PtyBridge {
    fn drop(&mut self) {
        stop(&mut self.child, Duration::from_millis(500));
    }
}

/// A guestfwd-like relay between TCP clients and the daemon's unix connection.
#[derive(Debug)]
pub struct GuestFwd {
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl GuestFwd {
    /// Listen on `sock` (daemon side) and on `127.0.0.1:port` inside `ns` (guest side).
    pub fn start(ns: &Netns, sock: &Path, port: u16) -> GuestFwd {
        let unix = UnixListener::bind(sock)
            .unwrap_or_else(|e| panic!("bind unix {}: {e}", sock.display()));
        unix.set_nonblocking(true).expect("nonblocking");
        let tcp = ns.run_in(move || {
            TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("bind tcp 127.0.0.1:{port}: {e}"))
        });
        tcp.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (stop.clone(), connections.clone());
        let thread = std::thread::spawn(move || relay(unix, tcp, s, c));
        GuestFwd {
            stop,
            connections,
            thread: Some(thread),
            port,
        }
    }

    /// The guest-side TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many times the daemon has connected to the unix socket.
    pub fn daemon_connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until the daemon has connected at least `n` times.
    pub fn wait_connected(&self, n: usize, limit: Duration) -> bool {
        poll_until(limit, || self.daemon_connections() >= n)
    }
}

impl Drop for GuestFwd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const TICK: Duration = Duration::from_millis(20);

fn relay(unix: UnixListener, tcp: TcpListener, stop: Arc<AtomicBool>, count: Arc<AtomicUsize>) {
    let mut daemon: Option<UnixStream> = None;
    while !stop.load(Ordering::SeqCst) {
        if let Ok((s, _)) = unix.accept() {
            s.set_nonblocking(false).expect("blocking");
            daemon = Some(s);
            count.fetch_add(1, Ordering::SeqCst);
        }
        let Some(d) = daemon.as_mut() else {
            std::thread::sleep(TICK);
            continue;
        };
        match tcp.accept() {
            Ok((c, _)) => {
                if !pump(d, c, &stop) {
                    daemon = None;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(TICK),
            Err(e) => panic!("relay accept: {e}"),
        }
    }
}

/// Relays one guest connection; false when the daemon closed its side.
fn pump(d: &mut UnixStream, c: TcpStream, stop: &AtomicBool) -> bool {
    let mut buf = [0u8; 4096];
    // Bytes the daemon sent while no guest was connected are lost, as with guestfwd.
    d.set_nonblocking(true).expect("nonblocking");
    loop {
        match d.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    d.set_nonblocking(false).expect("blocking");
    c.set_nonblocking(false).expect("blocking");
    let done = Arc::new(AtomicBool::new(false));
    let mut c_in = c.try_clone().expect("clone tcp");
    let mut d_out = d.try_clone().expect("clone unix");
    let done2 = done.clone();
    let up = std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        loop {
            match c_in.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if d_out.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        done2.store(true, Ordering::SeqCst);
    });
    d.set_read_timeout(Some(TICK)).expect("read timeout");
    let mut c_out = c;
    let mut daemon_alive = true;
    while !done.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        match d.read(&mut buf) {
            Ok(0) => {
                daemon_alive = false;
                break;
            }
            Ok(n) => {
                if c_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                daemon_alive = false;
                break;
            }
        }
    }
    let _ = c_out.shutdown(Shutdown::Both);
    let _ = up.join();
    d.set_read_timeout(None).expect("read timeout");
    daemon_alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guestfwd_relays_both_ways_and_follows_reconnects() {
        let ns = Netns::new();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("ch.sock");
        let fwd = GuestFwd::start(&ns, &sock, 4555);
        let mut daemon = UnixStream::connect(&sock).unwrap();
        assert!(fwd.wait_connected(1, Duration::from_secs(5)));
        let mut guest = ns.run_in(|| TcpStream::connect(("127.0.0.1", 4555)).unwrap());
        guest.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        daemon.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        daemon.write_all(b"pong").unwrap();
        guest.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"pong");
        drop(guest);
        drop(daemon);
        let mut daemon = UnixStream::connect(&sock).unwrap();
        assert!(fwd.wait_connected(2, Duration::from_secs(5)));
        let mut guest = ns.run_in(|| TcpStream::connect(("127.0.0.1", 4555)).unwrap());
        guest.write_all(b"again").unwrap();
        let mut b = [0u8; 5];
        daemon.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"again");
    }

    #[test]
    fn pty_bridge_links_the_pty_once_connected() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let tty = dir.path().join("tty");
        let mut b = PtyBridge::start(&sock, &tty);
        assert!(!tty.exists());
        let mut d = UnixStream::connect(&sock).unwrap();
        assert!(b.wait_connected(Duration::from_secs(5)));
        let mut t = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(b.tty())
            .unwrap();
        t.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        d.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        drop(d);
        assert!(poll_until(Duration::from_secs(5), || !b.is_running()));
    }
}
