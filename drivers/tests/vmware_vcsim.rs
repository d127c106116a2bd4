//! VMware SOAP driver against govmomi's vCenter simulator (tests/vcsim launcher, built here
//! with Debian's golang-go and golang-github-vmware-govmomi-dev). Missing Go or govmomi is a
//! failure, not a skip.
#![cfg(feature = "vmware_soap")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fence_drivers::vmware_soap::{Tls, VmwareSoapDriver, VmwareSoapOptions};
use fence_drivers::{Driver, DriverError, PowerState, VmRef};

const GOPATH: &str = "/usr/share/gocode";
const USER: &str = "fenceuser";
const PASS: &str = "fencepw";

fn launcher() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vcsim");
        let govmomi = Path::new(GOPATH).join("src/github.com/vmware/govmomi/simulator");
        assert!(
            govmomi.is_dir(),
            "govmomi sources missing at {}: apt-get install golang-github-vmware-govmomi-dev",
            govmomi.display()
        );
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vcsim");
        std::fs::create_dir_all(&out_dir).unwrap();
        let bin = out_dir.join("vcsim-launcher");
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&bin)
            .arg(".")
            .current_dir(&src)
            .env("GOPATH", GOPATH)
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOCACHE", out_dir.join("gocache"))
            .status()
            .unwrap_or_else(|e| panic!("cannot run `go` (apt-get install golang-go): {e}"));
        assert!(status.success(), "go build of {} failed", src.display());
        bin
    })
}

struct Sim {
    child: Child,
    stdin: ChildStdin,
    /// The launcher's stdout lines after the first (answers to [`Sim::command`]).
    lines: mpsc::Receiver<String>,
    port: u16,
    ca: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Sim {
    fn start(args: &[&str], tls: bool) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let mut cmd = Command::new(launcher());
        cmd.args(args)
            .args(["-user", USER, "-password", PASS])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if tls {
            cmd.arg("-tls").arg("-ca-out").arg(&ca);
        }
        let mut child = cmd.spawn().expect("start vcsim launcher");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(n) if n > 0 => {
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(l) if !l.trim().is_empty() => l,
            other => {
                let _ = child.kill();
                panic!("vcsim launcher did not start ({other:?}); args {args:?}");
            }
        };
        let url = line.split_whitespace().next().unwrap().to_string();
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url:?}"));
        Sim {
            child,
            stdin,
            lines: rx,
            port,
            ca: tls.then_some(ca),
            _dir: dir,
        }
    }

    /// Change the inventory while serving ("rename OLD=NEW", "move NAME=FOLDER", …: see
    /// tests/vcsim/main.go), through the SOAP API as another client would.
    fn command(&mut self, line: &str) {
        use std::io::Write as _;
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        let answer = self
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("vcsim launcher answers a command");
        assert_eq!(answer.trim(), "ok", "vcsim launcher: {line}");
    }

    fn opts(&self, tls: Tls) -> VmwareSoapOptions {
        VmwareSoapOptions {
            host: "127.0.0.1".into(),
            port: self.port,
            tls,
            login: USER.into(),
            password: PASS.into(),
            datacenter: None,
            timeout: Duration::from_secs(10),
        }
    }

    fn connect(&self) -> VmwareSoapDriver {
        let tls = match &self.ca {
            Some(ca) => Tls::Verify {
                ca: Some(ca.clone()),
            },
            None => Tls::Plain,
        };
        VmwareSoapDriver::connect(self.opts(tls)).expect("connect to vcsim")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
    }
}

fn name(s: &str) -> VmRef {
    VmRef::Name(s.into())
}

fn uuid_of(d: &VmwareSoapDriver, vm: &str) -> VmRef {
    let l = d.list().unwrap();
    let v = l
        .iter()
        .find(|v| v.name == vm)
        .unwrap_or_else(|| panic!("{vm} not listed"));
    VmRef::parse(&v.uuid)
}

