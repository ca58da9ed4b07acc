//! Writing and wiping PV labels as pvcreate, vgcreate, vgremove and pvremove do, byte for byte:
//! pvcreate zeroes sectors 0..3 (old labels and signatures), writes the label in sector 1 and
//! the first metadata area's header at 4096 followed by zeroes to 8192; data start at 1 MiB.
//! Joining a VG sets PV_EXT_USED in the label; leaving one clears both mda slots and the flag;
//! pvremove zeroes only the label sector.

use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::label::{DiskLocn, Label, PV_EXT_USED, SECTOR_SIZE};
use crate::mda::{self, MdaHeader, RawLocn, MDA_HEADER_SIZE};
use crate::uuid::Uuid;

/// Where the first metadata area starts (after the label sectors, 4 KiB aligned).
pub const MDA_START: u64 = 4096;
/// Default data start: 1 MiB (`--dataalignment` default), so the mda is 1 MiB - 4 KiB.
pub const PE_START_BYTES: u64 = 1 << 20;
/// lvm.conf `devices/pv_min_size` default: 2 MiB.
pub const PV_MIN_SIZE: u64 = 2 << 20;

/// Formats `dev` as an orphan PV with a new label. Fails, writing nothing, if the device is
/// smaller than lvm2's minimum.
pub fn create(dev: &mut dyn BlockDevice, uuid: Uuid) -> Result<Label> {
    let size = dev.size();
    if size < PV_MIN_SIZE {
        return Err(Error::Invalid(format!("Cannot use {}: device is too small (pv_min_size)", dev.name())));
    }
    let label = Label::new(
        uuid,
        size,
        PE_START_BYTES,
        vec![DiskLocn { offset: MDA_START, size: PE_START_BYTES - MDA_START }],
        false,
    );
    let mut head = vec![0u8; 4 * SECTOR_SIZE];
    head[SECTOR_SIZE..2 * SECTOR_SIZE].copy_from_slice(&label.encode()?);
    let mut area = vec![0u8; 4096];
    area[..MDA_HEADER_SIZE as usize].copy_from_slice(&MdaHeader::new(MDA_START, PE_START_BYTES - MDA_START).encode());
    dev.write_at(MDA_START, &area)?;
    dev.flush()?;
    // The label last: a crash before it leaves no half-made PV.
    dev.write_at(0, &head)?;
    dev.flush()?;
    Ok(label)
}

/// Rewrites the label with PV_EXT_USED set or cleared (joining or leaving a VG).
pub fn set_used(dev: &mut dyn BlockDevice, label: &Label, used: bool) -> Result<Label> {
    let mut l = label.clone();
    let ext = l.extension.get_or_insert(crate::label::PvHeaderExtension {
        version: crate::label::PV_HEADER_EXTENSION_VSN,
        flags: 0,
        bootloader_areas: vec![],
    });
    if used {
        ext.flags |= PV_EXT_USED;
    } else {
        ext.flags &= !PV_EXT_USED;
    }
    if &l != label {
        l.write(dev)?;
        dev.flush()?;
    }
    Ok(l)
}

/// Makes a PV an orphan again: both slots of every mda header zeroed (the old text stays in
/// the buffer, unreferenced), then the label's used flag cleared.
pub fn orphan(dev: &mut dyn BlockDevice, label: &Label) -> Result<Label> {
    for &area in &label.metadata_areas {
        let mut h = mda::read_header(dev, area)?;
        let flags = h.committed.flags;
        h.committed = RawLocn { flags, ..RawLocn::default() };
        h.precommitted = RawLocn::default();
        mda::write_header(dev, &h)?;
    }
    dev.flush()?;
    set_used(dev, label, false)
}

/// Wipes the label sector (pvremove).
pub fn remove(dev: &mut dyn BlockDevice, label: &Label) -> Result<()> {
    dev.write_at(label.sector * SECTOR_SIZE as u64, &[0u8; SECTOR_SIZE])?;
    dev.flush()
}

/// Extents a new PV of `dev_bytes` offers with `extent_sectors` extents.
pub fn pe_count(dev_bytes: u64, extent_sectors: u32) -> u32 {
    let data = dev_bytes.saturating_sub(PE_START_BYTES) / 512;
    (data / extent_sectors as u64).min(u32::MAX as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;
    use crate::scan::{MdaState, Scan};

    #[test]
    fn pvcreate_layout() {
        let mut dev = MemDevice::new("m", 8 << 20);
        dev.data.fill(0xff);
        let uuid = Uuid::generate().unwrap();
        let l = create(&mut dev, uuid).unwrap();
        assert!(dev.data[..512].iter().all(|&b| b == 0));
        assert!(dev.data[1024..2048].iter().all(|&b| b == 0));
        assert!(dev.data[2048..4096].iter().all(|&b| b == 0xff), "not touched, as lvm2");
        assert!(dev.data[4608..8192].iter().all(|&b| b == 0));
        assert!(dev.data[8192..].iter().all(|&b| b == 0xff));
        let scan = Scan::opened(&[&dev]);
        assert_eq!(scan.pvs.len(), 1);
        assert_eq!(scan.pvs[0].label, l);
        assert!(matches!(scan.pvs[0].mdas[0].1, MdaState::Empty(_)));
        let l2 = set_used(&mut dev, &l, true).unwrap();
        assert!(l2.in_use());
        let l3 = orphan(&mut dev, &l2).unwrap();
        assert!(!l3.in_use());
        remove(&mut dev, &l3).unwrap();
        assert!(Scan::opened(&[&dev]).pvs.is_empty());
        let mut small = MemDevice::new("s", (2 << 20) - 512);
        assert!(create(&mut small, uuid).is_err());
        assert!(small.data.iter().all(|&b| b == 0), "nothing written");
        assert_eq!(pe_count(300 << 20, 8192), 74);
    }
}
