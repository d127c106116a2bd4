//! LibvirtDriver against libvirt's in-process test driver: `test:///default` (one running domain
//! `test`) and node files written here (`test:///<tmp>/node.xml`). No libvirtd needed.
#![cfg(feature = "libvirt")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use fence_drivers::fence::{self, FenceError, FenceOptions, FenceOutcome};
use fence_drivers::libvirt::{LibvirtDriver, ReconnectPolicy, SocketKind};
use fence_drivers::{Driver, DriverError, PowerState, VmInfo, VmRef};

const TEST_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";

/// `test:///default` state is shared by every connection in this process, so the tests using it
/// take turns.
static DEFAULT_URI_LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn opts() -> FenceOptions {
    FenceOptions {
        confirm_timeout: Duration::from_secs(3),
        poll_interval: Duration::from_millis(10),
    }
}

fn default_driver() -> LibvirtDriver {
    LibvirtDriver::connect(&["test:///default".to_string()]).expect("open test:///default")
}

fn name(s: &str) -> VmRef {
    VmRef::Name(s.to_string())
}

fn uuid(s: &str) -> VmRef {
    VmRef::parse(s)
}

#[test]
fn driver_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<LibvirtDriver>();
}

#[test]
fn default_domain_off_on_reboot_cycle() {
    let _g = DEFAULT_URI_LOCK.lock();
    let d = default_driver();
    assert_eq!(d.kind(), "libvirt");
    d.check().unwrap();

    assert_eq!(d.status(&name("test")).unwrap(), PowerState::On);
    assert_eq!(d.status(&uuid(TEST_UUID)).unwrap(), PowerState::On);
    assert_eq!(
        d.status(&uuid(&TEST_UUID.to_uppercase())).unwrap(),
        PowerState::On
    );
    assert_eq!(
        d.list().unwrap(),
        vec![VmInfo {
            name: "test".into(),
            uuid: TEST_UUID.into(),
            state: PowerState::On
        }]
    );

    // off, then off again: already off is success without doing anything.
    assert_eq!(
        fence::off(&d, &name("test"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&name("test")).unwrap(), PowerState::Off);
    assert_eq!(d.list().unwrap()[0].state, PowerState::Off);
    assert_eq!(
        fence::off(&d, &uuid(TEST_UUID), &opts()).unwrap(),
        FenceOutcome::AlreadyInState
    );
    // reboot of an off VM leaves it off (fence_virtd: "reboot does not power on nodes that are off").
    assert_eq!(
        fence::reboot(&d, &name("test"), &opts()).unwrap(),
        FenceOutcome::AlreadyInState
    );
    assert_eq!(d.status(&name("test")).unwrap(), PowerState::Off);
    // destroying an off domain is a platform error, not a silent success
    assert!(matches!(
        d.power_off(&name("test")),
        Err(DriverError::Platform(_))
    ));

    assert_eq!(
        fence::on(&d, &uuid(TEST_UUID), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&name("test")).unwrap(), PowerState::On);
    assert_eq!(
        fence::on(&d, &name("test"), &opts()).unwrap(),
        FenceOutcome::AlreadyInState
    );

    assert_eq!(
        fence::reboot(&d, &name("test"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&name("test")).unwrap(), PowerState::On);
}

#[test]
fn unknown_vms_are_not_found() {
    let _g = DEFAULT_URI_LOCK.lock();
    let d = default_driver();
    for vm in [
        name("TEST"), // names are case-sensitive
        name("nosuchvm"),
        uuid("00000000-0000-0000-0000-000000000001"),
    ] {
        assert!(
            matches!(d.status(&vm), Err(DriverError::NotFound(ref s)) if s == vm.as_str()),
            "{vm}"
        );
        assert!(matches!(d.power_off(&vm), Err(DriverError::NotFound(_))));
        assert!(matches!(d.power_on(&vm), Err(DriverError::NotFound(_))));
        assert!(matches!(d.domain_xml(&vm), Err(DriverError::NotFound(_))));
        assert!(matches!(
            fence::off(&d, &vm, &opts()),
            Err(FenceError::Driver(DriverError::NotFound(_)))
        ));
        assert!(matches!(
            fence::reboot(&d, &vm, &opts()),
            Err(FenceError::Driver(DriverError::NotFound(_)))
        ));
    }
    assert_eq!(d.status(&name("test")).unwrap(), PowerState::On);
}

/// Finding: `test:///default` is one state per process, shared between connections and reset
/// once the last connection closes.
#[test]
fn default_uri_state_is_shared_per_process_until_last_close() {
    let _g = DEFAULT_URI_LOCK.lock();
    let a = default_driver();
    let b = default_driver();
    assert_eq!(b.status(&name("test")).unwrap(), PowerState::On);
    a.power_off(&name("test")).unwrap();
    assert_eq!(b.status(&name("test")).unwrap(), PowerState::Off);
    drop(a);
    assert_eq!(b.status(&name("test")).unwrap(), PowerState::Off);
    drop(b);
    let c = default_driver();
    assert_eq!(c.status(&name("test")).unwrap(), PowerState::On);
}

fn transient_xml(n: &str, u: &str) -> String {
    format!(
        "<domain type='test'><name>{n}</name><uuid>{u}</uuid><memory>8192</memory>\
         <os><type>hvm</type></os></domain>"
    )
}

/// fence_virtd's reboot recreates a transient domain from its saved XML; our power_off keeps
/// the XML so the shared fence::reboot does the same.
#[test]
fn transient_domain_survives_reboot_and_off_on() {
    let _g = DEFAULT_URI_LOCK.lock();
    let d = default_driver();
    let u = "a1b2c3d4-0000-4000-8000-000000000042";
    d.create_from_xml(&transient_xml("trans", u)).unwrap();
    assert_eq!(d.status(&name("trans")).unwrap(), PowerState::On);
    let xml = d.domain_xml(&uuid(u)).unwrap();
    assert!(xml.contains("<name>trans</name>"), "{xml}");

    assert_eq!(
        fence::reboot(&d, &name("trans"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&uuid(u)).unwrap(), PowerState::On);
    assert!(d.list().unwrap().iter().any(|v| v.uuid == u));

    // off: libvirt forgets the domain; we report it off, a second off is "already off".
    assert_eq!(
        fence::off(&d, &uuid(u), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert!(!d.list().unwrap().iter().any(|v| v.uuid == u));
    assert_eq!(d.status(&name("trans")).unwrap(), PowerState::Off);
    assert_eq!(
        fence::off(&d, &name("trans"), &opts()).unwrap(),
        FenceOutcome::AlreadyInState
    );
    // a second driver does not know the vanished domain
    let other = default_driver();
    assert!(matches!(
        other.status(&name("trans")),
        Err(DriverError::NotFound(_))
    ));

    assert_eq!(
        fence::on(&d, &name("trans"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(other.status(&uuid(u)).unwrap(), PowerState::On);
    d.power_off(&uuid(u)).unwrap();
}

struct Node {
    _dir: tempfile::TempDir,
    sock_dir: PathBuf,
    uri: String,
}

const ALPHA: &str = "11111111-2222-3333-4444-000000000001";
const BETA: &str = "11111111-2222-3333-4444-000000000002";
const GAMMA: &str = "11111111-2222-3333-4444-000000000003";
const DELTA: &str = "11111111-2222-3333-4444-000000000004";

fn domain(n: &str, u: &str, off: bool, devices: &str) -> String {
    let state = if off {
        "<test:runstate>5</test:runstate>"
    } else {
        ""
    };
    format!(
        "<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\
         <name>{n}</name><uuid>{u}</uuid><memory>8192</memory><os><type>hvm</type></os>\
         <devices>{devices}</devices>{state}</domain>\n"
    )
}

fn serial(path: &Path) -> String {
    format!(
        "<serial type='unix'><source mode='bind' path='{}'/><target port='1'/></serial>",
        path.display()
    )
}

/// A node file with alpha (running, serial socket in sock_dir), Beta (shut off, serial socket
/// in sock_dir), gamma (running, serial socket in a subdirectory) and delta (running, channel
/// socket in sock_dir).
fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let sock_dir = dir.path().join("fence");
    let channel = format!(
        "<channel type='unix'><source mode='bind' path='{}'/>\
         <target type='guestfwd' address='10.0.2.179' port='1229'/></channel>",
        sock_dir.join("delta.sock").display()
    );
    let xml = format!(
        "<node>\n{}{}{}{}</node>\n",
        domain("alpha", ALPHA, false, &serial(&sock_dir.join("alpha.sock"))),
        domain("Beta", BETA, true, &serial(&sock_dir.join("beta.sock"))),
        domain(
            "gamma",
            GAMMA,
            false,
            &serial(&sock_dir.join("sub/gamma.sock"))
        ),
        domain("delta", DELTA, false, &channel),
    );
    node_from(dir, sock_dir, &xml)
}

fn node_from(dir: tempfile::TempDir, sock_dir: PathBuf, xml: &str) -> Node {
    let file = dir.path().join("node.xml");
    std::fs::write(&file, xml).unwrap();
    let uri = format!("test://{}", file.display());
    Node {
        _dir: dir,
        sock_dir,
        uri,
    }
}

fn names(v: &[VmInfo]) -> Vec<&str> {
    v.iter().map(|v| v.name.as_str()).collect()
}

#[test]
fn custom_node_list_status_and_state_changes_persist_across_calls() {
    let n = node();
    let d = LibvirtDriver::connect(std::slice::from_ref(&n.uri)).unwrap();
    let list = d.list().unwrap();
    assert_eq!(names(&list), ["alpha", "Beta", "delta", "gamma"]);
    assert_eq!(list[1].uuid, BETA);
    assert_eq!(list[1].state, PowerState::Off);
    assert_eq!(d.status(&name("Beta")).unwrap(), PowerState::Off);
    assert_eq!(d.status(&uuid(ALPHA)).unwrap(), PowerState::On);
    assert!(matches!(
        d.status(&name("beta")),
        Err(DriverError::NotFound(_))
    ));

    assert_eq!(
        fence::on(&d, &name("Beta"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(
        fence::off(&d, &name("alpha"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&name("Beta")).unwrap(), PowerState::On);
    assert_eq!(d.status(&name("alpha")).unwrap(), PowerState::Off);
    assert_eq!(
        d.domain_states().unwrap(),
        vec![
            (ALPHA.to_string(), PowerState::Off),
            (BETA.to_string(), PowerState::On),
            (DELTA.to_string(), PowerState::On),
            (GAMMA.to_string(), PowerState::On),
        ]
    );

    // Finding: every connection to a node file parses it anew, so a second driver starts from
    // the file's state.
    let fresh = LibvirtDriver::connect(std::slice::from_ref(&n.uri)).unwrap();
    assert_eq!(fresh.status(&name("alpha")).unwrap(), PowerState::On);
    assert_eq!(fresh.status(&name("Beta")).unwrap(), PowerState::Off);
    // ... and the first driver keeps its own state.
    assert_eq!(d.status(&name("alpha")).unwrap(), PowerState::Off);
}

#[test]
fn concurrent_calls_on_one_driver() {
    let n = node();
    let d = LibvirtDriver::connect(std::slice::from_ref(&n.uri)).unwrap();
    std::thread::scope(|s| {
        for vm in ["alpha", "gamma", "delta"] {
            let d = &d;
            s.spawn(move || {
                for _ in 0..20 {
                    assert_eq!(d.status(&name(vm)).unwrap(), PowerState::On);
                    assert_eq!(d.list().unwrap().len(), 4);
                }
                fence::off(d, &name(vm), &opts()).unwrap();
            });
        }
    });
    let states: Vec<_> = d.list().unwrap().into_iter().map(|v| v.state).collect();
    assert_eq!(states, [PowerState::Off; 4]);
}

#[test]
fn two_uris_are_both_asked_and_list_is_merged() {
    let first = node();
    let dir2 = tempfile::tempdir().unwrap();
    let sock2 = dir2.path().join("fence");
    let alpha2 = "22222222-2222-3333-4444-000000000001";
    let xml2 = format!(
        "<node>\n{}{}{}</node>\n",
        // same name as the first node's alpha, other UUID
        domain("alpha", alpha2, false, ""),
        // the same VM as the first node's Beta (same UUID): listed once
        domain("Beta", BETA, true, ""),
        domain(
            "Zeta",
            "22222222-2222-3333-4444-00000000000f",
            false,
            &serial(&sock2.join("zeta.sock"))
        ),
    );
    let second = node_from(dir2, sock2.clone(), &xml2);
    let d = LibvirtDriver::connect(&[first.uri.clone(), second.uri.clone()]).unwrap();
    assert_eq!(d.uris(), [first.uri.clone(), second.uri.clone()]);

    let list = d.list().unwrap();
    assert_eq!(
        names(&list),
        ["alpha", "alpha", "Beta", "delta", "gamma", "Zeta"]
    );
    let mut uuids: Vec<_> = list.iter().map(|v| v.uuid.as_str()).collect();
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 6, "no duplicate UUIDs: {list:?}");

    // "alpha" by name is two VMs (two UUIDs, one name): refused, nothing destroyed
    let ambiguous =
        |r: &Result<_, DriverError>| matches!(r, Err(DriverError::Ambiguous { count: 2, .. }));
    assert!(matches!(
        fence::off(&d, &name("alpha"), &opts()),
        Err(FenceError::Driver(DriverError::Ambiguous { count: 2, .. }))
    ));
    assert!(ambiguous(&d.status(&name("alpha"))));
    assert_eq!(d.status(&uuid(ALPHA)).unwrap(), PowerState::On);
    assert_eq!(d.status(&uuid(alpha2)).unwrap(), PowerState::On);
    // by UUID each is one VM
    fence::off(&d, &uuid(ALPHA), &opts()).unwrap();
    assert_eq!(d.status(&uuid(ALPHA)).unwrap(), PowerState::Off);
    assert_eq!(d.status(&uuid(alpha2)).unwrap(), PowerState::On);
    // by name it stays two VMs, whatever their states: the off one does not make the name
    // "off", and the running one is not destroyed in its place
    assert!(ambiguous(&d.status(&name("alpha"))));
    assert!(ambiguous(
        &d.power_off(&name("alpha")).map(|_| PowerState::Off)
    ));
    assert!(ambiguous(
        &d.power_on(&name("alpha")).map(|_| PowerState::On)
    ));
    assert_eq!(d.status(&uuid(alpha2)).unwrap(), PowerState::On);
    fence::off(&d, &uuid(alpha2), &opts()).unwrap();
    assert!(ambiguous(&d.status(&name("alpha"))));
    // only the second URI knows Zeta
    assert_eq!(d.status(&name("Zeta")).unwrap(), PowerState::On);
    assert_eq!(
        fence::reboot(&d, &name("Zeta"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&name("Zeta")).unwrap(), PowerState::On);
    assert!(matches!(
        d.status(&name("omega")),
        Err(DriverError::NotFound(_))
    ));

    // serial sockets from both URIs, each filtered to its own directory
    let s1 = d
        .running_domain_sockets(SocketKind::Serial, Some(&first.sock_dir))
        .unwrap();
    assert_eq!(s1, vec![]); // alpha is off now, Beta was off from the start
    let s2 = d
        .running_domain_sockets(SocketKind::Serial, Some(&sock2))
        .unwrap();
    assert_eq!(
        s2,
        vec![(
            "22222222-2222-3333-4444-00000000000f".to_string(),
            "Zeta".to_string(),
            sock2.join("zeta.sock")
        )]
    );
}

#[test]
fn running_domain_sockets_follow_state_and_directory() {
    let n = node();
    let d = LibvirtDriver::connect(std::slice::from_ref(&n.uri)).unwrap();
    let entry = |u: &str, nm: &str, p: PathBuf| (u.to_string(), nm.to_string(), p);

    let got = d
        .running_domain_sockets(SocketKind::Serial, Some(&n.sock_dir))
        .unwrap();
    assert_eq!(
        got,
        vec![entry(ALPHA, "alpha", n.sock_dir.join("alpha.sock"))]
    );

    let mut all = d.running_domain_sockets(SocketKind::Serial, None).unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![
            entry(ALPHA, "alpha", n.sock_dir.join("alpha.sock")),
            entry(GAMMA, "gamma", n.sock_dir.join("sub/gamma.sock")),
        ]
    );

    let ch = d
        .running_domain_sockets(SocketKind::Channel, Some(&n.sock_dir))
        .unwrap();
    assert_eq!(
        ch,
        vec![entry(DELTA, "delta", n.sock_dir.join("delta.sock"))]
    );

    // state changes move sockets in and out
    fence::off(&d, &name("alpha"), &opts()).unwrap();
    fence::on(&d, &name("Beta"), &opts()).unwrap();
    let got = d
        .running_domain_sockets(SocketKind::Serial, Some(&n.sock_dir))
        .unwrap();
    assert_eq!(got, vec![entry(BETA, "Beta", n.sock_dir.join("beta.sock"))]);
}

#[test]
fn unreachable_uris_are_reported_with_the_uri() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("test://{}/missing.xml", dir.path().display());
    match LibvirtDriver::connect(std::slice::from_ref(&missing)) {
        Err(DriverError::Unreachable { what, .. }) => assert_eq!(what, missing),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let sock = format!(
        "test+unix:///default?socket={}/no.sock",
        dir.path().display()
    );
    match LibvirtDriver::connect_with(
        std::slice::from_ref(&sock),
        ReconnectPolicy {
            timeout: Duration::from_millis(100),
            interval: Duration::from_millis(20),
        },
    ) {
        Err(DriverError::Unreachable { what, .. }) => assert_eq!(what, sock),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(matches!(
        LibvirtDriver::connect(&[]),
        Err(DriverError::Platform(_))
    ));
}

/// After a live migration the VM stays defined (shut off) on the host it left. With both hosts
/// configured, the shut-off definition on the first URI must not answer for the VM running on
/// the second: status is on, off destroys the running copy and is confirmed, on is refused
/// while a copy runs, and two running copies are refused rather than one picked.
#[test]
fn a_migrated_vm_is_on_where_its_active_copy_runs() {
    const MIG: &str = "33333333-2222-3333-4444-000000000001";
    let write = |running: bool| {
        let dir = tempfile::tempdir().unwrap();
        let xml = format!("<node>\n{}</node>\n", domain("mig", MIG, !running, ""));
        node_from(dir, PathBuf::new(), &xml)
    };
    let source = write(false);
    let dest = write(true);
    let d = LibvirtDriver::connect(&[source.uri.clone(), dest.uri.clone()]).unwrap();
    for vm in [name("mig"), uuid(MIG)] {
        assert_eq!(d.status(&vm).unwrap(), PowerState::On, "{vm}");
    }
    // the host list shows the running copy's state, not the first URI's shut-off definition
    let listed = d.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].state, PowerState::On);
    // on: a second copy must not be started while one runs
    assert!(
        matches!(d.power_on(&name("mig")), Err(DriverError::Platform(ref m)) if m.contains("already active"))
    );
    assert_eq!(
        fence::on(&d, &name("mig"), &opts()).unwrap(),
        FenceOutcome::AlreadyInState
    );
    // off acts on the running copy and is confirmed
    assert_eq!(
        fence::off(&d, &name("mig"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&uuid(MIG)).unwrap(), PowerState::Off);
    assert_eq!(
        fence::off(&d, &name("mig"), &opts()).unwrap(),
        FenceOutcome::AlreadyInState
    );
    // on starts one copy again, and then it is on (and listed on: the host list shows
    // the active copy of a UUID, not the first definition)
    assert_eq!(
        fence::on(&d, &name("mig"), &opts()).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&uuid(MIG)).unwrap(), PowerState::On);
    // the destination's copy stays off: starting the first definition again, or starting
    // the second while the first runs, is refused
    assert!(d.power_on(&uuid(MIG)).is_err());

    // Two active copies of one VM (split brain): status is on, off refuses to pick one.
    let a = write(true);
    let b = write(true);
    let d = LibvirtDriver::connect(&[a.uri.clone(), b.uri.clone()]).unwrap();
    assert_eq!(d.status(&uuid(MIG)).unwrap(), PowerState::On);
    let listed = d.list().unwrap();
    assert_eq!(listed.len(), 1, "one UUID is listed once: {listed:?}");
    assert!(matches!(
        fence::off(&d, &uuid(MIG), &opts()),
        Err(FenceError::Driver(DriverError::Platform(ref m))) if m.contains("active on 2 URIs")
    ));
    assert_eq!(d.status(&uuid(MIG)).unwrap(), PowerState::On);
}
