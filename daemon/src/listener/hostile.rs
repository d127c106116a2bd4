//! Bounded hostile-input test of the network listeners (evidence suite): garbage datagrams and
//! streams of random lengths, requests signed with the wrong key, replays, short requests and
//! idle floods from several peers against the `tcp` and `multicast` listeners of one daemon
//! context, all in-process on loopback. It checks that nothing crashes, that a real request is
//! still answered on both listeners afterwards (and while the floods are held), and that the
//! log stays bounded. Every count is fixed and a seeded RNG makes the inputs repeatable; the
//! whole test takes a few seconds.
//!
//! Run: `cargo test -p fence-virtd --lib listener::hostile -- --nocapture`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fence_proto::{HashAlg, Op, Request};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::ratelimit::Reason;
use super::{multicast, tcp, test_agent, test_context, test_handshake};
use super::{AuthSettings, ListenerContext};

const KEY: &[u8] = b"fence-virt-hostile-test-key\n";
/// Hang guard for each phase (never reached when things work, even with thousands of idle
/// connections open on a loaded machine).
const GUARD: Duration = Duration::from_secs(30);

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let mut v = vec![0u8; rng.gen_range(0..=max)];
    rng.fill_bytes(&mut v);
    v
}

/// Connect from `from` (any 127/8 address) to `to`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    s.connect(to).await
}

/// Everything the peer sent back until it closed (a reset counts as closed).
async fn rest_of(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    out
}

/// A real request over tcp, from 127.0.0.1; returns the answer.
async fn real_tcp_request(addr: SocketAddr, seqno: u32) -> Vec<u8> {
    tokio::time::timeout(GUARD, async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        test_agent(&mut s, Op::Status, "vm1", seqno, KEY).await
    })
    .await
    .expect("no answer to a real tcp request")
}

/// A real request over the multicast listener's socket (sent unicast to it), answered by
/// connect-back to a port we listen on; returns the answer.
async fn real_datagram_request(udp: SocketAddr, seqno: u32) -> Vec<u8> {
    let back = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = back.local_addr().unwrap().port();
    let mut r = Request::new(Op::Status, "vm2", seqno)
        .unwrap()
        .with_address(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    r.sign(HashAlg::Sha256, KEY, [9; 6]);
    let s = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    // Like fence_xvm, send again until the daemon connects back: after a flood the kernel may
    // drop a datagram while the socket's buffer is full (a loaded machine drains it late), and
    // copies of one request are served once.
    let bytes = r.encode();
    tokio::time::timeout(GUARD, async {
        let (mut c, _) = loop {
            s.send_to(&bytes, udp).unwrap();
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), back.accept()).await {
                break r.unwrap();
            }
        };
        test_handshake(&mut c, KEY).await
    })
    .await
    .expect("no connect-back for a real datagram request")
}

struct Daemon {
    ctx: Arc<ListenerContext>,
    tcp: SocketAddr,
    udp: SocketAddr,
}

