//! What lockd records under `run_dir/state/` so that a restarted lockd (crash, kill -9,
//! upgrade) can go on renewing the *same* delta lease generation before the wdmd expiry, and so
//! keep every paxos lease it holds valid. One file per lockspace, replaced atomically (write,
//! fsync, rename, fsync the directory) after every renewal and every change of a held lease.
//!
//! A record is only good for the boot it was written in (CLOCK_MONOTONIC and the previous
//! incarnation's watchdog entry only exist within one boot).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::{LeaseArea, Mode, Resource};

pub const FORMAT: u32 = 1;

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
    pub locks: Vec<SavedLock>,
}

/// This boot's id (changes with every boot).
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn hex(b: &[u8]) -> String {
    // Saved on every lock change for every held lock: no formatting machinery per byte.
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

impl StateDir {
    pub fn new(run_dir: &Path) -> std::io::Result<StateDir> {
        let dir = run_dir.join("state");
        fs::create_dir_all(&dir)?;
        Ok(StateDir { dir })
    }

    fn path(&self, vg: &str) -> PathBuf {
        self.dir.join(format!("lvm_{vg}.json"))
    }

    pub fn save(&self, s: &SavedLockspace) -> std::io::Result<()> {
        let path = self.path(&s.vg);
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(s).expect("state always serializes");
        {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    pub fn remove(&self, vg: &str) -> std::io::Result<()> {
        match fs::remove_file(self.path(vg)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every record, with the ones that cannot be parsed reported by file name.
    pub fn load_all(&self) -> (Vec<SavedLockspace>, Vec<(PathBuf, String)>) {
        let mut good = vec![];
        let mut bad = vec![];
        let Ok(rd) = fs::read_dir(&self.dir) else { return (good, bad) };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<SavedLockspace>(&b).map_err(|e| format!("unreadable: {e}")))
            {
                Ok(s) if s.format == FORMAT => good.push(s),
                Ok(s) => bad.push((p, format!("format {} is not {FORMAT}", s.format))),
                Err(e) => bad.push((p, e)),
            }
        }
        (good, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::AreaPiece;

    #[test]
    fn save_load_remove() {
        let dir = std::env::temp_dir().join(format!("lockd-state-test-{}", std::process::id()));
        let sd = StateDir::new(&dir).unwrap();
        let s = SavedLockspace {
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
            locks: vec![SavedLock {
                resource: Resource::Vg,
                persistent: None,
                transient: true,
                pending: false,
                held: Some(SavedHeld { mode: Mode::Ex, lver: 4, leader: "00".into(), dblock: "11".into() }),
            }],
        };
        sd.save(&s).unwrap();
        sd.save(&s).unwrap();
        std::fs::write(sd.dir.join("lvm_bad.json"), b"{").unwrap();
        let (good, bad) = sd.load_all();
        assert_eq!(good, vec![s]);
        assert_eq!(bad.len(), 1);
        sd.remove("vg1").unwrap();
        sd.remove("vg1").unwrap();
        assert!(sd.load_all().0.is_empty());
        assert_eq!(hex(&[0, 9, 200, 0xab]), "0009c8ab");
        assert_eq!(unhex(&hex(&[0, 9, 200])), Some(vec![0, 9, 200]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
