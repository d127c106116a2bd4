//! The libvirt driver under a hypervisor that goes away: a private libvirtd is killed and
//! restarted under [`LibvirtDriver`] (it reconnects, bounded by its policy, and names the URI
//! while it cannot), and with two URIs a dead one keeps a VM from being proven off.

use std::time::{Duration, Instant};

use fence_drivers::fence::{self, FenceOptions, FenceOutcome};
use fence_drivers::libvirt::{LibvirtDriver, ReconnectPolicy};
use fence_drivers::{Driver, DriverError, PowerState, VmRef};
use fence_system_tests::libvirtd::LibvirtdEnv;

fn test_vm() -> VmRef {
    VmRef::Name("test".into())
}

#[test]
fn driver_reconnects_after_libvirtd_restart() {
    let env = LibvirtdEnv::new();
    let daemon = env.start();
    let policy = ReconnectPolicy {
        timeout: Duration::from_secs(1),
        interval: Duration::from_millis(100),
    };
    let d = LibvirtDriver::connect_with(&[env.uri()], policy).unwrap();
    let opts = FenceOptions {
        confirm_timeout: Duration::from_secs(3),
        poll_interval: Duration::from_millis(20),
    };
    assert_eq!(
        fence::off(&d, &test_vm(), &opts).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::Off);

    // libvirtd goes away: calls fail as Unreachable naming the URI, within the policy's bound.
    drop(daemon);
    let t = Instant::now();
    match d.status(&test_vm()) {
        Err(DriverError::Unreachable { what, .. }) => assert_eq!(what, env.uri()),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // Hang guard: the 1 s policy gives up long before; a loaded machine is slow, not hung.
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert!(matches!(d.check(), Err(DriverError::Unreachable { .. })));
    assert!(matches!(d.list(), Err(DriverError::Unreachable { .. })));

    // It comes back (with fresh test-driver state: `test` running again): the same driver works.
    let _daemon = env.start();
    d.check().unwrap();
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::On);
    assert_eq!(
        fence::reboot(&d, &test_vm(), &opts).unwrap(),
        FenceOutcome::Done
    );
    assert_eq!(d.list().unwrap().len(), 1);
}

#[test]
fn restart_between_calls_is_transparent() {
    let env = LibvirtdEnv::new();
    let daemon = env.start();
    let d = LibvirtDriver::connect(&[env.uri()]).unwrap();
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::On);
    // restart while no call is in flight: the next call reconnects by itself
    drop(daemon);
    let _daemon = env.start();
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::On);
    d.power_off(&test_vm()).unwrap();
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::Off);
}

/// With two URIs, a shut-off definition on the reachable one proves nothing while the other
/// does not answer (the VM may run there): status is an error, never off, and on is refused.
/// A copy running on the reachable URI still answers on.
#[test]
fn an_unreachable_uri_keeps_a_vm_from_being_proven_off() {
    let env = LibvirtdEnv::new();
    let daemon = env.start();
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node.xml");
    std::fs::write(
        &node,
        "<node><domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\
         <name>test</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid><memory>8192</memory>\
         <os><type>hvm</type></os><test:runstate>5</test:runstate></domain>\
         <domain type='test'><name>elsewhere</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e1940</uuid>\
         <memory>8192</memory><os><type>hvm</type></os></domain></node>",
    )
    .unwrap();
    let policy = ReconnectPolicy {
        timeout: Duration::from_millis(300),
        interval: Duration::from_millis(100),
    };
    let file_uri = format!("test://{}", node.display());
    let d = LibvirtDriver::connect_with(&[file_uri, env.uri()], policy).unwrap();
    // both answer: `test` runs on the libvirtd URI, shut off in the file
    assert_eq!(d.status(&test_vm()).unwrap(), PowerState::On);
    drop(daemon);
    match d.status(&test_vm()) {
        Err(DriverError::Unreachable { what, .. }) => assert_eq!(what, env.uri()),
        other => panic!("a VM that may run behind a dead URI was answered: {other:?}"),
    }
    assert!(d.power_on(&test_vm()).is_err());
    assert!(fence::off(
        &d,
        &test_vm(),
        &FenceOptions {
            confirm_timeout: Duration::from_millis(500),
            poll_interval: Duration::from_millis(50),
        }
    )
    .is_err());
    // a VM running on the reachable URI is on, whatever the other URI would say
    let other = VmRef::Name("elsewhere".into());
    assert_eq!(d.status(&other).unwrap(), PowerState::On);
}
