//! The admin-socket client: one request per connection, answer bounded by
//! [`fence_proto::admin::MAX_RESPONSE`], every step under a deadline.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use fence_proto::admin::{self, Request, Response};

/// How long the daemon may take to answer (a fresh table of a large vCenter takes a while;
/// the daemon's own inventory deadline is 120 s).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(180);

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed (no daemon, no permission on the socket).
    #[error("cannot connect to {path} (is fence_virtd running with an admin socket?)")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Sending or receiving failed.
    #[error("talking to the daemon failed")]
    Io(#[from] std::io::Error),
    /// The answer is not the protocol's.
    #[error("the daemon's answer cannot be read")]
    Decode(#[from] admin::AdminDecodeError),
    /// The daemon refused or failed.
    #[error("{0}")]
    Refused(String),
}

/// Ask the daemon at `socket`; a [`Response::Error`] becomes [`ClientError::Refused`].
pub fn ask(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    let mut s = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    s.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    // The daemon may refuse (non-root) before reading: a failed write still has an answer.
    let _ = s
        .write_all(&admin::encode_request(req))
        .and_then(|_| s.shutdown(std::net::Shutdown::Write));
    let mut buf = Vec::new();
    s.take(admin::MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut buf)?;
    match admin::decode_response(&buf)? {
        Response::Error(e) => Err(ClientError::Refused(e)),
        r => Ok(r),
    }
}
