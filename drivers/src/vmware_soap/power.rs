//! Power states and power operations.
//!
//! * status: one single-object `RetrievePropertiesEx` of `runtime.powerState` after the lookup
//!   (none when the lookup has read it on the way).
//! * on/off: `PowerOnVM_Task`/`PowerOffVM_Task` on the VM's moref, then the task's
//!   `info.state` is polled until `success`/`error` within the call timeout (the reference does
//!   not wait for the task), so a failed task is reported with its reason. A task still running
//!   at the call timeout is not an error: the caller's status polls decide (they confirm the
//!   VM off before anything reports success). `InvalidPowerState` with the VM already in the
//!   wanted state is success.
//!
//! Power states: `poweredOn` → [`PowerState::On`], `poweredOff` → [`PowerState::Off`],
//! `suspended` → [`PowerState::Suspended`], which counts as on for fencing (a suspended VM can
//! be resumed; the reference calls it off and answers "already off" without touching it — we
//! deliberately do not copy that).

use std::time::{Duration, Instant};

use super::lookup::{not_found, uuid_cache_key};
use super::soap::{CallError, Fault, Moref};
use super::VmwareSoapDriver;
use crate::{DriverError, PowerState, VmRef};

pub(super) fn power_state(s: &str) -> PowerState {
    match s.trim() {
        "poweredOn" => PowerState::On,
        "poweredOff" => PowerState::Off,
        "suspended" => PowerState::Suspended,
        _ => PowerState::Unknown,
    }
}

impl VmwareSoapDriver {
    fn state_of(&self, vm: &VmRef, m: &Moref) -> Result<PowerState, CallError> {
        let o = self
            .retrieve_one(m, &["runtime.powerState"])?
            .ok_or_else(|| not_found(vm.as_str(), "moref vanished"))?;
        Ok(o.text("runtime.powerState")
            .map(power_state)
            .unwrap_or(PowerState::Unknown))
    }

    pub(super) fn status_inner(&self, vm: &VmRef) -> Result<PowerState, CallError> {
        let (m, st) = self.resolve(vm, false)?;
        match st {
            Some(s) => Ok(s),
            None => self.state_of(vm, &m),
        }
    }

