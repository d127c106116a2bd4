//! The declarations of the `fencing.py`-dialect agents we ship: what each one's `device_opt`
//! and texts are in fence-agents 4.12.1, so the binaries only pick one and run it.

use super::front::FrontEnd;
use super::options::AgentDef;

const VMWARE_SOAP_LONGDESC: &str = "fence_vmware_soap is an I/O Fencing agent which can be used with the virtual machines managed by VMWare products that have SOAP API v4.1+. \n\nName of virtual machine (-n / port) has to be used in inventory path format (e.g. /datacenter/vm/Discovered virtual machine/myMachine). In the cases when name of yours VM is unique you can use it instead. Alternatively you can always use UUID to access virtual machine.";
const VMWARE_SOAP_MANPAGE_LONGDESC: &str = "fence_vmware_soap is an I/O Fencing agent which can be used with the virtual machines managed by VMWare products that have SOAP API v4.1+. \n.P\nName of virtual machine (-n / port) has to be used in inventory path format (e.g. /datacenter/vm/Discovered virtual machine/myMachine). In the cases when name of yours VM is unique you can use it instead. Alternatively you can always use UUID to access virtual machine.";

/// `fence_vmware_soap` (`agents/vmware_soap/fence_vmware_soap.py`).
pub fn vmware_soap() -> FrontEnd {
    FrontEnd {
        def: AgentDef {
            name: "fence_vmware_soap",
            shortdesc: "Fence agent for VMWare over SOAP API",
            longdesc: VMWARE_SOAP_LONGDESC,
            vendor_url: "http://www.vmware.com",
            device_opt: vec!["ipaddr", "login", "passwd", "web", "ssl", "notls", "port"],
            extra: vec![],
            defaults: vec![],
        },
        manpage_longdesc: Some(VMWARE_SOAP_MANPAGE_LONGDESC),
    }
}

/// `fence_vmware_soap` as a direct agent over [`fence_drivers::vmware_soap`] (see the binary's
/// documentation for where it differs from the reference).
#[cfg(feature = "vmware_soap")]
pub fn vmware_soap_direct() -> super::direct::DirectAgent {
    super::direct::DirectAgent {
        front: vmware_soap(),
        connect: vmware::connect,
        lookup: vmware::lookup,
        state_name: vmware::state_name,
    }
}

#[cfg(feature = "vmware_soap")]
mod vmware {
    use super::super::direct::{ConnectError, SessionDriver};
    use super::super::front::Prepared;
    use fence_drivers::vmware_soap::{Tls, VmwareSoapDriver, VmwareSoapOptions};
    use fence_drivers::{PowerState, VmRef};
    use std::sync::Arc;

    /// How the driver looks a plug up.
    pub(super) fn lookup(vm: &VmRef) -> &'static str {
        match vm {
            VmRef::Uuid(_) => "by BIOS UUID (SearchIndex.FindAllByUuid)",
            VmRef::Name(n) if n.starts_with('/') => {
                "by inventory path (SearchIndex.FindByInventoryPath)"
            }
            VmRef::Name(_) => "by exact VM name in every VM folder (SearchIndex.FindChild)",
        }
    }

    /// Raw vSphere state names, so `list-status` prints what the reference prints.
    pub(super) fn state_name(s: PowerState) -> &'static str {
        match s {
            PowerState::On => "poweredOn",
            PowerState::Off => "poweredOff",
            PowerState::Suspended => "suspended",
            _ => "unknown",
        }
    }

    /// The port to connect to: `ipport` (the front end has put 80, or 443 with TLS, there
    /// when none was given). A value outside 1..=65535 (or not a number) is refused: the
    /// reference fails to connect with it ("Unable to connect/login to fencing device",
    /// exit 1), where a fallback to the default port would reach some other service.
    fn port_of(p: &Prepared, tls: &Tls) -> Result<u16, String> {
        match p.get("ipport") {
            None => Ok(if *tls == Tls::Plain { 80 } else { 443 }),
            Some(v) => v
                .trim()
                .replace('_', "")
                .parse::<u16>()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| format!("invalid ipport {v:?}: not a TCP port (1-65535)")),
        }
    }

    fn options(p: &Prepared) -> Result<VmwareSoapOptions, String> {
        let tls = if !p.flag("ssl") {
            Tls::Plain
        } else if p.flag("ssl_insecure") {
            Tls::Insecure
        } else {
            Tls::Verify { ca: None }
        };
        let port = port_of(p, &tls)?;
        Ok(VmwareSoapOptions {
            host: p.get("ipaddr").unwrap_or_default().to_string(),
            port,
            tls,
            login: p.get("login").unwrap_or_default().to_string(),
            password: p.get("passwd").unwrap_or_default().to_string(),
            datacenter: None,
            timeout: p.call_timeout(),
        })
    }

    pub(super) fn connect(p: &Prepared) -> Result<Arc<dyn SessionDriver>, ConnectError> {
        let opts = options(p).map_err(ConnectError::Options)?;
        Ok(Arc::new(VmwareSoapDriver::connect(opts)?))
    }
}
