//! The messages fence_virtd's `cpg` backend multicasts in its corosync CPG group (compatible
//! with fence-agents 4.12.1 `server/cpg.c` and `server/cpg-virt.c`), without I/O.
//!
//! Every message is 156 bytes, little-endian (the C daemon sends host byte order; every
//! supported platform is little-endian): a 16-byte header `{type, seqno, target, pad}` and a
//! 140-byte payload.
//! * REQUEST (type 0) and REPLY (type 1) carry `cpg_fence_req`: a 128-byte NUL-terminated VM
//!   name, the request code, the client's seqno (informational) and the response code.
//! * STORE_VM (type 2) carries `virt_state_t`: 65-byte name, 65-byte UUID, 2 pad bytes, owner
//!   nodeid and libvirt domain state. Our wire extensions: state [`STATE_TOMBSTONE`] (-1),
//!   "this domain is gone from the sending host"; state [`STATE_BURST_END`] (-2) named
//!   [`BURST_END_NAME`], "that was my whole list"; state [`STATE_HOST_FENCED`] (-3) named
//!   [`HOST_FENCED_NAME`] with the owner field naming an absent node, "that node's host is
//!   confirmed fenced: its VMs are off"; and an owner other than the sender, "the sender holds
//!   this entry for that (absent) node" (a relay for members that joined late). The markers'
//!   names contain a `/`, which no libvirt domain name may, so no request matches them, and a
//!   C receiver, which looks entries up by UUID, then by a non-empty name, keeps one entry per
//!   marker name instead of adding one per marker received (it adds every entry whose name and
//!   UUID are both empty).
//!
//! The writer zeroes every padding byte the C daemon leaves uninitialised and writes at most 64
//! name bytes plus a NUL. The reader ignores those bytes (name = bytes up to the first NUL
//! within the first 64, byte 64 ignored), checks the length (156; 152 is the STORE_VM layout of
//! fence-agents 4.8.0 with 64-byte fields, accepted read-only) and rejects unknown types.

use thiserror::Error;

/// Size of every message we send (fence-agents ≥ 4.9.0).
pub const CPG_MSG_LEN: usize = 156;
/// Size of a STORE_VM of fence-agents 4.8.0 / fence-virt ≤ 1.0.0 (64-byte name and uuid).
pub const CPG_LEGACY_STORE_LEN: usize = 152;
/// Size of the header.
pub const CPG_HEADER_LEN: usize = 16;
/// `target` of a REQUEST and a STORE_VM: every member.
pub const TARGET_ALL: u32 = 0xFFFF_FFFF;
/// Longest VM name a REQUEST carries (the 128-byte field keeps a NUL).
pub const MAX_REQUEST_NAME: usize = 127;
/// Longest name / uuid text a STORE_VM carries (longer names are cut, as by the C writer).
pub const MAX_STORE_TEXT: usize = 64;
/// Domain state "gone from this host" (our extension; C receivers keep it as an entry).
pub const STATE_TOMBSTONE: i32 = -1;
/// End of a full announcement (our extension, named [`BURST_END_NAME`]).
pub const STATE_BURST_END: i32 = -2;
/// "The host of node `owner` is confirmed fenced" (our extension, named
/// [`HOST_FENCED_NAME`]).
pub const STATE_HOST_FENCED: i32 = -3;
/// Name of the end-of-announcement marker (no libvirt domain name contains a `/`).
pub const BURST_END_NAME: &str = "fence-rs/burst-end";
/// Name of the host-fenced marker.
pub const HOST_FENCED_NAME: &str = "fence-rs/host-fenced";
/// libvirt `VIR_DOMAIN_SHUTOFF`.
pub const STATE_SHUTOFF: i32 = 5;

const TYPE_REQUEST: u32 = 0;
const TYPE_REPLY: u32 = 1;
const TYPE_STORE_VM: u32 = 2;

