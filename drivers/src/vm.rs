//! VM identity and power state, shared by every driver. A string that has the canonical UUID
//! shape is a UUID, anything else a name — as fence_virtd's libvirt backend decides (the
//! request's RF_UUID flag is ignored there too).

use std::fmt;

/// How a request names a VM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VmRef {
    /// By name (case-sensitive, as libvirt names are).
    Name(String),
    /// By UUID, stored in lower-case hyphenated form.
    Uuid(String),
}

impl VmRef {
    /// Classify a string: canonical 8-4-4-4-12 hex UUID (any case, optionally in braces or
    /// prefixed `urn:uuid:`) → [`VmRef::Uuid`], otherwise [`VmRef::Name`].
    pub fn parse(s: &str) -> VmRef {
        match normalize_uuid(s) {
            Some(u) => VmRef::Uuid(u),
            None => VmRef::Name(s.to_string()),
        }
    }

    /// The text as given (name) or the normalised UUID.
    pub fn as_str(&self) -> &str {
        match self {
            VmRef::Name(s) | VmRef::Uuid(s) => s,
        }
    }
}

impl fmt::Display for VmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Normalise a UUID string to lower-case 8-4-4-4-12 form; `None` if it is not a UUID.
/// Accepts 32 hex digits with or without hyphens in canonical places, braces, `urn:uuid:`.
pub fn normalize_uuid(s: &str) -> Option<String> {
    let mut t = s.trim();
    if let Some(rest) = t.strip_prefix("urn:uuid:") {
        t = rest;
    }
    if let Some(inner) = t.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        t = inner;
    }
    let hex: String = if t.len() == 36 {
        let b = t.as_bytes();
        if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        t.chars().filter(|&c| c != '-').collect()
    } else if t.len() == 32 {
        t.to_string()
    } else {
        return None;
    };
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Power state of a VM, with libvirt's distinctions kept so the host list can carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Running (libvirt 1).
    On,
    /// Shut off (libvirt 5).
    Off,
    /// Paused (libvirt 3). Counts as on for fencing: the VM can be resumed.
    Paused,
    /// Suspended to memory/disk (libvirt 7, vSphere `suspended`). Counts as on for fencing:
    /// it can be resumed, so "already off" would be unsafe.
    Suspended,
    /// Blocked on a resource (libvirt 2). On.
    Blocked,
    /// Being shut down (libvirt 4). On until it reaches Off.
    ShuttingDown,
    /// Crashed (libvirt 6). On for fencing: the domain still exists and must be destroyed.
    Crashed,
    /// No state reported (libvirt 0). On for fencing.
    Unknown,
}

impl PowerState {
    /// True only for a VM that is definitely off. Everything else must be powered off to fence.
    pub fn is_off(self) -> bool {
        self == PowerState::Off
    }

    /// libvirt's `virDomainState` number, which fence-virt's host list carries.
    pub fn libvirt_code(self) -> u8 {
        match self {
            PowerState::Unknown => 0,
            PowerState::On => 1,
            PowerState::Blocked => 2,
            PowerState::Paused => 3,
            PowerState::ShuttingDown => 4,
            PowerState::Off => 5,
            PowerState::Crashed => 6,
            PowerState::Suspended => 7,
        }
    }

    /// Inverse of [`PowerState::libvirt_code`]; unknown numbers map to `Unknown`.
    pub fn from_libvirt_code(code: u8) -> PowerState {
        match code {
            1 => PowerState::On,
            2 => PowerState::Blocked,
            3 => PowerState::Paused,
            4 => PowerState::ShuttingDown,
            5 => PowerState::Off,
            6 => PowerState::Crashed,
            7 => PowerState::Suspended,
            _ => PowerState::Unknown,
        }
    }
}

/// One VM as a driver lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmInfo {
    /// Display name.
    pub name: String,
    /// Lower-case hyphenated UUID (libvirt UUID, vSphere BIOS UUID, XenAPI uuid).
    pub uuid: String,
    /// Power state.
    pub state: PowerState,
}

/// Sort VMs case-insensitively by name, as fence_virtd's host list does.
pub fn sort_by_name(vms: &mut [VmInfo]) {
    vms.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| a.name.cmp(&b.name))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shapes_are_recognised_and_normalised() {
        let want = "6695eb01-f6a4-8304-79aa-97f2502e193f";
        for s in [
            "6695eb01-f6a4-8304-79aa-97f2502e193f",
            "6695EB01-F6A4-8304-79AA-97F2502E193F",
            "{6695eb01-f6a4-8304-79aa-97f2502e193f}",
            "urn:uuid:6695eb01-f6a4-8304-79aa-97f2502e193f",
            "6695eb01f6a4830479aa97f2502e193f",
        ] {
            assert_eq!(VmRef::parse(s), VmRef::Uuid(want.into()), "{s}");
        }
    }

    #[test]
    fn names_stay_names() {
        for s in [
            "test",
            "6695eb01-f6a4-8304-79aa-97f2502e193",
            "6695eb01+f6a4-8304-79aa-97f2502e193f",
            "",
        ] {
            assert_eq!(VmRef::parse(s), VmRef::Name(s.into()));
        }
    }

    #[test]
    fn libvirt_codes_round_trip() {
        for c in 0..=7u8 {
            assert_eq!(PowerState::from_libvirt_code(c).libvirt_code(), c);
        }
        assert!(PowerState::Off.is_off());
        assert!(!PowerState::Suspended.is_off());
    }
}
