//! Sessions: connecting (service content, `Login`, the datacenter filter), the session cookie
//! every call carries, logging in again when the server has forgotten the session, and logging
//! out.
//!
//! * connect: `RetrieveServiceContent`, `Login` (session cookie `vmware_soap_session`), and with
//!   a datacenter filter `FindByInventoryPath` + one property read for its `vmFolder`.
//! * check: one property read of `SessionManager.currentSession` (fails, and triggers a
//!   re-login, when the session is gone). It does not enumerate VMs.
//!
//! A `NotAuthenticated` fault (or missing properties with that fault, or an empty
//! `currentSession`) makes the driver log in again once and repeat the operation. Threads share
//! one session: of several that see it gone at once, one logs in and the others use its new
//! cookie. The session is logged out by [`VmwareSoapDriver::logout`] or on drop (best effort,
//! bounded by the timeout).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use parking_lot::Mutex;

use super::soap::{CallError, Fault, Moref, Transport};
use super::xml::{esc, Element};
use super::{
    tls, ServiceContent, Session, Tls, VmwareSoapDriver, VmwareSoapOptions, DEFAULT_PAGE_SIZE,
};
use crate::DriverError;

fn sdk_url(opts: &VmwareSoapOptions) -> String {
    let scheme = if opts.tls == Tls::Plain {
        "http"
    } else {
        "https"
    };
    let host = if opts.host.contains(':') && !opts.host.starts_with('[') {
        format!("[{}]", opts.host)
    } else {
        opts.host.clone()
    };
    format!("{scheme}://{host}:{}/sdk", opts.port)
}

pub(super) fn not_authenticated() -> CallError {
    CallError::Fault(Fault {
        kind: "NotAuthenticated".into(),
        message: String::new(),
    })
}

impl VmwareSoapDriver {
    /// Connect, read the service content, log in and resolve the datacenter filter.
    pub fn connect(opts: VmwareSoapOptions) -> Result<Self, DriverError> {
        let url = sdk_url(&opts);
        let tls_cfg = match &opts.tls {
            Tls::Plain => None,
            Tls::Verify { ca: Some(p) } => Some(tls::verify_with_ca(p)),
            Tls::Verify { ca: None } => Some(tls::verify_with_system()),
            Tls::Insecure => Some(tls::insecure()),
        }
        .transpose()
        .map_err(|e| DriverError::Unreachable {
            what: format!("vSphere SDK at {url}"),
            source: Box::new(e),
        })?;
        let transport = Transport::new(url, opts.timeout, tls_cfg);
        let this = Moref::new("ServiceInstance", "ServiceInstance");
        let (resp, _) = transport
            .call(None, "RetrieveServiceContent", &this, "")
            .map_err(|e| Self::plain_error("RetrieveServiceContent", e))?;
        let rv = resp
            .child("returnval")
            .ok_or_else(|| DriverError::Platform("RetrieveServiceContent: empty answer".into()))?;
        let get = |n: &str| {
            rv.child(n).and_then(Moref::from_element).ok_or_else(|| {
                DriverError::Platform(format!("RetrieveServiceContent: no {n} in answer"))
            })
        };
        let sc = ServiceContent {
            root_folder: get("rootFolder")?,
            property_collector: get("propertyCollector")?,
            view_manager: get("viewManager")?,
            search_index: get("searchIndex")?,
            session_manager: get("sessionManager")?,
        };
        let about = rv
            .path(&["about", "fullName"])
            .map(|e| e.text.clone())
            .unwrap_or_default();
        tracing::debug!(url = transport.url(), %about, "vSphere service content");
        let mut d = VmwareSoapDriver {
            transport,
            login: opts.login,
            password: opts.password,
            timeout: opts.timeout,
            sc,
            scope: None,
            session: Mutex::new(Session::default()),
            names: Mutex::new(HashMap::new()),
            folders: Mutex::new(None),
            top_folders: Mutex::new(None),
            page_size: AtomicU32::new(DEFAULT_PAGE_SIZE),
            find_all_by_uuid: AtomicBool::new(true),
            logged_out: AtomicBool::new(false),
        };
        d.relogin(0)?;
        if let Some(dc) = &opts.datacenter {
            d.scope = Some(d.run("datacenter lookup", || d.find_datacenter(dc))?);
        }
        Ok(d)
    }

    /// Log out now. Later calls log in again if needed; drop does not log out twice.
    pub fn logout(&self) -> Result<(), DriverError> {
        let cookie = {
            let mut s = self.session.lock();
            s.view = None;
            s.fleet_view = None;
            s.cookie.take()
        };
        self.logged_out.store(true, Ordering::Relaxed);
        let Some(cookie) = cookie else {
            return Ok(());
        };
        match self
            .transport
            .call(Some(&cookie), "Logout", &self.sc.session_manager, "")
        {
            Ok(_) => Ok(()),
            // Already gone is fine.
            Err(e) if e.is_not_authenticated() => Ok(()),
            Err(e) => Err(Self::plain_error("Logout", e)),
        }
    }

