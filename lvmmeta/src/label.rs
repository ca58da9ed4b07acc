//! The PV label: a 512-byte sector (sector 1 as pvcreate writes it, any of sectors 0..3 on read)
//! holding `label_header` (LABELONE, its own sector number, CRC, type "LVM2 001") and the
//! `pv_header`: PV UUID, device size, the data-area and metadata-area lists and the extension
//! (version 2: flags with PV_EXT_USED, bootloader-area list). All integers little-endian; every
//! list is ended by an entry whose offset is 0.

use crate::crc::lvm_crc;
use crate::device::{read_exact, BlockDevice};
use crate::error::{At, Error, Result};
use crate::uuid::Uuid;

pub const SECTOR_SIZE: usize = 512;
/// The label may sit in any of the first four sectors.
pub const LABEL_SCAN_SECTORS: u64 = 4;
/// The sector pvcreate writes the label to.
pub const DEFAULT_LABEL_SECTOR: u64 = 1;
pub const LABEL_ID: &[u8; 8] = b"LABELONE";
pub const LABEL_TYPE: &[u8; 8] = b"LVM2 001";
/// Size of label_header; pv_header follows it.
const LABEL_HEADER_SIZE: usize = 32;
/// The extension version lvm2 writes (1: bootloader areas, 2: PV_EXT_USED).
pub const PV_HEADER_EXTENSION_VSN: u32 = 2;
/// Extension flag: the PV belongs to a VG.
pub const PV_EXT_USED: u32 = 0x1;

/// An area on the device: byte offset and byte size (size 0 in the data-area list: to the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskLocn {
    pub offset: u64,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvHeaderExtension {
    pub version: u32,
    pub flags: u32,
    pub bootloader_areas: Vec<DiskLocn>,
}

/// A decoded PV label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// The sector the label is in.
    pub sector: u64,
    pub pv_uuid: Uuid,
    /// Device size in bytes as recorded by pvcreate.
    pub device_size: u64,
    pub data_areas: Vec<DiskLocn>,
    pub metadata_areas: Vec<DiskLocn>,
    /// None for PVs written before the extension existed (lvm2 warns "old PV header").
    pub extension: Option<PvHeaderExtension>,
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn put_list(b: &mut [u8], pos: &mut usize, list: &[DiskLocn]) -> Result<()> {
    for l in list {
        if l.offset == 0 {
            return Err(Error::Invalid("an area at offset 0 cannot be recorded in a PV label".into()));
        }
        b[*pos..*pos + 8].copy_from_slice(&l.offset.to_le_bytes());
        b[*pos + 8..*pos + 16].copy_from_slice(&l.size.to_le_bytes());
        *pos += 16;
    }
    *pos += 16; // the terminator stays zero
    Ok(())
}

/// Checksum of a label sector: everything after the crc field.
pub fn label_crc(sector: &[u8]) -> u32 {
    lvm_crc(&sector[20..SECTOR_SIZE])
}

impl Label {
    /// A label for a new PV with one data area and the given metadata areas, extension v2.
    pub fn new(pv_uuid: Uuid, device_size: u64, data_start: u64, metadata_areas: Vec<DiskLocn>, used: bool) -> Label {
        Label {
            sector: DEFAULT_LABEL_SECTOR,
            pv_uuid,
            device_size,
            data_areas: vec![DiskLocn { offset: data_start, size: 0 }],
            metadata_areas,
            extension: Some(PvHeaderExtension {
                version: PV_HEADER_EXTENSION_VSN,
                flags: if used { PV_EXT_USED } else { 0 },
                bootloader_areas: vec![],
            }),
        }
    }

    /// True when the extension marks the PV as used by a VG.
    pub fn in_use(&self) -> bool {
        self.extension.as_ref().is_some_and(|e| e.flags & PV_EXT_USED != 0)
    }

