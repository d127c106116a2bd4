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
        list_row: |i| (i.name, i.uuid, vmware::state_name(i.state).to_string()),
        plug_note: super::direct::no_plug_note,
        connect_note: super::direct::no_connect_note,
    }
}

const VMWARE_LONGDESC: &str = "fence_vmware is an I/O Fencing agent which can be used with the VMware ESX, VMware ESXi or VMware Server to fence virtual machines.\n\nBefore you can use this agent, it must be installed VI Perl Toolkit or vmrun command on every node you want to make fencing.\n\nVI Perl Toolkit is preferred for VMware ESX/ESXi and Virtual Center. Vmrun command is only solution for VMware Server 1/2 (this command will works against ESX/ESXi 3.5 up2 and VC up2 too, but not cluster aware!) and is available as part of VMware VIX API SDK package. VI Perl and VIX API SDK are both available from VMware web pages (not int RHEL repository!). \n\nYou can specify type of VMware you are connecting to with -d switch (or vmware_type for stdin). Possible values are esx, server2 and server1.Default value is esx, which will use VI Perl. With server1 and server2, vmrun command is used.\n\nAfter you have successfully installed VI Perl Toolkit or VIX API, you should be able to run fence_vmware_helper (part of this agent) or vmrun command. This agent supports only vmrun from version 2.0.0 (VIX API 1.6.0).";
const VMWARE_MANPAGE_LONGDESC: &str = "fence_vmware is an I/O Fencing agent which can be used with the VMware ESX, VMware ESXi or VMware Server to fence virtual machines.\n.P\nBefore you can use this agent, it must be installed VI Perl Toolkit or vmrun command on every node you want to make fencing.\n.P\nVI Perl Toolkit is preferred for VMware ESX/ESXi and Virtual Center. Vmrun command is only solution for VMware Server 1/2 (this command will works against ESX/ESXi 3.5 up2 and VC up2 too, but not cluster aware!) and is available as part of VMware VIX API SDK package. VI Perl and VIX API SDK are both available from VMware web pages (not int RHEL repository!). \n.P\nYou can specify type of VMware you are connecting to with \\fB-d\\fP switch (or \\fIvmware_type\\fR for stdin). Possible values are esx, server2 and server1.Default value is esx, which will use VI Perl. With server1 and server2, vmrun command is used.\n.P\nAfter you have successfully installed VI Perl Toolkit or VIX API, you should be able to run fence_vmware_helper (part of this agent) or vmrun command. This agent supports only vmrun from version 2.0.0 (VIX API 1.6.0).";

/// `fence_vmware` (`agents/vmware/fence_vmware.py`): `secure` defaults on (it selects nothing
/// here, as in the reference) and `vmware_type` defaults to `esx`.
pub fn vmware() -> FrontEnd {
    FrontEnd {
        def: AgentDef {
            name: "fence_vmware",
            shortdesc: "Fence agent for VMWare",
            longdesc: VMWARE_LONGDESC,
            vendor_url: "http://www.vmware.com",
            device_opt: vec![
                "ipaddr",
                "login",
                "passwd",
                "secure",
                "exec",
                "vmware_type",
                "vmware_datacenter",
            ],
            extra: vec![],
            defaults: vec![("secure", "1"), ("vmware_type", "esx")],
        },
        manpage_longdesc: Some(VMWARE_MANPAGE_LONGDESC),
    }
}

/// `fence_vmware` with `vmware_type=esx` and no `exec`: straight to vSphere over
/// [`fence_drivers::vmware_soap`] (the reference needs the VI Perl helper). Rows and states are
/// the reference's: `list` prints `<name>,` and a VM is on only when `poweredOn` is reported
/// — except that a suspended VM counts as on for status and power-off (safety: it can resume).
#[cfg(feature = "vmware_soap")]
pub fn vmware_esx_direct() -> super::direct::DirectAgent {
    super::direct::DirectAgent {
        front: vmware(),
        connect: vmware::connect_esx,
        lookup: vmware::lookup,
        list_row: |i| {
            let on = i.state == fence_drivers::PowerState::On;
            (i.name, String::new(), if on { "on" } else { "off" }.into())
        },
        plug_note: super::direct::no_plug_note,
        connect_note: super::direct::no_connect_note,
    }
}

const XENAPI_LONGDESC: &str = "fence_cxs is an I/O Fencing agent used on Citrix XenServer hosts. It uses the XenAPI, supplied by Citrix, to establish an XML-RPC session to a XenServer host. Once the session is established, further XML-RPC commands are issued in order to switch on, switch off, restart and query the status of virtual machines running on the host.";

/// `fence_xenapi` (`agents/xenapi/fence_xenapi.py`).
pub fn xenapi() -> FrontEnd {
    FrontEnd {
        def: AgentDef {
            name: "fence_xenapi",
            shortdesc: "Fence agent for Citrix XenServer over XenAPI",
            longdesc: XENAPI_LONGDESC,
            vendor_url: "http://www.xenproject.org",
            device_opt: vec![
                "login",
                "passwd",
                "port",
                "no_login",
                "no_password",
                "session_url",
                "web",
            ],
            extra: vec![],
            defaults: vec![],
        },
        manpage_longdesc: None,
    }
}

