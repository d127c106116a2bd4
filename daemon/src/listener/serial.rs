//! The `serial` listener (modes `serial` and `vmchannel`), compatible on the wire with
//! fence_virtd's (fence-agents 4.12.1 `agents/virt/server/serial.c` + `virt-serial.c`): every
//! running domain's `<serial type='unix'>` (mode `serial`) or `<channel type='unix'>` (mode
//! `vmchannel`) bind-mode socket under `path` is a private line to that guest. We connect to
//! the socket QEMU listens on, read 74-byte request frames, identify the requester by the VM
//! that owns the socket (its lowercase UUID, for `groups`), dispatch, and answer with 5-byte
//! frames (host list: 0xFD frame, entries, 130-byte terminator, then a second frame carrying
//! the result; host status: 0xFC frame and the 64-byte value field). No key, no hash, no
//! challenge.
//!
//! Differences from the C listener, all deliberate:
//! * **Finding sockets by polling.** The `virt` crate (0.5) has no binding for domain events, so
//!   every [`POLL_INTERVAL`] we list the running domains' sockets over a *fresh* libvirt
//!   connection (`uri`, libvirt's default URI when unset) and reconcile: connect to new sockets
//!   (unix stream, [`CONNECT_TIMEOUT`]), close those of domains that stopped or migrated away,
//!   and reconnect a socket that closed while its domain still runs. A fresh connection per poll
//!   is cheap, needs no keepalive (C lost its event connection every ~30 s without one,
//!   fence-virt PR #7) and survives libvirtd restarts. It is also what makes the libvirt test
//!   driver usable: a `test:///path/node.xml` URI is parsed anew on every connection open, so
//!   rewriting that file adds or stops domains for the listener (the C daemon only ever sees the
//!   file's first state).
//! * **Resynchronisation.** C reads 74 bytes and never checks the magic, so one stray or
//!   partial frame misaligns the stream for good. We skip bytes until the magic
//!   `abba`, require the rest of a frame within [`FRAME_TIMEOUT`] of its magic (C's 1 s), and
//!   on a malformed frame move one byte past its magic and search again.
//! * **Independence.** One task per socket; every answer write has [`WRITE_TIMEOUT`]. A guest
//!   that stops reading only loses its own connection (reconnected on a later poll); C's
//!   single loop and untimed write let one stuck guest block every other.
//! * **Key file.** C refuses to start when `key_file` is missing although the serial listener
//!   never uses it; `startup::load` only logs that at info level.
//! * Without `path` every unix-bind chardev socket of every VM would be taken (in vmchannel mode
//!   also the qemu-guest-agent channel): we warn loudly at start-up, as we cannot know which
//!   sockets the admin meant.
//!
//! Duplicate suppression uses the listener's shared history (op, seqno, domain), as C does.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fence_proto::{SerialRequest, SerialResponse, SERIAL_MAGIC, SERIAL_REQUEST_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

use super::ratelimit::{Reason, RejectLog};
use super::ListenerContext;
use crate::dispatch::Answer;
use crate::history::RequestKey;
use crate::reject;

/// How often the running domains' sockets are listed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Connecting to a domain's socket (fence_virtd: 3 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The rest of a frame must arrive this soon after its magic (fence_virtd: 1 s for 74 bytes).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(1);
/// Writing one answer to a guest.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// One listing of the domains' sockets (a hung libvirtd must not stop the poller for good).
pub const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// One guest channel: a running domain's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSocket {
    /// The domain's UUID, lowercase: the requester identity for `groups`.
    pub uuid: String,
    /// The domain's name (for logs).
    pub name: String,
    /// The unix socket QEMU listens on.
    pub path: PathBuf,
}

/// Where the listener learns which sockets to serve.
pub trait SocketSource: Send + Sync + 'static {
    /// The sockets of the domains running now. An error keeps the current connections.
    fn running_sockets(&self) -> Result<Vec<VmSocket>, String>;
}

