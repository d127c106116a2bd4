//! `fence-bench-fleet`: issue 14's benchmark. Against a vSphere simulator (`--sdk-port`):
//! * the VM table (`Driver::inventory` of our vSphere driver: one paged property collection)
//!   and the host map built from it (table + links + JSON), median and p90 of `--samples`
//!   runs after one warm-up, with the SOAP calls one refresh makes;
//! * with `--daemon 127.0.0.1:PORT --socket PATH` (our fence_virtd, tcp listener without hash,
//!   `vmware_soap` backend, admin socket): the latency of a status request answered by the
//!   daemon, alone and while table refreshes run back to back through the admin socket
//!   (`vms --fresh`), and how many refreshes completed meanwhile.
//!
//! Prints markdown rows. A measuring tool, not a test: nothing here asserts a time.
//!
//! Usage: `fence-bench-fleet --sdk-port P --vms N [--samples N] [--daemon H:P --socket PATH]`

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fence_drivers::hostmap::{links, render, Naming, Rules};
use fence_drivers::vmware_soap::{Tls, VmwareSoapDriver, VmwareSoapOptions};
use fence_drivers::Driver;
use fence_proto::admin::{self, Request};
use fence_proto::Op;

fn usage(msg: &str) -> ! {
    eprintln!("fence-bench-fleet: {msg}");
    eprintln!(
        "usage: fence-bench-fleet --sdk-port P --vms N [--samples N] [--daemon HOST:PORT --socket PATH]"
    );
    std::process::exit(2);
}

fn quantiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let q = |x: f64| v[((v.len() as f64 - 1.0) * x).round() as usize];
    (q(0.5), q(0.9))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn status(addr: &str, seq: u32) -> Result<u8, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let req =
        fence_proto::Request::new(Op::Status, "DC0_C0_RP0_VM1", seq).map_err(|e| e.to_string())?;
    s.write_all(&req.encode()).map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b).map_err(|e| e.to_string())?;
    Ok(b[0])
}

fn fresh_table(socket: &str) -> Result<usize, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.write_all(&admin::encode_request(&Request::Vms { fresh: true }))
        .map_err(|e| e.to_string())?;
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    match admin::decode_response(&out).map_err(|e| e.to_string())? {
        admin::Response::Vms(t) if t.error.is_none() => Ok(t.rows.len()),
        other => Err(format!("{other:?}")),
    }
}

fn main() {
    let mut port = 0u16;
    let mut vms = 0usize;
    let mut samples = 10usize;
    let mut daemon = None;
    let mut socket = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--sdk-port" => port = val().parse().unwrap_or_else(|_| usage("bad --sdk-port")),
            "--vms" => vms = val().parse().unwrap_or_else(|_| usage("bad --vms")),
            "--samples" => samples = val().parse().unwrap_or_else(|_| usage("bad --samples")),
            "--daemon" => daemon = Some(val()),
            "--socket" => socket = Some(val()),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if port == 0 || vms == 0 {
        usage("--sdk-port and --vms are required");
    }
    let samples = samples.max(1);
    let d = VmwareSoapDriver::connect(VmwareSoapOptions {
        host: "127.0.0.1".into(),
        port,
        tls: Tls::Plain,
        login: "fenceuser".into(),
        password: "fencepw".into(),
        datacenter: None,
        timeout: Duration::from_secs(120),
    })
    .unwrap_or_else(|e| {
        eprintln!("fence-bench-fleet: {}", fence_drivers::error_chain(&e));
        std::process::exit(1)
    });
    let check = |n: usize| {
        if n != vms {
            eprintln!("fence-bench-fleet: table has {n} VMs, expected {vms}");
            std::process::exit(1);
        }
    };
    check(d.inventory().expect("warm-up table").len());
    let calls0 = d.soap_calls();
    let mut t = Vec::new();
    for _ in 0..samples {
        let s = Instant::now();
        check(d.inventory().expect("table").len());
        t.push(s.elapsed());
    }
    let calls = (d.soap_calls() - calls0) as f64 / samples as f64;
    let (m, p) = quantiles(t);
    println!(
        "| {vms} | table refresh (one paged collection, {calls:.0} SOAP calls) | {} | {} |",
        ms(m),
        ms(p)
    );
    let naming = Naming {
        rules: Rules::parse("lower,nofqdn").unwrap(),
        ..Naming::default()
    };
    let mut t = Vec::new();
    let mut bytes = 0;
    for _ in 0..samples {
        let s = Instant::now();
        let rows = d.inventory().expect("table");
        bytes = render(&links(&rows, &naming)).len();
        t.push(s.elapsed());
    }
    let (m, p) = quantiles(t);
    println!(
        "| {vms} | host map refresh (table + map, {} KiB) | {} | {} |",
        bytes / 1024,
        ms(m),
        ms(p)
    );
    let (Some(addr), Some(socket)) = (daemon, socket) else {
        return;
    };
    let mut seq = 1u32;
    let mut fence_lat = |label: &str| {
        let mut t = Vec::new();
        for _ in 0..samples.max(20) {
            seq += 1;
            let s = Instant::now();
            match status(&addr, seq) {
                Ok(0) => {}
                other => {
                    eprintln!("fence-bench-fleet: status answered {other:?}");
                    std::process::exit(1);
                }
            }
            t.push(s.elapsed());
        }
        let (m, p) = quantiles(t);
        println!(
            "| {vms} | fence_virtd status {label} | {} | {} |",
            ms(m),
            ms(p)
        );
    };
    fence_lat("(no refresh running)");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU32::new(0));
    let refresher = {
        let (stop, done, socket) = (stop.clone(), done.clone(), socket.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match fresh_table(&socket) {
                    Ok(n) if n == vms => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("fence-bench-fleet: table through the daemon: {other:?}");
                        std::process::exit(1);
                    }
                }
            }
        })
    };
    // Let the first refresh begin before measuring.
    std::thread::sleep(Duration::from_millis(50));
    fence_lat("(table refreshes running back to back)");
    stop.store(true, Ordering::Relaxed);
    refresher.join().unwrap();
    println!(
        "| {vms} | refreshes completed through the daemon meanwhile | {} | |",
        done.load(Ordering::Relaxed)
    );
}
