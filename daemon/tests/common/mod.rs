//! Helpers shared by the daemon's process tests (`startup`, `notify`, `journal`): a free
//! loopback port and one unsigned request over tcp (the listeners under test run with
//! `hash = "none"; auth = "none";`).
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::time::Duration;

use fence_proto::{Op, Request};

/// The daemon under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fence_virtd");

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` distinct loopback ports nobody listens on right now: all are held until every one is
/// known, so two calls in a row cannot hand out the same port twice.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// One unsigned request, one attempt: the answer byte.
pub fn ask(port: u16, op: Op, vm: &str, seqno: u32) -> std::io::Result<u8> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(&Request::new(op, vm, seqno).unwrap().encode())?;
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0])
}