    /// Decodes one 512-byte sector that starts with LABELONE. `sector` is where it was read,
    /// `device` names it in errors.
    pub fn decode(buf: &[u8], sector: u64, device: &str) -> Result<Label> {
        let at = At { device: device.to_string(), offset: sector * SECTOR_SIZE as u64 };
        let buf = buf.get(..SECTOR_SIZE).ok_or_else(|| Error::Truncated {
            at: at.clone(),
            what: "label sector",
            need: SECTOR_SIZE as u64,
            have: buf.len() as u64,
        })?;
        if &buf[0..8] != LABEL_ID {
            return Err(Error::NoLabel { device: device.to_string() });
        }
        let stored_sector = u64_at(buf, 8);
        if stored_sector != sector {
            return Err(Error::LabelSector { at, stored: stored_sector });
        }
        let stored = u32_at(buf, 16);
        let computed = label_crc(buf);
        if stored != computed {
            return Err(Error::LabelChecksum { at, stored, computed });
        }
        if &buf[24..32] != LABEL_TYPE {
            let reason = format!("unknown label type {:?}", String::from_utf8_lossy(&buf[24..32]));
            return Err(Error::LabelFormat { at, reason });
        }
        let bad = |reason: &str| Error::LabelFormat { at: at.clone(), reason: reason.to_string() };
        let mut pos = u32_at(buf, 20) as usize;
        if !(LABEL_HEADER_SIZE..=SECTOR_SIZE - 40).contains(&pos) {
            return Err(bad("pv_header offset out of the sector"));
        }
        let pv_uuid = Uuid::from_bytes(&buf[pos..pos + 32])?;
        let device_size = u64_at(buf, pos + 32);
        pos += 40;
        let read_list = |pos: &mut usize, what: &str| -> Result<Vec<DiskLocn>> {
            let mut list = vec![];
            loop {
                if *pos + 16 > SECTOR_SIZE {
                    return Err(bad(&format!("{what} list runs past the label sector")));
                }
                let l = DiskLocn { offset: u64_at(buf, *pos), size: u64_at(buf, *pos + 8) };
                *pos += 16;
                if l.offset == 0 {
                    return Ok(list);
                }
                list.push(l);
            }
        };
        let data_areas = read_list(&mut pos, "data area")?;
        let metadata_areas = read_list(&mut pos, "metadata area")?;
        let mut extension = None;
        if pos + 8 <= SECTOR_SIZE && u32_at(buf, pos) != 0 {
            let version = u32_at(buf, pos);
            let flags = u32_at(buf, pos + 4);
            pos += 8;
            let bootloader_areas = read_list(&mut pos, "bootloader area")?;
            extension = Some(PvHeaderExtension { version, flags, bootloader_areas });
        }
        Ok(Label { sector, pv_uuid, device_size, data_areas, metadata_areas, extension })
    }