/// `fence_xenapi` as a direct agent over [`fence_drivers::xenapi`]: the reference's outputs
/// (`list` is `<uuid>,<name_label>`, `list-status` says `UNKNOWN`, the stdout lines it prints
/// for an unknown or duplicate VM and a failed login), plus a logout at exit and on SIGTERM.
#[cfg(feature = "xenapi")]
pub fn xenapi_direct() -> super::direct::DirectAgent {
    super::direct::DirectAgent {
        front: xenapi(),
        connect: xen::connect,
        lookup: xen::lookup,
        list_row: xen::list_row,
        plug_note: xen::plug_note,
        connect_note: xen::connect_note,
    }
}

#[cfg(feature = "xenapi")]
mod xen {
    use super::super::direct::{ConnectError, SessionDriver};
    use super::super::front::Prepared;
    use fence_drivers::xenapi::{Tls, XenApiDriver, XenApiOptions};
    use fence_drivers::{DriverError, PowerState, VmInfo, VmRef};
    use std::sync::Arc;

    pub(super) fn lookup(vm: &VmRef) -> &'static str {
        match vm {
            VmRef::Uuid(_) => "by UUID (VM.get_by_uuid)",
            VmRef::Name(_) => {
                "by name label (VM.get_by_name_label; templates and control domains excluded)"
            }
        }
    }

    /// `<uuid>,<name_label>` and the raw XenAPI power state (so `list-status` prints
    /// `UNKNOWN`, as the reference).
    pub(super) fn list_row(i: VmInfo) -> (String, String, String) {
        let raw = match i.state {
            PowerState::On => "Running",
            PowerState::Off => "Halted",
            PowerState::Suspended => "Suspended",
            _ => "Paused",
        };
        (i.uuid, i.name, raw.into())
    }

    /// The reference prints the XenAPI failure (or its own marker) on stdout.
    pub(super) fn plug_note(vm: &VmRef, e: &DriverError) -> Option<String> {
        match (vm, e) {
            (VmRef::Uuid(u), DriverError::NotFound(_)) => {
                Some(format!("Xen-API failure: ['UUID_INVALID', 'VM', '{u}']"))
            }
            (VmRef::Name(_), DriverError::NotFound(_)) => Some("NAME_INVALID".into()),
            (_, DriverError::Ambiguous { .. }) => Some("MULTIPLE_VMS_FOUND".into()),
            _ => None,
        }
    }

    pub(super) fn connect_note(p: &Prepared, e: &ConnectError) -> Option<String> {
        match e {
            ConnectError::Driver(DriverError::Auth(_)) => Some(format!(
                "Xen-API failure: ['SESSION_AUTHENTICATION_FAILED', '{}', 'Authentication failure']",
                p.get("login").unwrap_or_default()
            )),
            ConnectError::Driver(e @ DriverError::Unreachable { .. })
                if fence_drivers::error_chain(e).contains("onnection refused") =>
            {
                Some("[Errno 111] Connection refused".into())
            }
            _ => None,
        }
    }

    pub(super) fn connect(p: &Prepared) -> Result<Arc<dyn SessionDriver>, ConnectError> {
        let opts = XenApiOptions {
            url: p.get("session_url").unwrap_or_default().to_string(),
            // The reference verifies https with the system store and has no switch.
            tls: Tls::Verify { ca: None },
            login: p.get("login").unwrap_or_default().to_string(),
            password: p.get("passwd").unwrap_or_default().to_string(),
            timeout: p.call_timeout(),
        };
        Ok(Arc::new(XenApiDriver::connect(opts)?))
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

    /// `fence_vmware` esx: HTTPS, verified against the system store (`SSL_CERT_FILE`
    /// overrides it), to `ipaddr` or `ipaddr:port` (443 by default; `ipport`, whose default
    /// is the SSH port 22 in this agent, is ignored as the reference's helper ignores it),
    /// `vmware_datacenter` limiting the lookups as the helper's `--datacenter`.
    pub(super) fn connect_esx(p: &Prepared) -> Result<Arc<dyn SessionDriver>, ConnectError> {
        let ip = p.get("ipaddr").unwrap_or_default();
        let (host, port) = match ip.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') || h.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|&n| n != 0)
                    .ok_or_else(|| {
                        ConnectError::Options(format!("invalid port in ipaddr {ip:?}"))
                    })?;
                (h.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (ip, 443),
        };
        let opts = VmwareSoapOptions {
            host: host.to_string(),
            port,
            tls: Tls::Verify { ca: None },
            login: p.get("login").unwrap_or_default().to_string(),
            password: p.get("passwd").unwrap_or_default().to_string(),
            datacenter: p.get("vmware_datacenter").map(str::to_string),
            timeout: p.call_timeout(),
        };
        Ok(Arc::new(VmwareSoapDriver::connect(opts)?))
    }
}