/// The libvirt source: a fresh connection to `uri` per listing (see the module docs).
#[cfg(feature = "libvirt")]
#[derive(Debug, Clone)]
pub struct LibvirtSockets {
    /// libvirt URI; `None` = libvirt's default URI (`LIBVIRT_DEFAULT_URI`, libvirt.conf, probe).
    pub uri: Option<String>,
    /// Serial ports or channels.
    pub kind: fence_drivers::libvirt::SocketKind,
    /// Only sockets directly in this directory.
    pub dir: Option<PathBuf>,
}

#[cfg(feature = "libvirt")]
impl SocketSource for LibvirtSockets {
    fn running_sockets(&self) -> Result<Vec<VmSocket>, String> {
        use fence_drivers::libvirt::{LibvirtDriver, ReconnectPolicy};
        // An empty URI is libvirt's "default URI" (virConnectOpen treats "" as NULL).
        let uris = [self.uri.clone().unwrap_or_default()];
        let policy = ReconnectPolicy {
            timeout: Duration::ZERO,
            interval: Duration::from_millis(100),
        };
        let d = LibvirtDriver::connect_with(&uris, policy)
            .map_err(|e| crate::startup::error_chain(&e))?;
        let list = d
            .running_domain_sockets(self.kind, self.dir.as_deref())
            .map_err(|e| crate::startup::error_chain(&e))?;
        Ok(list
            .into_iter()
            .map(|(uuid, name, path)| VmSocket { uuid, name, path })
            .collect())
    }
}

/// A tracked socket: its domain and the task serving it.
struct Tracked {
    vm: VmSocket,
    task: Option<JoinHandle<()>>,
    /// Consecutive failed connects (first one warned, later ones at debug level).
    failures: Arc<AtomicU32>,
}

/// Serve until `shutdown` resolves, listing sockets every [`POLL_INTERVAL`].
pub async fn serve(
    source: Arc<dyn SocketSource>,
    ctx: Arc<ListenerContext>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_every(source, ctx, POLL_INTERVAL, shutdown).await
}

/// [`serve`] with an explicit poll interval.
pub async fn serve_every(
    source: Arc<dyn SocketSource>,
    ctx: Arc<ListenerContext>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    let mut tracked: HashMap<PathBuf, Tracked> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listing_failed = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut shutdown => break,
        }
        let src = source.clone();
        let listed = tokio::time::timeout(
            LIST_TIMEOUT,
            tokio::task::spawn_blocking(move || src.running_sockets()),
        )
        .await;
        let wanted = match listed {
            Ok(Ok(Ok(v))) => {
                if listing_failed {
                    tracing::info!("serial listener: listing domain sockets works again");
                    listing_failed = false;
                }
                v
            }
            other => {
                let why = match other {
                    Ok(Ok(Err(e))) => e,
                    Ok(Err(join)) => format!("listing task failed: {join}"),
                    Err(_) => format!("no answer within {LIST_TIMEOUT:?}"),
                    Ok(Ok(Ok(_))) => unreachable!("handled above"),
                };
                if !listing_failed {
                    tracing::warn!(error = %why, "serial listener: cannot list the domains' sockets; keeping the current connections and retrying");
                }
                listing_failed = true;
                continue;
            }
        };
        reconcile(&mut tracked, wanted, &ctx);
    }
    for (_, t) in tracked.drain() {
        if let Some(task) = t.task {
            task.abort();
        }
    }
    Ok(())
}

