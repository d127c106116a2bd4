//! Tests of the client transports against small in-test fake daemons written with fence-proto:
//! TCP (daemon side of the handshake), vmchannel (serial frames), a pty as serial device, and
//! multicast inside a private network namespace (needs root, as the tests run here and in CI).

use super::*;
use fence_proto::{
    encode_host_status, encode_hostlist_stream, serial::encode_serial_hostlist, verify, Handshake,
    Request, SerialRequest, SerialResponse, Step, RESP_OFF, RESP_PERM,
};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;

const KEY: &[u8] = b"fence-virt-test-key\n";

fn cfg(alg: HashAlg, key: &[u8]) -> ClientConfig {
    ClientConfig {
        hash: alg,
        auth: alg,
        key: Some(key.to_vec()),
        timeout: Duration::from_secs(5),
    }
}

/// What the fake daemon answers.
#[derive(Clone)]
enum Answer {
    Code(u8),
    List(Vec<HostEntry>),
    Status(String),
    /// Authenticate, then say nothing and close.
    Close,
}

fn answer_bytes(a: &Answer) -> Vec<u8> {
    match a {
        Answer::Code(c) => vec![*c],
        Answer::List(e) => encode_hostlist_stream(e, 0),
        Answer::Status(v) => encode_host_status(v).unwrap().to_vec(),
        Answer::Close => vec![],
    }
}

/// Daemon side of the challenge/response on a stream; returns whether the agent passed.
fn daemon_handshake(s: &mut TcpStream, alg: HashAlg, key: &[u8]) -> bool {
    let mut hs = Handshake::daemon(alg, &Key::from_bytes(key), [0x5A; 64]);
    loop {
        match hs.next_step() {
            Ok(Step::Send(b)) => {
                if s.write_all(&b).is_err() {
                    return false;
                }
            }
            Ok(Step::Recv(n)) => {
                let mut buf = vec![0u8; n];
                if s.read_exact(&mut buf).is_err() || hs.receive(&buf).is_err() {
                    return false;
                }
            }
            Ok(Step::Done) => return true,
            Err(_) => return false,
        }
    }
}

/// A TCP-listener daemon for one connection: reads 176 bytes, verifies, handshakes, answers.
/// Returns the decoded request (None when verification or the handshake failed).
fn tcp_daemon(
    alg: HashAlg,
    key: &'static [u8],
    answer: Answer,
) -> (u16, JoinHandle<Option<Request>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 176];
        s.read_exact(&mut buf).ok()?;
        verify(&buf, key, alg).ok()?;
        let req = Request::decode(&buf).unwrap();
        if !daemon_handshake(&mut s, alg, key) {
            return None;
        }
        s.write_all(&answer_bytes(&answer)).unwrap();
        Some(req)
    });
    (port, h)
}

fn tcp(port: u16) -> Channel {
    Channel::Tcp {
        addr: "127.0.0.1".into(),
        port,
    }
}

#[test]
fn tcp_status_off_each_algorithm() {
    let mut seqnos = std::collections::HashSet::new();
    for alg in [
        HashAlg::None,
        HashAlg::Sha1,
        HashAlg::Sha256,
        HashAlg::Sha512,
    ] {
        let (port, h) = tcp_daemon(alg, KEY, Answer::Code(RESP_OFF));
        let r = request(&tcp(port), &cfg(alg, KEY), Op::Status, "vm1", true).unwrap();
        assert_eq!(r, Reply::Code(RESP_OFF), "{alg}");
        let req = h.join().unwrap().expect("daemon accepted the request");
        assert_eq!(req.operation().unwrap(), Op::Status);
        assert_eq!(req.domain, "vm1");
        assert_eq!(req.flags, fence_proto::RF_UUID);
        assert_eq!(req.hash_alg().unwrap(), alg);
        // stream requests carry no address
        assert_eq!(
            (req.addrlen, req.port, req.family, req.address),
            (0, 0, 0, [0; 28])
        );
        seqnos.insert(req.seqno);
    }
    // Every run draws a fresh random seqno (mod.rs `new_seqno`): four runs, four values.
    assert_eq!(seqnos.len(), 4, "{seqnos:?}");
}

