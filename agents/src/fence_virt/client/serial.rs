//! Serial and VMChannel modes (`fence_virt -D dev` / plain `fence_virt`, fence-agents 4.12.1
//! `agents/virt/client/serial.c`): the 74-byte request frame, then the agent scans the incoming
//! bytes for the magic (skipping anything else, so stale bytes such as a previous run's host
//! list trailer are harmless), reads the result byte and, for 0xFD / 0xFC, the entries / value
//! that follow. The whole exchange is bounded by `timeout`; writes by 3 s as in C. The trailing
//! frame of a host list is not read (C does not either).
//!
//! Serial device set-up as in C: open read/write, `fcntl` write lock, raw termios with
//! speed | CLOCAL | CRTSCTS | CREAD | data/parity/stop bits, flush, 300 ms hangup. The hangup
//! drops the line by setting speed 0 (POSIX hangup) instead of C's modem-control ioctls,
//! which has the same effect on DTR without `unsafe` ioctl calls.

use super::{read_after_code, ClientConfig, ClientError, Reply};
use fence_proto::{MagicScanner, Op, SerialRequest};
use nix::fcntl::{fcntl, FcntlArg};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{
    cfmakeraw, cfsetspeed, tcflush, tcgetattr, tcsetattr, BaudRate, ControlFlags, FlushArg, SetArg,
};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Write timeout for the request frame (C: 3 s).
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Duration of the hangup (C: 300 ms).
const HANGUP: Duration = Duration::from_millis(300);

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// No parity.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Parsed `serial_params` (`speed,bits`, e.g. `115200,8N1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialParams {
    /// Line speed: 2400, 9600, 19200, 38400, 57600 or 115200.
    pub speed: u32,
    /// Data bits 5..=8.
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits 1 or 2.
    pub stop_bits: u8,
}

impl FromStr for SerialParams {
    type Err = ClientError;

    /// Speed before the comma (empty → 9600); after it, up to three characters from {5,6,7,8},
    /// {n,N,e,E,o,O}, {1,2} in any order (missing ones default to 8, N, 1).
    fn from_str(s: &str) -> Result<SerialParams, ClientError> {
        let bad = || ClientError::SerialParams(s.to_string());
        let (speed, bits) = s.split_once(',').unwrap_or((s, ""));
        let speed = match speed.trim() {
            "" => 9600,
            t => t.parse::<u32>().map_err(|_| bad())?,
        };
        if !matches!(speed, 2400 | 9600 | 19200 | 38400 | 57600 | 115200) {
            return Err(bad());
        }
        let mut p = SerialParams {
            speed,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        };
        let (mut seen_d, mut seen_p, mut seen_s) = (false, false, false);
        if bits.len() > 3 {
            return Err(bad());
        }
        for c in bits.chars() {
            match c {
                '5'..='8' if !seen_d => {
                    p.data_bits = c as u8 - b'0';
                    seen_d = true;
                }
                'n' | 'N' | 'e' | 'E' | 'o' | 'O' if !seen_p => {
                    p.parity = match c.to_ascii_lowercase() {
                        'n' => Parity::None,
                        'e' => Parity::Even,
                        _ => Parity::Odd,
                    };
                    seen_p = true;
                }
                '1' | '2' if !seen_s => {
                    p.stop_bits = c as u8 - b'0';
                    seen_s = true;
                }
                _ => return Err(bad()),
            }
        }
        Ok(p)
    }
}

impl SerialParams {
    fn baud(&self) -> BaudRate {
        match self.speed {
            2400 => BaudRate::B2400,
            9600 => BaudRate::B9600,
            19200 => BaudRate::B19200,
            38400 => BaudRate::B38400,
            57600 => BaudRate::B57600,
            _ => BaudRate::B115200,
        }
    }

    fn control_flags(&self) -> ControlFlags {
        let mut f = ControlFlags::CLOCAL | ControlFlags::CRTSCTS | ControlFlags::CREAD;
        f |= match self.data_bits {
            5 => ControlFlags::CS5,
            6 => ControlFlags::CS6,
            7 => ControlFlags::CS7,
            _ => ControlFlags::CS8,
        };
        match self.parity {
            Parity::None => {}
            Parity::Even => f |= ControlFlags::PARENB,
            Parity::Odd => f |= ControlFlags::PARENB | ControlFlags::PARODD,
        }
        if self.stop_bits == 2 {
            f |= ControlFlags::CSTOPB;
        }
        f
    }
}

/// A byte stream whose reads end at a deadline and whose writes wait at most 3 s.
pub(crate) struct DeadlineIo<S> {
    inner: S,
    deadline: Instant,
}

impl<S: AsFd> DeadlineIo<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> DeadlineIo<S> {
        DeadlineIo {
            inner,
            deadline: Instant::now() + timeout,
        }
    }

    fn wait(&self, flags: PollFlags, until: Instant) -> io::Result<()> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.inner.as_fd(), flags)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl<S: AsFd + Read> Read for DeadlineIo<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait(PollFlags::POLLIN, self.deadline)?;
        self.inner.read(buf)
    }
}