/// Request codes inside a REQUEST (`fence_cmd_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpgOp {
    /// 1: power off.
    Off,
    /// 2: reboot.
    Reboot,
    /// 3: power on.
    On,
    /// 4: status.
    Status,
    /// Any other number (C replies 0 to those; we answer failure).
    Other(i32),
}

impl CpgOp {
    /// The wire number.
    pub fn code(self) -> i32 {
        match self {
            CpgOp::Off => 1,
            CpgOp::Reboot => 2,
            CpgOp::On => 3,
            CpgOp::Status => 4,
            CpgOp::Other(n) => n,
        }
    }

    /// From the wire number.
    pub fn from_code(n: i32) -> CpgOp {
        match n {
            1 => CpgOp::Off,
            2 => CpgOp::Reboot,
            3 => CpgOp::On,
            4 => CpgOp::Status,
            n => CpgOp::Other(n),
        }
    }
}

/// `cpg_fence_req`: the payload of REQUEST and REPLY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceReq {
    /// VM name or UUID text as the guest's agent gave it.
    pub vm_name: String,
    /// What to do.
    pub op: CpgOp,
    /// The client's request seqno (never read by receivers).
    pub client_seqno: u32,
    /// 0 in a REQUEST; the result code in a REPLY.
    pub response: u32,
}

/// `virt_state_t`: one domain of the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmState {
    /// Domain name (at most 64 bytes on the wire).
    pub name: String,
    /// Domain UUID text.
    pub uuid: String,
    /// Owner nodeid as the sender wrote it (receivers trust the CPG sender instead).
    pub owner: u32,
    /// libvirt domain state, or [`STATE_TOMBSTONE`].
    pub state: i32,
}

/// One CPG message of the fence-virt group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpgMessage {
    /// Type 0: somebody asks the group to act on a VM.
    Request {
        /// Requester's counter.
        seqno: u32,
        /// Always [`TARGET_ALL`] when written by a fence_virtd.
        target: u32,
        /// What and which VM.
        req: FenceReq,
    },
    /// Type 1: the answer to a REQUEST, for the requester `target`.
    Reply {
        /// Copied from the REQUEST.
        seqno: u32,
        /// The requester's nodeid.
        target: u32,
        /// The REQUEST's payload with `response` set.
        req: FenceReq,
    },
    /// Type 2: the sender has this domain in this state.
    StoreVm(VmState),
}

/// Bytes that are not a message of the group.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CpgDecodeError {
    /// The length is neither 156 nor (for STORE_VM) 152.
    #[error("cpg message of {0} bytes (want 156, or 152 for a legacy STORE_VM)")]
    Length(usize),
    /// The type is not 0, 1 or 2.
    #[error("unknown cpg message type {0}")]
    UnknownType(u32),
}

/// A value that does not fit the wire format.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CpgEncodeError {
    /// A REQUEST/REPLY name of 128 bytes or more (the C requester refuses those too).
    #[error("VM name of {0} bytes does not fit the 128-byte field")]
    NameTooLong(usize),
    /// A name with a NUL byte cannot be carried.
    #[error("VM name contains a NUL byte")]
    Nul,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Text of a fixed field: bytes up to the first NUL within `max` bytes (lossy UTF-8).