#[test]
fn tcp_hostlist_and_hoststatus() {
    let entries = vec![
        HostEntry {
            name: "a".into(),
            uuid: "11111111-2222-3333-4444-555555555555".into(),
            state: 1,
        },
        HostEntry {
            name: "b".into(),
            uuid: "u2".into(),
            state: 5,
        },
    ];
    let (port, h) = tcp_daemon(HashAlg::Sha256, KEY, Answer::List(entries.clone()));
    let r = request(
        &tcp(port),
        &cfg(HashAlg::Sha256, KEY),
        Op::HostList,
        "",
        false,
    )
    .unwrap();
    assert_eq!(r, Reply::HostList(entries));
    assert_eq!(h.join().unwrap().unwrap().op, 6);

    let (port, h) = tcp_daemon(HashAlg::Sha256, KEY, Answer::Status("green".into()));
    let r = request(
        &tcp(port),
        &cfg(HashAlg::Sha256, KEY),
        Op::HostStatus,
        "pingd",
        false,
    )
    .unwrap();
    assert_eq!(r, Reply::HostStatus("green".into()));
    let req = h.join().unwrap().unwrap();
    assert_eq!((req.op, req.domain.as_str()), (32, "pingd"));
}

#[test]
fn tcp_wrong_key_is_auth_failure() {
    // The daemon does not check the request hash here so the handshake itself is exercised.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 176];
        s.read_exact(&mut buf).unwrap();
        daemon_handshake(&mut s, HashAlg::Sha256, b"another key")
    });
    let e = request(
        &tcp(port),
        &cfg(HashAlg::Sha256, KEY),
        Op::Off,
        "vm1",
        false,
    )
    .unwrap_err();
    assert!(
        matches!(e, ClientError::Auth(fence_proto::AuthError::BadResponse)),
        "{e}"
    );
    assert!(!h.join().unwrap());
}

/// A tcp daemon that reads the request, runs the sha256 challenge-response and then never
/// answers (it holds the connection until the agent gives up). Returns its port and whether
/// the challenge-response passed.
fn silent_tcp_daemon() -> (u16, std::thread::JoinHandle<bool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 176];
        s.read_exact(&mut buf).unwrap();
        let ok = daemon_handshake(&mut s, HashAlg::Sha256, KEY);
        let _ = s.read(&mut buf);
        ok
    });
    (port, h)
}

#[test]
fn tcp_silent_daemon_times_out_with_causes() {
    // Agent with auth none against a daemon expecting sha256: the daemon waits for a
    // challenge, the agent waits for the result.
    let (port, h) = silent_tcp_daemon();
    let mut c = cfg(HashAlg::None, KEY);
    c.timeout = Duration::from_millis(300);
    let e = request(&tcp(port), &c, Op::Off, "vm1", false).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Timeout {
                waiting_for: "the result"
            }
        ),
        "{e}"
    );
    // Without a challenge-response nothing proves the daemon took the request: the hint
    // names keys and the network.
    let msg = e.to_string();
    for cause in ["key", "hash", "multicast", "firewall"] {
        assert!(msg.contains(cause), "{msg}");
    }
    assert!(!msg.contains("hypervisor"), "{msg}");
    assert!(!h.join().unwrap());
}

/// After a challenge-response that passed, a silent daemon has the request: the timeout names
/// the hypervisor, not keys or the network.
#[test]
fn tcp_daemon_silent_after_the_challenge_points_at_the_hypervisor() {
    let (port, h) = silent_tcp_daemon();
    let mut c = cfg(HashAlg::Sha256, KEY);
    c.timeout = Duration::from_millis(500);
    let e = request(&tcp(port), &c, Op::Off, "vm1", false).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Timeout {
                waiting_for: super::RESULT_AFTER_AUTH
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.starts_with("Timed out waiting for response\n"), "{msg}");
    assert!(msg.contains("hypervisor did not confirm"), "{msg}");
    assert!(!msg.contains("firewall"), "{msg}");
    assert!(h.join().unwrap());
}

