//! Start-up and the serving loop, following fence_virtd's sequence (spec §13.2): load the
//! config, enforce file modes, read the key, initialise the backend, bind the listener, serve
//! until SIGINT/SIGTERM/SIGQUIT. Exit codes are decided by the binary from [`RunError`].

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fence_drivers::fence::FenceOptions;
use fence_drivers::sim::{SimDriver, SimVm};
use fence_drivers::Driver;
use fence_proto::MAX_KEY_LEN;
use tokio::sync::watch;

use crate::backend::Backend;
use crate::config::{BackendConfig, Config, ConfigError, Groups, ListenerConfig};
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
    /// The backend could not be initialised.
    #[error("backend {name:?} failed to initialise")]
    Backend {
        /// Backend name.
        name: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
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

/// Hold a file to mode 0600 as fence_virtd does (it must exist; a wider mode is narrowed with a
/// notice).
pub fn enforce_private(path: &Path) -> Result<(), RunError> {
    let meta = fs::metadata(path).map_err(|source| RunError::MissingFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o600 {
        tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "narrowing mode to 0600");
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|source| {
            RunError::MissingFile {
                path: path.to_path_buf(),
                source,
            }
        })?;
    }
    Ok(())
}

/// Read at most the first 4096 bytes of a key file, raw.
pub fn read_key(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    fs::File::open(path)?
        .take(MAX_KEY_LEN as u64)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Build the fencing driver named in the config.
pub fn build_driver(b: &BackendConfig) -> Result<Arc<dyn Driver>, RunError> {
    let fail = |name: &str, e: Box<dyn std::error::Error + Send + Sync>| RunError::Backend {
        name: name.to_string(),
        source: e,
    };
    match b {
        BackendConfig::Sim { vms, latency_ms } => {
            let d = if vms.is_empty() {
                SimDriver::demo()
            } else {
                SimDriver::new(
                    vms.iter()
                        .enumerate()
                        .map(|(i, n)| SimVm::running(n, i as u32 + 1))
                        .collect(),
                )
            };
            Ok(Arc::new(d.with_latency(Duration::from_millis(*latency_ms))))
        }
        #[cfg(feature = "libvirt")]
        BackendConfig::Libvirt { uris } => {
            if uris.is_empty() {
                return Err(fail(
                    "libvirt",
                    "backends/libvirt/uri is not set (e.g. uri = \"qemu:///system\";)".into(),
                ));
            }
            fence_drivers::libvirt::LibvirtDriver::connect(uris)
                .map(|d| Arc::new(d) as Arc<dyn Driver>)
                .map_err(|e| fail("libvirt", Box::new(e)))
        }
        other => Err(fail(
            &format!("{other:?}"),
            "this backend is not available in this build".into(),
        )),
    }
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

/// Load and check a config file the way fence_virtd does before serving.
pub fn load(path: &Path) -> Result<Config, RunError> {
    let (cfg, _tree) = Config::load(path)?;
    enforce_private(path)?;
    enforce_private(cfg.listener.key_file())?;
    Ok(cfg)
}

/// A bound listener, ready to serve.
pub enum Bound {
    /// Multicast UDP socket.
    Multicast(std::net::UdpSocket),
    /// TCP listening socket.
    Tcp(std::net::TcpListener),
}

/// Bind the configured listener's socket and prepare its key settings.
pub fn bind_listener(l: &ListenerConfig) -> Result<(Bound, AuthSettings), RunError> {
    let err = |name: &str, source: std::io::Error| RunError::Listener {
        name: name.into(),
        source,
    };
    let key_of = |p: &Path| match read_key(p) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(file = %p.display(), error = %e, "cannot read key; continuing without authentication");
            None
        }
    };
    match l {
        ListenerConfig::Multicast(m) => {
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
                AuthSettings::new(key_of(&m.key_file), m.hash, m.auth),
            ))
        }
        ListenerConfig::Tcp(t) => {
            use std::net::ToSocketAddrs;
            let addr = (t.address.as_str(), t.port)
                .to_socket_addrs()
                .map_err(|e| err("tcp", e))?
                .next()
                .ok_or_else(|| {
                    err(
                        "tcp",
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "address resolves to nothing",
                        ),
                    )
                })?;
            let sock = listener::tcp::bind(addr).map_err(|e| err("tcp", e))?;
            tracing::info!(%addr, "tcp listener ready");
            Ok((
                Bound::Tcp(sock),
                AuthSettings::new(key_of(&t.key_file), t.hash, t.auth),
            ))
        }
        other => Err(err(
            &format!("{other:?}"),
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "listener not available yet",
            ),
        )),
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
    match bound {
        Bound::Multicast(s) => listener::multicast::serve(s, ctx, stop).await,
        Bound::Tcp(s) => listener::tcp::serve(s, ctx, stop).await,
    }
}

/// Initialise backend and listener (retrying every 5 s with `-w`) and serve until a
/// termination signal.
pub async fn run(cfg: Config, wait_for_init: bool) -> Result<(), RunError> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_termination().await;
        let _ = tx.send(true);
    });
    let mut attempt = 0u32;
    let (driver, bound, auth) = loop {
        attempt += 1;
        let r = build_driver(&cfg.backend)
            .and_then(|d| bind_listener(&cfg.listener).map(|(b, a)| (d, b, a)));
        match r {
            Ok(v) => break v,
            Err(e) if wait_for_init => {
                tracing::warn!(error = %error_chain(&e), attempt, "initialisation failed; retrying in 5 s");
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
    let backend = Arc::new(Backend::new(
        driver,
        FenceOptions::default(),
        Duration::from_secs(60),
    ));
    let dispatcher = Arc::new(Dispatcher::new(backend, Groups::new(cfg.groups.clone())));
    let ctx = ListenerContext::new(dispatcher, auth);
    serve(bound, ctx, rx)
        .await
        .map_err(|source| RunError::Listener {
            name: cfg.daemon.listener.clone(),
            source,
        })?;
    tracing::info!("shutting down");
    Ok(())
}

async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut quit = signal(SignalKind::quit()).expect("SIGQUIT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = quit.recv() => {}
    }
}

/// Render an error with its causes, once each: `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
