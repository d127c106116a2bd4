//! A loopback port where connecting is refused, for "endpoint down" tests: a socket bound to
//! it but not listening holds it for the test's lifetime, so no test running beside this one
//! can listen there (a port merely found free and released could be taken meanwhile).

use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Socket, Type};

/// A reserved 127.0.0.1 port nobody listens on; released on drop.
pub struct RefusedPort {
    _held: Socket,
    /// The port number.
    pub port: u16,
}

impl RefusedPort {
    /// Reserve one, checking that a connect to it is refused.
    pub fn new() -> RefusedPort {
        let (held, port) = refused_port();
        RefusedPort { _held: held, port }
    }
}

impl Default for RefusedPort {
    fn default() -> Self {
        RefusedPort::new()
    }
}

/// A socket bound (without `SO_REUSEADDR`, so nobody else can bind the port) but not
/// listening on 127.0.0.1, and its port; connects to it are refused while it is held.
pub fn refused_port() -> (Socket, u16) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("TCP socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind a loopback port");
    let port = s
        .local_addr()
        .expect("bound address")
        .as_socket()
        .expect("an IP address")
        .port();
    let e = TcpStream::connect(("127.0.0.1", port)).expect_err("nobody listens on the port");
    assert_eq!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "connect to a held port: {e}"
    );
    (s, port)
}