#[test]
fn list_pages_through_250_vms() {
    let sim = Sim::start(&["-vms", "250"], false);
    let d = sim.connect();
    d.set_page_size(7);
    let small = d.list().unwrap();
    d.set_page_size(1000);
    let big = d.list().unwrap();
    assert_eq!(small.len(), 250);
    assert_eq!(small, big);
    let mut uuids: Vec<_> = small.iter().map(|v| v.uuid.clone()).collect();
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 250, "UUIDs must be distinct");
    assert!(small
        .iter()
        .all(|v| VmRef::parse(&v.uuid) == VmRef::Uuid(v.uuid.clone())));
    assert!(small.iter().all(|v| v.state == PowerState::On));
    let names: Vec<_> = small.iter().map(|v| v.name.to_lowercase()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn status_off_on_by_name_uuid_and_path() {
    let sim = Sim::start(&["-vms", "3"], false);
    let d = sim.connect();
    d.check().unwrap();
    let vm0 = name("DC0_C0_RP0_VM0");
    let u0 = uuid_of(&d, "DC0_C0_RP0_VM0");
    assert!(matches!(u0, VmRef::Uuid(_)));
    assert_eq!(d.status(&vm0).unwrap(), PowerState::On);
    assert_eq!(d.status(&u0).unwrap(), PowerState::On);
    assert_eq!(
        d.status(&name("/DC0/vm/DC0_C0_RP0_VM1")).unwrap(),
        PowerState::On
    );

    d.power_off(&vm0).unwrap();
    assert_eq!(d.status(&u0).unwrap(), PowerState::Off);
    assert_eq!(d.status(&vm0).unwrap(), PowerState::Off);
    // Other VMs untouched.
    assert_eq!(d.status(&name("DC0_C0_RP0_VM1")).unwrap(), PowerState::On);
    // Off again: success, still off.
    d.power_off(&u0).unwrap();
    assert_eq!(d.status(&vm0).unwrap(), PowerState::Off);
    d.power_on(&u0).unwrap();
    assert_eq!(d.status(&vm0).unwrap(), PowerState::On);
    d.power_on(&vm0).unwrap();
    assert_eq!(d.status(&u0).unwrap(), PowerState::On);

    for missing in [
        name("no-such-vm"),
        VmRef::parse("01234567-89ab-cdef-0123-456789abcdef"),
        name("/DC0/vm/no-such-vm"),
    ] {
        match d.status(&missing) {
            Err(DriverError::NotFound(s)) => assert_eq!(s, missing.as_str()),
            other => panic!("{missing}: {other:?}"),
        }
        assert!(matches!(
            d.power_off(&missing),
            Err(DriverError::NotFound(_))
        ));
    }

    // After an explicit logout the next call logs in again.
    d.logout().unwrap();
    assert_eq!(d.status(&vm0).unwrap(), PowerState::On);
    d.check().unwrap();
}

#[test]
fn duplicates_utf8_suspended_and_datacenter_filter() {
    let utf8 = "número ü 虚拟机 / x";
    let rename_utf8 = format!("DC0_C0_RP0_VM1={utf8}");
    let sim = Sim::start(
        &[
            "-datacenters",
            "2",
            "-vms",
            "2",
            "-rename",
            "DC1_C0_RP0_VM0=DC0_C0_RP0_VM0",
            "-rename",
            &rename_utf8,
            "-suspend",
            "DC1_C0_RP0_VM1",
        ],
        false,
    );
    let d = sim.connect();
    let dup = name("DC0_C0_RP0_VM0");
    match d.status(&dup) {
        Err(DriverError::Ambiguous { name, count }) => {
            assert_eq!(name, "DC0_C0_RP0_VM0");
            assert_eq!(count, 2);
        }
        other => panic!("duplicate name: {other:?}"),
    }
    assert!(matches!(
        d.power_off(&dup),
        Err(DriverError::Ambiguous { .. })
    ));

    let list = d.list().unwrap();
    assert_eq!(list.len(), 4);
    assert!(list.iter().any(|v| v.name == utf8), "{list:?}");
    assert_eq!(d.status(&name(utf8)).unwrap(), PowerState::On);

    let susp = name("DC1_C0_RP0_VM1");
    assert_eq!(d.status(&susp).unwrap(), PowerState::Suspended);
    assert!(list
        .iter()
        .any(|v| v.name == "DC1_C0_RP0_VM1" && v.state == PowerState::Suspended));
    d.power_off(&susp).unwrap();
    assert_eq!(d.status(&susp).unwrap(), PowerState::Off);

    // Restricted to DC0 the name is unique, and DC1's VMs are invisible.
    let mut o = sim.opts(Tls::Plain);
    o.datacenter = Some("DC0".into());
    let d0 = VmwareSoapDriver::connect(o).unwrap();
    assert_eq!(d0.status(&dup).unwrap(), PowerState::On);
    assert_eq!(d0.list().unwrap().len(), 2);
    assert!(matches!(d0.status(&susp), Err(DriverError::NotFound(_))));
    let dc1_uuid = VmRef::parse(
        &list
            .iter()
            .find(|v| v.name == "DC1_C0_RP0_VM1")
            .unwrap()
            .uuid,
    );
    assert_eq!(d.status(&dc1_uuid).unwrap(), PowerState::Off);

    let mut o = sim.opts(Tls::Plain);
    o.datacenter = Some("DC9".into());
    let e = VmwareSoapDriver::connect(o).unwrap_err();
    assert!(e.to_string().contains("DC9"), "{e}");
}

#[test]
fn wrong_password_is_auth_error_with_fault_text() {
    let sim = Sim::start(&["-vms", "1"], false);
    let mut o = sim.opts(Tls::Plain);
    o.password = "wrong".into();
    match VmwareSoapDriver::connect(o) {
        Err(DriverError::Auth(text)) => assert!(text.contains("Login failure"), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn tls_verify_wrong_ca_and_insecure() {
    // The elapsed-time bounds below are hang guards, not performance assertions.
    let sim = Sim::start(&["-vms", "2"], true);
    let vm = name("DC0_C0_RP0_VM0");

    let d = sim.connect();
    assert_eq!(d.status(&vm).unwrap(), PowerState::On);

    let d = VmwareSoapDriver::connect(sim.opts(Tls::Insecure)).unwrap();
    assert_eq!(d.status(&vm).unwrap(), PowerState::On);

    for tls in [
        Tls::Verify {
            ca: Some("/etc/ssl/certs/ca-certificates.crt".into()),
        },
        Tls::Verify { ca: None },
    ] {
        let t = Instant::now();
        match VmwareSoapDriver::connect(sim.opts(tls.clone())) {
            Err(e @ DriverError::Unreachable { .. }) => {
                let text = fence_drivers::error_chain(&e);
                assert!(text.contains("certificate"), "{tls:?}: {text}");
                assert!(text.contains("UnknownIssuer"), "{tls:?}: {text}");
                println!("{tls:?}: {text}");
            }
            other => panic!("{tls:?}: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(20));
    }

    // Plain HTTP against the TLS port fails promptly.
    let mut o = sim.opts(Tls::Plain);
    o.timeout = Duration::from_secs(2);
    let t = Instant::now();
    assert!(VmwareSoapDriver::connect(o).is_err());
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[test]
fn endpoint_killed_mid_run_is_unreachable_not_a_hang() {
    // The elapsed-time bounds below are hang guards (a loaded machine is slow, not hung).
    let mut sim = Sim::start(&["-vms", "2"], false);
    let mut o = sim.opts(Tls::Plain);
    o.timeout = Duration::from_secs(3);
    let d = VmwareSoapDriver::connect(o).unwrap();
    let vm = name("DC0_C0_RP0_VM0");
    assert_eq!(d.status(&vm).unwrap(), PowerState::On);
    sim.kill();
    type Call<'a> = &'a dyn Fn() -> Result<(), DriverError>;
    let calls: [(&str, Call); 4] = [
        ("status", &|| d.status(&vm).map(|_| ())),
        ("off", &|| d.power_off(&vm)),
        ("list", &|| d.list().map(|_| ())),
        ("check", &|| d.check()),
    ];
    for (what, call) in calls {
        let t = Instant::now();
        match call() {
            Err(DriverError::Unreachable { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what} took {:?}",
            t.elapsed()
        );
    }
    // Drop must not hang either (logout against a dead endpoint).
    let t = Instant::now();
    drop(d);
    assert!(t.elapsed() < Duration::from_secs(20));
}

#[test]
fn power_by_name_proves_the_name_unique_across_folders() {
    // VM1 lives in sub-folder "sub"; VM2 moves to "other" and takes VM0's name.
    let sim = Sim::start(
        &[
            "-vms",
            "4",
            "-move",
            "DC0_C0_RP0_VM1=sub",
            "-move",
            "DC0_C0_RP0_VM2=other",
            "-rename",
            "DC0_C0_RP0_VM2=DC0_C0_RP0_VM0",
        ],
        false,
    );
    let d = sim.connect();
    let in_sub = name("DC0_C0_RP0_VM1");
    assert_eq!(d.status(&in_sub).unwrap(), PowerState::On);
    d.power_off(&in_sub).unwrap();
    assert_eq!(d.status(&in_sub).unwrap(), PowerState::Off);
    // A power operation proves the name unique over every folder and refuses it ...
    let dup = name("DC0_C0_RP0_VM0");
    match d.power_off(&dup) {
        Err(DriverError::Ambiguous { count, .. }) => assert_eq!(count, 2),
        other => panic!("duplicate in another folder: {other:?}"),
    }
    // ... while status, read-only, answers for the VM in the top folder (documented).
    assert_eq!(d.status(&dup).unwrap(), PowerState::On);
    // A status-only lookup remembered does not let a power operation skip the proof.
    assert!(matches!(
        d.power_on(&dup),
        Err(DriverError::Ambiguous { .. })
    ));
    // "Off" ends a fence without a power operation, so status never answers it for an
    // unproven name: with the top-folder VM off (and remembered as found on), the name is
    // proven, found twice, and refused — the running one in "other" must not look fenced.
    let top = name("/DC0/vm/DC0_C0_RP0_VM0");
    d.power_off(&top).unwrap();
    assert!(matches!(
        d.status(&dup),
        Err(DriverError::Ambiguous { count: 2, .. })
    ));
    let fresh = sim.connect();
    assert!(matches!(
        fresh.status(&dup),
        Err(DriverError::Ambiguous { count: 2, .. })
    ));
    assert_eq!(
        d.status(&name("/DC0/vm/other/DC0_C0_RP0_VM0")).unwrap(),
        PowerState::On
    );
    d.power_on(&top).unwrap();
    assert!(matches!(
        d.status(&name("DC0_C0_RP0_VM2")),
        Err(DriverError::NotFound(_))
    ));
    assert!(matches!(
        d.power_off(&name("DC0_C0_RP0_VM2")),
        Err(DriverError::NotFound(_))
    ));
    let vm3 = name("DC0_C0_RP0_VM3");
    assert_eq!(d.status(&vm3).unwrap(), PowerState::On);
    d.power_off(&vm3).unwrap();
    assert_eq!(d.status(&vm3).unwrap(), PowerState::Off);
    assert_eq!(d.list().unwrap().len(), 4);
    // A fresh driver scoped to the datacenter sees the same.
    let mut o = sim.opts(Tls::Plain);
    o.datacenter = Some("DC0".into());
    let d0 = VmwareSoapDriver::connect(o).unwrap();
    assert_eq!(d0.status(&in_sub).unwrap(), PowerState::Off);
    assert!(matches!(
        d0.power_off(&dup),
        Err(DriverError::Ambiguous { count: 2, .. })
    ));
    d0.power_on(&in_sub).unwrap();
    assert_eq!(d.status(&in_sub).unwrap(), PowerState::On);
}

/// The cost of a status by name, in SOAP round trips, does not depend on the inventory size
/// (folder probing), while the fallback walk does; timings are printed for information only
/// (the benchmark, scripts/bench-vmware.sh, measures them).
#[test]
fn status_by_name_costs_the_same_round_trips_at_any_inventory_size() {
    let mut costs = Vec::new();
    for n in [100usize, 2000] {
        let t = Instant::now();
        let nvms = n.to_string();
        let target = format!("DC0_C0_RP0_VM{}", n / 2);
        let escaped = "DC0_C0_RP0_VM3";
        let renamed = format!("{escaped}={escaped}%x");
        let sim = Sim::start(&["-vms", &nvms, "-rename", &renamed], false);
        let started = t.elapsed();
        let d = sim.connect();
        let vm = name(&target);
        let c0 = d.soap_calls();
        let t = Instant::now();
        assert_eq!(d.status(&vm).unwrap(), PowerState::On);
        let first_name = t.elapsed();
        let by_name_calls = d.soap_calls() - c0;
        let c0 = d.soap_calls();
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(d.status(&vm).unwrap(), PowerState::On);
        }
        let cached_name = t.elapsed() / 10;
        assert_eq!(d.soap_calls() - c0, 10, "a remembered name costs one call");
        // A name with a character vSphere escapes takes the walk: one page per 100 VMs.
        let c0 = d.soap_calls();
        assert_eq!(
            d.status(&name(&format!("{escaped}%x"))).unwrap(),
            PowerState::On
        );
        let walk_calls = d.soap_calls() - c0;
        assert!(
            walk_calls as usize >= n / 100,
            "walk of {n} VMs in {walk_calls} calls"
        );
        let u = uuid_of(&d, vm.as_str());
        let c0 = d.soap_calls();
        assert_eq!(d.status(&u).unwrap(), PowerState::On);
        // FindAllByUuid (served by the launcher), one read.
        assert_eq!(d.soap_calls() - c0, 2, "search + one read");
        let c0 = d.soap_calls();
        let t = Instant::now();
        for _ in 0..10 {
            assert_eq!(d.status(&u).unwrap(), PowerState::On);
        }
        let by_uuid = t.elapsed() / 10;
        assert_eq!(d.soap_calls() - c0, 10, "a remembered UUID costs one call");
        let t = Instant::now();
        assert_eq!(d.list().unwrap().len(), n);
        let list = t.elapsed();
        println!(
            "vcsim {n} VMs (start {started:?}): status by name first {first_name:?} \
             ({by_name_calls} calls), again {cached_name:?}, by UUID {by_uuid:?}, \
             escaped name by walk {walk_calls} calls, list {list:?}"
        );
        costs.push(by_name_calls);
    }
    assert_eq!(
        costs[0], costs[1],
        "round trips per status by name: {costs:?}"
    );
    assert!(
        costs[0] <= 3,
        "folder list + FindChild + one read: {costs:?}"
    );
}

fn assert_ambiguous<T: std::fmt::Debug>(r: Result<T, DriverError>, uuid: &VmRef, what: &str) {
    match r {
        Err(DriverError::Ambiguous { name, count }) => {
            assert_eq!(name, uuid.as_str(), "{what}");
            assert_eq!(count, 2, "{what}");
        }
        other => panic!("{what}: a BIOS UUID two VMs share must be ambiguous, got {other:?}"),
    }
}

/// By UUID the driver asks `FindAllByUuid` (served by the launcher on top of the simulator):
/// one search and one read for a first status, in any letter case.
#[test]
fn status_by_uuid_uses_find_all_by_uuid() {
    let sim = Sim::start(&["-vms", "3"], false);
    let d = sim.connect();
    let u1 = uuid_of(&d, "DC0_C0_RP0_VM1");
    let c0 = d.soap_calls();
    assert_eq!(d.status(&u1).unwrap(), PowerState::On);
    assert_eq!(d.soap_calls() - c0, 2, "FindAllByUuid + one read");
    // A second UUID: no fallback was learnt, same cost.
    let u2 = uuid_of(&d, "DC0_C0_RP0_VM2");
    let upper = VmRef::parse(&u2.as_str().to_uppercase());
    let c0 = d.soap_calls();
    assert_eq!(d.status(&upper).unwrap(), PowerState::On);
    assert_eq!(d.soap_calls() - c0, 2, "FindAllByUuid + one read");
    d.power_off(&upper).unwrap();
    assert_eq!(d.status(&name("DC0_C0_RP0_VM2")).unwrap(), PowerState::Off);
    assert_eq!(d.status(&name("DC0_C0_RP0_VM1")).unwrap(), PowerState::On);
    assert!(matches!(
        d.status(&VmRef::parse("01234567-89ab-cdef-0123-456789abcdef")),
        Err(DriverError::NotFound(_))
    ));
}

/// Two VMs with the same BIOS UUID (a clone that kept it): status and every power action by
/// that UUID are refused as ambiguous and touch neither VM; other UUIDs still work.
#[test]
fn bios_uuid_shared_by_two_vms_is_ambiguous() {
    let sim = Sim::start(
        &["-vms", "3", "-same-uuid", "DC0_C0_RP0_VM2=DC0_C0_RP0_VM0"],
        false,
    );
    let d = sim.connect();
    let list = d.list().unwrap();
    let u0 = uuid_of(&d, "DC0_C0_RP0_VM0");
    assert_eq!(
        list.iter().filter(|v| VmRef::parse(&v.uuid) == u0).count(),
        2,
        "-same-uuid applied: {list:?}"
    );
    let upper = VmRef::parse(&u0.as_str().to_uppercase());
    for u in [&u0, &upper] {
        assert_ambiguous(d.status(u), u, "status");
        assert_ambiguous(d.power_off(u), u, "power_off");
        assert_ambiguous(d.power_on(u), u, "power_on");
    }
    for vm in ["DC0_C0_RP0_VM0", "DC0_C0_RP0_VM2"] {
        assert_eq!(
            d.status(&name(vm)).unwrap(),
            PowerState::On,
            "{vm} untouched"
        );
    }
    // Still ambiguous when one of them is off (no early "already off").
    d.power_off(&name("DC0_C0_RP0_VM0")).unwrap();
    assert_ambiguous(d.status(&u0), &u0, "status, one off");
    assert_ambiguous(d.power_off(&u0), &u0, "power_off, one off");
    assert_eq!(
        d.status(&name("DC0_C0_RP0_VM2")).unwrap(),
        PowerState::On,
        "the other one stays on"
    );
    // A fresh driver (nothing remembered) says the same.
    let d2 = sim.connect();
    assert_ambiguous(d2.power_off(&u0), &u0, "fresh power_off");
    let u1 = uuid_of(&d, "DC0_C0_RP0_VM1");
    d.power_off(&u1).unwrap();
    assert_eq!(d.status(&u1).unwrap(), PowerState::Off);
}

/// With a datacenter configured, `FindAllByUuid` is restricted to it: a BIOS UUID shared across
/// two datacenters is ambiguous unscoped, unique (and actionable) within either one.
#[test]
fn find_all_by_uuid_restricted_to_the_datacenter() {
    let sim = Sim::start(
        &[
            "-datacenters",
            "2",
            "-vms",
            "2",
            "-same-uuid",
            "DC1_C0_RP0_VM0=DC0_C0_RP0_VM0",
        ],
        false,
    );
    let d = sim.connect();
    let u = uuid_of(&d, "DC0_C0_RP0_VM0");
    assert_eq!(uuid_of(&d, "DC1_C0_RP0_VM0"), u, "-same-uuid applied");
    assert_ambiguous(d.status(&u), &u, "unscoped status");
    assert_ambiguous(d.power_off(&u), &u, "unscoped power_off");

    let scoped = |dc: &str| {
        let mut o = sim.opts(Tls::Plain);
        o.datacenter = Some(dc.into());
        VmwareSoapDriver::connect(o).unwrap()
    };
    let d0 = scoped("DC0");
    let c0 = d0.soap_calls();
    assert_eq!(d0.status(&u).unwrap(), PowerState::On);
    assert_eq!(d0.soap_calls() - c0, 2, "FindAllByUuid + one read");
    d0.power_off(&u).unwrap();
    assert_eq!(d0.status(&u).unwrap(), PowerState::Off);
    // Only DC0's VM went off.
    assert_eq!(
        d.status(&name("/DC0/vm/DC0_C0_RP0_VM0")).unwrap(),
        PowerState::Off
    );
    assert_eq!(
        d.status(&name("/DC1/vm/DC1_C0_RP0_VM0")).unwrap(),
        PowerState::On
    );
    let d1 = scoped("DC1");
    assert_eq!(d1.status(&u).unwrap(), PowerState::On);
    // DC0's other VM is invisible from DC1 by UUID.
    let other = uuid_of(&d, "DC0_C0_RP0_VM1");
    assert!(matches!(d1.status(&other), Err(DriverError::NotFound(_))));
    assert_eq!(d0.status(&other).unwrap(), PowerState::On);
}

/// A server without `FindAllByUuid` (the simulator as shipped: `-no-find-all-by-uuid`) answers
/// MethodNotFound once; the driver then looks UUIDs up with one pass over the VMs reading
/// `config.uuid` (FindByUuid would pick one of two clones) and remembers the answer.
#[test]
fn uuid_lookup_without_find_all_by_uuid() {
    let sim = Sim::start(
        &[
            "-vms",
            "3",
            "-no-find-all-by-uuid",
            "-same-uuid",
            "DC0_C0_RP0_VM2=DC0_C0_RP0_VM0",
        ],
        false,
    );
    let d = sim.connect();
    let u1 = uuid_of(&d, "DC0_C0_RP0_VM1");
    let c0 = d.soap_calls();
    assert_eq!(d.status(&u1).unwrap(), PowerState::On);
    let first = d.soap_calls() - c0;
    assert!(
        (2..=3).contains(&first),
        "FindAllByUuid (MethodNotFound), the pass (one page; a view made if none): {first}"
    );
    let c0 = d.soap_calls();
    assert_eq!(d.status(&u1).unwrap(), PowerState::On);
    assert_eq!(d.soap_calls() - c0, 1, "remembered: one read");
    // Clones sharing a UUID: refused, never one of them picked (even once one is off).
    let u0 = uuid_of(&d, "DC0_C0_RP0_VM0");
    assert_ambiguous(d.status(&u0), &u0, "status");
    assert_ambiguous(d.power_off(&u0), &u0, "power_off");
    d.power_off(&name("DC0_C0_RP0_VM0")).unwrap();
    assert_ambiguous(d.status(&u0), &u0, "status, one off");
    assert_eq!(d.status(&name("DC0_C0_RP0_VM2")).unwrap(), PowerState::On);
    d.power_off(&u1).unwrap();
    assert_eq!(d.status(&name("DC0_C0_RP0_VM1")).unwrap(), PowerState::Off);
    assert_eq!(d.status(&u1).unwrap(), PowerState::Off);
    assert!(matches!(
        d.status(&VmRef::parse("01234567-89ab-cdef-0123-456789abcdef")),
        Err(DriverError::NotFound(_))
    ));
}

/// "Off" is never answered from memory: a VM remembered (its name or UUID proven unique) is off,
/// then a running VM with the same name (renamed) or the same BIOS UUID (reconfigured) appears
/// within the cache period. Status must then refuse the name/UUID as ambiguous; answering "off"
/// from memory would end a fence while the newcomer runs.
#[test]
fn remembered_off_is_proven_again() {
    let mut sim = Sim::start(&["-vms", "4"], false);
    let d = sim.connect();
    let vm0 = name("DC0_C0_RP0_VM0");
    d.power_off(&vm0).unwrap();
    assert_eq!(d.status(&vm0).unwrap(), PowerState::Off);
    // vSphere refuses two names in one folder: the twin lives in a sub-folder.
    sim.command("move DC0_C0_RP0_VM1=later");
    sim.command("rename DC0_C0_RP0_VM1=DC0_C0_RP0_VM0");
    assert_ambiguous(d.status(&vm0), &vm0, "name, a running twin appeared");

    let u2 = uuid_of(&d, "DC0_C0_RP0_VM2");
    d.power_off(&u2).unwrap();
    assert_eq!(d.status(&u2).unwrap(), PowerState::Off);
    sim.command("same-uuid DC0_C0_RP0_VM3=DC0_C0_RP0_VM2");
    assert_ambiguous(d.status(&u2), &u2, "UUID, a running clone appeared");
    // While on, the remembered answer still costs one read.
    let vm3 = name("DC0_C0_RP0_VM3");
    assert_eq!(d.status(&vm3).unwrap(), PowerState::On);
    let c0 = d.soap_calls();
    assert_eq!(d.status(&vm3).unwrap(), PowerState::On);
    assert_eq!(d.soap_calls() - c0, 1);
}