    /// Encodes the label sector as lvm2 writes it (unused bytes zero).
    pub fn encode(&self) -> Result<[u8; SECTOR_SIZE]> {
        let mut b = [0u8; SECTOR_SIZE];
        b[0..8].copy_from_slice(LABEL_ID);
        b[8..16].copy_from_slice(&self.sector.to_le_bytes());
        b[20..24].copy_from_slice(&(LABEL_HEADER_SIZE as u32).to_le_bytes());
        b[24..32].copy_from_slice(LABEL_TYPE);
        let mut pos = LABEL_HEADER_SIZE;
        b[pos..pos + 32].copy_from_slice(self.pv_uuid.as_bytes());
        b[pos + 32..pos + 40].copy_from_slice(&self.device_size.to_le_bytes());
        pos += 40;
        let ext_len = self.extension.as_ref().map_or(0, |e| 8 + 16 * (e.bootloader_areas.len() + 1));
        let need = pos + 16 * (self.data_areas.len() + self.metadata_areas.len() + 2) + ext_len;
        if need > SECTOR_SIZE {
            return Err(Error::Invalid(format!("PV label needs {need} bytes, more than one sector")));
        }
        put_list(&mut b, &mut pos, &self.data_areas)?;
        put_list(&mut b, &mut pos, &self.metadata_areas)?;
        if let Some(ext) = &self.extension {
            if ext.version == 0 {
                return Err(Error::Invalid("PV header extension version 0 would read as no extension".into()));
            }
            b[pos..pos + 4].copy_from_slice(&ext.version.to_le_bytes());
            b[pos + 4..pos + 8].copy_from_slice(&ext.flags.to_le_bytes());
            pos += 8;
            put_list(&mut b, &mut pos, &ext.bootloader_areas)?;
        }
        let crc = label_crc(&b);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Finds the label in the first four sectors of a device. `Err(NoLabel)` when there is none;
    /// a LABELONE sector that fails its checks is an error, never skipped silently.
    pub fn read(dev: &dyn BlockDevice) -> Result<Label> {
        let len = (LABEL_SCAN_SECTORS as usize * SECTOR_SIZE).min(dev.size() as usize);
        if len < 2 * SECTOR_SIZE {
            return Err(Error::NoLabel { device: dev.name().to_string() });
        }
        let buf = read_exact(dev, 0, len, "label sectors")?;
        Label::find(&buf, dev.name())
    }

    /// Label search over the first sectors of a device, already read into `buf`.
    pub fn find(buf: &[u8], device: &str) -> Result<Label> {
        let mut first_error = None;
        for s in 0..LABEL_SCAN_SECTORS {
            let start = s as usize * SECTOR_SIZE;
            let Some(sector) = buf.get(start..start + SECTOR_SIZE) else { break };
            if &sector[0..8] != LABEL_ID {
                continue;
            }
            match Label::decode(sector, s, device) {
                Ok(l) => return Ok(l),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| Error::NoLabel { device: device.to_string() }))
    }

    /// Writes the label into its sector.
    pub fn write(&self, dev: &mut dyn BlockDevice) -> Result<()> {
        let b = self.encode()?;
        dev.write_at(self.sector * SECTOR_SIZE as u64, &b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Label sector of a PV made by real pvcreate/vgcreate 2.03.16 (64 MiB loop file, in a VG).
    fn lvm2_label() -> Vec<u8> {
        let mut s = vec![0u8; SECTOR_SIZE];
        s[0..8].copy_from_slice(b"LABELONE");
        s[8] = 1;
        s[20] = 32;
        s[24..32].copy_from_slice(b"LVM2 001");
        s[32..64].copy_from_slice(b"iZLV6iT12XJVybv9BX8kX3RQfiktizqB");
        s[64..72].copy_from_slice(&67108864u64.to_le_bytes());
        s[72..80].copy_from_slice(&1048576u64.to_le_bytes());
        s[104..112].copy_from_slice(&4096u64.to_le_bytes());
        s[112..120].copy_from_slice(&1044480u64.to_le_bytes());
        s[136] = 2;
        s[140] = 1;
        s[16..20].copy_from_slice(&70190294u32.to_le_bytes()); // crc lvm2 stored
        s
    }

    #[test]
    fn decodes_lvm2_label_and_reencodes_identically() {
        let raw = lvm2_label();
        let l = Label::decode(&raw, 1, "t").unwrap();
        assert_eq!(l.pv_uuid.bare(), "iZLV6iT12XJVybv9BX8kX3RQfiktizqB");
        assert_eq!(l.device_size, 64 << 20);
        assert_eq!(l.data_areas, vec![DiskLocn { offset: 1 << 20, size: 0 }]);
        assert_eq!(l.metadata_areas, vec![DiskLocn { offset: 4096, size: 1044480 }]);
        assert!(l.in_use());
        assert_eq!(l.extension.as_ref().unwrap().version, 2);
        assert_eq!(&l.encode().unwrap()[..], &raw[..]);
    }

    #[test]
    fn bad_crc_sector_and_type_are_errors() {
        let mut raw = lvm2_label();
        raw[100] ^= 1;
        assert!(matches!(Label::decode(&raw, 1, "t"), Err(Error::LabelChecksum { .. })));
        let raw = lvm2_label();
        assert!(matches!(Label::decode(&raw, 2, "t"), Err(Error::LabelSector { stored: 1, .. })));
        let mut l = Label::decode(&raw, 1, "t").unwrap();
        l.extension = None;
        let enc = l.encode().unwrap();
        assert_eq!(Label::decode(&enc, 1, "t").unwrap().extension, None);
    }

    #[test]
    fn find_scans_four_sectors() {
        let raw = lvm2_label();
        let mut dev = vec![0u8; 2048];
        dev[512..1024].copy_from_slice(&raw);
        assert_eq!(Label::find(&dev, "t").unwrap().sector, 1);
        assert!(matches!(Label::find(&[0u8; 2048], "t"), Err(Error::NoLabel { .. })));
    }
}