fn start() -> Daemon {
    let ctx = test_context(
        vec![],
        AuthSettings::new(Some(KEY.to_vec()), HashAlg::Sha256, HashAlg::Sha256),
    );
    let l = tcp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let tcp_addr = l.local_addr().unwrap();
    tokio::spawn(tcp::serve(l, ctx.clone(), std::future::pending()));
    let u = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_nonblocking(true).unwrap();
    let udp_addr = u.local_addr().unwrap();
    tokio::spawn(multicast::serve(u, ctx.clone(), std::future::pending()));
    Daemon {
        ctx,
        tcp: tcp_addr,
        udp: udp_addr,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_do_not_crash_or_block_real_requests() {
    let files = super::raise_file_limit().unwrap();
    assert!(files >= 12_000, "need 12,000 open files, have {files}");
    let d = start();
    let mut rng = StdRng::seed_from_u64(0x00fe_11ce);
    let mut seqno = 100;
    let mut next_seqno = || {
        seqno += 1;
        seqno
    };

    // 1. Garbage datagrams of random lengths, random full-size ones, wrong-key requests.
    let udp = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let sent_before = d.ctx.rejects.stats().total();
    for i in 0..3_000u32 {
        let b = match i % 3 {
            0 => random_bytes(&mut rng, 600),
            1 => {
                let mut b = vec![0u8; fence_proto::REQUEST_LEN];
                rng.fill_bytes(&mut b);
                b
            }
            _ => {
                let mut r = Request::new(Op::Off, "vm1", i).unwrap();
                r.sign(HashAlg::Sha256, b"wrong key", [1; 6]);
                r.encode().to_vec()
            }
        };
        udp.send_to(&b, d.udp).unwrap();
        if i % 25 == 24 {
            // Every datagram is counted once (short, key mismatch): wait for the daemon to
            // count the batch, so the socket buffer never overflows and none are dropped.
            let want = sent_before + u64::from(i) + 1;
            let t0 = Instant::now();
            while d.ctx.rejects.stats().total() < want {
                assert!(
                    t0.elapsed() < GUARD,
                    "daemon counted {} of {want} datagrams",
                    d.ctx.rejects.stats().total()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    assert_eq!(real_datagram_request(d.udp, next_seqno()).await, [0]);

    // 2. Streams of random garbage of random lengths, then end of stream: closed, no answer.
    let mut tasks = Vec::new();
    for i in 0..300u32 {
        let garbage = random_bytes(&mut rng, 700);
        let to = d.tcp;
        tasks.push(tokio::spawn(async move {
            let mut s = connect_from(Ipv4Addr::new(127, 0, 3, (i % 50) as u8 + 1), to)
                .await
                .unwrap();
            let _ = s.write_all(&garbage).await;
            let _ = s.shutdown().await;
            rest_of(s).await
        }));
    }
    for t in tasks {
        let out = tokio::time::timeout(GUARD, t)
            .await
            .expect("garbage stream not closed")
            .unwrap();
        assert!(out.is_empty(), "garbage got an answer: {out:?}");
    }
    assert_eq!(real_tcp_request(d.tcp, next_seqno()).await, [0]);

    // 3. Replays of an answered request: closed without an answer while it is in the history;
    // a replay that tries the handshake without the key gets nothing either.
    let n = next_seqno();
    let mut r = Request::new(Op::Status, "vm1", n).unwrap();
    r.sign(HashAlg::Sha256, KEY, [5; 6]);
    let bytes = r.encode();
    let mut s = TcpStream::connect(d.tcp).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    assert_eq!(test_handshake(&mut s, KEY).await, [0]);
    let duplicates = d.ctx.rejects.stats().get(Reason::Duplicate);
    for _ in 0..50 {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 4, 1), d.tcp)
            .await
            .unwrap();
        s.write_all(&bytes).await.unwrap();
        let out = tokio::time::timeout(GUARD, test_handshake(&mut s, b"not the key"))
            .await
            .expect("replay not closed");
        assert!(out.is_empty());
    }
    assert_eq!(
        d.ctx.rejects.stats().get(Reason::Duplicate) - duplicates,
        50
    );

    // 4. Held floods: 200 short requests from one peer, 1,500 silent connections from another
    // (far above the per-peer cap) and 45 each from 100 more (together above the total cap),
    // while real requests come in.
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 5, 1), d.tcp)
            .await
            .unwrap();
        s.write_all(&[0u8; 100]).await.unwrap();
        held.push(s);
    }
    for i in 0..6_000u32 {
        let from = if i < 1_500 {
            Ipv4Addr::new(127, 0, 6, 1)
        } else {
            Ipv4Addr::new(127, 0, 7, (i % 100) as u8 + 1)
        };
        held.push(connect_from(from, d.tcp).await.unwrap());
    }
    let t0 = Instant::now();
    assert_eq!(real_tcp_request(d.tcp, next_seqno()).await, [0]);
    assert_eq!(real_datagram_request(d.udp, next_seqno()).await, [0]);
    println!(
        "real tcp + multicast requests answered in {:?} while {} hostile connections were held",
        t0.elapsed(),
        held.len()
    );
    assert!(d.ctx.admission.waiting() <= super::admission::PENDING_TOTAL);
    assert!(d.ctx.admission.waiting_from("127.0.6.1") <= super::admission::PENDING_PER_PEER);
    // The caps did engage: far more connections were made than may wait, so idle ones were
    // shed (counted), not merely never counted.
    let shed = d.ctx.rejects.stats().get(Reason::IdleShed);
    assert!(
        shed as usize >= held.len() - super::admission::PENDING_TOTAL,
        "{shed} shed of {} held",
        held.len()
    );
    drop(held);

    // 5. Counted by reason, and the log stayed bounded.
    let stats = d.ctx.rejects.stats();
    for (reason, n) in stats.snapshot() {
        println!("{reason}: {n}");
    }
    assert!(stats.get(Reason::KeyMismatch) >= 1_000);
    assert!(stats.get(Reason::ShortDatagram) > 0);
    let limits = d.ctx.rejects.limits();
    assert!(
        stats.logged() <= u64::from(limits.total),
        "{} lines logged for {} rejections",
        stats.logged(),
        stats.total()
    );
    assert!(stats.total() > 4_000);
}
