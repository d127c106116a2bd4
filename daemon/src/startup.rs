//! Start-up and the serving loop, following fence_virtd's sequence (fence-agents 4.12.1
//! `agents/virt/server/main.c`): load the config, enforce file modes, read the key, initialise
//! the backend, bind the listener, serve until SIGINT/SIGTERM/SIGQUIT. Exit codes are decided
//! by the binary from [`RunError`].

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fence_drivers::fence::FenceOptions;
use fence_drivers::sim::{SimDriver, SimVm};
use fence_drivers::Driver;
use fence_proto::{HashAlg, MAX_KEY_LEN};
use tokio::sync::watch;

use crate::backend::Backend;
use crate::config::{BackendConfig, Config, ConfigError, ConfigTree, Groups, ListenerConfig};
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

/// How long `password_script` may run before start-up gives up on it.
pub const PASSWORD_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Run a `password_script` with `/bin/sh -c`, no stdin, and a deadline; its stdout without
/// trailing blanks is the password. A script that hangs is killed, so start-up cannot hang.
pub fn run_password_script(script: &str, timeout: Duration) -> Result<String, String> {
    use std::io::Read as _;
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    // Read on a thread so that a chatty script cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {timeout:?}; killed"));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let buf = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("exited with {status}"));
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
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
        // One logged-in session for the daemon's life: the driver logs in again on
        // NotAuthenticated (expired session, restarted endpoint) and opens a new TCP
        // connection on the next call after a dead one.
        #[cfg(feature = "vmware_soap")]
        BackendConfig::VmwareSoap(c) => {
            use crate::config::model::TlsMode;
            use fence_drivers::vmware_soap::{Tls, VmwareSoapDriver, VmwareSoapOptions};
            let password = match (&c.password, &c.password_script) {
                (Some(p), _) => p.clone(),
                (None, Some(script)) => run_password_script(script, PASSWORD_SCRIPT_TIMEOUT)
                    .map_err(|e| fail("vmware_soap", format!("password_script: {e}").into()))?,
                (None, None) => {
                    return Err(fail(
                        "vmware_soap",
                        "backends/vmware_soap needs password or password_script".into(),
                    ))
                }
            };
            let tls = match c.ssl {
                TlsMode::Plain => Tls::Plain,
                TlsMode::Verify => Tls::Verify {
                    ca: c.ca_file.clone(),
                },
                TlsMode::Insecure => Tls::Insecure,
            };
            let port = c.port.unwrap_or(if tls == Tls::Plain { 80 } else { 443 });
            VmwareSoapDriver::connect(VmwareSoapOptions {
                host: c.address.clone(),
                port,
                tls,
                login: c.login.clone(),
                password,
                datacenter: c.datacenter.clone(),
                timeout: Duration::from_secs(c.timeout_secs.max(1)),
            })
            .map(|d| Arc::new(d) as Arc<dyn Driver>)
            .map_err(|e| fail("vmware_soap", Box::new(e)))
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
///
/// Deliberate difference: the serial listener never uses its key file, so a missing one is
/// only logged at info level (the C daemon refuses to start). An existing one is still narrowed
/// to 0600 as C does.
pub fn load(path: &Path) -> Result<(Config, ConfigTree), RunError> {
    let (cfg, tree) = Config::load(path)?;
    enforce_private(path)?;
    let key = cfg.listener.key_file();
    match &cfg.listener {
        ListenerConfig::Serial(_) if !key.exists() => {
            tracing::info!(
                file = %key.display(),
                "key file absent; the serial listener needs none (the C daemon would refuse to start)"
            );
        }
        _ => enforce_private(key)?,
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
            warn_stream_auth("tcp", t.hash, t.auth);
            Ok((
                Bound::Tcp(sock),
                AuthSettings::new(key_of(&t.key_file), t.hash, t.auth),
            ))
        }
        ListenerConfig::Vsock(v) => {
            let sock = listener::vsock::bind(v.port).map_err(|e| err("vsock", e))?;
            tracing::info!(port = v.port, "vsock listener ready");
            warn_stream_auth("vsock", v.hash, v.auth);
            Ok((
                Bound::Vsock(sock),
                AuthSettings::new(key_of(&v.key_file), v.hash, v.auth),
            ))
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
    match bound {
        Bound::Multicast(s) => listener::multicast::serve(s, ctx, stop).await,
        Bound::Tcp(s) => listener::tcp::serve(s, ctx, stop).await,
        Bound::Vsock(s) => listener::vsock::serve(s, ctx, stop).await,
        Bound::Serial(src) => listener::serial::serve(src, ctx, stop).await,
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
                "fence_virtd {{ listener = \"{listener}\"; backend = \"sim\"; }}\n\
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
        let (b, auth) = bind_listener(&cfg.listener).expect("vsock binds");
        assert!(matches!(b, Bound::Vsock(_)));
        // No readable key: both fall back to none, as fence_virtd does.
        assert_eq!((auth.hash_floor, auth.auth), (HashAlg::None, HashAlg::None));
        let p = write_conf(d.path(), "serial", "mode = \"vmchannel\";");
        let (cfg, _) = Config::load(&p).unwrap();
        let (b, _) = bind_listener(&cfg.listener).expect("serial prepares");
        assert!(matches!(b, Bound::Serial(_)));
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
