//! HTTP plumbing shared by the drivers that speak to a platform over HTTP(S) (vSphere SOAP,
//! XenAPI XML-RPC): the bounded XML tree, the rustls configurations of the three TLS modes,
//! a name resolver bounded by the call deadline, and one way to build a ureq agent whose every
//! call carries its deadline.

pub(crate) mod tls;
pub(crate) use crate::xml;

use std::time::Duration;

/// Name resolution under the call deadline: ureq resolves host names with no time limit, so
/// the lookup runs on a helper thread and a slow one fails as a timeout (the thread finishes
/// on its own when the system resolver gives up; getaddrinfo cannot be cancelled).
pub(crate) struct BoundedResolver {
    deadline: Duration,
    /// The blocking lookup run on the helper thread (the system resolver; tests substitute one
    /// that hangs).
    lookup: fn(&str) -> std::io::Result<Vec<std::net::SocketAddr>>,
}

impl BoundedResolver {
    pub(crate) fn new(deadline: Duration) -> BoundedResolver {
        BoundedResolver {
            deadline,
            lookup: |name| {
                use std::net::ToSocketAddrs as _;
                name.to_socket_addrs().map(|a| a.collect())
            },
        }
    }
}

impl ureq::Resolver for BoundedResolver {
    fn resolve(&self, netloc: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
        // Literal addresses need no lookup (and no thread).
        if let Ok(a) = netloc.parse::<std::net::SocketAddr>() {
            return Ok(vec![a]);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let name = netloc.to_string();
        let lookup = self.lookup;
        std::thread::Builder::new()
            .name("dns".into())
            .spawn(move || {
                let _ = tx.send(lookup(&name));
            })?;
        match rx.recv_timeout(self.deadline) {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("looking up {netloc} took longer than {:?}", self.deadline),
            )),
        }
    }
}

/// A ureq agent whose connect, name lookup and whole exchange are bounded by `timeout`, which
/// never follows redirects, and which uses `tls` for HTTPS.
pub(crate) fn agent(
    timeout: Duration,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> ureq::Agent {
    let mut b = ureq::AgentBuilder::new()
        .resolver(BoundedResolver::new(timeout))
        .timeout_connect(timeout)
        .timeout(timeout)
        .redirects(0)
        .user_agent(concat!("fence-rs/", env!("CARGO_PKG_VERSION")));
    if let Some(cfg) = tls {
        b = b.tls_config(cfg);
    }
    b.build()
}

/// An I/O error that means the deadline passed.
pub(crate) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::Resolver as _;

    #[test]
    fn resolver_is_bounded_and_skips_literals() {
        let r = BoundedResolver::new(Duration::ZERO);
        // A literal needs no lookup, so even a zero deadline answers.
        assert_eq!(
            r.resolve("127.0.0.1:443").unwrap(),
            vec!["127.0.0.1:443".parse().unwrap()]
        );
        assert_eq!(
            r.resolve("[::1]:80").unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        // A name goes through the helper thread: a lookup that hangs (30 s, far beyond the
        // deadline; the thread is left behind, as with a hung system resolver) times out at the
        // deadline ...
        let r = BoundedResolver {
            deadline: Duration::from_millis(100),
            lookup: |_| {
                std::thread::sleep(Duration::from_secs(30));
                Ok(Vec::new())
            },
        };
        let e = r.resolve("fence-rs.invalid:443").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("fence-rs.invalid:443"), "{e}");
        // ... and the system resolver, given time, resolves.
        let r = BoundedResolver::new(Duration::from_secs(5));
        assert!(!r.resolve("localhost:443").unwrap().is_empty());
    }
}