#[test]
fn tcp_eof_and_connect_failure() {
    let (port, h) = tcp_daemon(HashAlg::Sha256, KEY, Answer::Close);
    let e = request(
        &tcp(port),
        &cfg(HashAlg::Sha256, KEY),
        Op::Off,
        "vm1",
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Eof {
                waiting_for: "the result"
            }
        ),
        "{e}"
    );
    h.join().unwrap().unwrap();

    // A daemon rejecting the request hash (other key) closes before the handshake.
    let (port, h) = tcp_daemon(HashAlg::Sha256, b"other key", Answer::Code(0));
    let e = request(
        &tcp(port),
        &cfg(HashAlg::Sha256, KEY),
        Op::Off,
        "vm1",
        false,
    )
    .unwrap_err();
    assert!(
        matches!(e, ClientError::Eof { waiting_for } if waiting_for.contains("key or hash")),
        "{e}"
    );
    assert!(h.join().unwrap().is_none());

    // A port nobody listens on: take one and close it again.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = request(
        &tcp(port),
        &cfg(HashAlg::Sha256, KEY),
        Op::Off,
        "vm1",
        false,
    )
    .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    let e = request(
        &Channel::Tcp {
            addr: "[::1]".into(),
            port,
        },
        &cfg(HashAlg::Sha256, KEY),
        Op::Off,
        "vm1",
        false,
    )
    .unwrap_err();
    assert!(
        matches!(e, ClientError::Connect { ref target, .. } if target.contains("::1")),
        "{e}"
    );
}

#[test]
fn domain_too_long_is_encode_error() {
    // The request is built after connecting, so a listening port is needed to reach it.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let e = request(
        &tcp(port),
        &cfg(HashAlg::None, KEY),
        Op::Off,
        &"x".repeat(64),
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Encode(fence_proto::EncodeError::DomainTooLong(64))
        ),
        "{e}"
    );
}

/// A vmchannel peer: reads one 74-byte frame, answers with `reply` bytes.
fn vmchannel_peer(reply: Vec<u8>) -> (u16, JoinHandle<SerialRequest>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 74];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&reply).unwrap();
        // keep the stream open briefly so the client sees data, not EOF, first
        std::thread::sleep(Duration::from_millis(100));
        SerialRequest::decode(&buf).unwrap()
    });
    (port, h)
}

fn vmc(port: u16) -> Channel {
    Channel::VmChannel {
        addr: "127.0.0.1".into(),
        port,
    }
}

#[test]
fn vmchannel_resyncs_and_reads_result() {
    // Garbage and a partial magic before the real response (e.g. a stale trailer).
    // (a partial "ab" right before the frame must not hide the real magic)
    let mut reply = b"xxabbxab".to_vec();
    reply.extend_from_slice(&SerialResponse { code: RESP_PERM }.encode());
    let (port, h) = vmchannel_peer(reply);
    let r = request(
        &vmc(port),
        &cfg(HashAlg::Sha256, KEY),
        Op::Reboot,
        "guest2",
        true,
    )
    .unwrap();
    assert_eq!(r, Reply::Code(RESP_PERM));
    let req = h.join().unwrap();
    assert_eq!((req.op, req.flags, req.domain.as_str()), (2, 0, "guest2"));
}