fn text_at(b: &[u8], off: usize, max: usize) -> String {
    let field = &b[off..off + max];
    let end = field.iter().position(|&c| c == 0).unwrap_or(max);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Write at most `max` bytes of `s` (cut on a byte boundary, as C's strncpy), zero-filled.
fn put_text(b: &mut [u8], off: usize, max: usize, s: &str) {
    let bytes = s.as_bytes();
    let n = bytes.len().min(max);
    b[off..off + n].copy_from_slice(&bytes[..n]);
}

fn decode_req(p: &[u8]) -> FenceReq {
    FenceReq {
        vm_name: text_at(p, 0, 128),
        op: CpgOp::from_code(u32_at(p, 128) as i32),
        client_seqno: u32_at(p, 132),
        response: u32_at(p, 136),
    }
}

/// Decode one delivered message.
pub fn decode(b: &[u8]) -> Result<CpgMessage, CpgDecodeError> {
    if b.len() != CPG_MSG_LEN && b.len() != CPG_LEGACY_STORE_LEN {
        return Err(CpgDecodeError::Length(b.len()));
    }
    let kind = u32_at(b, 0);
    let seqno = u32_at(b, 4);
    let target = u32_at(b, 8);
    let p = &b[CPG_HEADER_LEN..];
    match (kind, b.len()) {
        (TYPE_REQUEST, CPG_MSG_LEN) => Ok(CpgMessage::Request {
            seqno,
            target,
            req: decode_req(p),
        }),
        (TYPE_REPLY, CPG_MSG_LEN) => Ok(CpgMessage::Reply {
            seqno,
            target,
            req: decode_req(p),
        }),
        (TYPE_STORE_VM, CPG_MSG_LEN) => Ok(CpgMessage::StoreVm(VmState {
            name: text_at(p, 0, MAX_STORE_TEXT),
            uuid: text_at(p, 65, MAX_STORE_TEXT),
            owner: u32_at(p, 132),
            state: u32_at(p, 136) as i32,
        })),
        (TYPE_STORE_VM, _) => Ok(CpgMessage::StoreVm(VmState {
            name: text_at(p, 0, MAX_STORE_TEXT),
            uuid: text_at(p, 64, MAX_STORE_TEXT),
            owner: u32_at(p, 128),
            state: u32_at(p, 132) as i32,
        })),
        (TYPE_REQUEST | TYPE_REPLY, n) => Err(CpgDecodeError::Length(n)),
        (t, _) => Err(CpgDecodeError::UnknownType(t)),
    }
}

fn encode_req(
    kind: u32,
    seqno: u32,
    target: u32,
    req: &FenceReq,
) -> Result<[u8; CPG_MSG_LEN], CpgEncodeError> {
    let name = req.vm_name.as_bytes();
    if name.len() > MAX_REQUEST_NAME {
        return Err(CpgEncodeError::NameTooLong(name.len()));
    }
    if name.contains(&0) {
        return Err(CpgEncodeError::Nul);
    }
    let mut b = [0u8; CPG_MSG_LEN];
    put_u32(&mut b, 0, kind);
    put_u32(&mut b, 4, seqno);
    put_u32(&mut b, 8, target);
    let p = &mut b[CPG_HEADER_LEN..];
    put_text(p, 0, 128, &req.vm_name);
    put_u32(p, 128, req.op.code() as u32);
    put_u32(p, 132, req.client_seqno);
    put_u32(p, 136, req.response);
    Ok(b)
}

/// Encode a REQUEST (target [`TARGET_ALL`]).
pub fn encode_request(seqno: u32, req: &FenceReq) -> Result<[u8; CPG_MSG_LEN], CpgEncodeError> {
    encode_req(TYPE_REQUEST, seqno, TARGET_ALL, req)
}

/// Encode a REPLY to `target` (the requester's nodeid) for its REQUEST `seqno`: `req` is the
/// REQUEST's payload; its `response` is replaced by `response`.
pub fn encode_reply(
    seqno: u32,
    target: u32,
    req: &FenceReq,
    response: u32,
) -> Result<[u8; CPG_MSG_LEN], CpgEncodeError> {
    let mut r = req.clone();
    r.response = response;
    encode_req(TYPE_REPLY, seqno, target, &r)
}

/// Encode a STORE_VM (seqno 0, target [`TARGET_ALL`]). Name and UUID longer than 64 bytes are
/// cut to 64; every other byte is zero.
pub fn encode_store_vm(vm: &VmState) -> [u8; CPG_MSG_LEN] {
    let mut b = [0u8; CPG_MSG_LEN];
    put_u32(&mut b, 0, TYPE_STORE_VM);
    put_u32(&mut b, 8, TARGET_ALL);
    let p = &mut b[CPG_HEADER_LEN..];
    put_text(p, 0, MAX_STORE_TEXT, &vm.name);
    put_text(p, 65, MAX_STORE_TEXT, &vm.uuid);
    put_u32(p, 132, vm.owner);
    put_u32(p, 136, vm.state as u32);
    b
}

/// Encode any message.
pub fn encode(m: &CpgMessage) -> Result<[u8; CPG_MSG_LEN], CpgEncodeError> {
    match m {
        CpgMessage::Request { seqno, target, req } => {
            encode_req(TYPE_REQUEST, *seqno, *target, req)
        }
        CpgMessage::Reply { seqno, target, req } => encode_req(TYPE_REPLY, *seqno, *target, req),
        CpgMessage::StoreVm(vm) => Ok(encode_store_vm(vm)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, op: CpgOp) -> FenceReq {
        FenceReq {
            vm_name: name.into(),
            op,
            client_seqno: 0x0102_0304,
            response: 0,
        }
    }

    #[test]
    fn request_bytes() {
        let b = encode_request(7, &req("vm1", CpgOp::Off)).unwrap();
        assert_eq!(b.len(), 156);
        assert_eq!(
            &b[0..16],
            &[0, 0, 0, 0, 7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(&b[16..20], b"vm1\0");
        assert!(b[20..144].iter().all(|&c| c == 0));
        assert_eq!(&b[144..156], &[1, 0, 0, 0, 4, 3, 2, 1, 0, 0, 0, 0]);
        assert_eq!(
            decode(&b).unwrap(),
            CpgMessage::Request {
                seqno: 7,
                target: TARGET_ALL,
                req: req("vm1", CpgOp::Off)
            }
        );
    }

    #[test]
    fn reply_copies_payload_and_sets_response() {
        let r = req("vm-b", CpgOp::Status);
        let b = encode_reply(9, 2, &r, 2).unwrap();
        assert_eq!(&b[0..16], &[1, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[152..156], &[2, 0, 0, 0]);
        let CpgMessage::Reply { seqno, target, req } = decode(&b).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!((seqno, target, req.response), (9, 2, 2));
        assert_eq!(req.vm_name, "vm-b");
        assert_eq!(req.op, CpgOp::Status);
    }

    #[test]
    fn store_vm_bytes() {
        let vm = VmState {
            name: "vm-a".into(),
            uuid: "11111111-2222-3333-4444-555555555555".into(),
            owner: 3,
            state: 1,
        };
        let b = encode_store_vm(&vm);
        assert_eq!(
            &b[0..16],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
        );
        assert_eq!(&b[16..21], b"vm-a\0");
        assert!(
            b[21..81].iter().all(|&c| c == 0),
            "name field and its byte 64 zero"
        );
        assert_eq!(&b[81..117], vm.uuid.as_bytes());
        assert!(
            b[117..148].iter().all(|&c| c == 0),
            "uuid tail and pad zero"
        );
        assert_eq!(&b[148..156], &[3, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(decode(&b).unwrap(), CpgMessage::StoreVm(vm));
    }

    #[test]
    fn tombstone_is_minus_one() {
        let vm = VmState {
            name: "gone".into(),
            uuid: String::new(),
            owner: 1,
            state: STATE_TOMBSTONE,
        };
        let b = encode_store_vm(&vm);
        assert_eq!(&b[152..156], &[0xff; 4]);
        assert_eq!(decode(&b).unwrap(), CpgMessage::StoreVm(vm));
    }

    #[test]
    fn reader_ignores_c_garbage_bytes() {
        // A C STORE_VM: 64-char name without NUL in the first 64 bytes, garbage in byte 64 of
        // both fields, in the two pad bytes and in the header pad.
        let mut b = [0u8; 156];
        b[0] = 2;
        b[8..12].copy_from_slice(&[0xff; 4]);
        b[12..16].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let p = &mut b[16..];
        p[..64].copy_from_slice(&[b'x'; 64]);
        p[64] = b'Z';
        p[65..101].copy_from_slice(b"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
        p[101..129].fill(0);
        p[129] = 0x55;
        p[130] = 0x66;
        p[131] = 0x77;
        p[132..136].copy_from_slice(&2u32.to_le_bytes());
        p[136..140].copy_from_slice(&5u32.to_le_bytes());
        let CpgMessage::StoreVm(vm) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(vm.name, "x".repeat(64));
        assert_eq!(vm.uuid, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
        assert_eq!((vm.owner, vm.state), (2, 5));
        // Header pad garbage in a REQUEST is ignored too.
        let mut r = encode_request(1, &req("v", CpgOp::On)).unwrap();
        r[12..16].copy_from_slice(&[9; 4]);
        assert!(matches!(decode(&r), Ok(CpgMessage::Request { .. })));
    }

    #[test]
    fn writer_cuts_long_store_names_and_zeroes_the_rest() {
        let vm = VmState {
            name: "n".repeat(70),
            uuid: "u".repeat(80),
            owner: 1,
            state: 1,
        };
        let b = encode_store_vm(&vm);
        assert_eq!(b[16 + 64], 0, "byte 64 of the name is the terminator");
        assert_eq!(b[16 + 65 + 64], 0);
        let CpgMessage::StoreVm(got) = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(got.name, "n".repeat(64));
        assert_eq!(got.uuid, "u".repeat(64));
    }

    #[test]
    fn legacy_152_store_vm() {
        let mut b = [0u8; 152];
        b[0] = 2;
        b[16..20].copy_from_slice(b"old\0");
        b[16 + 64..16 + 68].copy_from_slice(b"abcd");
        b[16 + 128..16 + 132].copy_from_slice(&4u32.to_le_bytes());
        b[16 + 132..16 + 136].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            decode(&b).unwrap(),
            CpgMessage::StoreVm(VmState {
                name: "old".into(),
                uuid: "abcd".into(),
                owner: 4,
                state: 1
            })
        );
        // 152 bytes of a REQUEST is not a layout anybody sends.
        b[0] = 0;
        assert_eq!(decode(&b), Err(CpgDecodeError::Length(152)));
    }

    #[test]
    fn bad_lengths_and_types() {
        assert_eq!(decode(&[0; 16]), Err(CpgDecodeError::Length(16)));
        assert_eq!(decode(&[0; 157]), Err(CpgDecodeError::Length(157)));
        assert_eq!(decode(&[]), Err(CpgDecodeError::Length(0)));
        let mut b = [0u8; 156];
        b[0] = 3;
        assert_eq!(decode(&b), Err(CpgDecodeError::UnknownType(3)));
    }

    #[test]
    fn request_name_limits() {
        assert!(encode_request(1, &req(&"a".repeat(127), CpgOp::Off)).is_ok());
        assert_eq!(
            encode_request(1, &req(&"a".repeat(128), CpgOp::Off)),
            Err(CpgEncodeError::NameTooLong(128))
        );
        assert_eq!(
            encode_request(1, &req("a\0b", CpgOp::Off)),
            Err(CpgEncodeError::Nul)
        );
        // An unterminated 128-byte name from a foreign writer is read as 128 bytes.
        let mut b = encode_request(1, &req("", CpgOp::Off)).unwrap();
        b[16..144].fill(b'q');
        let CpgMessage::Request { req: r, .. } = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(r.vm_name.len(), 128);
    }

    #[test]
    fn ops_round_trip() {
        for n in -1..8 {
            assert_eq!(CpgOp::from_code(n).code(), n);
        }
        let b = encode_request(1, &req("v", CpgOp::Other(99))).unwrap();
        let CpgMessage::Request { req: r, .. } = decode(&b).unwrap() else {
            panic!()
        };
        assert_eq!(r.op, CpgOp::Other(99));
    }
}
