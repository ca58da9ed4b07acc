//! The sanlock lease area of a shared VG, laid out exactly as lvmlockd does it in the hidden
//! `lvmlock` LV (A = the align size, 1 MiB on 512-byte sectors, 8 MiB on 4K):
//! offset 0 the lockspace `lvm_<vg>` (delta leases), A×65 the global lock `GLLK` (or
//! `_GLLK_disabled`), A×66 the VG lock `VGLK`, and from A×67 one paxos lease per LV named by
//! the LV UUID, free slots named `#unused`. An LV records its slot as `lock_args =
//! "1.0.0:<byte offset>"`. The leases are written with the `lease` crate straight onto the PV
//! that holds the extents (no device-mapper needed): PV byte = pe_start + extent offset.

use std::path::{Path, PathBuf};

use lease::delta_lease::{self, LockspaceArea};
use lease::diskio::{block_on, DeviceDisk, Disk};
use lease::ondisk::{Geometry, LeaderRecord, LeaseKind, Name, RecordError, SectorSize};
use lease::paxos_lease::{self, ResourceArea};
use lease::timeouts::Timeouts;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vg::{Lv, Vg};

pub const LOCK_LV_NAME: &str = "lvmlock";
pub const LOCK_TYPE: &str = "sanlock";
/// The VG's `lock_args`: lock args version and the lock LV's name.
pub const VG_LOCK_ARGS: &str = "1.0.0:lvmlock";
/// Version prefix of an LV's `lock_args`.
pub const LV_LOCK_ARGS_VERSION: &str = "1.0.0";
pub const GL_LOCK_BEGIN: u64 = 65;
pub const VG_LOCK_BEGIN: u64 = 66;
pub const LV_LOCK_BEGIN: u64 = 67;
pub const R_NAME_GL: &str = "GLLK";
pub const R_NAME_GL_DISABLED: &str = "_GLLK_disabled";
pub const R_NAME_VG: &str = "VGLK";
pub const R_NAME_UNUSED: &str = "#unused";
/// How much the lock LV grows when its slots run out (lvm.conf `sanlock_lv_extend`).
pub const LV_EXTEND_MIB: u64 = 256;

/// lvmlockd's lockspace name for a VG.
pub fn lockspace_name(vg: &str) -> String {
    format!("lvm_{vg}")
}

/// The lease geometry lvmlockd 2.03.16 uses for a device of these block sizes: 4K anywhere
/// means 4096-byte sectors with 8 MiB areas, else 512 with 1 MiB.
pub fn geometry_for(logical: u32, physical: u32) -> Geometry {
    if logical == 4096 || physical == 4096 {
        Geometry::default_for(SectorSize::B4096)
    } else {
        Geometry::DEFAULT_512
    }
}

/// The initial size of the lock LV in MiB (`_init_vg_sanlock`): 256 on 512-byte sectors, 1024
/// on 4K.
pub fn initial_lv_mib(g: Geometry) -> u64 {
    match g.sector {
        SectorSize::B512 => 256,
        SectorSize::B4096 => 1024,
    }
}

/// An LV's `lock_args` for the lease at `offset`.
pub fn lv_lock_args(offset: u64) -> String {
    format!("{LV_LOCK_ARGS_VERSION}:{offset}")
}

/// The lease offset in an LV's `lock_args` (the last `:` field, as lvmlockd parses it).
pub fn parse_lv_lock_args(args: &str) -> Option<u64> {
    let (version, rest) = args.split_once(':')?;
    if version.split('.').next()? != "1" {
        return None;
    }
    rest.rsplit(':').next()?.parse().ok()
}

fn name(s: &str) -> Result<Name> {
    Name::new(s).map_err(|e| Error::Lease { what: format!("name {s:?}"), reason: e.to_string() })
}

fn lease_err(what: impl Into<String>, e: impl std::fmt::Display) -> Error {
    Error::Lease { what: what.into(), reason: e.to_string() }
}

/// What a lease slot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A paxos leader with this resource name.
    Named(String),
    /// No paxos leader (zeroes, or cleared): never free (see `find_free`).
    Unformatted,
}