#[test]
fn vmchannel_hostlist_and_hoststatus() {
    let e = vec![HostEntry {
        name: "guest1".into(),
        uuid: "11111111-2222-3333-4444-555555555555".into(),
        state: 1,
    }];
    let (port, h) = vmchannel_peer(encode_serial_hostlist(&e, 0));
    let r = request(
        &vmc(port),
        &cfg(HashAlg::None, b""),
        Op::HostList,
        "",
        false,
    )
    .unwrap();
    assert_eq!(r, Reply::HostList(e));
    assert_eq!(h.join().unwrap().op, 6);

    let (port, h) =
        vmchannel_peer(fence_proto::serial::encode_serial_host_status("online").unwrap());
    let r = request(
        &vmc(port),
        &cfg(HashAlg::None, b""),
        Op::HostStatus,
        "#state",
        false,
    )
    .unwrap();
    assert_eq!(r, Reply::HostStatus("online".into()));
    assert_eq!(h.join().unwrap().domain, "#state");
}

#[test]
fn vmchannel_eof_and_timeout() {
    let (port, h) = vmchannel_peer(b"abb".to_vec());
    let e = request(&vmc(port), &cfg(HashAlg::None, b""), Op::Off, "x", false).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Eof {
                waiting_for: "the response magic"
            }
        ),
        "{e}"
    );
    h.join().unwrap();

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // The peer accepts and stays silent until the client has given up (hang guard 30 s).
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let _ = wait_done.recv_timeout(Duration::from_secs(30));
        drop(s);
    });
    let mut c = cfg(HashAlg::None, b"");
    c.timeout = Duration::from_millis(300);
    let t0 = std::time::Instant::now();
    let e = request(&vmc(port), &c, Op::Off, "x", false).unwrap_err();
    let took = t0.elapsed();
    let _ = done.send(());
    h.join().unwrap();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    // The 300 ms timeout ended the wait, not the peer (which stays silent far longer).
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn serial_device_over_pty() {
    use nix::pty::openpty;
    let pty = openpty(None, None).unwrap();
    let path = nix::unistd::ttyname(&pty.slave).unwrap();
    let mut master = File::from(pty.master);
    // The master stays open until the client has its answer (closing it earlier could hang
    // up the line before the client read it); 30 s is a hang guard.
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 74];
        master.read_exact(&mut buf).unwrap();
        let mut out = b"noise".to_vec();
        out.extend_from_slice(&SerialResponse { code: 0 }.encode());
        master.write_all(&out).unwrap();
        let _ = wait_done.recv_timeout(Duration::from_secs(30));
        SerialRequest::decode(&buf).unwrap()
    });
    let ch = Channel::Serial {
        device: path,
        params: "115200,8N1".into(),
    };
    let r = request(&ch, &cfg(HashAlg::None, b""), Op::On, "vm9", false);
    let _ = done.send(());
    let req = h.join().unwrap();
    assert_eq!(r.unwrap(), Reply::Code(0));
    assert_eq!((req.op, req.domain.as_str()), (3, "vm9"));
    drop(pty.slave);

    let e = request(
        &Channel::Serial {
            device: "/nonexistent/tty".into(),
            params: "115200,8N1".into(),
        },
        &cfg(HashAlg::None, b""),
        Op::On,
        "vm9",
        false,
    )
    .unwrap_err();
    assert!(matches!(e, ClientError::Io { .. }), "{e}");
    let e = request(
        &Channel::Serial {
            device: "/dev/null".into(),
            params: "300,8N1".into(),
        },
        &cfg(HashAlg::None, b""),
        Op::On,
        "vm9",
        false,
    )
    .unwrap_err();
    assert!(matches!(e, ClientError::SerialParams(_)), "{e}");
}

use std::fs::File;

#[test]
fn multicast_helpers() {
    use super::multicast::{attempts, usable_v6};
    assert_eq!(
        attempts(Duration::from_secs(30), Duration::from_secs(2)),
        15
    );
    assert_eq!(attempts(Duration::from_secs(4), Duration::from_secs(2)), 2);
    assert_eq!(attempts(Duration::from_secs(1), Duration::from_secs(2)), 1);
    assert!(!usable_v6(&"::1".parse().unwrap()));
    for a in ["fe80::1", "fe90::1", "fea0::1", "febf::1"] {
        assert!(!usable_v6(&a.parse().unwrap()), "{a}");
    }
    assert!(usable_v6(&"fec0::1".parse().unwrap()));
    assert!(usable_v6(&"fd00:fb::1".parse().unwrap()));
}

