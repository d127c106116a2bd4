//! Start-up and the serving loop, following fence_virtd's sequence (fence-agents 4.12.1
//! `agents/virt/server/main.c`): load the config, enforce file modes, read the key, initialise
//! the backend, bind the listener, serve until the shutdown future given to [`run`] resolves
//! (the binary passes [`termination_signal`]: SIGINT/SIGTERM/SIGQUIT). Exit codes are decided
//! by the binary from [`RunError`].
//!
//! Safer than the C daemon:
//! * A listener that uses a key refuses to start when its key file cannot be used: not a
//!   regular file (a directory, a FIFO, …; symlinks to a regular file are fine), unreadable,
//!   or empty. The C daemon logs it and then accepts every request unsigned. Such a file is
//!   never chmodded. The serial listener uses no key and starts anyway.
//! * Shutdown is bounded: once it begins, no power change is started (requests waiting for a
//!   VM answer failure without reaching the driver) and the binary waits at most
//!   [`SHUTDOWN_GRACE`] for driver calls in progress (a hung libvirtd cannot keep the daemon
//!   alive, nor power a VM off after the daemon was told to stop).

use std::fs;
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fence_drivers::fence::FenceOptions;
use fence_drivers::Driver;
use fence_proto::HashAlg;
use tokio::sync::watch;