impl<S: AsFd + Write> Write for DeadlineIo<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.wait(PollFlags::POLLOUT, Instant::now() + WRITE_TIMEOUT)?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the request frame and reads the answer on an already prepared stream.
pub(crate) fn exchange<S: Read + Write>(
    s: &mut S,
    op: Op,
    domain: &str,
    seqno: u32,
) -> Result<Reply, ClientError> {
    let frame = SerialRequest::new(op, domain, seqno)
        .map_err(ClientError::Encode)?
        .encode();
    s.write_all(&frame)
        .map_err(|e| ClientError::io("sending the serial request", e))?;
    let mut scanner = MagicScanner::new();
    let mut b = [0u8; 1];
    loop {
        s.read_exact(&mut b)
            .map_err(|e| ClientError::read("the response magic", e))?;
        if scanner.push(b[0]) {
            break;
        }
    }
    s.read_exact(&mut b)
        .map_err(|e| ClientError::read("the result", e))?;
    read_after_code(s, b[0])
}

/// VMChannel: TCP to the guestfwd address (3 s connect), serial frames.
pub(crate) fn request_vmchannel(
    addr: &str,
    port: u16,
    cfg: &ClientConfig,
    op: Op,
    domain: &str,
    seqno: u32,
) -> Result<Reply, ClientError> {
    let sock = super::stream::connect_tcp(addr, port)?;
    let mut io = DeadlineIo::new(sock, cfg.timeout);
    exchange(&mut io, op, domain, seqno)
}

/// Opens, locks and configures the tty, then hangs it up.
fn open_device(device: &Path, params: &SerialParams) -> Result<File, ClientError> {
    let ctx = |what: &str| format!("{what} {}", device.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_EXCL)
        .open(device)
        .map_err(|e| ClientError::io(ctx("opening"), e))?;
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(file.as_raw_fd(), FcntlArg::F_SETLK(&lock))
        .map_err(|e| ClientError::io(ctx("locking"), e.into()))?;
    let mut t =
        tcgetattr(&file).map_err(|e| ClientError::io(ctx("reading termios of"), e.into()))?;
    cfmakeraw(&mut t);
    t.control_flags = params.control_flags();
    cfsetspeed(&mut t, params.baud())
        .map_err(|e| ClientError::io(ctx("setting speed of"), e.into()))?;
    tcsetattr(&file, SetArg::TCSANOW, &t)
        .map_err(|e| ClientError::io(ctx("configuring"), e.into()))?;
    tcflush(&file, FlushArg::TCIOFLUSH).map_err(|e| ClientError::io(ctx("flushing"), e.into()))?;
    // Hangup: speed 0 drops DTR (and the peer sees carrier loss), then restore.
    let mut hup = t.clone();
    cfsetspeed(&mut hup, BaudRate::B0).map_err(|e| ClientError::io(ctx("hanging up"), e.into()))?;
    tcsetattr(&file, SetArg::TCSANOW, &hup)
        .map_err(|e| ClientError::io(ctx("hanging up"), e.into()))?;
    std::thread::sleep(HANGUP);
    tcsetattr(&file, SetArg::TCSANOW, &t)
        .map_err(|e| ClientError::io(ctx("configuring"), e.into()))?;
    Ok(file)
}

/// Serial device mode.
pub(crate) fn request_device(
    device: &Path,
    params: &SerialParams,
    cfg: &ClientConfig,
    op: Op,
    domain: &str,
    seqno: u32,
) -> Result<Reply, ClientError> {
    let file = open_device(device, params)?;
    let mut io = DeadlineIo::new(file, cfg.timeout);
    exchange(&mut io, op, domain, seqno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse() {
        let p: SerialParams = "115200,8N1".parse().unwrap();
        assert_eq!(
            p,
            SerialParams {
                speed: 115200,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1
            }
        );
        let p: SerialParams = "9600,2e7".parse().unwrap();
        assert_eq!(
            (p.speed, p.data_bits, p.parity, p.stop_bits),
            (9600, 7, Parity::Even, 2)
        );
        let p: SerialParams = ",O".parse().unwrap();
        assert_eq!(
            (p.speed, p.data_bits, p.parity, p.stop_bits),
            (9600, 8, Parity::Odd, 1)
        );
        assert_eq!("".parse::<SerialParams>().unwrap().speed, 9600);
        for bad in [
            "1200,8N1",
            "fast,8N1",
            "115200,9N1",
            "115200,8X1",
            "115200,8N3",
            "115200,88",
            "115200,8N1x",
        ] {
            let e = bad.parse::<SerialParams>().unwrap_err();
            assert!(
                matches!(e, ClientError::SerialParams(ref s) if s == bad),
                "{bad}: {e}"
            );
        }
        let f = "19200,7O2".parse::<SerialParams>().unwrap().control_flags();
        assert!(f.contains(
            ControlFlags::CS7 | ControlFlags::PARENB | ControlFlags::PARODD | ControlFlags::CSTOPB
        ));
        assert!(f.contains(ControlFlags::CLOCAL | ControlFlags::CRTSCTS | ControlFlags::CREAD));
        let f = "19200,8N1".parse::<SerialParams>().unwrap().control_flags();
        assert!(!f.intersects(ControlFlags::PARENB | ControlFlags::CSTOPB));
    }
}