/// `ip` commands giving a namespace IPv4 multicast on loopback.
const NETNS_V4: &[&[&str]] = &[
    &["link", "set", "lo", "up"],
    &["link", "set", "lo", "multicast", "on"],
    &["route", "replace", "224.0.0.0/4", "dev", "lo"],
];

/// `ip` commands for IPv6 multicast: a veth pair with a global address (the agent, like C,
/// never sends from `::1` or link-local addresses).
const NETNS_V6: &[&[&str]] = &[
    &["link", "set", "lo", "up"],
    &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
    &["link", "set", "v0", "up"],
    &["link", "set", "v1", "up"],
    &["-6", "addr", "add", "fd00:fb::1/64", "dev", "v0", "nodad"],
    &[
        "-6",
        "route",
        "replace",
        "ff05::/16",
        "dev",
        "v0",
        "table",
        "local",
    ],
];

/// Runs `f` in a thread inside a fresh network namespace (gone when the thread ends) set up
/// with the `ip` commands in `setup`. The thread's children (`ip`) and the threads it spawns
/// share that namespace.
fn in_netns<T: Send + 'static>(
    setup: &'static [&'static [&'static str]],
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) needs root");
        for args in setup {
            let st = std::process::Command::new("ip")
                .args(*args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        }
        f()
    })
    .join()
    .unwrap()
}

