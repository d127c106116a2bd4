//! Watching for the host's connect-back below the firewall.
//!
//! A firewall on the guest drops the host's TCP SYN before it reaches the agent's listening
//! socket, so from the socket's side a blocked connect-back looks exactly like a host that
//! never tried. A packet socket (`AF_PACKET`) sees every frame an interface receives before
//! netfilter's input hooks run, so a SYN to the connect-back port that the packet socket sees
//! but the listener never accepts was dropped on this machine. Needs `CAP_NET_RAW` (root);
//! without it the watcher says so and the check falls back to listing the possible causes.

use socket2::{Domain, Protocol, Socket, Type};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// TCP SYNs (without ACK) seen for one port.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Syns {
    /// How many.
    pub count: usize,
    /// Their sources, first seen first, without duplicates (at most 16 kept).
    pub sources: Vec<IpAddr>,
}

/// A running watcher; [`Watcher::stop`] ends it and returns what it saw.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Syns>>,
    thread: JoinHandle<()>,
}

/// If `pkt` (an IP packet, no link header) is a TCP SYN without ACK to `port`, its source.
pub fn syn_source(pkt: &[u8], port: u16) -> Option<IpAddr> {
    let version = pkt.first()? >> 4;
    let (src, tcp): (IpAddr, &[u8]) = match version {
        4 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            if ihl < 20 || pkt.len() < ihl + 14 || pkt[9] != 6 {
                return None;
            }
            let s: [u8; 4] = pkt[12..16].try_into().ok()?;
            (Ipv4Addr::from(s).into(), &pkt[ihl..])
        }
        6 => {
            // Extension headers before TCP are not followed: a SYN carrying one is missed and
            // the check then lists the possible causes instead.
            if pkt.len() < 40 + 14 || pkt[6] != 6 {
                return None;
            }
            let s: [u8; 16] = pkt[8..24].try_into().ok()?;
            (Ipv6Addr::from(s).into(), &pkt[40..])
        }
        _ => return None,
    };
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let flags = tcp[13];
    (dport == port && flags & 0x02 != 0 && flags & 0x10 == 0).then_some(src)
}

impl Watcher {
    /// Starts watching every interface for SYNs to `port`, for at most `limit`.
    pub fn start(port: u16, limit: Duration) -> std::io::Result<Watcher> {
        let sock = Socket::new(
            Domain::PACKET,
            Type::DGRAM,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Syns::default()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let end = Instant::now() + limit;
        let thread = std::thread::spawn(move || {
            let mut sock = sock;
            let mut buf = [0u8; 2048];
            // Bounded by `end` and the stop flag; each read waits at most 100 ms.
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                let n = match sock.read(&mut buf) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                if let Some(src) = syn_source(&buf[..n], port) {
                    let mut s = seen2.lock().unwrap_or_else(|e| e.into_inner());
                    s.count += 1;
                    if !s.sources.contains(&src) && s.sources.len() < 16 {
                        s.sources.push(src);
                    }
                }
            }
        });
        Ok(Watcher { stop, seen, thread })
    }

    /// Stops the watcher and returns the SYNs it saw.
    pub fn stop(self) -> Syns {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        s.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp(dport: u16, flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p[33] = flags;
        p
    }

    #[test]
    fn syn_to_the_port_is_recognised_and_others_are_not() {
        assert_eq!(
            syn_source(&v4_tcp(40000, 0x02), 40000),
            Some(IpAddr::from([10, 0, 0, 1]))
        );
        // SYN-ACK, other port, plain ACK, UDP, truncated, garbage.
        assert_eq!(syn_source(&v4_tcp(40000, 0x12), 40000), None);
        assert_eq!(syn_source(&v4_tcp(40001, 0x02), 40000), None);
        assert_eq!(syn_source(&v4_tcp(40000, 0x10), 40000), None);
        let mut udp = v4_tcp(40000, 0x02);
        udp[9] = 17;
        assert_eq!(syn_source(&udp, 40000), None);
        assert_eq!(syn_source(&v4_tcp(40000, 0x02)[..30], 40000), None);
        assert_eq!(syn_source(&[0x00, 0x01, 0x08, 0x00], 40000), None);
        assert_eq!(syn_source(&[], 40000), None);
    }

    /// Frames come from the network: no length or content makes the parser panic.
    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..80);
            let mut p: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if let Some(b) = p.first_mut() {
                // Mostly IPv4/IPv6 version nibbles, any header length.
                *b = (*b & 0x0f) | if rng.gen() { 0x40 } else { 0x60 };
            }
            let _ = syn_source(&p, 1229);
        }
    }

    #[test]
    fn ipv6_syn() {
        let mut p = vec![0u8; 60];
        p[0] = 0x60;
        p[6] = 6;
        p[8] = 0xfd;
        p[23] = 1;
        p[42..44].copy_from_slice(&1229u16.to_be_bytes());
        p[53] = 0x02;
        assert_eq!(
            syn_source(&p, 1229),
            Some("fd00::1".parse::<IpAddr>().unwrap())
        );
    }
}
