//! Adapter from the agent flow ([`crate::fence_virt::flow`]) to the fence-virt client transports
//! ([`super`]): builds the [`Channel`] and [`ClientConfig`] from the parsed
//! arguments and maps [`ClientError`]s to the C agent's internal results:
//! network modes give 1 for timeouts waiting for the daemon, connect and authentication
//! failures, -1 (exit 255) when the result byte never came; serial/vmchannel failures give -1.

use super::{request, Channel, ClientConfig, ClientError};
use crate::fence_virt::args::Mode;
use crate::fence_virt::flow::{TransportFailure, VirtCall, VirtReply, VirtTransport};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The real transport: fence-virt wire protocol over the channel the arguments select.
#[derive(Debug, Default)]
pub struct ClientTransport;

/// Builds the channel for a call; an unusable multicast address is a failure (-1) as in C,
/// where sending the packets fails.
pub fn channel(call: &VirtCall<'_>) -> Result<Channel, TransportFailure> {
    let a = call.args;
    Ok(match a.mode {
        Mode::Multicast => {
            let text = a.mcast_addr.as_deref().unwrap_or_default();
            let group: IpAddr = text.parse().map_err(|_| TransportFailure {
                message: Some(format!("Invalid multicast address: '{text}'")),
                result: -1,
            })?;
            Channel::Multicast {
                group,
                port: a.port,
                retrans: Duration::from_millis(a.retrans as u64 * 100),
            }
        }
        Mode::Tcp => Channel::Tcp {
            addr: a.ipaddr.clone().unwrap_or_default(),
            port: a.port,
        },
        Mode::Vsock => Channel::Vsock {
            cid: a.cid,
            port: u32::from(a.port),
        },
        Mode::Serial => match &a.serial_device {
            Some(dev) => Channel::Serial {
                device: PathBuf::from(dev),
                params: a.serial_params.clone(),
            },
            None => Channel::VmChannel {
                addr: a.channel_address.clone(),
                port: a.port,
            },
        },
    })
}

/// The C agent's internal result for a client error in a given mode (see module docs).
pub fn failure_result(mode: Mode, e: &ClientError) -> i32 {
    match (mode, e) {
        (Mode::Serial, _) => -1,
        (_, ClientError::Timeout { waiting_for })
            if *waiting_for == "the result" || *waiting_for == super::RESULT_AFTER_AUTH =>
        {
            -1
        }
        _ => 1,
    }
}

impl VirtTransport for ClientTransport {
    fn request(&mut self, call: &VirtCall<'_>) -> Result<VirtReply, TransportFailure> {
        let ch = channel(call)?;
        let cfg = ClientConfig {
            hash: call.hash,
            auth: call.auth,
            key: call.key.clone(),
            timeout: Duration::from_secs(call.args.timeout.max(1) as u64),
        };
        match request(&ch, &cfg, call.args.op, &call.domain, call.args.use_uuid) {
            Ok(reply) => Ok(reply),
            Err(e) => Err(TransportFailure {
                message: Some(e.to_string()),
                result: failure_result(call.args.mode, &e),
            }),
        }
    }
}