/// A fake multicast daemon: joins 225.0.0.12 on 127.0.0.1 (or ff05::3:1 on v0) at an
/// ephemeral port it reports, answers each verified datagram with a connect-back; returns
/// the requests it served.
fn multicast_daemon(
    v6: bool,
    port_tx: std::sync::mpsc::Sender<u16>,
    serve: usize,
    answer: Answer,
) -> Vec<Request> {
    let udp = if v6 {
        let udp = std::net::UdpSocket::bind("[::]:0").unwrap();
        let ifindex = nix::net::if_::if_nametoindex("v0").unwrap();
        udp.join_multicast_v6(&fence_proto::IPV6_GROUP, ifindex)
            .unwrap();
        udp
    } else {
        let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        udp.join_multicast_v4(&fence_proto::IPV4_GROUP, &"127.0.0.1".parse().unwrap())
            .unwrap();
        udp
    };
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    port_tx.send(udp.local_addr().unwrap().port()).unwrap();
    let mut served = vec![];
    let mut seen = std::collections::HashSet::new();
    while served.len() < serve {
        let mut buf = [0u8; 512];
        let Ok((n, _)) = udp.recv_from(&mut buf) else {
            break;
        };
        if verify(&buf[..n], KEY, HashAlg::Sha256).is_err() {
            continue;
        }
        let req = Request::decode(&buf[..n]).unwrap();
        if !seen.insert((req.seqno, req.port)) {
            continue;
        }
        let to: SocketAddr = req.connect_back().unwrap();
        let Ok(mut s) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else {
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if daemon_handshake(&mut s, HashAlg::Sha256, KEY) {
            s.write_all(&answer_bytes(&answer)).unwrap();
            served.push(req);
        }
    }
    served
}

#[test]
fn multicast_end_to_end_in_netns_with_concurrent_agents() {
    let (served, results) = in_netns(NETNS_V4, || {
        let (tx, rx) = std::sync::mpsc::channel();
        let d = std::thread::spawn(move || multicast_daemon(false, tx, 2, Answer::Code(RESP_OFF)));
        let port = rx.recv().unwrap();
        let ch = Channel::Multicast {
            group: fence_proto::IPV4_GROUP.into(),
            port,
            retrans: Duration::from_millis(300),
        };
        // Two agents at once: with C's fixed callback port the second would fail to listen.
        let agents: Vec<_> = (0..2)
            .map(|i| {
                let ch = ch.clone();
                std::thread::spawn(move || {
                    request(
                        &ch,
                        &cfg(HashAlg::Sha256, KEY),
                        Op::Status,
                        &format!("vm{i}"),
                        false,
                    )
                })
            })
            .collect();
        let results: Vec<_> = agents
            .into_iter()
            .map(|a| a.join().unwrap().unwrap())
            .collect();
        (d.join().unwrap(), results)
    });
    assert_eq!(results, vec![Reply::Code(RESP_OFF), Reply::Code(RESP_OFF)]);
    assert_eq!(served.len(), 2);
    let mut domains: Vec<_> = served.iter().map(|r| r.domain.clone()).collect();
    domains.sort();
    assert_eq!(domains, ["vm0", "vm1"]);
    assert_ne!(
        served[0].port, served[1].port,
        "each agent has its own callback port"
    );
    for r in &served {
        assert_eq!(
            r.connect_back().unwrap().ip(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!((r.family, r.addrlen), (2, 4));
    }
}

#[test]
fn multicast_without_daemon_times_out() {
    let e = in_netns(NETNS_V4, || {
        let ch = Channel::Multicast {
            group: fence_proto::IPV4_GROUP.into(),
            port: 1229,
            retrans: Duration::from_millis(200),
        };
        let mut c = cfg(HashAlg::Sha256, KEY);
        c.timeout = Duration::from_millis(600);
        let t0 = std::time::Instant::now();
        let e = request(&ch, &c, Op::Off, "vm1", false).unwrap_err();
        (e, t0.elapsed())
    });
    assert!(
        matches!(
            e.0,
            ClientError::Timeout {
                waiting_for: "the daemon to connect back"
            }
        ),
        "{}",
        e.0
    );
    assert!(
        // The 600 ms option is honoured (hang guard far below the 30 s default).
        e.1 >= Duration::from_millis(550) && e.1 < Duration::from_secs(20),
        "{:?}",
        e.1
    );
}

#[test]
fn multicast_ipv6_end_to_end_in_netns() {
    let entries = vec![HostEntry {
        name: "guest1".into(),
        uuid: "11111111-2222-3333-4444-555555555555".into(),
        state: 1,
    }];
    let answer = Answer::List(entries.clone());
    let (served, reply) = in_netns(NETNS_V6, move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let d = std::thread::spawn(move || multicast_daemon(true, tx, 1, answer));
        let port = rx.recv().unwrap();
        let ch = Channel::Multicast {
            group: fence_proto::IPV6_GROUP.into(),
            port,
            retrans: Duration::from_millis(300),
        };
        let reply = request(&ch, &cfg(HashAlg::Sha256, KEY), Op::HostList, "", false);
        (d.join().unwrap(), reply)
    });
    assert_eq!(reply.unwrap(), Reply::HostList(entries));
    assert_eq!(served.len(), 1);
    let r = &served[0];
    assert_eq!((r.family, r.addrlen, r.op), (10, 16, 6));
    assert_eq!(
        r.connect_back().unwrap().ip(),
        "fd00:fb::1".parse::<IpAddr>().unwrap(),
        "sent from the global address, never ::1 or fe80::"
    );
}

/// How a rogue host that saw the multicast request misbehaves on its connection back.
#[derive(Clone, Copy, Debug)]
enum Rogue {
    /// Runs the daemon side of the challenge/response with another key.
    WrongKey,
    /// Sends 64 bytes of garbage as the answer to the agent's challenge, then closes.
    Garbage,
    /// Connects and says nothing (kept open until the returned stream is dropped).
    Stall,
    /// Sends a few bytes and closes.
    Short,
}

/// Connects to `to` as `rogue`; returns the stream while it must stay open.
fn rogue_connect(to: SocketAddr, rogue: Rogue) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match rogue {
        Rogue::WrongKey => {
            assert!(!daemon_handshake(&mut s, HashAlg::Sha256, b"not the key"));
        }
        Rogue::Garbage => {
            let mut challenge = [0u8; 64];
            let _ = s.read_exact(&mut challenge);
            let _ = s.write_all(&[0xA5; 64]);
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
        Rogue::Stall => {}
        Rogue::Short => {
            let _ = s.write_all(b"hello");
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
    }
    s
}

/// The real daemon's connect-back: handshake with the right key, then the answer.
fn honest_connect(to: SocketAddr, answer: &Answer) -> bool {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ok = daemon_handshake(&mut s, HashAlg::Sha256, KEY);
    if ok {
        s.write_all(&answer_bytes(answer)).unwrap();
    }
    ok
}

#[test]
fn multicast_rogue_connect_backs_do_not_stop_the_agent() {
    // A host on the multicast group that is not the daemon connects back first, several
    // times and in every way, one of them staying silent throughout; then the daemon
    // connects. The agent must get the daemon's answer (the old agent took the first
    // connection and failed with it).
    let rogues = [Rogue::Stall, Rogue::WrongKey, Rogue::Garbage, Rogue::Short];
    let (served, reply) = in_netns(NETNS_V4, move || {
        let udp = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        udp.join_multicast_v4(&fence_proto::IPV4_GROUP, &"127.0.0.1".parse().unwrap())
            .unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let port = udp.local_addr().unwrap().port();
        let host = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, _) = udp.recv_from(&mut buf).unwrap();
            let req = Request::decode(&buf[..n]).unwrap();
            let to = req.connect_back().unwrap();
            let _open: Vec<TcpStream> = rogues.iter().map(|r| rogue_connect(to, *r)).collect();
            honest_connect(to, &Answer::Code(RESP_OFF))
        });
        let ch = Channel::Multicast {
            group: fence_proto::IPV4_GROUP.into(),
            port,
            retrans: Duration::from_millis(500),
        };
        let reply = request(&ch, &cfg(HashAlg::Sha256, KEY), Op::Off, "vm1", false);
        (host.join().unwrap(), reply)
    });
    assert!(served, "the daemon's handshake failed");
    assert_eq!(reply.unwrap(), Reply::Code(RESP_OFF));
}

