//! The fence journal: one JSON line per power action (OFF, ON, REBOOT) and its outcome,
//! appended and synced to disk before the answer goes back to the agent, so "did the host
//! really kill vm3 at 02:14, and who asked?" can be answered from the host. The C daemon keeps
//! no such record.
//!
//! The file is created with mode 0600 (and narrowed to it if it exists wider), its directory
//! with 0700 when missing. Once a line would take it past its bound it is renamed to
//! `<file>.1` (replacing the previous one) and a new file is started, so at most twice the
//! bound is kept. [`tail`] reads the last entries back (`fence_virtctl journal`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One power action as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When the answer was decided, RFC 3339 in UTC with milliseconds.
    pub time: String,
    /// The listener the request came through.
    pub listener: String,
    /// The requester's identity (IP address, vsock CID, or VM UUID on the serial listener).
    pub requester: String,
    /// The VM as the request named it (name or UUID).
    pub vm: String,
    /// `off`, `on` or `reboot`.
    pub op: String,
    /// `success` or `failure`: what the agent was told.
    pub result: String,
    /// From the request reaching the backend to the outcome, in milliseconds.
    pub duration_ms: u64,
    /// The backend's platform name (`libvirt`, `vmware_soap`, …).
    pub backend: String,
    /// Status polls made to confirm the new power state.
    pub polls: u32,
    /// What happened: `done`, `already` (the VM was already in that state) or the error.
    pub detail: String,
}

impl Entry {
    /// The current time as the journal writes it.
    pub fn now() -> String {
        humantime::format_rfc3339_millis(SystemTime::now()).to_string()
    }
}

/// An append-only, size-bounded journal file.
pub struct Journal {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<File>>,
}

/// The rotated file of `path`: `<path>.1`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

fn open_append(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: narrow it.
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

impl Journal {
    /// Open (create) the journal at `path`, rotating at `max_bytes`. The directory is created
    /// (mode 0700) when missing.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<Journal> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
        }
        let f = open_append(path)?;
        sync_dir(path);
        Ok(Journal {
            path: path.to_path_buf(),
            max_bytes,
            file: Mutex::new(Some(f)),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one entry and sync it to disk; rotates first when the line would take the file
    /// past its bound. Blocking: call it off the async runtime.
    pub fn append(&self, entry: &Entry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut slot = self.file.lock();
        let mut f = match slot.take() {
            Some(f) => f,
            // A previous failure dropped the handle: try again.
            None => open_append(&self.path)?,
        };
        let len = f.metadata()?.len();
        if len > 0 && len + line.len() as u64 > self.max_bytes {
            fs::rename(&self.path, rotated(&self.path))?;
            f = open_append(&self.path)?;
            sync_dir(&self.path);
        }
        f.write_all(&line)?;
        f.sync_data()?;
        *slot = Some(f);
        Ok(())
    }
}

/// The last `n` lines of the journal at `path` (older ones from `<path>.1` when the current
/// file has fewer), oldest first. A missing file counts as empty.
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    fn lines(p: &Path) -> io::Result<Vec<String>> {
        match File::open(p) {
            Ok(f) => BufReader::new(f)
                .lines()
                .filter(|l| !matches!(l, Ok(s) if s.is_empty()))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
    let mut current = lines(path)?;
    if current.len() < n {
        let mut older = lines(&rotated(path))?;
        older.append(&mut current);
        current = older;
    }
    let skip = current.len().saturating_sub(n);
    Ok(current.split_off(skip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> Entry {
        Entry {
            time: Entry::now(),
            listener: "tcp".into(),
            requester: "192.0.2.1".into(),
            vm: format!("vm{i}"),
            op: "off".into(),
            result: "success".into(),
            duration_ms: 3,
            backend: "sim".into(),
            polls: 1,
            detail: "done".into(),
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn appends_rotates_at_its_bound_and_is_never_world_readable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/journal.jsonl");
        let line_len = serde_json::to_vec(&entry(0)).unwrap().len() as u64 + 1;
        // Room for three lines per file.
        let j = Journal::open(&p, line_len * 3 + line_len / 2).unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(p.parent().unwrap()), 0o700);
        for i in 0..3 {
            j.append(&entry(i)).unwrap();
        }
        assert!(!rotated(&p).exists(), "rotated before the bound");
        j.append(&entry(3)).unwrap();
        assert!(rotated(&p).exists(), "not rotated at the bound");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&rotated(&p)), 0o600);
        assert_eq!(fs::read_to_string(&p).unwrap().lines().count(), 1);
        for i in 4..7 {
            j.append(&entry(i)).unwrap();
        }
        // vm0..vm2 were dropped with the second rotation; size stays bounded.
        assert!(fs::metadata(&p).unwrap().len() <= line_len * 3 + line_len / 2);
        let last: Vec<Entry> = tail(&p, 100)
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let vms: Vec<_> = last.iter().map(|e| e.vm.as_str()).collect();
        assert_eq!(vms, ["vm3", "vm4", "vm5", "vm6"]);
        let two: Vec<Entry> = tail(&p, 2)
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(two[1].vm, "vm6");
        assert_eq!(two.len(), 2);
    }

    #[test]
    fn an_existing_wider_file_is_narrowed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j");
        fs::write(&p, b"").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let j = Journal::open(&p, 1 << 20).unwrap();
        assert_eq!(mode(&p), 0o600);
        j.append(&entry(1)).unwrap();
        assert_eq!(tail(&p, 5).unwrap().len(), 1);
        assert!(tail(&d.path().join("absent"), 5).unwrap().is_empty());
    }
}