/// The lease area of one shared VG, mapped onto the PVs that hold the lock LV.
pub struct LockArea {
    pub vg: String,
    pub geometry: Geometry,
    /// Size of the lock LV in bytes.
    pub size: u64,
    pieces: Vec<AreaPiece>,
    lockspace: Name,
    timeouts: Timeouts,
    /// Slots some LV's `lock_args` name: never free, whatever their sector says.
    named: std::collections::BTreeSet<u64>,
}

impl LockArea {
    /// The lock LV `lock_lv` of `vg`; `pv_path(i)` is the device of `vg.pvs[i]`. `timeouts` are
    /// this host's (lvmlocal.toml): they bound each I/O, and a lockspace written here records
    /// their io_timeout, which every host's lock-start waits on (2 × io_timeout).
    pub fn new(
        vg: &Vg,
        pv_path: &dyn Fn(usize) -> Option<PathBuf>,
        geometry: Geometry,
        timeouts: Timeouts,
    ) -> Result<LockArea> {
        let lv = vg.lv(LOCK_LV_NAME).ok_or_else(|| Error::metadata(&vg.name, "shared VG without lvmlock LV"))?;
        let ext = vg.extent_size as u64 * 512;
        let pieces = lease_area(vg, pv_path, geometry)?.pieces;
        let lockspace = name(&lockspace_name(&vg.name))?;
        let named = vg.lvs.iter().filter_map(|l| l.lock_args.as_deref().and_then(parse_lv_lock_args)).collect();
        Ok(LockArea {
            vg: vg.name.clone(),
            geometry,
            size: lv.extent_count as u64 * ext,
            pieces,
            lockspace,
            timeouts,
            named,
        })
    }

    /// Where the lease area at LV byte `offset` lies: (PV device, PV byte offset). An area
    /// must not straddle two segments.
    pub fn locate(&self, offset: u64) -> Result<(&Path, u64)> {
        let len = self.geometry.area_bytes();
        for p in &self.pieces {
            if offset >= p.lv_start && offset + len <= p.lv_start + p.len {
                return Ok((&p.pv_path, p.pv_start + offset - p.lv_start));
            }
        }
        Err(Error::Lease {
            what: format!("lvmlock LV of VG {} at byte {offset}", self.vg),
            reason: "not inside one segment of the LV".into(),
        })
    }

    fn disk(&self, path: &Path) -> Result<DeviceDisk> {
        DeviceDisk::open(path).map_err(|e| lease_err(format!("open {}", path.display()), e))
    }

    fn align(&self) -> u64 {
        self.geometry.area_bytes()
    }