/// Bring the set of served sockets in line with `wanted`.
fn reconcile(
    tracked: &mut HashMap<PathBuf, Tracked>,
    wanted: Vec<VmSocket>,
    ctx: &Arc<ListenerContext>,
) {
    let mut by_path: HashMap<PathBuf, VmSocket> = HashMap::new();
    for vm in wanted {
        if let Some(first) = by_path.get(&vm.path) {
            if first.uuid != vm.uuid {
                tracing::warn!(socket = %vm.path.display(), first = %first.name, other = %vm.name, "two domains name the same socket; serving it for the first");
            }
            continue;
        }
        by_path.insert(vm.path.clone(), vm);
    }
    tracked.retain(|path, t| match by_path.get(path) {
        Some(vm) if vm.uuid == t.vm.uuid => true,
        _ => {
            tracing::info!(vm = %t.vm.name, uuid = %t.vm.uuid, socket = %path.display(), "domain no longer runs here; closing its channel");
            if let Some(task) = t.task.take() {
                task.abort();
            }
            false
        }
    });
    for (path, vm) in by_path {
        let t = tracked.entry(path).or_insert_with(|| Tracked {
            vm: vm.clone(),
            task: None,
            failures: Arc::new(AtomicU32::new(0)),
        });
        if t.task.as_ref().is_some_and(|h| !h.is_finished()) {
            continue;
        }
        let ctx = ctx.clone();
        let failures = t.failures.clone();
        t.task = Some(tokio::spawn(async move {
            run_socket(ctx, vm, failures).await;
        }));
    }
}

/// Connect to one domain's socket and serve it until it closes.
async fn run_socket(ctx: Arc<ListenerContext>, vm: VmSocket, failures: Arc<AtomicU32>) {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&vm.path)).await {
        Ok(Ok(s)) => s,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no connection within {CONNECT_TIMEOUT:?}"),
            };
            if failures.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(vm = %vm.name, socket = %vm.path.display(), error = %why, "cannot connect to the domain's channel socket; retrying while it runs");
            } else {
                tracing::debug!(vm = %vm.name, socket = %vm.path.display(), error = %why, "still cannot connect");
            }
            return;
        }
    };
    failures.store(0, Ordering::Relaxed);
    tracing::info!(vm = %vm.name, uuid = %vm.uuid, socket = %vm.path.display(), "channel connected");
    let peer = format!("{} ({})", vm.name, vm.path.display());
    match serve_socket(&ctx, stream, &vm.uuid, &peer).await {
        Ok(()) => {
            tracing::info!(vm = %vm.name, "channel closed by the other end; reconnecting while the domain runs")
        }
        Err(e) => {
            tracing::warn!(vm = %vm.name, error = %e, "channel dropped; reconnecting while the domain runs")
        }
    }
}