    fn plain_error(op: &str, e: CallError) -> DriverError {
        match e {
            CallError::Driver(d) => d,
            CallError::Fault(f) if f.kind == "InvalidLogin" => DriverError::Auth(f.text()),
            CallError::Fault(f) if f.kind == "NotAuthenticated" => {
                DriverError::Auth(format!("{op}: session not accepted ({})", f.text()))
            }
            CallError::Fault(f) => f.to_driver_error(op),
        }
    }

    /// Log in unless another thread already replaced session `seen_generation`.
    fn relogin(&self, seen_generation: u64) -> Result<(), DriverError> {
        let mut s = self.session.lock();
        if s.generation != seen_generation {
            return Ok(());
        }
        // Never send the old cookie: servers refuse Login on a live session.
        s.cookie = None;
        s.view = None;
        s.fleet_view = None;
        let args = format!(
            "<userName>{}</userName><password>{}</password>",
            esc(&self.login),
            esc(&self.password)
        );
        let (_, cookies) = self
            .transport
            .call(None, "Login", &self.sc.session_manager, &args)
            .map_err(|e| match e {
                CallError::Fault(f) => DriverError::Auth(f.text()),
                CallError::Driver(d) => d,
            })?;
        if cookies.is_empty() {
            return Err(DriverError::Platform(
                "Login: the server set no session cookie".into(),
            ));
        }
        s.cookie = Some(cookies.join("; "));
        s.generation += 1;
        self.logged_out.store(false, Ordering::Relaxed);
        tracing::debug!(url = self.transport.url(), user = %self.login, "vSphere login");
        Ok(())
    }

    /// Run an operation; on `NotAuthenticated`, log in again and run it once more.
    pub(super) fn run<T>(
        &self,
        op: &str,
        f: impl Fn() -> Result<T, CallError>,
    ) -> Result<T, DriverError> {
        let generation = self.session.lock().generation;
        match f() {
            Err(e) if e.is_not_authenticated() => {
                tracing::info!(op, "vSphere session expired; logging in again");
                self.relogin(generation)?;
                f().map_err(|e| Self::plain_error(op, e))
            }
            r => r.map_err(|e| Self::plain_error(op, e)),
        }
    }

    pub(super) fn call(
        &self,
        method: &str,
        this: &Moref,
        args: &str,
    ) -> Result<Element, CallError> {
        let cookie = self.session.lock().cookie.clone();
        if cookie.is_none() {
            return Err(not_authenticated());
        }
        self.transport
            .call(cookie.as_deref(), method, this, args)
            .map(|(e, _)| e)
    }

    pub(super) fn check_inner(&self) -> Result<(), CallError> {
        let o = self.retrieve_one(&self.sc.session_manager, &["currentSession"])?;
        match o.as_ref().and_then(|o| o.prop("currentSession")) {
            Some(_) => Ok(()),
            None => Err(not_authenticated()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::test_server::opts;
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(sdk_url(&opts("vc", Tls::Plain)), "http://vc:443/sdk");
        assert_eq!(
            sdk_url(&opts("::1", Tls::Insecure)),
            "https://[::1]:443/sdk"
        );
        assert_eq!(
            sdk_url(&opts("[fe80::1]", Tls::Verify { ca: None })),
            "https://[fe80::1]:443/sdk"
        );
    }

    #[test]
    fn connect_to_closed_port_is_unreachable_quickly() {
        // Bound but not listening for the whole test: connects are refused and no test
        // running beside this one can listen on the port meanwhile.
        let held =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        held.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let port = held.local_addr().unwrap().as_socket().unwrap().port();
        let refused = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        let mut o = opts("127.0.0.1", Tls::Plain);
        o.port = port;
        let t = Instant::now();
        let e = VmwareSoapDriver::connect(o).unwrap_err();
        assert!(matches!(e, DriverError::Unreachable { .. }), "{e:?}");
        // Hang guard only: a refused connect is reported, not retried until a timeout.
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        drop(held);
    }

    #[test]
    fn silent_server_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut o = opts("127.0.0.1", Tls::Plain);
        o.port = l.local_addr().unwrap().port();
        o.timeout = Duration::from_millis(300);
        let t = Instant::now();
        let e = VmwareSoapDriver::connect(o).unwrap_err();
        assert!(matches!(e, DriverError::Timeout(_)), "{e:?}");
        // The 300 ms timeout ended the wait (hang guard well below the options' default).
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        drop(l);
    }
}