    /// Offsets of every LV slot that fits in the LV.
    pub fn lv_slots(&self) -> impl Iterator<Item = u64> + '_ {
        let a = self.align();
        (LV_LOCK_BEGIN..).map(move |k| k * a).take_while(move |&o| o + a <= self.size)
    }

    fn write_resource(&self, offset: u64, resource: &str) -> Result<()> {
        let (path, at) = self.locate(offset)?;
        let disk = self.disk(path)?;
        let area =
            ResourceArea { lockspace: self.lockspace, name: name(resource)?, offset: at, geometry: self.geometry };
        block_on(paxos_lease::init(&disk, &area, 0, false, self.timeouts))
            .map_err(|e| lease_err(format!("write {resource} at {offset} of the lvmlock LV"), e))
    }

    /// Formats the whole area as lvmlockd's `init_vg` does: lockspace, GL (enabled or
    /// disabled), VG lock, and every LV slot `#unused`.
    pub fn init_vg(&self, gl_enabled: bool) -> Result<()> {
        let (path, at) = self.locate(0)?;
        let disk = self.disk(path)?;
        let ls = LockspaceArea { name: self.lockspace, offset: at, geometry: self.geometry };
        block_on(delta_lease::init(&disk, &ls, self.timeouts)).map_err(|e| lease_err("write lockspace", e))?;
        let gl = if gl_enabled { R_NAME_GL } else { R_NAME_GL_DISABLED };
        self.write_resource(GL_LOCK_BEGIN * self.align(), gl)?;
        self.write_resource(VG_LOCK_BEGIN * self.align(), R_NAME_VG)?;
        self.init_unused(LV_LOCK_BEGIN * self.align())
    }

    /// Writes `#unused` into every LV slot from LV byte `from` to the end of the LV.
    pub fn init_unused(&self, from: u64) -> Result<()> {
        for o in self.lv_slots().filter(|&o| o >= from) {
            self.write_resource(o, R_NAME_UNUSED)?;
        }
        Ok(())
    }

    /// Reads what the slot at `offset` holds.
    pub fn slot(&self, offset: u64) -> Result<Slot> {
        let (path, at) = self.locate(offset)?;
        let disk = self.disk(path)?;
        let sector = self.geometry.sector_bytes();
        let buf = block_on(disk.read(at, sector, self.timeouts.io()))
            .map_err(|e| lease_err(format!("read lease at {offset} of the lvmlock LV"), e))?;
        match LeaderRecord::verify_any_name(&buf, LeaseKind::Paxos) {
            Ok(l) => Ok(Slot::Named(l.resource_name.as_str_lossy())),
            Err(RecordError::Magic { .. }) | Err(RecordError::Cleared) => Ok(Slot::Unformatted),
            Err(e) => Err(lease_err(format!("lease at {offset} of the lvmlock LV"), e)),
        }
    }

    /// Whether `host_id`'s delta lease in the lockspace is free now (released, or never used),
    /// read from disk. A corrupt record is not free.
    pub fn host_record_free(&self, host_id: u64) -> Result<bool> {
        let sector = self.geometry.sector_bytes();
        let offset =
            host_id.checked_sub(1).ok_or_else(|| lease_err("host_id 0".to_string(), "no such host"))? * sector as u64;
        let (path, at) = self.locate(offset)?;
        let buf = block_on(self.disk(path)?.read(at, sector, self.timeouts.io()))
            .map_err(|e| lease_err(format!("read host_id {host_id}'s delta lease"), e))?;
        let l = LeaderRecord::verify_any_name(&buf, LeaseKind::Delta)
            .map_err(|e| lease_err(format!("host_id {host_id}'s delta lease"), e))?;
        Ok(l.timestamp == 0)
    }

    /// The first free LV slot (`#unused`), as lvmlockd's `find_free_lock` scans; refuses a
    /// slot already named `resource` (two leases for one LV). A slot without a valid leader
    /// (zeroed, cleared) is an error naming it, never free: it may be the lease of an LV whose
    /// sector was damaged, which that LV's `lock_args` still name. A slot an LV of the VG
    /// names in its `lock_args` is skipped even when it reads `#unused` (freed by mistake).
    pub fn find_free(&self, resource: &str) -> Result<Option<u64>> {
        for o in self.lv_slots().filter(|o| !self.named.contains(o)) {
            match self.slot(o)? {
                Slot::Unformatted => {
                    return Err(Error::Lease {
                        what: format!("slot at {o} of the lvmlock LV"),
                        reason: "no valid lease leader (zeroed?); not treated as free".into(),
                    })
                }
                Slot::Named(n) if n == R_NAME_UNUSED => return Ok(Some(o)),
                Slot::Named(n) if n == resource => {
                    return Err(Error::Lease {
                        what: format!("slot at {o} of the lvmlock LV"),
                        reason: format!("a lease named {resource} already exists"),
                    })
                }
                Slot::Named(_) => {}
            }
        }
        Ok(None)
    }

    /// Names the slot at `offset` after the LV (its UUID, dashed, as lvmlockd does).
    pub fn init_lv(&self, offset: u64, lv: &Lv) -> Result<()> {
        self.write_resource(offset, &lv.id.to_string())
    }

    /// Frees the slot at `offset` (lvmlockd's `free_lv`).
    pub fn free_lv(&self, offset: u64) -> Result<()> {
        self.write_resource(offset, R_NAME_UNUSED)
    }

    /// The resource name of the GL slot (to learn whether this VG holds the enabled GL).
    pub fn gl_name(&self) -> Result<Slot> {
        self.slot(GL_LOCK_BEGIN * self.align())
    }

    /// The geometry recorded in the lockspace leader at offset 0.
    pub fn read_geometry(&self) -> Result<Geometry> {
        let (path, at) = self.locate(0)?;
        let disk = self.disk(path)?;
        // 4096 bytes cover the leader on either sector size.
        let buf = block_on(disk.read(at, 4096, self.timeouts.io())).map_err(|e| lease_err("read lockspace", e))?;
        let l = LeaderRecord::verify_any_name(&buf, LeaseKind::Delta).map_err(|e| lease_err("lockspace leader", e))?;
        Geometry::from_leader(&l).map_err(|e| lease_err("lockspace leader", e))
    }
}