/// Reads request frames from a byte stream, resynchronising on the magic.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// When the magic of the frame at the start of `buf` was seen.
    started: Option<Instant>,
    /// Where bad frames are counted and rate-limited, and under which source.
    rejects: Option<(Arc<RejectLog>, String)>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Count bad frames in `log` under `source`, logging them at its rate.
    pub fn reporting_to(mut self, log: Arc<RejectLog>, source: &str) -> FrameReader {
        self.rejects = Some((log, source.to_string()));
        self
    }

    /// Whether a bad frame for `reason` should be logged (always without a reject log).
    fn should_log(&self, reason: Reason) -> bool {
        match &self.rejects {
            Some((log, source)) => log.admit(reason, source),
            None => true,
        }
    }

    /// Drop everything before the first (possibly partial) magic.
    fn align(&mut self) {
        let m = &SERIAL_MAGIC;
        let pos = self.buf.windows(m.len()).position(|w| w == m);
        let cut = match pos {
            Some(p) => p,
            // Keep a tail that could be the start of a magic split across reads.
            None => {
                let keep = (1..m.len())
                    .rev()
                    .find(|&k| self.buf.len() >= k && self.buf[self.buf.len() - k..] == m[..k])
                    .unwrap_or(0);
                self.buf.len() - keep
            }
        };
        if cut > 0 {
            tracing::debug!(bytes = cut, "skipping bytes before the serial magic");
            self.buf.drain(..cut);
        }
        if self.buf.starts_with(m) {
            self.started.get_or_insert_with(Instant::now);
        } else {
            self.started = None;
        }
    }

    /// The next well-formed request; `Ok(None)` at end of stream.
    pub async fn next<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
    ) -> io::Result<Option<SerialRequest>> {
        let mut tmp = [0u8; 512];
        loop {
            self.align();
            if self.buf.len() >= SERIAL_REQUEST_LEN && self.started.is_some() {
                match SerialRequest::decode(&self.buf[..SERIAL_REQUEST_LEN]) {
                    Ok(r) => {
                        self.buf.drain(..SERIAL_REQUEST_LEN);
                        self.started = None;
                        return Ok(Some(r));
                    }
                    Err(e) => {
                        if self.should_log(Reason::SerialMalformed) {
                            tracing::warn!(error = %e, "malformed serial frame; searching for the next magic");
                        }
                        self.buf.drain(..1);
                        self.started = None;
                        continue;
                    }
                }
            }
            let n = match self.started {
                None => s.read(&mut tmp).await?,
                Some(t0) => {
                    let left = FRAME_TIMEOUT.saturating_sub(t0.elapsed());
                    match tokio::time::timeout(left, s.read(&mut tmp)).await {
                        Ok(r) => r?,
                        Err(_) => {
                            if self.should_log(Reason::SerialPartial) {
                                tracing::warn!(
                                    have = self.buf.len(),
                                    "partial serial frame not completed within 1 s; discarded"
                                );
                            }
                            self.buf.drain(..1);
                            self.started = None;
                            continue;
                        }
                    }
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }
}

/// The serial framing of an answer: a 5-byte frame with the result; a host list as 0xFD frame,
/// entries, terminator and a trailing result frame; host status as 0xFC frame and value field.
pub fn encode_serial_answer(answer: &Answer) -> Vec<u8> {
    match answer {
        Answer::Code(c) => SerialResponse { code: *c }.encode().to_vec(),
        // Trailing frame: the host list's own result, success (as the libvirt backend).
        Answer::HostList(entries) => {
            fence_proto::serial::encode_serial_hostlist(entries, fence_proto::RESP_SUCCESS)
        }
        Answer::HostStatus(v) => match fence_proto::serial::encode_serial_host_status(v) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "host status value cannot be sent");
                SerialResponse {
                    code: fence_proto::RESP_FAIL,
                }
                .encode()
                .to_vec()
            }
        },
    }
}

