//! Helpers shared by the agents' CLI tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Socket, Type};

/// A socket bound (without `SO_REUSEADDR`) but not listening on 127.0.0.1, and its port:
/// while it is held, connects to the port are refused and no test running beside this one can
/// listen there ("endpoint down" without the race of a port found free and released).
pub fn refused_port() -> (Socket, u16) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    let e = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    (s, port)
}
