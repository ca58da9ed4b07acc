//! What lockd records under `run_dir/state/` so that a restarted lockd (crash, kill -9,
//! upgrade) can go on renewing the *same* delta lease generation before the wdmd expiry, and so
//! keep every paxos lease it holds valid.
//!
//! Per lockspace: `lvm_<vg>.json` (the delta lease: rewritten after every renewal) and
//! `lvm_<vg>.locks/<offset>.json`, one record per lease held or being acquired, rewritten when
//! that lock changes. One record per lock keeps a lock change O(1) however many LVs are active
//! (a single file was rewritten whole, twice per change: quadratic in a 500-LV `vgchange`).
//!
//! A record is only good for the boot it was written in (CLOCK_MONOTONIC and the previous
//! incarnation's watchdog entry only exist within one boot). So records are replaced atomically
//! (write a temporary file, rename) but not fsynced: a daemon's crash keeps the page cache, and
//! what a machine crash loses belongs to a boot that is over anyway.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use proto::lockd::protocol::{LeaseArea, Mode, Resource};

/// 2: locks in their own records (1 had them inside the lockspace's).
pub const FORMAT: u32 = 2;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedHeld {
    /// Ex or Sh.
    pub mode: Mode,
    pub lver: u64,
    /// The leader and our dblock as last written or read, hex.
    pub leader: String,
    pub dblock: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedLock {
    /// The delta lease generation the lock was taken under: a record of another generation is
    /// stale and never restored.
    pub generation: u64,
    pub resource: Resource,
    /// The host's own (persistent) mode.
    pub persistent: Option<Mode>,
    /// Commands held it: a restarted lockd releases it (those commands are gone).
    pub transient: bool,
    /// An acquire or convert was in flight: the lease may or may not be ours on disk.
    pub pending: bool,
    pub held: Option<SavedHeld>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedLockspace {
    pub format: u32,
    pub vg: String,
    pub vg_uuid: String,
    pub boot_id: String,
    pub host_id: u64,
    pub host_name: String,
    pub generation: u64,
    pub area: LeaseArea,
    /// The sector of our delta lease as we last wrote it, hex.
    pub delta_sector: String,
    /// CLOCK_MONOTONIC (ms) when the last successful renewal write was issued; the wdmd
    /// expiry counts from it.
    pub last_success_ms: u64,
    pub gl_enabled: bool,
}

/// One lockspace as recorded: its delta lease and the locks of its generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub lockspace: SavedLockspace,
    pub locks: Vec<SavedLock>,
}

/// This boot's id (changes with every boot).
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn hex(b: &[u8]) -> String {
    // Saved on every lock change: no formatting machinery per byte.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(b.len() * 2);
    for &x in b {
        out.push(DIGITS[(x >> 4) as usize] as char);
        out.push(DIGITS[(x & 15) as usize] as char);
    }
    out
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub struct StateDir {
    pub dir: PathBuf,
}

/// Replaces `path` with `body` so that a reader sees the old or the new content, never a mix;
/// mode 0600 (the records name every lease this host holds, and where).
fn replace(path: &Path, body: &[u8]) -> std::io::Result<()> {
    proto::limits::replace_private(path, body)
}

/// Creates `dir` (0700), or tightens an existing one of ours.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    proto::limits::private_dir(dir)
}

fn remove_if_there(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl StateDir {
    pub fn new(run_dir: &Path) -> std::io::Result<StateDir> {
        private_dir(run_dir)?;
        let dir = run_dir.join("state");
        private_dir(&dir)?;
        // Records written by an older lockd may be world-readable.
        for p in json_files(&dir) {
            tighten(&p)?;
        }
        Ok(StateDir { dir })
    }

    fn path(&self, vg: &str) -> PathBuf {
        self.dir.join(format!("lvm_{vg}.json"))
    }

    fn locks_dir(&self, vg: &str) -> PathBuf {
        self.dir.join(format!("lvm_{vg}.locks"))
    }

    /// A lock's record is named by its lease's offset in the lease area: unique per resource,
    /// and a plain number whatever the client sent as a resource name.
    fn lock_path(&self, vg: &str, offset: u64) -> PathBuf {
        self.locks_dir(vg).join(format!("{offset}.json"))
    }

    pub fn save(&self, s: &SavedLockspace) -> std::io::Result<()> {
        replace(&self.path(&s.vg), &serde_json::to_vec(s).expect("state always serializes"))
    }

    /// Records the lock whose lease is at `offset`, or forgets it (`None`: neither held nor
    /// being acquired).
    pub fn save_lock(&self, vg: &str, offset: u64, lock: Option<&SavedLock>) -> std::io::Result<()> {
        let path = self.lock_path(vg, offset);
        match lock {
            Some(l) => {
                private_dir(&self.locks_dir(vg))?;
                replace(&path, &serde_json::to_vec(l).expect("state always serializes"))
            }
            None => remove_if_there(fs::remove_file(path)),
        }
    }

    /// Forgets every lock record of `vg` (a new generation starts with none).
    pub fn clear_locks(&self, vg: &str) -> std::io::Result<()> {
        remove_if_there(fs::remove_dir_all(self.locks_dir(vg)))
    }

    pub fn remove(&self, vg: &str) -> std::io::Result<()> {
        self.clear_locks(vg)?;
        remove_if_there(fs::remove_file(self.path(vg)))
    }

    /// Every record, with the ones that cannot be used reported by file name.
    pub fn load_all(&self) -> (Vec<Recorded>, Vec<(PathBuf, String)>) {
        let mut good = vec![];
        let mut bad = vec![];
        for p in json_files(&self.dir) {
            match read_json::<SavedLockspace>(&p) {
                Ok(s) if s.format == FORMAT => {
                    let locks = self.load_locks(&s, &mut bad);
                    good.push(Recorded { lockspace: s, locks });
                }
                Ok(s) => bad.push((p, format!("format {} is not {FORMAT}", s.format))),
                Err(e) => bad.push((p, e)),
            }
        }
        (good, bad)
    }

    fn load_locks(&self, s: &SavedLockspace, bad: &mut Vec<(PathBuf, String)>) -> Vec<SavedLock> {
        let mut locks = vec![];
        for p in json_files(&self.locks_dir(&s.vg)) {
            match read_json::<SavedLock>(&p) {
                Ok(l) if l.generation == s.generation => locks.push(l),
                Ok(l) => bad.push((p, format!("generation {} is not the lockspace's {}", l.generation, s.generation))),
                Err(e) => bad.push((p, e)),
            }
        }
        locks
    }
}

/// Gives a record of ours mode 0600.
fn tighten(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let md = fs::symlink_metadata(p)?;
    if md.is_file() && md.mode() & 0o077 != 0 {
        fs::set_permissions(p, fs::Permissions::from_mode(proto::limits::STATE_FILE_MODE))?;
    }
    Ok(())
}

/// The `*.json` files of `dir`, sorted (none if it cannot be read).
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else { return vec![] };
    let mut paths: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    paths.sort();
    paths
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, String> {
    let b = fs::read(p).map_err(|e| e.to_string())?;
    serde_json::from_slice(&b).map_err(|e| format!("unreadable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::lockd::protocol::AreaPiece;

    fn lockspace() -> SavedLockspace {
        SavedLockspace {
            format: FORMAT,
            vg: "vg1".into(),
            vg_uuid: "u".into(),
            boot_id: boot_id(),
            host_id: 3,
            host_name: "n3".into(),
            generation: 7,
            area: LeaseArea {
                sector_size: 512,
                align_bytes: 1 << 20,
                pieces: vec![AreaPiece { lv_start: 0, len: 256 << 20, pv_path: "/x".into(), pv_start: 1 << 20 }],
            },
            delta_sector: hex(&[1, 2, 0xff]),
            last_success_ms: 1234,
            gl_enabled: true,
        }
    }

    fn lock(generation: u64, resource: Resource) -> SavedLock {
        SavedLock {
            generation,
            resource,
            persistent: None,
            transient: true,
            pending: false,
            held: Some(SavedHeld { mode: Mode::Ex, lver: 4, leader: "00".into(), dblock: "11".into() }),
        }
    }

    #[test]
    fn save_load_remove() {
        let dir = std::env::temp_dir().join(format!("lockd-state-test-{}", std::process::id()));
        let sd = StateDir::new(&dir).unwrap();
        let s = lockspace();
        sd.save(&s).unwrap();
        sd.save(&s).unwrap();
        let vg_lock = lock(7, Resource::Vg);
        let lv_lock = lock(7, Resource::Lv { uuid: "a/../b".into(), offset: 68 << 20, name: "lv".into() });
        sd.save_lock("vg1", 66 << 20, Some(&vg_lock)).unwrap();
        sd.save_lock("vg1", 68 << 20, Some(&lv_lock)).unwrap();
        // Another generation's record (a stop that did not finish) is never restored.
        sd.save_lock("vg1", 65 << 20, Some(&lock(6, Resource::Gl))).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&sd.dir), 0o700);
            assert_eq!(mode(&sd.dir.join("lvm_vg1.locks")), 0o700);
            assert_eq!(mode(&sd.dir.join("lvm_vg1.json")), 0o600);
            assert_eq!(mode(&sd.dir.join("lvm_vg1.locks/68157440.json")), 0o600);
        }
        std::fs::write(sd.dir.join("lvm_bad.json"), b"{").unwrap();
        let (good, bad) = sd.load_all();
        assert_eq!(good, vec![Recorded { lockspace: s.clone(), locks: vec![vg_lock.clone(), lv_lock] }]);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad.iter().any(|(p, e)| p.ends_with("lvm_vg1.locks/68157440.json") && e.contains("generation 6")));
        // Forgetting one lock leaves the others.
        sd.save_lock("vg1", 68 << 20, None).unwrap();
        sd.save_lock("vg1", 68 << 20, None).unwrap();
        sd.save_lock("vg1", 65 << 20, None).unwrap();
        assert_eq!(sd.load_all().0, vec![Recorded { lockspace: s, locks: vec![vg_lock] }]);
        sd.remove("vg1").unwrap();
        sd.remove("vg1").unwrap();
        assert!(sd.load_all().0.is_empty());
        assert!(!sd.dir.join("lvm_vg1.locks").exists());
        assert_eq!(hex(&[0, 9, 200, 0xab]), "0009c8ab");
        assert_eq!(unhex(&hex(&[0, 9, 200])), Some(vec![0, 9, 200]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
