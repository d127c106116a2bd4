//! `fence_virtd`: flags compatible with fence-virt's daemon (`-F -f -d -c -l -w -p -h`),
//! logging, pid file and daemonising; then [`fence_virtd::run`].
//!
//! Deliberate differences from the C daemon: an unknown option or a missing
//! option argument prints the usage and exits 1 (C exits 0, hiding typos in unit files), and
//! `-l` really lists the built-in listeners and backends.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fence_virtd::startup::{self, error_chain, RunError};

const USAGE: &str = "Usage: fence_virtd [options]
  -F               Do not daemonize.
  -f <file>        Use <file> as configuration file.
  -d <level>       Set debugging level to <level>.
  -c               Configuration mode.
  -l               List plugins.
  -w               Wait for initialization.
  -p <file>        Use <file> to record the active process id.
";

const DEFAULT_CONFIG: &str = "/etc/fence_virt.conf";

struct Flags {
    foreground: bool,
    config: PathBuf,
    debug: Option<u32>,
    configure: bool,
    list: bool,
    wait: bool,
    pid_file: Option<PathBuf>,
}

fn parse_flags(args: &[String]) -> Result<Option<Flags>, String> {
    let mut o = getopts::Options::new();
    o.parsing_style(getopts::ParsingStyle::FloatingFrees);
    // A repeated flag or option is accepted and the last value wins, as with C getopt: the
    // systemd unit passes `-F -p FILE` before $FENCE_VIRTD_ARGS, which may repeat them.
    o.optflagmulti("F", "", "");
    o.optmulti("f", "", "", "FILE");
    o.optmulti("d", "", "", "LEVEL");
    o.optflag("c", "", "");
    o.optflag("l", "", "");
    o.optflagmulti("w", "", "");
    o.optmulti("p", "", "", "FILE");
    o.optflag("h", "", "");
    o.optflag("?", "", "");
    let m = o.parse(args).map_err(|e| e.to_string())?;
    if m.opt_present("h") || m.opt_present("?") {
        return Ok(None);
    }
    let last = |name: &str| m.opt_strs(name).pop();
    let debug = match last("d") {
        Some(d) => Some(
            d.trim()
                .parse::<u32>()
                .map_err(|_| format!("-d needs a number, not {d:?}"))?,
        ),
        None => None,
    };
    Ok(Some(Flags {
        foreground: m.opt_present("F"),
        config: last("f")
            .map(PathBuf::from)
            .unwrap_or_else(|| DEFAULT_CONFIG.into()),
        debug,
        configure: m.opt_present("c"),
        list: m.opt_present("l"),
        wait: m.opt_present("w"),
        pid_file: last("p").map(PathBuf::from),
    }))
}

fn init_logging(foreground: bool, level: u32) {
    use tracing_subscriber::EnvFilter;
    let default = match level {
        0 => "info",
        1..=2 => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("FENCE_VIRTD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Under systemd stderr is the journal: send structured entries (VM=, OP=, …) instead.
    let journal_stream = std::env::var("JOURNAL_STREAM").ok();
    let to_journal = fence_virtd::systemd::stderr_identity()
        .is_some_and(|id| fence_virtd::systemd::stderr_is_journal(journal_stream.as_deref(), id));
    if to_journal {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        match tracing_journald::layer() {
            Ok(journal) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(
                        journal
                            .with_field_prefix(None)
                            .with_syslog_identifier("fence_virtd".into()),
                    )
                    .init();
                return;
            }
            Err(e) => eprintln!("fence_virtd: cannot reach the journal ({e}); logging to stderr"),
        }
    }
    if foreground || to_journal {
        use std::io::IsTerminal;
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .init();
    } else {
        let ident = c"fence_virtd";
        match syslog_tracing::Syslog::new(
            ident,
            Default::default(),
            syslog_tracing::Facility::Daemon,
        ) {
            Some(syslog) => tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(syslog)
                .with_ansi(false)
                .without_time()
                .with_target(false)
                .init(),
            None => tracing_subscriber::fmt().with_env_filter(filter).init(),
        }
    }
}

/// The pid file: refuse to start when it names a live fence_virtd, write ours, remove at exit.
struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> Result<PidFile, RunError> {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if pid != std::process::id() as i32
                    && String::from_utf8_lossy(&cmdline).contains("fence_virtd")
                {
                    return Err(RunError::AlreadyRunning {
                        path: path.to_path_buf(),
                        pid,
                    });
                }
            }
        }
        let mut f = std::fs::File::create(path).map_err(|source| RunError::PidFile {
            path: path.to_path_buf(),
            source,
        })?;
        writeln!(f, "{}", std::process::id()).map_err(|source| RunError::PidFile {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Exit codes of fence_virtd (as the C daemon): 255 for config problems and missing files, 1
/// for init failures and a running instance.
/// A key file that exists but cannot be used is an init failure (1), like a failed listener.
fn exit_code(e: &RunError) -> u8 {
    match e {
        RunError::Config(_) | RunError::MissingFile { .. } => 255,
        _ => 1,
    }
}

fn main() -> ExitCode {
    // args_os: std::env::args() panics on an argument that is not UTF-8.
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(s) => args.push(s),
            Err(a) => {
                eprintln!(
                    "fence_virtd: argument '{}' is not valid UTF-8",
                    a.to_string_lossy()
                );
                eprint!("{USAGE}");
                return ExitCode::from(1);
            }
        }
    }
    let flags = match parse_flags(&args) {
        Ok(Some(f)) => f,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fence_virtd: {e}");
            eprint!("{USAGE}");
            return ExitCode::from(1);
        }
    };
    if flags.list {
        println!("Available backends:");
        for b in fence_virtd::backends::built() {
            println!("    {b}");
        }
        println!("Available listeners:");
        for l in fence_virtd::config::schema::LISTENERS {
            println!("    {l}");
        }
        return ExitCode::SUCCESS;
    }
    if flags.configure {
        return ExitCode::from(fence_virtd::wizard::run_interactive(&flags.config));
    }
    if flags.foreground {
        eprintln!("Background mode disabled");
    }
    let (cfg, tree) = match startup::load(&flags.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fence_virtd: {}", error_chain(&e));
            return ExitCode::from(exit_code(&e));
        }
    };
    let level = flags.debug.unwrap_or(cfg.daemon.debug);
    if level > 3 {
        // As fence_virtd: at debug level 4 and above, show the configuration as parsed.
        eprint!("{}", tree.dump());
    }
    let foreground = flags.foreground || cfg.daemon.foreground;
    let wait = flags.wait || cfg.daemon.wait_for_init;
    if !foreground {
        if let Err(e) = nix::unistd::daemon(false, false) {
            eprintln!("fence_virtd: cannot daemonize: {e}");
            return ExitCode::from(1);
        }
    }
    init_logging(foreground, level);
    let pid_path = flags
        .pid_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/run/fence_virtd.pid"));
    let _pid = match PidFile::create(&pid_path) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("{}", error_chain(&e));
            return ExitCode::from(exit_code(&e));
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::from(1);
        }
    };
    let shutdown = {
        let _in_runtime = rt.enter();
        match startup::termination_signal() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install the signal handlers");
                return ExitCode::from(1);
            }
        }
    };
    let result = rt.block_on(fence_virtd::run(cfg, wait, shutdown));
    // Dropping the runtime would wait for every driver call still in progress, for ever if
    // libvirtd hangs; those calls start no further power change, so stop waiting for them.
    rt.shutdown_timeout(startup::SHUTDOWN_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", error_chain(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}