use crate::backend::Backend;
use crate::backends;
use crate::config::{BackendChoice, Config, ConfigError, ConfigTree, Groups, ListenerConfig};
use crate::dispatch::Dispatcher;
use crate::listener::{self, AuthSettings, ListenerContext};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file the daemon insists on (config, key) is missing.
    #[error("stat failed on file {path}")]
    MissingFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listener's key file exists but cannot be used.
    #[error("key file {path} cannot be used")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        problem: KeyFileProblem,
    },
    /// A file's mode could not be narrowed to 0600.
    #[error("cannot narrow the mode of {path} to 0600")]
    Narrow {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `fence_virtd/@backend` names a backend this build cannot run.
    #[error(transparent)]
    BackendUnavailable(ConfigError),
    /// The backend could not be initialised.
    #[error("backend {name:?} failed to initialise")]
    Backend {
        /// Backend name.
        name: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The pm-monitor rules file cannot be used.
    #[error("host_status \"pm-monitor\" cannot start")]
    HostStatus(#[source] crate::host_status::rules::RulesError),
    /// The metrics endpoint (`fence_virtd/@metrics`) could not be bound.
    #[error("metrics endpoint {addr} cannot be bound")]
    Metrics {
        /// The configured address or socket path.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listener could not be set up.
    #[error("listener {name:?} failed to initialise")]
    Listener {
        /// Listener name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tcp listener's address does not resolve to a socket address.
    #[error("listener \"tcp\": {key} = \"{address}\" (port {port}) does not resolve")]
    ListenerAddress {
        /// The setting, `listeners/tcp/address`.
        key: String,
        /// The address as configured.
        address: String,
        /// The port it was to be bound with.
        port: u16,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another instance holds the pid file.
    #[error("already running as pid {pid} (pid file {path})")]
    AlreadyRunning {
        /// Pid file.
        path: PathBuf,
        /// Its pid.
        pid: i32,
    },
    /// The pid file could not be written.
    #[error("cannot write pid file {path}")]
    PidFile {
        /// Pid file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why a key file that exists cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileProblem {
    /// A directory, FIFO, socket or device (after following symlinks).
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    /// Looking at it or reading it failed (permission denied, a path through a non-directory,
    /// an I/O error).
    #[error("it cannot be read")]
    Unreadable(#[source] io::Error),
    /// It holds no bytes: every request would be signed with an empty key.
    #[error("it is empty")]
    Empty,
}

/// What kind of file `t` is, for messages.
fn file_kind(t: &fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a special file"
    }
}

/// Narrow `path` to mode 0600 when its group or others have any access, or it has special
/// bits, as fence_virtd does; a mode that is already private (0600, 0400, 0000) is left as it
/// is, so a file is never made more accessible. Only call this on a regular file.
fn narrow(path: &Path, meta: &fs::Metadata) -> Result<(), RunError> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o7077 != 0 {
        tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "narrowing mode to 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|source| {
            RunError::Narrow {
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Hold the configuration file to mode 0600 as fence_virtd does (it must exist and be a
/// regular file; a mode open to group or others is narrowed with a notice).
pub fn enforce_private(path: &Path) -> Result<(), RunError> {
    let meta = fs::metadata(path).map_err(|source| RunError::MissingFile {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(RunError::Config(ConfigError::Read {
            path: path.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("it is {}, not a regular file", file_kind(&meta.file_type())),
            ),
        }));
    }
    narrow(path, &meta)
}

/// The error for a failed look at or read of key file `path`: absent is
/// [`RunError::MissingFile`] (as fence_virtd), anything else (permission denied, a path
/// through a non-directory, I/O) is [`KeyFileProblem::Unreadable`].
pub fn key_error(path: &Path, e: io::Error) -> RunError {
    if e.kind() == io::ErrorKind::NotFound {
        RunError::MissingFile {
            path: path.to_path_buf(),
            source: e,
        }
    } else {
        RunError::KeyFile {
            path: path.to_path_buf(),
            problem: KeyFileProblem::Unreadable(e),
        }
    }
}

/// Check and read the key file of a listener that uses one: it must be a regular file
/// (symlinks followed; anything else is refused and left untouched), it is narrowed to 0600
/// like the config file, and it must yield at least one byte.
pub fn load_key(path: &Path) -> Result<Vec<u8>, RunError> {
    let meta = fs::metadata(path).map_err(|e| key_error(path, e))?;
    if !meta.is_file() {
        return Err(RunError::KeyFile {
            path: path.to_path_buf(),
            problem: KeyFileProblem::NotRegular(file_kind(&meta.file_type())),
        });
    }
    narrow(path, &meta)?;
    let key = read_key(path).map_err(|e| key_error(path, e))?;
    if key.is_empty() {
        return Err(RunError::KeyFile {
            path: path.to_path_buf(),
            problem: KeyFileProblem::Empty,
        });
    }
    // The same text the guests' `fence_virtctl check` prints for their key.
    tracing::info!(
        file = %path.display(),
        bytes = key.len(),
        fingerprint = %fence_proto::Key::from_bytes(&key).fingerprint_text(),
        "key loaded"
    );
    Ok(key)
}

/// The serial listener's key file is never read: whatever it is, only log. A regular file is
/// still narrowed to 0600 as C does (a failure to do so is logged, not fatal).
fn note_serial_key(key: &Path) {
    match fs::metadata(key) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => tracing::info!(
            file = %key.display(),
            "key file absent; the serial listener needs none (the C daemon would refuse to start)"
        ),
        Err(e) => tracing::info!(
            file = %key.display(),
            error = %e,
            "cannot look at the key file; the serial listener uses none"
        ),
        Ok(m) if !m.is_file() => tracing::info!(
            file = %key.display(),
            "key file is {}, not a regular file; left alone: the serial listener uses none",
            file_kind(&m.file_type())
        ),
        Ok(m) => {
            if let Err(e) = narrow(key, &m) {
                tracing::warn!("{}", error_chain(&e));
            }
        }
    }
}

/// Read at most the first 4096 bytes of a key file, raw ([`fence_drivers::secrets::read_key`],
/// the agents' reader too).
pub fn read_key(path: &Path) -> std::io::Result<Vec<u8>> {
    fence_drivers::secrets::read_key(path)
}

/// How long `password_script` may run before start-up gives up on it.
pub const PASSWORD_SCRIPT_TIMEOUT: Duration = fence_drivers::secrets::PASSWORD_SCRIPT_TIMEOUT;

/// Run a `password_script` with `/bin/sh -c`, no stdin, and a deadline
/// ([`fence_drivers::secrets::run_password_script`]); its stdout without trailing blanks is the
/// password, and a script that fails is refused. A script that hangs, or leaves a process
/// holding its output, is killed with its whole process group, so start-up cannot hang.
pub fn run_password_script(script: &str, timeout: Duration) -> Result<String, String> {
    use fence_drivers::secrets::{run_password_script, PasswordScriptError};
    let out = run_password_script(script, timeout).map_err(|e| match e {
        PasswordScriptError::Run(e) => e,
        PasswordScriptError::TimedOut(t) => format!("did not finish within {t:?}; killed"),
    })?;
    if !out.status.success() {
        return Err(format!("exited with {}", out.status));
    }
    Ok(out.password)
}

/// Build the fencing driver of the configured backend through its registry entry.
pub fn build_driver(b: &BackendChoice) -> Result<Arc<dyn Driver>, RunError> {
    b.build().map_err(|source| RunError::Backend {
        name: b.name().to_string(),
        source,
    })
}

/// Refuse a backend this build cannot run, naming the file, line and column of
/// `fence_virtd/@backend`.
pub fn check_backend(cfg: &Config, tree: &ConfigTree) -> Result<(), RunError> {
    let why = match &cfg.backend.known {
        None => "is not known",
        Some((e, _)) if e.built => return Ok(()),
        Some(_) => "is not built into this fence_virtd",
    };
    let built: Vec<&str> = backends::built().collect();
    Err(RunError::BackendUnavailable(
        crate::config::reader::unavailable_backend(tree, why, &built),
    ))
}

/// Start-up choices taken from flags (they override the config file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `-d`.
    pub debug: Option<u32>,
    /// `-F`.
    pub foreground: bool,
    /// `-w`.
    pub wait_for_init: bool,
}

/// Load and check a config file the way fence_virtd does before serving: the config file
/// and the listener's key file are held to 0600, the key must be usable, and the backend must
/// be one this build has.
///
/// Deliberate difference: the serial listener never uses its key file, so
/// a missing or unusable one is only logged at info level (the C daemon refuses to start). An
/// existing regular one is still narrowed to 0600 as C does.
pub fn load(path: &Path) -> Result<(Config, ConfigTree), RunError> {
    let (cfg, tree) = Config::load(path)?;
    enforce_private(path)?;
    check_backend(&cfg, &tree)?;
    let key = cfg.listener.key_file();
    match &cfg.listener {
        ListenerConfig::Serial(_) => note_serial_key(key),
        _ => {
            load_key(key)?;
        }
    }
    Ok((cfg, tree))
}

/// A bound listener, ready to serve.
pub enum Bound {
    /// Multicast UDP socket.
    Multicast(std::net::UdpSocket),
    /// TCP listening socket.
    Tcp(std::net::TcpListener),
    /// vsock listening socket (registered with the runtime that bound it).
    Vsock(tokio_vsock::VsockListener),
    /// Serial/vmchannel: where the guests' sockets are found (nothing is bound).
    Serial(Arc<dyn listener::serial::SocketSource>),
}

/// The tcp/vsock `auth` decision (see `listener::vsock` module docs): we keep `hash` as the
/// request-hash floor and `auth` as the challenge-response algorithm. When `auth` is not
/// sha256 the C daemon would behave differently; say so.
fn warn_stream_auth(listener: &str, hash: HashAlg, auth: HashAlg) {
    if auth != HashAlg::Sha256 {
        tracing::warn!(
            listener,
            %auth,
            %hash,
            "listeners/{listener}/auth = \"{auth}\": the C fence_virtd reads this key as the request-hash \
             floor and always uses sha256 for the challenge-response; this daemon uses it for the \
             challenge-response and keeps hash = \"{hash}\" as the floor, so agents set up for the C \
             daemon (default -C sha256) will fail: set auth = \"sha256\" to match them"
        );
    }
}

/// Bind the configured listener's socket and prepare its key settings.
pub fn bind_listener(l: &ListenerConfig) -> Result<(Bound, AuthSettings), RunError> {
    let err = |name: &str, source: std::io::Error| RunError::Listener {
        name: name.into(),
        source,
    };
    // The key is read before anything is bound: a listener without a usable key never serves.
    let key_of = |p: &Path| load_key(p).map(Some);
    match l {
        ListenerConfig::Multicast(m) => {
            let key = key_of(&m.key_file)?;
            let ifindex = match &m.interface {
                Some(name) => {
                    listener::multicast::interface_index(name).map_err(|e| err("multicast", e))?
                }
                None => 0,
            };
            let sock = listener::multicast::bind(m.address, m.port, ifindex)
                .map_err(|e| err("multicast", e))?;
            tracing::info!(group = %m.address, port = m.port, interface = ?m.interface, "multicast listener ready");
            Ok((
                Bound::Multicast(sock),
                AuthSettings::new(key, m.hash, m.auth),
            ))
        }
        ListenerConfig::Tcp(t) => {
            use std::net::ToSocketAddrs;
            let key = key_of(&t.key_file)?;
            let unresolved = |source| RunError::ListenerAddress {
                key: "listeners/tcp/address".into(),
                address: t.address.clone(),
                port: t.port,
                source,
            };
            let addr = (t.address.as_str(), t.port)
                .to_socket_addrs()
                .map_err(unresolved)?
                .next()
                .ok_or_else(|| {
                    unresolved(io::Error::new(
                        io::ErrorKind::NotFound,
                        "it resolves to no address",
                    ))
                })?;
            let sock = listener::tcp::bind(addr).map_err(|e| err("tcp", e))?;
            tracing::info!(%addr, "tcp listener ready");
            warn_stream_auth("tcp", t.hash, t.auth);
            Ok((Bound::Tcp(sock), AuthSettings::new(key, t.hash, t.auth)))
        }
        ListenerConfig::Vsock(v) => {
            let key = key_of(&v.key_file)?;
            let sock = listener::vsock::bind(v.port).map_err(|e| err("vsock", e))?;
            tracing::info!(port = v.port, "vsock listener ready");
            warn_stream_auth("vsock", v.hash, v.auth);
            Ok((Bound::Vsock(sock), AuthSettings::new(key, v.hash, v.auth)))
        }
        ListenerConfig::Serial(sc) => bind_serial(sc).map_err(|e| err("serial", e)),
    }
}

/// Prepare the serial listener: no key, no socket of its own.
fn bind_serial(sc: &crate::config::SerialConfig) -> Result<(Bound, AuthSettings), std::io::Error> {
    use crate::config::SerialMode;
    if sc.path.is_none() {
        tracing::warn!(
            "listeners/serial/path is not set: EVERY unix-socket {} of EVERY running VM will be \
             taken over (in vmchannel mode also e.g. the qemu-guest-agent channel); set path to \
             the directory that holds the fence sockets",
            match sc.mode {
                SerialMode::Serial => "serial port",
                SerialMode::VmChannel => "channel",
            }
        );
    }
    let none = AuthSettings::new(None, HashAlg::None, HashAlg::None);
    #[cfg(feature = "libvirt")]
    {
        use fence_drivers::libvirt::SocketKind;
        let source = listener::serial::LibvirtSockets {
            uri: sc.uri.clone(),
            kind: match sc.mode {
                SerialMode::Serial => SocketKind::Serial,
                SerialMode::VmChannel => SocketKind::Channel,
            },
            dir: sc.path.clone(),
        };
        tracing::info!(uri = ?sc.uri, path = ?sc.path, mode = ?sc.mode, "serial listener ready (polling libvirt every {:?})", listener::serial::POLL_INTERVAL);
        Ok((Bound::Serial(Arc::new(source)), none))
    }
    #[cfg(not(feature = "libvirt"))]
    {
        let _ = none;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the serial listener needs the libvirt feature",
        ))
    }
}

/// Serve a bound listener until `shutdown` flips to true.
pub async fn serve(
    bound: Bound,
    ctx: Arc<ListenerContext>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    // Summaries of rate-limited rejection messages, written once per window.
    let summaries = listener::ratelimit::summaries_every_window(ctx.rejects.clone());
    let work = async move {
        match bound {
            Bound::Multicast(s) => listener::multicast::serve(s, ctx, stop).await,
            Bound::Tcp(s) => listener::tcp::serve(s, ctx, stop).await,
            Bound::Vsock(s) => listener::vsock::serve(s, ctx, stop).await,
            Bound::Serial(src) => listener::serial::serve(src, ctx, stop).await,
        }
    };
    tokio::select! {
        r = work => r,
        never = summaries => match never {},
    }
}

/// How long the binary waits, once [`run`] has returned, for driver calls still in progress
/// (they make no further power call) before it exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long one backend action (status, off-and-confirm, …) may take.
pub const ACTION_DEADLINE: Duration = Duration::from_secs(60);

/// Initialise backend and listener (retrying every 5 s with `-w`) and serve until `shutdown`
/// resolves. From that moment no power change is started: actions waiting for their VM and
/// new ones answer failure without reaching the driver, and actions on a blocking thread stop
/// before their next power call. Driver calls already in progress cannot be interrupted: run
/// this on a runtime that is shut down with a timeout ([`SHUTDOWN_GRACE`]), not dropped.
pub async fn run(
    cfg: Config,
    wait_for_init: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let (tx, rx) = watch::channel(false);
    crate::systemd::spawn_watchdog();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested");
        crate::systemd::stopping();
        let _ = tx.send(true);
    });
    let mut attempt = 0u32;
    let (driver, bound, auth) = loop {
        attempt += 1;
        // The backend must answer (libvirt reachable, vSphere logged in) before we say ready.
        let r = build_driver(&cfg.backend)
            .and_then(|d| match d.check() {
                Ok(()) => Ok(d),
                Err(e) => Err(RunError::Backend {
                    name: cfg.backend.name().to_string(),
                    source: Box::new(e),
                }),
            })
            .and_then(|d| bind_listener(&cfg.listener).map(|(b, a)| (d, b, a)));
        match r {
            Ok(v) => break v,
            // A backend this build does not have will not appear by waiting.
            Err(e @ RunError::Backend { .. }) if !cfg.backend.is_built() => return Err(e),
            Err(e) if wait_for_init => {
                tracing::warn!(error = %error_chain(&e), attempt, "initialisation failed; retrying in 5 s");
                crate::systemd::status(&format!("waiting for initialisation: {}", error_chain(&e)));
                let mut rx2 = rx.clone();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = rx2.wait_for(|s| *s) => return Ok(()),
                }
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(backend = driver.kind(), "backend ready");
    let telemetry = telemetry(&cfg, driver.kind(), rx.clone()).await?;
    let fleet = Arc::new(crate::admin::fleet::Fleet::new(
        driver.clone(),
        cfg.fleet.clone(),
    ));
    if cfg.fleet.hostmap_file.is_some() {
        tokio::spawn(fleet.clone().run(rx.clone()));
    }
    // Like the journal, the admin socket is not worth refusing to fence for: a socket that
    // cannot be bound (or that a running daemon serves) is logged and left out.
    let admin = match &cfg.fleet.admin_socket {
        None => None,
        Some(path) => match crate::admin::bind(path) {
            Ok(sock) => {
                tracing::info!(socket = %path.display(), "admin socket ready");
                Some(sock)
            }
            Err(e) => {
                tracing::error!(socket = %path.display(), error = %e, "cannot bind the admin socket; fence_virtctl cannot reach this daemon");
                None
            }
        },
    };
    let backend = Arc::new(
        Backend::new(driver, FenceOptions::default(), ACTION_DEADLINE)
            .with_shutdown(rx.clone())
            .with_telemetry(telemetry.clone()),
    );
    let mut dispatcher =
        Dispatcher::new(backend, Groups::new(cfg.groups.clone())).with_telemetry(telemetry.clone());
    if let Some(pm) = &cfg.host_status {
        let provider =
            Arc::new(crate::host_status::PmMonitor::new(pm).map_err(RunError::HostStatus)?);
        reload_on_sighup(provider.clone());
        tracing::info!(attributes = ?pm.attributes, cache_secs = pm.cache_secs, "host status from Pacemaker (pm-monitor)");
        dispatcher = dispatcher.with_host_status(provider);
    }
    let dispatcher = Arc::new(dispatcher);
    telemetry
        .metrics()
        .watch_rejections(dispatcher.rejects().clone());
    if let Some(sock) = admin {
        let ctx = Arc::new(crate::admin::AdminContext {
            fleet: fleet.clone(),
            telemetry: telemetry.clone(),
            listener: listener_summary(&cfg.listener),
            started: std::time::Instant::now(),
            key_fingerprint: auth.key_fingerprint(),
            rejects: Some(dispatcher.rejects().clone()),
        });
        tokio::spawn(crate::admin::serve(sock, ctx, rx.clone()));
    }
    let pending_total = match listener::raise_file_limit() {
        Ok(n) => {
            let total = listener::admission::total_for_file_limit(n);
            tracing::debug!(
                open_files = n,
                pending_total = total,
                "file descriptor limit"
            );
            total
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            listener::admission::total_for_file_limit(1024)
        }
    };
    let ctx = ListenerContext::with_admission(
        dispatcher,
        auth,
        listener::admission::Admission::new(listener::admission::PENDING_PER_PEER, pending_total),
    );
    // The listener is bound and the backend answered: a client connecting now is served.
    crate::systemd::ready(&format!(
        "serving: listener {}, backend {}",
        cfg.daemon.listener,
        cfg.backend.name()
    ));
    serve(bound, ctx, rx)
        .await
        .map_err(|source| RunError::Listener {
            name: cfg.daemon.listener.clone(),
            source,
        })?;
    tracing::info!("shutting down");
    Ok(())
}

/// The listener as `fence_virtctl health` shows it.
fn listener_summary(l: &ListenerConfig) -> String {
    match l {
        ListenerConfig::Multicast(m) => format!(
            "multicast {}:{}{}",
            m.address,
            m.port,
            m.interface
                .as_deref()
                .map(|i| format!(" on {i}"))
                .unwrap_or_default()
        ),
        ListenerConfig::Tcp(t) => format!("tcp {}:{}", t.address, t.port),
        ListenerConfig::Vsock(v) => format!("vsock port {}", v.port),
        ListenerConfig::Serial(s) => format!(
            "serial ({:?}) {}",
            s.mode,
            s.path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(every unix chardev)".into())
        ),
    }
}

/// Re-read the pm-monitor rules on every SIGHUP (a bad file keeps the old rules). Only
/// installed with a host-status provider: otherwise SIGHUP keeps its default action, as in the
/// C daemon.
fn reload_on_sighup(provider: Arc<crate::host_status::PmMonitor>) {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = provider.reload_rules();
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; rules are not reloadable")
        }
    }
}

/// Open the fence journal and bind the metrics endpoint as configured; the endpoint is served
/// until `stop` reads `true`. A journal that cannot be opened is logged and left out (fencing
/// must not stop for want of a record); a metrics endpoint that cannot be bound is an error.
async fn telemetry(
    cfg: &Config,
    backend: &str,
    stop: watch::Receiver<bool>,
) -> Result<Arc<crate::telemetry::Telemetry>, RunError> {
    use crate::telemetry::{http, Journal, Telemetry};
    let t = &cfg.telemetry;
    let journal = t.journal.as_ref().and_then(|p| {
        match Journal::open(p, t.journal_max_bytes) {
            Ok(j) => {
                tracing::info!(journal = %p.display(), "fence journal");
                Some(j)
            }
            Err(e) => {
                tracing::error!(journal = %p.display(), error = %e, "cannot open the fence journal; power actions are not journalled");
                None
            }
        }
    });
    let telemetry = Arc::new(Telemetry::new(&cfg.daemon.listener, journal));
    telemetry.metrics().backend_state(backend, true);
    if let Some(addr) = &t.metrics {
        let ep = http::bind(addr).await.map_err(|source| RunError::Metrics {
            addr: addr.to_string(),
            source,
        })?;
        tracing::info!(%addr, "serving metrics");
        let mut stop = stop;
        tokio::spawn(http::serve(ep, telemetry.metrics().clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
    Ok(telemetry)
}

/// SIGINT, SIGTERM or SIGQUIT. The handlers are installed when this is called (inside a
/// runtime), so a signal that arrives before the future is first polled is not lost.
pub fn termination_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = quit.recv() => {}
        }
    })
}

pub use fence_drivers::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_script_output_exit_status_and_deadline() {
        let t = Duration::from_secs(10);
        assert_eq!(run_password_script("echo 'pw  '", t).unwrap(), "pw");
        assert_eq!(run_password_script("printf 'a b\\n\\n'", t).unwrap(), "a b");
        let e = run_password_script("echo x; exit 3", t).unwrap_err();
        assert!(e.contains("exited"), "{e}");
        let start = std::time::Instant::now();
        let e = run_password_script("sleep 20", Duration::from_millis(300)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }

    /// A script that exits but leaves a process holding its stdout (`cmd &`) cannot hold
    /// start-up: the script's whole process group is killed at the deadline.
    #[test]
    fn password_script_leftover_process_is_killed() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(run_password_script(
                "sleep 1000 & echo pw",
                Duration::from_millis(500),
            ));
        });
        // Hang guard only: the leftover is killed with the script's group when the shell
        // exits, so the output ends at once and is the password.
        let r = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("run_password_script hung on a leftover process");
        assert_eq!(r.unwrap(), "pw");
        // A script that itself never ends is killed on the deadline.
        let e = run_password_script("sleep 1000; echo pw", Duration::from_millis(500)).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
    }

    /// Every example in `conf/` must stay loadable and name the listener its file name says.
    #[test]
    fn every_example_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        let mut seen = 0;
        for e in fs::read_dir(&dir).expect("conf/ exists") {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "conf") {
                continue;
            }
            let (cfg, _) =
                Config::load(&p).unwrap_or_else(|e| panic!("{}: {}", p.display(), error_chain(&e)));
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let listener = stem.split('-').next().unwrap();
            if listener != "sim" {
                assert_eq!(cfg.listener.name(), listener, "{}", p.display());
            }
            seen += 1;
        }
        assert!(
            seen >= 4,
            "only {seen} example configs found in {}",
            dir.display()
        );
    }

    fn write_conf(dir: &Path, listener: &str, body: &str) -> PathBuf {
        let p = dir.join("fence_virt.conf");
        let key = dir.join("absent.key");
        fs::write(
            &p,
            format!(
                "fence_virtd {{ listener = \"{listener}\"; backend = \"sim\"; admin_socket = \"none\"; }}\n\
                 listeners {{ {listener} {{ key_file = \"{}\"; {body} }} }}\n\
                 backends {{ sim {{ vms = \"vm1\"; }} }}\n",
                key.display()
            ),
        )
        .unwrap();
        p
    }

    #[test]
    fn serial_listener_starts_without_a_key_file_others_do_not() {
        let d = tempfile::tempdir().unwrap();
        let p = write_conf(d.path(), "serial", "path = \"/run/fence\";");
        let (cfg, _) = load(&p).expect("serial needs no key file");
        assert_eq!(cfg.listener.name(), "serial");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the config is still narrowed to 0600");
        let p = write_conf(d.path(), "tcp", "");
        assert!(matches!(load(&p), Err(RunError::MissingFile { .. })));
    }

    #[test]
    fn serial_key_file_that_exists_is_still_narrowed() {
        let d = tempfile::tempdir().unwrap();
        let p = write_conf(d.path(), "serial", "");
        let key = d.path().join("absent.key");
        fs::write(&key, b"k").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        load(&p).unwrap();
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn vsock_and_serial_listeners_bind() {
        let d = tempfile::tempdir().unwrap();
        let port = 0x5_0000 + std::process::id();
        let p = write_conf(
            d.path(),
            "vsock",
            &format!("port = \"{port}\"; auth = \"none\";"),
        );
        let (cfg, _) = Config::load(&p).unwrap();
        // No key file: vsock does not fall back to serving unsigned requests.
        assert!(matches!(
            bind_listener(&cfg.listener),
            Err(RunError::MissingFile { .. })
        ));
        fs::write(d.path().join("absent.key"), b"k").unwrap();
        let (b, auth) = bind_listener(&cfg.listener).expect("vsock binds");
        assert!(matches!(b, Bound::Vsock(_)));
        assert_eq!(auth.key.as_deref().map(Vec::as_slice), Some(&b"k"[..]));
        assert_eq!(
            (auth.hash_floor, auth.auth),
            (HashAlg::Sha256, HashAlg::None)
        );
        // The serial listener uses no key: absent or not a file, it prepares.
        fs::remove_file(d.path().join("absent.key")).unwrap();
        let p = write_conf(d.path(), "serial", "mode = \"vmchannel\";");
        let (cfg, _) = Config::load(&p).unwrap();
        let (b, _) = bind_listener(&cfg.listener).expect("serial prepares");
        assert!(matches!(b, Bound::Serial(_)));
        fs::create_dir(d.path().join("absent.key")).unwrap();
        let (b, _) = bind_listener(&cfg.listener).expect("serial prepares");
        assert!(matches!(b, Bound::Serial(_)));
    }

    /// Key files that exist but cannot be used, for a listener that needs a key.
    fn unusable_keys(dir: &Path) -> Vec<(&'static str, PathBuf)> {
        let d = dir.join("keydir");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        let empty = dir.join("empty.key");
        fs::write(&empty, b"").unwrap();
        let file = dir.join("plain");
        fs::write(&file, b"x").unwrap();
        let fifo = dir.join("fifo.key");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let link = dir.join("link.key");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        vec![
            ("a directory", d),
            ("empty", empty),
            ("cannot be read", file.join("key")),
            ("a FIFO", fifo),
            ("a directory", link),
        ]
    }

    fn tcp_conf(dir: &Path, key: &Path) -> PathBuf {
        let p = dir.join("tcp.conf");
        fs::write(
            &p,
            format!(
                "fence_virtd {{ listener = \"tcp\"; backend = \"sim\"; }}\n\
                 listeners {{ tcp {{ key_file = \"{}\"; address = \"127.0.0.1\"; port = \"1\"; }} }}\n",
                key.display()
            ),
        )
        .unwrap();
        p
    }

    #[tokio::test]
    async fn a_keyed_listener_refuses_a_key_file_it_cannot_use() {
        let d = tempfile::tempdir().unwrap();
        for (why, key) in unusable_keys(d.path()) {
            let p = tcp_conf(d.path(), &key);
            for r in [
                load(&p).map(|_| ()),
                bind_listener(&Config::load(&p).unwrap().0.listener).map(|_| ()),
            ] {
                let e = r.expect_err(why);
                assert!(matches!(e, RunError::KeyFile { .. }), "{why}: {e:?}");
                let msg = error_chain(&e);
                assert!(msg.contains(&key.display().to_string()), "{msg}");
                assert!(msg.contains(why), "{msg}");
            }
        }
        // Nothing was chmodded: the directory keeps its mode.
        let mode = fs::metadata(d.path().join("keydir"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn a_symlink_to_a_regular_key_file_is_used() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.key");
        fs::write(&real, b"secret").unwrap();
        let link = d.path().join("link.key");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(load_key(&link).unwrap(), b"secret");
        load(&tcp_conf(d.path(), &link)).unwrap();
    }

    #[test]
    fn key_read_errors_are_classified() {
        let p = Path::new("/k");
        let e = |errno| key_error(p, io::Error::from_raw_os_error(errno));
        assert!(matches!(e(libc::ENOENT), RunError::MissingFile { .. }));
        for errno in [
            libc::EACCES,
            libc::EPERM,
            libc::ENOTDIR,
            libc::EIO,
            libc::ELOOP,
        ] {
            assert!(
                matches!(
                    e(errno),
                    RunError::KeyFile {
                        problem: KeyFileProblem::Unreadable(_),
                        ..
                    }
                ),
                "errno {errno}"
            );
        }
        let msg = error_chain(&e(libc::EACCES));
        assert!(
            msg.starts_with("key file /k cannot be used: it cannot be read: "),
            "{msg}"
        );
    }

    #[test]
    fn serial_starts_whatever_its_key_file_is() {
        let d = tempfile::tempdir().unwrap();
        for (why, key) in unusable_keys(d.path()) {
            let p = d.path().join("serial.conf");
            fs::write(
                &p,
                format!(
                    "fence_virtd {{ listener = \"serial\"; backend = \"sim\"; }}\n\
                     listeners {{ serial {{ key_file = \"{}\"; }} }}\n",
                    key.display()
                ),
            )
            .unwrap();
            load(&p).unwrap_or_else(|e| panic!("{why}: {}", error_chain(&e)));
        }
        let mode = fs::metadata(d.path().join("keydir"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "a directory is never chmodded");
    }

    #[test]
    fn narrowing_never_widens() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        fs::write(&key, b"k").unwrap();
        for (before, after) in [
            (0o400, 0o400),
            (0o600, 0o600),
            (0o640, 0o600),
            (0o604, 0o600),
        ] {
            fs::set_permissions(&key, fs::Permissions::from_mode(before)).unwrap();
            load_key(&key).unwrap();
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, after, "{before:o}");
        }
    }

    #[test]
    fn a_backend_this_build_lacks_is_named_with_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("k");
        fs::write(&key, b"k").unwrap();
        let mut cases = vec![("pm-fence", "is not known")];
        // cpg is known but needs its cargo feature (a workspace build with the system tests
        // has it).
        if !cfg!(feature = "cpg") {
            cases.push(("cpg", "is not built into this fence_virtd"));
        }
        for (name, why) in cases {
            let p = d.path().join("fence_virt.conf");
            fs::write(
                &p,
                format!(
                    "# comment\nfence_virtd {{\n\tlistener = \"tcp\";\n\tbackend = \"{name}\";\n}}\n\
                     listeners {{ tcp {{ key_file = \"{}\"; }} }}\n",
                    key.display()
                ),
            )
            .unwrap();
            let e = load(&p).expect_err(name);
            assert!(matches!(e, RunError::BackendUnavailable(_)), "{e:?}");
            assert_eq!(
                error_chain(&e),
                format!(
                    "{}:4:12: backend \"{name}\" {why} (this build has: {})",
                    p.display(),
                    backends::built().collect::<Vec<_>>().join(", ")
                )
            );
        }
        let mut want = vec!["libvirt", "sim", "vmware_soap", "xenapi", "vmrun", "agent"];
        if cfg!(feature = "cpg") {
            want.push("cpg");
        }
        assert_eq!(backends::built().collect::<Vec<_>>(), want);
    }

    #[test]
    fn an_unresolvable_tcp_address_is_named_with_its_key_and_port() {
        let d = tempfile::tempdir().unwrap();
        let p = write_conf(
            d.path(),
            "tcp",
            "address = \"no-such-host.invalid\"; port = \"1234\";",
        );
        fs::write(d.path().join("absent.key"), b"k").unwrap();
        let (cfg, _) = Config::load(&p).unwrap();
        let e = bind_listener(&cfg.listener).map(|_| ()).unwrap_err();
        assert!(matches!(e, RunError::ListenerAddress { .. }), "{e:?}");
        let msg = error_chain(&e);
        assert!(
            msg.starts_with(
                "listener \"tcp\": listeners/tcp/address = \"no-such-host.invalid\" (port 1234) \
                 does not resolve: "
            ),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn tcp_keeps_hash_as_floor_and_auth_for_the_challenge() {
        let d = tempfile::tempdir().unwrap();
        let key = d.path().join("absent.key");
        let port = 20000 + std::process::id() % 20000;
        let p = write_conf(
            d.path(),
            "tcp",
            &format!(
                "address = \"127.0.0.1\"; port = \"{port}\"; hash = \"sha512\"; auth = \"none\";"
            ),
        );
        fs::write(&key, b"k").unwrap();
        let (cfg, _) = Config::load(&p).unwrap();
        let (_, auth) =
            bind_listener(&cfg.listener).unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        // C would take auth = "none" as the floor and use sha256 for the challenge.
        assert_eq!(
            (auth.hash_floor, auth.auth),
            (HashAlg::Sha512, HashAlg::None)
        );
    }

    /// The daemon in-process: it serves until the future given to `run` resolves, then
    /// returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_serves_until_its_shutdown_future_resolves() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let d = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = write_conf(
            d.path(),
            "tcp",
            &format!(
                "address = \"127.0.0.1\"; port = \"{port}\"; hash = \"none\"; auth = \"none\";"
            ),
        );
        fs::write(d.path().join("absent.key"), b"k").unwrap();
        let (cfg, _) = load(&p).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(run(cfg, false, async {
            let _ = stopped.await;
        }));
        let mut answer = Vec::new();
        for _ in 0..200 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                let req = fence_proto::Request::new(fence_proto::Op::Status, "vm1", 1).unwrap();
                s.write_all(&req.encode()).await.unwrap();
                s.read_to_end(&mut answer).await.unwrap();
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(answer, [fence_proto::RESP_SUCCESS]);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), daemon)
            .await
            .expect("run returns after shutdown")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn config_and_key_files_are_narrowed_to_0600_and_must_exist() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("fence_xvm.key");
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        enforce_private(&key).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let missing = dir.path().join("absent.key");
        assert!(matches!(
            enforce_private(&missing),
            Err(RunError::MissingFile { .. })
        ));
    }
}