/// Serve one guest channel until it closes: frames in, answers out. `src` is the owning VM's
/// UUID (the `groups` identity), `peer` a name for logs.
pub async fn serve_socket<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &ListenerContext,
    mut s: S,
    src: &str,
    peer: &str,
) -> io::Result<()> {
    let mut frames = FrameReader::new().reporting_to(ctx.rejects.clone(), src);
    while let Some(req) = frames.next(&mut s).await? {
        let key = RequestKey::new(req.op, req.seqno, &req.domain);
        if !ctx.history.lock().claim(&key, Instant::now()) {
            reject!(
                ctx.rejects,
                Reason::Duplicate,
                src,
                debug,
                peer,
                seqno = req.seqno,
                "duplicate request dropped"
            );
            continue;
        }
        let op = super::op_name(req.op);
        tracing::info!(%op, seqno = req.seqno, vm = %req.domain, requester = src, peer, "serial request");
        let answer = {
            let _permit = ctx.limit.clone().acquire_owned().await;
            ctx.dispatcher.dispatch(req.op, &req.domain, src).await
        };
        super::log_answered(&op, req.seqno, &req.domain, src, &answer);
        let bytes = encode_serial_answer(&answer);
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            s.write_all(&bytes).await?;
            s.flush().await
        })
        .await;
        // Recorded whatever happened to the write (as C): the action was carried out, and a
        // copy of the request must not carry it out twice.
        ctx.history.lock().record(&key, Instant::now());
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the guest did not take the answer within {WRITE_TIMEOUT:?}"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Group;
    use crate::listener::{test_context, AuthSettings};
    use fence_proto::{HashAlg, Op, HOSTLIST_ENTRY_LEN, RESP_HOSTLIST};
    use parking_lot::Mutex;

    const U1: &str = "11111111-2222-3333-4444-555555555555";

    fn ctx(groups: Vec<Group>) -> Arc<ListenerContext> {
        test_context(
            groups,
            AuthSettings::new(None, HashAlg::None, HashAlg::None),
        )
    }

    fn frame(op: Op, vm: &str, seqno: u32) -> Vec<u8> {
        SerialRequest::new(op, vm, seqno).unwrap().encode().to_vec()
    }

    async fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .expect("answer in time")
            .expect("answer");
        b
    }

    fn guest(
        c: Arc<ListenerContext>,
        src: &'static str,
    ) -> (UnixStream, JoinHandle<io::Result<()>>) {
        let (g, d) = UnixStream::pair().unwrap();
        let h = tokio::spawn(async move { serve_socket(&c, d, src, "test").await });
        (g, h)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_codes_and_resynchronises() {
        let (mut g, h) = guest(ctx(vec![]), U1);
        // Noise and a magic prefix before the frame are skipped.
        let mut bytes = b"xxab\0noise".to_vec();
        bytes.extend(frame(Op::Status, "vm1", 1));
        g.write_all(&bytes).await.unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x00");
        // A frame split across writes.
        let f = frame(Op::Off, "vm1", 2);
        g.write_all(&f[..30]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        g.write_all(&f[30..]).await.unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x00");
        g.write_all(&frame(Op::Status, "vm1", 3)).await.unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x02");
        // A duplicate (same op, seqno, domain) is dropped without an answer; the next frame
        // is answered, so the stream stayed aligned.
        g.write_all(&frame(Op::Status, "VM1", 3)).await.unwrap();
        g.write_all(&frame(Op::Status, "nosuch", 4)).await.unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x01");
        drop(g);
        h.await.unwrap().unwrap();
    }

    /// On tokio's paused clock: the test's sleep and the listener's frame timer run on the same
    /// virtual time, so the order of events is fixed however loaded the machine is.
    #[tokio::test(start_paused = true)]
    async fn partial_frame_is_discarded_after_a_second() {
        let c = ctx(vec![]);
        let (mut g, h) = guest(c.clone(), U1);
        g.write_all(&frame(Op::Status, "vm1", 1)[..40])
            .await
            .unwrap();
        tokio::time::sleep(FRAME_TIMEOUT + Duration::from_millis(300)).await;
        g.write_all(&frame(Op::Status, "vm2", 2)).await.unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x00");
        // Counted under the guest's UUID, for metrics and the log's rate limit.
        assert_eq!(c.rejects.stats().get(Reason::SerialPartial), 1);
        drop(g);
        h.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostlist_has_header_terminator_and_trailer_and_groups_use_the_uuid() {
        let groups = vec![Group {
            name: None,
            uuids: vec![U1.into(), "vm2".into()],
            ips: vec![],
        }];
        let (mut g, h) = guest(ctx(groups), U1);
        g.write_all(&frame(Op::HostList, "", 1)).await.unwrap();
        let head = read_n(&mut g, 5).await;
        assert_eq!(head, [b'a', b'b', b'b', b'a', RESP_HOSTLIST]);
        // Only vm2 is allowed (vm1 is listed by name nowhere): one entry, terminator, trailer.
        let body = read_n(&mut g, 2 * HOSTLIST_ENTRY_LEN + 5).await;
        let e: &[u8; HOSTLIST_ENTRY_LEN] = body[..HOSTLIST_ENTRY_LEN].try_into().unwrap();
        assert_eq!(fence_proto::HostEntry::decode(e).unwrap().name, "vm2");
        assert!(body[HOSTLIST_ENTRY_LEN..2 * HOSTLIST_ENTRY_LEN]
            .iter()
            .all(|&b| b == 0));
        assert_eq!(&body[2 * HOSTLIST_ENTRY_LEN..], b"abba\x00");
        g.write_all(&frame(Op::Status, "vm1", 2)).await.unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x03");
        g.write_all(&frame(Op::Status, "vm2", 3)).await.unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x00");
        drop(g);
        h.await.unwrap().unwrap();
    }

    /// Op 32 on the serial channel: 0xFC as the frame's result byte, then the 64-byte value;
    /// `groups` decide by the requesting VM's UUID.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn host_status_frame_and_groups() {
        use crate::host_status::tests::{cib, nv, ONLINE};
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("cib.xml");
        std::fs::write(&f, cib("", ONLINE, "", &nv("pingd", "42"))).unwrap();
        // The real crm_mon on a hand-written CIB (allow-list: pingd, long, rack).
        let pm = Arc::new(crate::host_status::tests::on_file(
            &f,
            Some("host1"),
            None,
            0,
        ));
        let groups = vec![Group {
            name: None,
            uuids: vec![U1.into()],
            ips: vec![],
        }];
        let c = crate::listener::test_context_with(
            groups,
            AuthSettings::new(None, HashAlg::None, HashAlg::None),
            Some(pm),
        );
        let (mut g, h) = guest(c.clone(), U1);
        g.write_all(&frame(Op::HostStatus, "pingd", 1))
            .await
            .unwrap();
        let a = read_n(&mut g, 5 + fence_proto::HOSTSTATUS_VALUE_LEN).await;
        assert_eq!(
            &a[..5],
            [b'a', b'b', b'b', b'a', fence_proto::RESP_HOSTSTATUS]
        );
        assert_eq!(
            fence_proto::decode_host_status_value(&a[5..]).unwrap(),
            "42"
        );
        g.write_all(&frame(Op::HostStatus, "other", 2))
            .await
            .unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x01");
        drop(g);
        h.await.unwrap().unwrap();
        let (mut g, h) = guest(c, "22222222-2222-3333-4444-555555555555");
        g.write_all(&frame(Op::HostStatus, "pingd", 3))
            .await
            .unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x03", "a VM in no group");
        drop(g);
        h.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_guest_that_never_reads_does_not_block_another() {
        let c = ctx(vec![]);
        // The stuck guest floods requests and never reads its answers.
        let (mut stuck, _h1) = guest(c.clone(), U1);
        tokio::spawn(async move {
            for i in 0..100_000u32 {
                if stuck.write_all(&frame(Op::Status, "vm1", i)).await.is_err() {
                    break;
                }
            }
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut g, _h2) = guest(c, "22222222-2222-3333-4444-555555555555");
        g.write_all(&frame(Op::Status, "vm2", 1)).await.unwrap();
        assert_eq!(read_n(&mut g, 5).await, b"abba\x00");
    }

    #[cfg(feature = "libvirt")]
    /// A source whose answer the test changes.
    struct Fake(Mutex<Vec<VmSocket>>);
    impl SocketSource for Fake {
        fn running_sockets(&self) -> Result<Vec<VmSocket>, String> {
            Ok(self.0.lock().clone())
        }
    }

    async fn accept(l: &tokio::net::UnixListener) -> UnixStream {
        tokio::time::timeout(Duration::from_secs(5), l.accept())
            .await
            .expect("the listener connected in time")
            .unwrap()
            .0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn follows_domains_that_start_stop_and_reconnects_closed_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm1.sock");
        let qemu = tokio::net::UnixListener::bind(&path).unwrap();
        let vm = VmSocket {
            uuid: U1.into(),
            name: "vm1".into(),
            path: path.clone(),
        };
        let src = Arc::new(Fake(Mutex::new(vec![])));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_every(
            src.clone(),
            ctx(vec![]),
            Duration::from_millis(50),
            async {
                let _ = rx.await;
            },
        ));
        // The domain starts: the listener connects and serves it.
        src.0.lock().push(vm.clone());
        let mut s = accept(&qemu).await;
        s.write_all(&frame(Op::Status, "vm1", 1)).await.unwrap();
        assert_eq!(read_n(&mut s, 5).await, b"abba\x00");
        // QEMU closes the socket while the domain runs: the listener comes back.
        drop(s);
        let mut s = accept(&qemu).await;
        s.write_all(&frame(Op::Status, "vm2", 2)).await.unwrap();
        assert_eq!(read_n(&mut s, 5).await, b"abba\x00");
        // The domain stops: the listener closes its end.
        src.0.lock().clear();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .unwrap();
        assert!(rest.is_empty());
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("shut down in time")
            .unwrap()
            .unwrap();
    }
}
