//! `fence-bench-vsphere`: the open-session numbers of issue 4's benchmark, measured without an
//! agent process in the way (`scripts/bench-vmware.sh` runs it beside the per-process agent
//! timings):
//! * the vSphere driver (`fence_drivers::vmware_soap`, the code the daemon's `vmware_soap`
//!   backend runs) answering `status` by name and by UUID over one logged-in session;
//! * with `--daemon HOST:PORT --key FILE`: our `fence_virtd` (tcp listener, `vmware_soap`
//!   backend) answering a status request from an in-process `fence_virt -T` client
//!   (`fence_agents::fence_virt::client`): handshake, backend call and answer, no process start-up.
//!
//! Prints one markdown row per measurement: median and p90 of `--samples` runs after one
//! warm-up. A measuring tool, not a test: nothing here asserts a time.
//!
//! Usage: `fence-bench-vsphere --sdk-port P --vm NAME [--user U --password PW] [--samples N]
//!         [--daemon 127.0.0.1:PORT --key FILE] [--label TEXT]`

use std::time::{Duration, Instant};

use fence_agents::fence_virt::client::{request, Channel, ClientConfig, Reply};
use fence_drivers::vmware_soap::{Tls, VmwareSoapDriver, VmwareSoapOptions};
use fence_drivers::{Driver, PowerState, VmRef};
use fence_proto::{HashAlg, Op};

struct Args {
    sdk_port: u16,
    vm: String,
    user: String,
    password: String,
    samples: usize,
    daemon: Option<(String, u16)>,
    key: Option<String>,
    label: String,
}

fn usage(msg: &str) -> ! {
    eprintln!("fence-bench-vsphere: {msg}");
    eprintln!(
        "usage: fence-bench-vsphere --sdk-port P --vm NAME [--user U --password PW] \
         [--samples N] [--daemon HOST:PORT --key FILE] [--label TEXT]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        sdk_port: 0,
        vm: String::new(),
        user: "fenceuser".into(),
        password: "fencepw".into(),
        samples: 50,
        daemon: None,
        key: None,
        label: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--sdk-port" => {
                a.sdk_port = val().parse().unwrap_or_else(|_| usage("bad --sdk-port"));
            }
            "--vm" => a.vm = val(),
            "--user" => a.user = val(),
            "--password" => a.password = val(),
            "--samples" => {
                a.samples = val().parse().unwrap_or_else(|_| usage("bad --samples"));
            }
            "--daemon" => {
                let v = val();
                let (h, p) = v
                    .rsplit_once(':')
                    .unwrap_or_else(|| usage("--daemon wants HOST:PORT"));
                let p = p.parse().unwrap_or_else(|_| usage("bad --daemon port"));
                a.daemon = Some((h.to_string(), p));
            }
            "--key" => a.key = Some(val()),
            "--label" => a.label = val(),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.sdk_port == 0 || a.vm.is_empty() {
        usage("--sdk-port and --vm are required");
    }
    if a.daemon.is_some() != a.key.is_some() {
        usage("--daemon and --key go together");
    }
    a.samples = a.samples.max(1);
    a
}

/// Median and p90 of `n` timed runs of `f` after one warm-up run; `f` must succeed.
fn measure(n: usize, mut f: impl FnMut() -> Result<(), String>) -> (Duration, Duration) {
    if let Err(e) = f() {
        eprintln!("fence-bench-vsphere: warm-up failed: {e}");
        std::process::exit(1);
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if let Err(e) = f() {
            eprintln!("fence-bench-vsphere: run failed: {e}");
            std::process::exit(1);
        }
        v.push(t.elapsed());
    }
    v.sort();
    let q = |x: f64| v[((v.len() as f64 - 1.0) * x).round() as usize];
    (q(0.5), q(0.9))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn row(label: &str, what: &str, (med, p90): (Duration, Duration)) {
    println!("| {label} | {what} | {} | {} |", ms(med), ms(p90));
}

fn main() {
    let a = parse_args();
    let drv = VmwareSoapDriver::connect(VmwareSoapOptions {
        host: "127.0.0.1".into(),
        port: a.sdk_port,
        tls: Tls::Plain,
        login: a.user.clone(),
        password: a.password.clone(),
        datacenter: None,
        timeout: Duration::from_secs(10),
    })
    .unwrap_or_else(|e| {
        eprintln!(
            "fence-bench-vsphere: connect: {}",
            fence_drivers::error_chain(&e)
        );
        std::process::exit(1);
    });
    let by_name = VmRef::Name(a.vm.clone());
    let uuid = drv
        .list()
        .ok()
        .and_then(|l| l.into_iter().find(|v| v.name == a.vm).map(|v| v.uuid))
        .unwrap_or_else(|| {
            eprintln!("fence-bench-vsphere: VM {} not listed", a.vm);
            std::process::exit(1);
        });
    let by_uuid = VmRef::parse(&uuid);
    let status = |vm: &VmRef| match drv.status(vm) {
        Ok(PowerState::On) => Ok(()),
        Ok(s) => Err(format!("{vm}: {s:?}, expected on")),
        Err(e) => Err(fence_drivers::error_chain(&e)),
    };
    row(
        &a.label,
        "driver status by name (open session)",
        measure(a.samples, || status(&by_name)),
    );
    row(
        &a.label,
        "driver status by UUID (open session)",
        measure(a.samples, || status(&by_uuid)),
    );
    drop(drv);

    if let (Some((host, port)), Some(key)) = (&a.daemon, &a.key) {
        let key = std::fs::read(key).unwrap_or_else(|e| {
            eprintln!("fence-bench-vsphere: key {key}: {e}");
            std::process::exit(1);
        });
        let cfg = ClientConfig {
            hash: HashAlg::Sha256,
            auth: HashAlg::Sha256,
            key: Some(key),
            timeout: Duration::from_secs(10),
        };
        let ch = Channel::Tcp {
            addr: host.clone(),
            port: *port,
        };
        for (what, domain) in [("name", a.vm.as_str()), ("UUID", uuid.as_str())] {
            let r = measure(a.samples, || {
                match request(&ch, &cfg, Op::Status, domain, false) {
                    Ok(Reply::Code(0)) => Ok(()),
                    Ok(other) => Err(format!("daemon answered {other:?}")),
                    Err(e) => Err(e.to_string()),
                }
            });
            row(
                &a.label,
                &format!("fence_virtd status by {what} (tcp, in-process client)"),
                r,
            );
        }
    }
}