/// Logical and physical block size of a device (512/512 for a regular file); an error when
/// the device cannot be opened or the kernel does not answer: a lease area laid out for a
/// guessed sector size could not be read by sanlock.
pub fn block_sizes(path: &Path) -> Result<(u32, u32)> {
    crate::device::sector_sizes(path)
}

/// One piece of the lease LV: LV bytes [lv_start, lv_start+len) are at `pv_start` on `pv_path`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AreaPiece {
    pub lv_start: u64,
    pub len: u64,
    pub pv_path: PathBuf,
    pub pv_start: u64,
}

/// The lease area of a shared VG as lvtool found it in the metadata.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LeaseArea {
    /// 512 or 4096.
    pub sector_size: u32,
    /// Bytes per lease (A): 1, 2, 4 or 8 MiB.
    pub align_bytes: u64,
    pub pieces: Vec<AreaPiece>,
}

impl LeaseArea {
    /// Size of the LV in bytes.
    pub fn size(&self) -> u64 {
        self.pieces.iter().map(|p| p.lv_start + p.len).max().unwrap_or(0)
    }

    /// The device and byte offset of the lease at LV byte `offset`, which must lie inside one
    /// piece (a lease never straddles two segments).
    pub fn locate(&self, offset: u64) -> Option<(&PathBuf, u64)> {
        let len = self.align_bytes;
        self.pieces
            .iter()
            .find(|p| offset >= p.lv_start && offset.checked_add(len).is_some_and(|e| e <= p.lv_start + p.len))
            .map(|p| (&p.pv_path, p.pv_start + offset - p.lv_start))
    }
}

/// The map of a shared VG's lease LV: its segments on their PVs (`pv_path(i)` is the device of
/// `vg.pvs[i]`), with the lease geometry.
pub fn lease_area(vg: &Vg, pv_path: &dyn Fn(usize) -> Option<PathBuf>, geometry: Geometry) -> Result<LeaseArea> {
    let lv = vg.lv(LOCK_LV_NAME).ok_or_else(|| Error::metadata(&vg.name, "shared VG without lvmlock LV"))?;
    let ext = vg.extent_size as u64 * 512;
    let mut pieces = vec![];
    for s in &lv.segments {
        let [a] = s.stripes.as_slice() else {
            return Err(Error::metadata(&vg.name, "lvmlock LV is striped"));
        };
        let i = vg.pvs.iter().position(|p| p.name == a.pv).ok_or_else(|| Error::metadata(&vg.name, "lvmlock PV"))?;
        let path = pv_path(i).ok_or_else(|| Error::MissingPv {
            vg: vg.name.clone(),
            uuid: vg.pvs[i].id.to_string(),
            hint: vg.pvs[i].device.clone(),
        })?;
        pieces.push(AreaPiece {
            lv_start: s.start_extent as u64 * ext,
            len: s.extent_count as u64 * ext,
            pv_path: std::fs::canonicalize(&path).unwrap_or(path),
            pv_start: vg.pvs[i].pe_start * 512 + a.pe as u64 * ext,
        });
    }
    Ok(LeaseArea { sector_size: geometry.sector_bytes() as u32, align_bytes: geometry.area_bytes(), pieces })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_args() {
        assert_eq!(lv_lock_args(70254592), "1.0.0:70254592");
        assert_eq!(parse_lv_lock_args("1.0.0:70254592"), Some(70254592));
        assert_eq!(parse_lv_lock_args("1.2.0:x:71303168"), Some(71303168));
        assert_eq!(parse_lv_lock_args("2.0.0:70254592"), None);
        assert_eq!(parse_lv_lock_args("junk"), None);
    }

    #[test]
    fn geometry_and_sizes() {
        let g = geometry_for(512, 512);
        assert_eq!(g.area_bytes(), 1 << 20);
        assert_eq!(initial_lv_mib(g), 256);
        assert_eq!(GL_LOCK_BEGIN * g.area_bytes(), 68157440);
        assert_eq!(LV_LOCK_BEGIN * g.area_bytes(), 70254592);
        let g4 = geometry_for(512, 4096);
        assert_eq!(g4.area_bytes(), 8 << 20);
        assert_eq!(initial_lv_mib(g4), 1024);
        assert_eq!(VG_LOCK_BEGIN * g4.area_bytes(), 553648128);
    }
}