    pub(super) fn power_inner(&self, vm: &VmRef, on: bool) -> Result<(), CallError> {
        let method = if on {
            "PowerOnVM_Task"
        } else {
            "PowerOffVM_Task"
        };
        let reached = |s: PowerState| if on { s == PowerState::On } else { s.is_off() };
        let (m, _) = self.resolve(vm, true)?;
        let already = |this: &Self, f: Fault| -> Result<(), CallError> {
            if f.kind == "InvalidPowerState" && reached(this.state_of(vm, &m)?) {
                tracing::debug!(vm = %vm, method, "already in the wanted state");
                return Ok(());
            }
            Err(CallError::Driver(
                f.to_driver_error(&format!("{method} on {vm}")),
            ))
        };
        let resp = match self.call(method, &m, "") {
            Ok(r) => r,
            Err(CallError::Fault(f)) if f.kind == "ManagedObjectNotFound" => {
                let key = match vm {
                    VmRef::Uuid(u) => uuid_cache_key(u),
                    VmRef::Name(n) => n.clone(),
                };
                self.names.lock().remove(&key);
                return Err(not_found(vm.as_str(), "moref vanished"));
            }
            Err(CallError::Fault(f)) if f.kind != "NotAuthenticated" => return already(self, f),
            Err(e) => return Err(e),
        };
        let task = resp
            .child("returnval")
            .and_then(Moref::from_element)
            .ok_or_else(|| {
                CallError::Driver(DriverError::Platform(format!(
                    "{method}: no task in answer"
                )))
            })?;
        tracing::debug!(vm = %vm, %task, method, "power task started");
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let o = self
                .retrieve_one(&task, &["info.state", "info.error"])?
                .ok_or_else(|| {
                    CallError::Driver(DriverError::Platform(format!(
                        "{method}: task {task} vanished"
                    )))
                })?;
            match o.text("info.state").map(str::trim) {
                Some("success") => return Ok(()),
                Some("error") => {
                    let f = o
                        .prop("info.error")
                        .map(Fault::from_localized)
                        .unwrap_or(Fault {
                            kind: String::new(),
                            message: "task failed without a reason".into(),
                        });
                    return already(self, f);
                }
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                // Still queued or running: not a failure. The caller's status polls (the
                // agent's power_timeout, the daemon's confirmation wait) decide, as the
                // reference's do; nothing reports success before the VM reads off.
                tracing::info!(vm = %vm, %task, method, "power task still running after the call timeout; leaving it to the status polls");
                return Ok(());
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::super::test_server::{one_object, opts, scripted_server, service_content};
    use super::super::Tls;
    use super::*;
    use crate::Driver;

    #[test]
    fn suspended_is_not_off() {
        assert_eq!(power_state("poweredOn"), PowerState::On);
        assert_eq!(power_state("poweredOff"), PowerState::Off);
        assert_eq!(power_state("suspended"), PowerState::Suspended);
        assert!(!power_state("suspended").is_off());
        assert_eq!(power_state("weird"), PowerState::Unknown);
    }

    /// A power task that is still running when the call timeout ends is not a failure (the
    /// status polls that follow decide); a task that fails is, with its reason.
    #[test]
    fn slow_power_task_is_left_to_the_status_polls_failed_task_is_an_error() {
        let fail_task = std::sync::Arc::new(AtomicBool::new(false));
        let ft = fail_task.clone();
        let (port, seen) = scripted_server(move |method, body| match method {
            "RetrieveServiceContent" => Ok(service_content()),
            "Login" | "Logout" => Ok(String::new()),
            "FindAllByUuid" => Ok("<returnval type=\"VirtualMachine\">vm-1</returnval>".into()),
            "PowerOffVM_Task" => Ok("<returnval type=\"Task\">task-1</returnval>".into()),
            "RetrievePropertiesEx" if body.contains(">task-1<") => {
                if ft.load(Ordering::Relaxed) {
                    Ok(one_object(
                        "<obj type=\"Task\">task-1</obj>",
                        &[(
                            "info.state",
                            "error",
                        ), (
                            "info.error",
                            "<fault xsi:type=\"GenericVmConfigFault\"/><localizedMessage>host is gone</localizedMessage>",
                        )],
                    ))
                } else {
                    Ok(one_object(
                        "<obj type=\"Task\">task-1</obj>",
                        &[("info.state", "running")],
                    ))
                }
            }
            "RetrievePropertiesEx" => Ok(one_object(
                "<obj type=\"VirtualMachine\">vm-1</obj>",
                &[
                    ("config.uuid", "4216a1a9-0000-0000-0000-000000000001"),
                    ("runtime.powerState", "poweredOn"),
                ],
            )),
            _ => Err("MethodNotFound".to_string()),
        });
        let mut o = opts("127.0.0.1", Tls::Plain);
        o.port = port;
        o.timeout = Duration::from_millis(700);
        let d = VmwareSoapDriver::connect(o).unwrap();
        let vm = VmRef::parse("4216a1a9-0000-0000-0000-000000000001");
        let t = Instant::now();
        d.power_off(&vm)
            .expect("a running task is left to the status polls");
        assert!(
            t.elapsed() >= Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let polls = seen
            .lock()
            .iter()
            .filter(|m| *m == "RetrievePropertiesEx")
            .count();
        assert!(polls >= 2, "the task was polled: {:?}", seen.lock());
        // The VM still reads on: the status the caller polls next says so.
        assert_eq!(d.status(&vm).unwrap(), PowerState::On);

        fail_task.store(true, Ordering::Relaxed);
        let e = d.power_off(&vm).unwrap_err();
        assert!(e.to_string().contains("host is gone"), "{e}");
    }

    /// A power call the user's role does not allow is a typed [`DriverError::PermissionDenied`]
    /// (the agent's "insufficient privileges" result), whether the call itself or its task
    /// fails with `NoPermission`.
    #[test]
    fn no_permission_is_a_typed_error() {
        let in_task = std::sync::Arc::new(AtomicBool::new(false));
        let it = in_task.clone();
        let (port, _seen) = scripted_server(move |method, body| {
            match method {
            "RetrieveServiceContent" => Ok(service_content()),
            "Login" | "Logout" => Ok(String::new()),
            "FindAllByUuid" => Ok("<returnval type=\"VirtualMachine\">vm-1</returnval>".into()),
            "PowerOffVM_Task" if !it.load(Ordering::Relaxed) => Err("NoPermission".into()),
            "PowerOffVM_Task" => Ok("<returnval type=\"Task\">task-1</returnval>".into()),
            "RetrievePropertiesEx" if body.contains(">task-1<") => Ok(one_object(
                "<obj type=\"Task\">task-1</obj>",
                &[
                    ("info.state", "error"),
                    (
                        "info.error",
                        "<fault xsi:type=\"NoPermission\"/><localizedMessage>Permission to perform this operation was denied.</localizedMessage>",
                    ),
                ],
            )),
            "RetrievePropertiesEx" => Ok(one_object(
                "<obj type=\"VirtualMachine\">vm-1</obj>",
                &[
                    ("config.uuid", "4216a1a9-0000-0000-0000-000000000001"),
                    ("runtime.powerState", "poweredOn"),
                ],
            )),
            _ => Err("MethodNotFound".to_string()),
        }
        });
        let mut o = opts("127.0.0.1", Tls::Plain);
        o.port = port;
        let d = VmwareSoapDriver::connect(o).unwrap();
        let vm = VmRef::parse("4216a1a9-0000-0000-0000-000000000001");
        let e = d.power_off(&vm).unwrap_err();
        assert!(matches!(e, DriverError::PermissionDenied(_)), "{e:?}");
        assert!(e.to_string().contains("PowerOffVM_Task"), "{e}");
        in_task.store(true, Ordering::Relaxed);
        let e = d.power_off(&vm).unwrap_err();
        assert!(matches!(e, DriverError::PermissionDenied(_)), "{e:?}");
        assert!(e.to_string().contains("was denied"), "{e}");
    }
}
