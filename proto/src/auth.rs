//! Keys, request signing and verification and the challenge/response handshake as a sans-io
//! state machine, compatible with fence-agents 4.12.1 `agents/virt/common/simple_auth.c`.
//! Verification hashes the bytes as received (not a re-encoded request, so reserved bytes are
//! covered) and compares all 64 hash bytes, so non-zero padding is rejected like the C daemon
//! does.

use crate::error::AuthError;
use crate::request::off;
use crate::{HashAlg, CHALLENGE_LEN, MAX_KEY_LEN, REQUEST_LEN};
use sha2::{Digest, Sha256};
use std::fmt;

/// Shared key bytes: the key file read raw (no trimming: a trailing newline is part of the
/// key), at most the first 4096 bytes.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Key(Vec<u8>);

impl Key {
    /// Keeps at most the first [`MAX_KEY_LEN`] bytes; no trimming (a trailing newline is key).
    pub fn from_bytes(bytes: &[u8]) -> Key {
        Key(bytes[..bytes.len().min(MAX_KEY_LEN)].to_vec())
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for an empty key file (the C daemon then rejects every hashed request).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// First 16 hex characters of SHA-256 of the key bytes: safe to log, equal on both sides
    /// when the keys match.
    pub fn fingerprint(&self) -> String {
        let d = Sha256::digest(&self.0);
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The fingerprint as both ends print it (`fence_virtctl check` on a guest, the daemon's
    /// `health` on the host): `SHA256:` and [`Key::fingerprint`].
    pub fn fingerprint_text(&self) -> String {
        format!("SHA256:{}", self.fingerprint())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} bytes, {})", self.0.len(), self.fingerprint())
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Signs 176 request bytes in place as the C agents do: sets `hashtype`, puts `random` (zero
/// for none), zeroes the hash field and stores H(key ‖ bytes) there.
pub fn sign(bytes: &mut [u8; REQUEST_LEN], alg: HashAlg, key: &[u8], random: [u8; 6]) {
    bytes[1] = alg.code();
    bytes[off::HASH..].fill(0);
    if alg == HashAlg::None {
        // C agents leave `random` zero when not hashing (V4).
        bytes[off::RANDOM..off::SEQNO].fill(0);
        return;
    }
    bytes[off::RANDOM..off::SEQNO].copy_from_slice(&random);
    let d = alg.digest(key, bytes);
    bytes[off::HASH..].copy_from_slice(&d);
}

/// Verifies a received request exactly as the C daemon does: a hashtype below the configured
/// floor is rejected (a stronger one is accepted), hashtype none is accepted without looking
/// at the hash, a hashtype above 3 or an empty key is rejected, and otherwise all 64 hash bytes
/// must equal H(key ‖ the bytes as received with the hash field zeroed). Uses the first 176
/// bytes.
pub fn verify(bytes: &[u8], key: &[u8], floor: HashAlg) -> Result<(), AuthError> {
    if bytes.len() < REQUEST_LEN {
        return Err(AuthError::Short(bytes.len()));
    }
    let b = &bytes[..REQUEST_LEN];
    let ht = b[1];
    if ht < floor.code() {
        return Err(AuthError::TooWeak { got: ht, floor });
    }
    let alg = HashAlg::from_code(ht).ok_or(AuthError::UnknownHash(ht))?;
    if alg == HashAlg::None {
        return Ok(());
    }
    if key.is_empty() {
        return Err(AuthError::NoKey);
    }
    let mut copy = [0u8; REQUEST_LEN];
    copy.copy_from_slice(b);
    copy[off::HASH..].fill(0);
    let expect = alg.digest(key, &copy);
    if ct_eq(&expect, &b[off::HASH..]) {
        Ok(())
    } else {
        Err(AuthError::KeyMismatch)
    }
}

/// Constant-time comparison of equal-length slices.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The answer to a challenge: H(key ‖ challenge) zero-padded to 64 bytes.
pub fn answer(alg: HashAlg, key: &[u8], challenge: &[u8; CHALLENGE_LEN]) -> [u8; CHALLENGE_LEN] {
    alg.digest(key, challenge)
}

/// What the caller must do next in a [`Handshake`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write these 64 bytes to the peer.
    Send([u8; CHALLENGE_LEN]),
    /// Read exactly this many bytes (always 64) and pass them to [`Handshake::receive`].
    Recv(usize),
    /// Handshake complete and successful.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Send our challenge.
    SendChallenge,
    /// Expect the answer to our challenge.
    RecvAnswer,
    /// Expect the peer's challenge.
    RecvChallenge,
    /// Send the answer to the peer's challenge.
    SendAnswer,
    Done,
    /// The peer answered our challenge wrongly; nothing more may happen.
    Failed,
}

/// Challenge/response, either role. The agent challenges first in every mode:
/// agent: Send(challenge), Recv(answer), Recv(challenge), Send(answer), Done;
/// daemon: Recv(challenge), Send(answer), Send(challenge), Recv(answer), Done.
/// With [`HashAlg::None`] the first step is Done.
///
/// Drive it with [`Handshake::next_step`]; a `Send` step counts as done once returned.
/// A wrong answer from the peer is [`AuthError::BadResponse`] (C: "Invalid response to
/// challenge" on the agent, "Hash mismatch" on the daemon).
#[derive(Debug, Clone)]
pub struct Handshake {
    alg: HashAlg,
    key: Key,
    my_challenge: [u8; CHALLENGE_LEN],
    peer_answer: [u8; CHALLENGE_LEN],
    agent: bool,
    state: State,
}

impl Handshake {
    fn new(agent: bool, alg: HashAlg, key: &Key, my_challenge: [u8; CHALLENGE_LEN]) -> Handshake {
        let state = match (alg, agent) {
            (HashAlg::None, _) => State::Done,
            (_, true) => State::SendChallenge,
            (_, false) => State::RecvChallenge,
        };
        Handshake {
            alg,
            key: key.clone(),
            my_challenge,
            peer_answer: [0; CHALLENGE_LEN],
            agent,
            state,
        }
    }

    /// The agent role (fence_xvm / fence_virt); `my_challenge` = 64 fresh random bytes.
    pub fn agent(alg: HashAlg, key: &Key, my_challenge: [u8; CHALLENGE_LEN]) -> Handshake {
        Handshake::new(true, alg, key, my_challenge)
    }

    /// The daemon role (fence_virtd); `my_challenge` = 64 fresh random bytes.
    pub fn daemon(alg: HashAlg, key: &Key, my_challenge: [u8; CHALLENGE_LEN]) -> Handshake {
        Handshake::new(false, alg, key, my_challenge)
    }

    /// The next action. Returning a `Send` advances the machine. After a failed
    /// [`Handshake::receive`] this keeps returning the error.
    pub fn next_step(&mut self) -> Result<Step, AuthError> {
        match self.state {
            State::SendChallenge => {
                self.state = State::RecvAnswer;
                Ok(Step::Send(self.my_challenge))
            }
            State::SendAnswer => {
                self.state = if self.agent {
                    State::Done
                } else {
                    State::SendChallenge
                };
                Ok(Step::Send(self.peer_answer))
            }
            State::RecvAnswer | State::RecvChallenge => Ok(Step::Recv(CHALLENGE_LEN)),
            State::Done => Ok(Step::Done),
            State::Failed => Err(AuthError::BadResponse),
        }
    }

    /// Feeds the 64 bytes read for a `Recv` step. A wrong answer to our challenge is
    /// [`AuthError::BadResponse`]; bytes when no `Recv` is pending are `OutOfOrder`.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), AuthError> {
        let bytes: &[u8; CHALLENGE_LEN] = bytes.try_into().map_err(|_| AuthError::OutOfOrder)?;
        match self.state {
            State::RecvAnswer => {
                let expect = answer(self.alg, self.key.as_bytes(), &self.my_challenge);
                if !ct_eq(&expect, bytes) {
                    self.state = State::Failed;
                    return Err(AuthError::BadResponse);
                }
                self.state = if self.agent {
                    State::RecvChallenge
                } else {
                    State::Done
                };
                Ok(())
            }
            State::RecvChallenge => {
                self.peer_answer = answer(self.alg, self.key.as_bytes(), bytes);
                self.state = State::SendAnswer;
                Ok(())
            }
            _ => Err(AuthError::OutOfOrder),
        }
    }

    /// True once the handshake completed successfully.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::*;

    #[test]
    fn key_truncation_and_fingerprint() {
        let big = vec![7u8; 5000];
        let k = Key::from_bytes(&big);
        assert_eq!(k.len(), MAX_KEY_LEN);
        assert_eq!(k, Key::from_bytes(&big[..4096]));
        let k = Key::from_bytes(KEY);
        assert_eq!(k.as_bytes(), KEY);
        let fp = k.fingerprint();
        assert_eq!(fp.len(), 16);
        assert_eq!(fp, hex::encode(&Sha256::digest(KEY)[..8]));
        assert_ne!(fp, Key::from_bytes(b"other").fingerprint());
        assert!(!format!("{k:?}").contains("fence-virt"));
        assert!(Key::from_bytes(b"").is_empty());
    }

    #[test]
    fn fingerprint_text_is_the_first_8_bytes_of_sha256_as_sha256sum_prints_them() {
        // `printf 'fence-virt-test-key\n' | sha256sum` starts with aab7395bb04eac3e.
        assert_eq!(
            Key::from_bytes(KEY).fingerprint_text(),
            "SHA256:aab7395bb04eac3e"
        );
        // Only the bytes fence-virt uses count: a key file longer than 4096 bytes has the
        // fingerprint of its first 4096.
        let big = vec![0x5au8; 6000];
        assert_eq!(
            Key::from_bytes(&big).fingerprint_text(),
            Key::from_bytes(&big[..4096]).fingerprint_text()
        );
    }

    #[test]
    fn v10_negative_cases() {
        let v1 = hex::decode(V1).unwrap();
        let v2 = hex::decode(V2).unwrap();
        let v3 = hex::decode(V3).unwrap();
        let v4 = hex::decode(V4).unwrap();
        // byte 175 (hash padding) set → rejected
        let mut bad = v1.clone();
        bad[175] = 1;
        assert_eq!(
            verify(&bad, KEY, HashAlg::Sha256),
            Err(AuthError::KeyMismatch)
        );
        // sha1 / none below the default floor
        assert_eq!(
            verify(&v2, KEY, HashAlg::Sha256),
            Err(AuthError::TooWeak {
                got: 1,
                floor: HashAlg::Sha256
            })
        );
        assert!(matches!(
            verify(&v4, KEY, HashAlg::Sha256),
            Err(AuthError::TooWeak { got: 0, .. })
        ));
        // stronger than the floor is fine
        verify(&v3, KEY, HashAlg::Sha256).unwrap();
        verify(&v4, b"", HashAlg::None).unwrap();
        verify(&v1, KEY, HashAlg::Sha256).unwrap();
        // wrong key, no key, unknown hash type, any flipped covered byte, short
        assert_eq!(
            verify(&v1, b"wrong", HashAlg::Sha256),
            Err(AuthError::KeyMismatch)
        );
        assert_eq!(verify(&v1, b"", HashAlg::Sha256), Err(AuthError::NoKey));
        let mut h4 = v1.clone();
        h4[1] = 4;
        assert_eq!(
            verify(&h4, KEY, HashAlg::Sha256),
            Err(AuthError::UnknownHash(4))
        );
        for i in (0..176).filter(|&i| i != 1) {
            let mut m = v1.clone();
            m[i] ^= 0x01;
            assert!(verify(&m, KEY, HashAlg::None).is_err(), "byte {i}");
        }
        assert_eq!(
            verify(&v1[..100], KEY, HashAlg::None),
            Err(AuthError::Short(100))
        );
    }

    #[test]
    fn sign_none_zeroes_random_and_hash() {
        let mut b = [0xAAu8; REQUEST_LEN];
        sign(&mut b, HashAlg::None, KEY, [9; 6]);
        assert_eq!(b[1], 0);
        assert!(b[98..104].iter().all(|&x| x == 0));
        assert!(b[112..].iter().all(|&x| x == 0));
        let mut b = [0u8; REQUEST_LEN];
        sign(&mut b, HashAlg::Sha1, KEY, [9; 6]);
        assert_eq!(&b[98..104], &[9; 6]);
        assert!(b[132..].iter().all(|&x| x == 0));
        verify(&b, KEY, HashAlg::Sha1).unwrap();
    }

    /// Runs an agent and a daemon machine against each other in memory.
    fn run_pair(
        alg: HashAlg,
        akey: &[u8],
        dkey: &[u8],
    ) -> (Result<(), AuthError>, Result<(), AuthError>, usize) {
        let mut a = Handshake::agent(alg, &Key::from_bytes(akey), [0x11; 64]);
        let mut d = Handshake::daemon(alg, &Key::from_bytes(dkey), [0x22; 64]);
        let mut to_d: Vec<[u8; 64]> = vec![];
        let mut to_a: Vec<[u8; 64]> = vec![];
        let mut steps = 0;
        let (mut ra, mut rd) = (None, None);
        for _ in 0..20 {
            if ra.is_none() {
                match a.next_step() {
                    Ok(Step::Send(b)) => {
                        steps += 1;
                        to_d.push(b)
                    }
                    Ok(Step::Recv(64)) if !to_a.is_empty() => {
                        steps += 1;
                        if let Err(e) = a.receive(&to_a.remove(0)) {
                            ra = Some(Err(e));
                        }
                    }
                    Ok(Step::Recv(_)) => {}
                    Ok(Step::Done) => ra = Some(Ok(())),
                    Err(e) => ra = Some(Err(e)),
                }
            }
            if rd.is_none() {
                match d.next_step() {
                    Ok(Step::Send(b)) => {
                        steps += 1;
                        to_a.push(b)
                    }
                    Ok(Step::Recv(64)) if !to_d.is_empty() => {
                        steps += 1;
                        if let Err(e) = d.receive(&to_d.remove(0)) {
                            rd = Some(Err(e));
                        }
                    }
                    Ok(Step::Recv(_)) => {}
                    Ok(Step::Done) => rd = Some(Ok(())),
                    Err(e) => rd = Some(Err(e)),
                }
            }
        }
        (
            ra.unwrap_or(Err(AuthError::OutOfOrder)),
            rd.unwrap_or(Err(AuthError::OutOfOrder)),
            steps,
        )
    }

    #[test]
    fn handshake_pairs() {
        for alg in [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha512] {
            let (a, d, steps) = run_pair(alg, KEY, KEY);
            assert_eq!((a, d), (Ok(()), Ok(())));
            assert_eq!(steps, 8);
        }
        let (a, d, steps) = run_pair(HashAlg::None, KEY, b"x");
        assert_eq!((a, d, steps), (Ok(()), Ok(()), 0));
        // wrong key: agent rejects the daemon's answer first; daemon never finishes
        let (a, d, _) = run_pair(HashAlg::Sha256, KEY, b"other");
        assert_eq!(a, Err(AuthError::BadResponse));
        assert!(d.is_err());
    }

    #[test]
    fn handshake_step_order_agent() {
        let key = Key::from_bytes(KEY);
        let c: [u8; 64] = core::array::from_fn(|i| i as u8);
        let mut a = Handshake::agent(HashAlg::Sha256, &key, c);
        assert_eq!(a.next_step(), Ok(Step::Send(c)));
        assert_eq!(a.next_step(), Ok(Step::Recv(64)));
        // wrong-length input is rejected without advancing
        assert_eq!(a.receive(&[0; 10]), Err(AuthError::OutOfOrder));
        let r = hex::decode(format!("{}{}", V7_SHA256, "00".repeat(32))).unwrap();
        a.receive(&r).unwrap();
        assert_eq!(a.next_step(), Ok(Step::Recv(64)));
        a.receive(&c).unwrap();
        assert_eq!(a.next_step(), Ok(Step::Send(r.clone().try_into().unwrap())));
        assert_eq!(a.next_step(), Ok(Step::Done));
        assert!(a.is_done());
        assert_eq!(a.receive(&c), Err(AuthError::OutOfOrder));

        let mut d = Handshake::daemon(HashAlg::Sha256, &key, [5; 64]);
        assert_eq!(d.next_step(), Ok(Step::Recv(64)));
        d.receive(&c).unwrap();
        assert_eq!(d.next_step(), Ok(Step::Send(r.clone().try_into().unwrap())));
        assert_eq!(d.next_step(), Ok(Step::Send([5; 64])));
        assert_eq!(d.next_step(), Ok(Step::Recv(64)));
        assert_eq!(d.receive(&[0; 64]), Err(AuthError::BadResponse));
        assert_eq!(d.next_step(), Err(AuthError::BadResponse));
        assert!(!d.is_done());
    }
}
