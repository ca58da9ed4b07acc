//! The lease LV of a VG as one address space, like lvmlockd's `/dev/mapper/<vg>-lvmlock` but
//! without device-mapper: LV byte offsets are mapped onto the PVs that hold its segments. Every
//! lease of a lockspace is then addressed by its LV offset, and one [`Disk`] serves both the
//! delta leases and the paxos leases (the owner liveness check of a paxos acquire reads the
//! lockspace through the same disk).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lease::diskio::{AlignedBuf, DeviceDisk, Disk, IoError};

use proto::lockd::protocol::LeaseArea;

struct Piece {
    lv_start: u64,
    len: u64,
    disk: Arc<DeviceDisk>,
    pv_start: u64,
}

pub struct LvDisk {
    pieces: Vec<Piece>,
    sector: Option<u32>,
}

impl LvDisk {
    /// Opens the PVs of `area`, reusing already open devices from `open`.
    pub fn open(area: &LeaseArea, open: &mut HashMap<PathBuf, Arc<DeviceDisk>>) -> std::io::Result<LvDisk> {
        let mut pieces = vec![];
        for p in &area.pieces {
            let disk = match open.get(&p.pv_path) {
                Some(d) => d.clone(),
                None => {
                    let d = Arc::new(DeviceDisk::open(&p.pv_path).map_err(|e| annotate(&p.pv_path, e))?);
                    open.insert(p.pv_path.clone(), d.clone());
                    d
                }
            };
            pieces.push(Piece { lv_start: p.lv_start, len: p.len, disk, pv_start: p.pv_start });
        }
        let sector = pieces.iter().filter_map(|p| p.disk.logical_sector_size()).max();
        Ok(LvDisk { pieces, sector })
    }

    fn map(&self, offset: u64, len: usize) -> Result<(&DeviceDisk, u64), IoError> {
        let end = offset.checked_add(len as u64).ok_or(IoError::Os(libc::EINVAL))?;
        self.pieces
            .iter()
            .find(|p| offset >= p.lv_start && end <= p.lv_start + p.len)
            .map(|p| (&*p.disk, p.pv_start + offset - p.lv_start))
            // Outside the LV, or across two segments (never for a lease area).
            .ok_or(IoError::Os(libc::ERANGE))
    }
}

fn annotate(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Disk for LvDisk {
    fn logical_sector_size(&self) -> Option<u32> {
        self.sector
    }

    async fn read(&self, offset: u64, len: usize, timeout: Duration) -> Result<AlignedBuf, IoError> {
        let (d, at) = self.map(offset, len)?;
        d.read(at, len, timeout).await
    }

    async fn write(&self, offset: u64, data: AlignedBuf, timeout: Duration) -> Result<(), IoError> {
        let (d, at) = self.map(offset, data.len())?;
        d.write(at, data, timeout).await
    }
}