#[test]
fn multicast_many_stalled_connect_backs_then_daemon() {
    // More silent peers than the agent keeps at once, then the daemon, driven on a loopback
    // listener directly.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let to = listener.local_addr().unwrap();
    let host = std::thread::spawn(move || {
        let _open: Vec<TcpStream> = (0..super::multicast::MAX_PENDING + 3)
            .map(|_| rogue_connect(to, Rogue::Stall))
            .collect();
        honest_connect(to, &Answer::Code(RESP_OFF))
    });
    let c = cfg(HashAlg::Sha256, KEY);
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    let mut s =
        super::multicast::wait_for_daemon(&listener, &c, || {}, 1, Duration::from_secs(1), give_up)
            .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_answer(&mut s).unwrap(), Reply::Code(RESP_OFF));
    assert!(host.join().unwrap());
}

#[test]
fn multicast_only_rogues_report_the_rejection() {
    // No daemon at all, only a rogue with the wrong key: the agent waits out the timeout and
    // reports what it rejected (wrong key or auth algorithm is the usual real cause).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let to = listener.local_addr().unwrap();
    let host = std::thread::spawn(move || drop(rogue_connect(to, Rogue::WrongKey)));
    let c = cfg(HashAlg::Sha256, KEY);
    // The agent waits out the whole limit (no daemon comes): long enough for the rogue's
    // handshake to finish on a loaded machine.
    let give_up = std::time::Instant::now() + Duration::from_secs(5);
    let e =
        super::multicast::wait_for_daemon(&listener, &c, || {}, 1, Duration::from_secs(1), give_up)
            .unwrap_err();
    host.join().unwrap();
    match &e {
        ClientError::Rejected { count, peer, last } => {
            assert_eq!((*count, peer.ip()), (1, to.ip()));
            assert!(
                matches!(
                    **last,
                    ClientError::Auth(fence_proto::AuthError::BadResponse)
                ),
                "{last}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("authentication failed"), "{e}");
}
