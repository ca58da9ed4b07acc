//! The clients with an expiry, saved in the run directory after every change, so that a wdmd
//! that died and was restarted in the same boot keeps enforcing them.
//!
//! Without this a new wdmd would open the device, which pets it, and then pet it forever: a
//! lease whose renewals stopped would no longer lead to a reset. (sanlock's wdmd refuses to start
//! instead, which turns every wdmd crash into a reset.) The file is written after the change is
//! applied in memory, so a crash in between leaves the file with the older entry; for an
//! extension or a clear that is the stricter value. A client must not count on a *new* expiry
//! until wdmd has acknowledged it, which happens only after the file is written.
//!
//! The file records the boot id: after a reboot (the host was reset, or shut down with its run
//! directory on a persistent file system) the old entries mean nothing.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use proto::wdmd::protocol::Times;

pub const STATE_NAME: &str = "clients.json";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedClient {
    pub name: String,
    pub times: Times,
}

#[derive(Serialize, Deserialize, Debug)]
struct Saved {
    boot_id: String,
    clients: Vec<SavedClient>,
}

#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    boot_id: String,
}

/// This boot's id, or "" where the kernel has none (then entries are trusted as is).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

impl StateFile {
    pub fn new(run_dir: &Path) -> StateFile {
        StateFile { path: run_dir.join(STATE_NAME), boot_id: boot_id() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The clients saved in this boot (none if the file is missing or from another boot). A file
    /// that cannot be parsed is an error: guessing "nothing saved" could drop an expiry.
    pub fn load(&self) -> io::Result<Vec<SavedClient>> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let saved: Saved = serde_json::from_slice(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}; remove it only if no lease of this boot needs protection", self.path.display()),
            )
        })?;
        if saved.boot_id != self.boot_id {
            return Ok(Vec::new());
        }
        Ok(saved.clients.into_iter().filter(|c| c.times.expiry_ms != 0).collect())
    }

    /// Replaces the file atomically (write, rename). No fsync: only a wdmd crash must be
    /// survived, and the page cache does; a power loss resets the host anyway.
    /// Mode 0600, like the directory's 0700: the expiries are root's business only.
    pub fn save(&self, clients: &[SavedClient]) -> io::Result<()> {
        let saved = Saved { boot_id: self.boot_id.clone(), clients: clients.to_vec() };
        proto::limits::replace_private(&self.path, &serde_json::to_vec(&saved).expect("state serializes"))
    }

    /// Only when no client has an expiry (clean shutdown).
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_other_boot() {
        let dir = tempfile::tempdir().unwrap();
        let st = StateFile::new(dir.path());
        assert!(st.load().unwrap().is_empty());
        let c = vec![
            SavedClient { name: "a".into(), times: Times { renewal_ms: 1, expiry_ms: 9 } },
            SavedClient { name: "b".into(), times: Times { renewal_ms: 1, expiry_ms: 0 } },
        ];
        st.save(&c).unwrap();
        assert_eq!(st.load().unwrap(), c[..1]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(st.path()).unwrap().permissions().mode() & 0o777, 0o600);
        let other = StateFile { path: st.path.clone(), boot_id: "another boot".into() };
        assert!(other.load().unwrap().is_empty());
        std::fs::write(st.path(), b"garbage").unwrap();
        assert!(st.load().is_err());
        st.remove().unwrap();
        st.remove().unwrap();
    }
}
