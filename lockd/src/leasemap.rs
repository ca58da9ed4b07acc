//! Where a shared VG's leases are, read by lockd itself from the committed LVM metadata.
//!
//! lockd decides who may write to the lease area, so it never takes the area's map, or the
//! slot an LV owns, from a request: it scans the devices of `lvmlocal.toml` (`devices`; when
//! that list is empty, the PVs the request names, but only the metadata found on them counts),
//! finds the VG by name and UUID, and computes the `lvmlock` LV's map and every LV's slot
//! (`lock_args`) from the committed copy with the highest seqno. A map in a request is a hint
//! that must agree with this read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lease::diskio::{block_on, DeviceDisk, Disk};
use lease::ondisk::{Geometry, LeaderRecord, LeaseKind};
use lease::timeouts::Timeouts;
use lvmmeta::lockarea::{self, lease_area, LeaseArea};
use lvmmeta::scan::Scan;

use crate::error::Error;

/// What the committed metadata of one shared VG says about its leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgLeases {
    pub seqno: u32,
    pub area: LeaseArea,
    /// Every LV by UUID (dashed): its name and the lease offset of its `lock_args`, if any.
    pub lvs: BTreeMap<String, (String, Option<u64>)>,
    /// Lease offset → the UUIDs of the LVs whose `lock_args` name it (more than one is damage).
    pub slots: BTreeMap<u64, Vec<String>>,
}

impl VgLeases {
    /// The LV whose `lock_args` name `offset`, other than `except`.
    pub fn slot_owner_other_than(&self, offset: u64, except: &str) -> Option<&str> {
        self.slots.get(&offset)?.iter().map(String::as_str).find(|u| *u != except)
    }
}

/// The shared VGs found on `devices` (name, UUID), for messages about the global lock.
pub fn shared_vgs(devices: &[PathBuf]) -> Vec<(String, String)> {
    let scan = Scan::devices(devices);
    scan.vg_names()
        .into_iter()
        .filter_map(|n| {
            let r = scan.read_vg(&n).ok()?;
            (r.vg.lock_type.as_deref() == Some(lockarea::LOCK_TYPE)).then(|| (n, r.vg.id.to_string()))
        })
        .collect()
}

/// Reads VG `vg` (UUID `vg_uuid`) from `devices` and computes its lease map.
pub fn read(devices: &[PathBuf], vg: &str, vg_uuid: &str, timeouts: Timeouts) -> Result<VgLeases, Error> {
    let fail = |m: String| Error::refused(format!("VG {vg}: {m}"));
    if devices.is_empty() {
        return Err(fail("no devices to read its metadata from (lvmlocal.toml `devices`)".into()));
    }
    let scan = Scan::devices(devices);
    let read = scan.read_vg(vg).map_err(|e| fail(format!("cannot read its metadata: {e}")))?;
    let v = &read.vg;
    if v.id.to_string() != vg_uuid {
        return Err(fail(format!("the committed metadata has UUID {}, the request {vg_uuid}", v.id)));
    }
    if v.lock_type.as_deref() != Some(lockarea::LOCK_TYPE) {
        return Err(fail("not a shared (sanlock) VG in its committed metadata".into()));
    }
    let pv_path = |i: usize| read.devices.get(i).copied().flatten().map(|j| scan.pvs[j].path.clone());
    // The geometry is in the lockspace leader at offset 0; find that first with any geometry
    // (it only changes the lease size, not where the LV starts).
    let probe = lease_area(v, &pv_path, Geometry::DEFAULT_512).map_err(|e| fail(e.to_string()))?;
    let (path, at) = probe.locate(0).ok_or_else(|| fail("lvmlock LV is empty".into()))?;
    let disk = DeviceDisk::open(path).map_err(|e| fail(format!("open {}: {e}", path.display())))?;
    let buf = block_on(disk.read(at, 4096, timeouts.io()))
        .map_err(|e| Error::io(format!("VG {vg}: read its lockspace leader: {e}")))?;
    let leader = LeaderRecord::verify_any_name(&buf, LeaseKind::Delta)
        .map_err(|e| Error::corrupt(None, format!("VG {vg}: lockspace leader at offset 0 of lvmlock: {e}")))?;
    let g = Geometry::from_leader(&leader)
        .map_err(|e| Error::corrupt(None, format!("VG {vg}: lockspace leader geometry: {e}")))?;
    let area = lease_area(v, &pv_path, g).map_err(|e| fail(e.to_string()))?;
    let mut lvs = BTreeMap::new();
    let mut slots: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for lv in &v.lvs {
        let uuid = lv.id.to_string();
        let offset = lv.lock_args.as_deref().and_then(lockarea::parse_lv_lock_args);
        if let Some(o) = offset {
            slots.entry(o).or_default().push(uuid.clone());
        }
        lvs.insert(uuid, (lv.name.clone(), offset));
    }
    Ok(VgLeases { seqno: v.seqno, area, lvs, slots })
}

/// The resource name of the paxos lease at LV offset `at` of `area` (read-only).
pub fn resource_name(area: &LeaseArea, at: u64, timeouts: Timeouts) -> Result<String, String> {
    let (path, pv_at) = area.locate(at).ok_or_else(|| format!("offset {at} is outside the lock LV"))?;
    let disk = DeviceDisk::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let buf = block_on(disk.read(pv_at, area.sector_size as usize, timeouts.io())).map_err(|e| e.to_string())?;
    LeaderRecord::verify_any_name(&buf, LeaseKind::Paxos)
        .map(|l| l.resource_name.as_str_lossy())
        .map_err(|e| e.to_string())
}
