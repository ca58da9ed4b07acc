//! A metadata area (mda): a 512-byte header at the area start (checksum, magic, version, start,
//! size, and the raw_locn slots: [0] committed, [1] precommitted) followed by a circular buffer
//! of metadata text. A new copy is written after the committed one (512-byte aligned, wrapping
//! to just after the header), then pointed to by slot 1 (precommit), then by slot 0 (commit).
//! A copy may use at most half the buffer minus 512 bytes, so the old and the new copy always
//! fit side by side and a crash at any write leaves the old or the new copy committed.

use crate::crc::{lvm_crc, lvm_crc_update};
use crate::device::{read_exact, BlockDevice};
use crate::error::{At, Error, Result};
use crate::label::DiskLocn;

pub const MDA_HEADER_SIZE: u64 = 512;
pub const FMTT_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
pub const FMTT_VERSION: u32 = 1;
/// raw_locn flag: this mda is ignored (`pvchange --metadataignore`); lvm neither reads nor writes it.
pub const RAW_LOCN_IGNORED: u32 = 0x1;
/// Alignment of every copy's start in the buffer.
const TEXT_ALIGN: u64 = 512;

/// Where one copy of the text is: offset from the area start, size in bytes including the
/// trailing NUL, checksum of those bytes, flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawLocn {
    pub offset: u64,
    pub size: u64,
    pub checksum: u32,
    pub flags: u32,
}

impl RawLocn {
    pub fn is_empty(&self) -> bool {
        self.offset == 0 && self.size == 0
    }

    fn decode(b: &[u8]) -> RawLocn {
        RawLocn {
            offset: u64::from_le_bytes(b[0..8].try_into().unwrap()),
            size: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            checksum: u32::from_le_bytes(b[16..20].try_into().unwrap()),
            flags: u32::from_le_bytes(b[20..24].try_into().unwrap()),
        }
    }

    fn encode(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..20].copy_from_slice(&self.checksum.to_le_bytes());
        b[20..24].copy_from_slice(&self.flags.to_le_bytes());
    }
}

/// The mda header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdaHeader {
    /// Absolute byte offset of this header on the device.
    pub start: u64,
    /// Size of the whole area, header included.
    pub size: u64,
    pub committed: RawLocn,
    pub precommitted: RawLocn,
}

/// Largest text (NUL included) one copy may take in an area of `mda_size` bytes.
pub fn max_text_size(mda_size: u64) -> u64 {
    (mda_size.saturating_sub(MDA_HEADER_SIZE) / 2).saturating_sub(512)
}

impl MdaHeader {
    /// The header of a fresh area, as pvcreate writes it: no metadata yet.
    pub fn new(start: u64, size: u64) -> MdaHeader {
        MdaHeader { start, size, committed: RawLocn::default(), precommitted: RawLocn::default() }
    }

    /// Decodes and validates a header read at `found_at` on `device`.
    pub fn decode(buf: &[u8], found_at: u64, device: &str) -> Result<MdaHeader> {
        let at = At { device: device.to_string(), offset: found_at };
        if buf.len() < MDA_HEADER_SIZE as usize {
            return Err(Error::Truncated { at, what: "mda header", need: MDA_HEADER_SIZE, have: buf.len() as u64 });
        }
        let buf = &buf[..MDA_HEADER_SIZE as usize];
        // Magic first: a zeroed or foreign sector is "no header here", more useful than a CRC.
        if &buf[4..20] != FMTT_MAGIC {
            return Err(Error::MdaMagic { at });
        }
        let stored = u32::from_le_bytes(buf[0..4].try_into().unwrap());
        let computed = lvm_crc(&buf[4..]);
        if stored != computed {
            return Err(Error::MdaChecksum { at, stored, computed });
        }
        let version = u32::from_le_bytes(buf[20..24].try_into().unwrap());
        if version != FMTT_VERSION {
            return Err(Error::MdaVersion { at, found: version });
        }
        let start = u64::from_le_bytes(buf[24..32].try_into().unwrap());
        let size = u64::from_le_bytes(buf[32..40].try_into().unwrap());
        let layout = |reason: String| Error::MdaLayout { at: at.clone(), reason };
        if start != found_at {
            return Err(layout(format!("records start {start}")));
        }
        if size < 2 * MDA_HEADER_SIZE {
            return Err(layout(format!("area size {size} too small")));
        }
        let hdr = MdaHeader {
            start,
            size,
            committed: RawLocn::decode(&buf[40..64]),
            precommitted: RawLocn::decode(&buf[64..88]),
        };
        for (name, l) in [("committed", hdr.committed), ("precommitted", hdr.precommitted)] {
            if !l.is_empty() && (l.offset < MDA_HEADER_SIZE || l.offset >= size || l.size > size - MDA_HEADER_SIZE) {
                return Err(layout(format!(
                    "{name} text at offset {} size {} lies outside the area",
                    l.offset, l.size
                )));
            }
        }
        Ok(hdr)
    }

    pub fn encode(&self) -> [u8; MDA_HEADER_SIZE as usize] {
        let mut b = [0u8; MDA_HEADER_SIZE as usize];
        b[4..20].copy_from_slice(FMTT_MAGIC);
        b[20..24].copy_from_slice(&FMTT_VERSION.to_le_bytes());
        b[24..32].copy_from_slice(&self.start.to_le_bytes());
        b[32..40].copy_from_slice(&self.size.to_le_bytes());
        self.committed.encode(&mut b[40..64]);
        self.precommitted.encode(&mut b[64..88]);
        let crc = lvm_crc(&b[4..]);
        b[0..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The committed copy, if there is one and the area is not ignored.
    pub fn committed_copy(&self) -> Option<RawLocn> {
        let c = self.committed;
        (!c.is_empty() && c.flags & RAW_LOCN_IGNORED == 0).then_some(c)
    }

    pub fn is_ignored(&self) -> bool {
        self.committed.flags & RAW_LOCN_IGNORED != 0
    }

    /// The header after a precommit of `new`: slot 1 points to it, slot 0 is unchanged.
    pub fn precommit(&self, new: RawLocn) -> MdaHeader {
        let mut h = self.cleared_if_unused();
        h.precommitted = RawLocn { flags: 0, ..new };
        h
    }

    /// The header after a commit of `new`: slot 0 points to it, slot 1 is zeroed.
    pub fn commit(&self, new: RawLocn) -> MdaHeader {
        let mut h = self.cleared_if_unused();
        h.committed = RawLocn { flags: h.committed.flags, ..new };
        h.precommitted = RawLocn::default();
        h
    }

    /// lvm2 zeroes both slots first when slot 0 holds nothing usable.
    fn cleared_if_unused(&self) -> MdaHeader {
        let mut h = self.clone();
        if h.committed.is_empty() || h.is_ignored() {
            let flags = h.committed.flags;
            h.committed = RawLocn { flags, ..RawLocn::default() };
            h.precommitted = RawLocn::default();
        }
        h
    }
}

/// Reads and validates the header of the area at `area`.
pub fn read_header(dev: &dyn BlockDevice, area: DiskLocn) -> Result<MdaHeader> {
    let buf = read_exact(dev, area.offset, MDA_HEADER_SIZE as usize, "mda header")?;
    let hdr = MdaHeader::decode(&buf, area.offset, dev.name())?;
    if hdr.size > area.size {
        return Err(Error::MdaLayout {
            at: At { device: dev.name().to_string(), offset: area.offset },
            reason: format!("header size {} exceeds the area of {} bytes in the label", hdr.size, area.size),
        });
    }
    Ok(hdr)
}

pub fn write_header(dev: &mut dyn BlockDevice, hdr: &MdaHeader) -> Result<()> {
    dev.write_at(hdr.start, &hdr.encode())
}

/// Reads the text `locn` points to (both parts if it wraps) and checks its checksum. Returns the
/// bytes including the trailing NUL.
pub fn read_text(dev: &dyn BlockDevice, hdr: &MdaHeader, locn: RawLocn) -> Result<Vec<u8>> {
    let first_len = locn.size.min(hdr.size - locn.offset);
    let wrap = locn.size - first_len;
    let mut text = read_exact(dev, hdr.start + locn.offset, first_len as usize, "metadata text")?;
    if wrap > 0 {
        text.extend(read_exact(dev, hdr.start + MDA_HEADER_SIZE, wrap as usize, "wrapped metadata text")?);
    }
    let computed = lvm_crc(&text);
    if computed != locn.checksum {
        let at = At { device: dev.name().to_string(), offset: hdr.start + locn.offset };
        return Err(Error::TextChecksum { at, stored: locn.checksum, computed });
    }
    Ok(text)
}

/// A new copy of the text laid out in an area but not yet pointed to by any slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextWrite {
    /// The location to precommit and commit.
    pub locn: RawLocn,
    /// (absolute offset, bytes) to write, in order; padded with zeros to 512-byte boundaries.
    pub writes: Vec<(u64, Vec<u8>)>,
}

/// Lays out `text` (NUL included) after the committed copy of `hdr`, as lvm2 does. Fails,
/// before anything is written, when it is larger than [`max_text_size`] or would overlap the
/// committed copy.
pub fn plan_text_write(hdr: &MdaHeader, text: &[u8], device: &str) -> Result<TextWrite> {
    let size = hdr.size;
    let new_size = text.len() as u64;
    let max = max_text_size(size);
    if new_size > max || new_size == 0 {
        return Err(Error::MetadataTooLarge { device: device.to_string(), size: new_size, max });
    }
    // The committed copy, as first/last byte offsets within the area (last inclusive).
    let old = hdr.committed_copy().map(|o| {
        let wrap = (o.offset + o.size).saturating_sub(size);
        let last = if wrap > 0 { wrap + MDA_HEADER_SIZE - 1 } else { o.offset + o.size - 1 };
        (o.offset, last, wrap > 0)
    });
    let new_start = match old {
        None => MDA_HEADER_SIZE,
        Some((_, old_last, _)) if size - old_last < TEXT_ALIGN => MDA_HEADER_SIZE,
        Some((_, old_last, _)) => {
            let s = (old_last + 1).div_ceil(TEXT_ALIGN) * TEXT_ALIGN;
            if s > size - TEXT_ALIGN {
                MDA_HEADER_SIZE
            } else {
                s
            }
        }
    };
    let new_wrap = (new_start + new_size).saturating_sub(size);
    let new_last = if new_wrap > 0 { new_wrap + MDA_HEADER_SIZE - 1 } else { new_start + new_size - 1 };
    if let Some((old_start, old_last, old_wraps)) = old {
        let ok = match (old_wraps, new_wrap > 0) {
            (true, true) => false,
            (false, false) => new_start > old_last || new_last < old_start,
            (true, false) => old_last < new_start && new_last < old_start,
            (false, true) => new_last < old_start && old_last < new_start,
        };
        if !ok {
            return Err(Error::MetadataTooLarge { device: device.to_string(), size: new_size, max });
        }
    }
    let abs_start = hdr.start + new_start;
    let area_end = hdr.start + size;
    let pad_to = |start: u64, len: u64| -> u64 {
        let end = (start + len).div_ceil(TEXT_ALIGN) * TEXT_ALIGN;
        end.min(area_end) - start
    };
    let mut writes = vec![];
    if new_wrap == 0 {
        let len = pad_to(abs_start, new_size);
        let mut buf = text.to_vec();
        buf.resize(len as usize, 0);
        writes.push((abs_start, buf));
    } else {
        let first = (new_size - new_wrap) as usize;
        writes.push((abs_start, text[..first].to_vec()));
        let second_start = hdr.start + MDA_HEADER_SIZE;
        let len = pad_to(second_start, new_wrap);
        let mut buf = text[first..].to_vec();
        buf.resize(len as usize, 0);
        writes.push((second_start, buf));
    }
    let checksum = lvm_crc_update(crate::crc::INITIAL_CRC, text);
    Ok(TextWrite { locn: RawLocn { offset: new_start, size: new_size, checksum, flags: 0 }, writes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    /// mda header bytes written by real lvm2 2.03.16 (slot 0 after 4 commits).
    fn lvm2_header() -> [u8; 512] {
        let h = MdaHeader {
            start: 4096,
            size: 1044480,
            committed: RawLocn { offset: 5120, size: 1630, checksum: 1924662508, flags: 0 },
            precommitted: RawLocn::default(),
        };
        h.encode()
    }

    #[test]
    fn header_matches_lvm2_checksum() {
        let b = lvm2_header();
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 1016760770);
        let h = MdaHeader::decode(&b, 4096, "t").unwrap();
        assert_eq!(h.committed.offset, 5120);
    }

    #[test]
    fn header_errors() {
        let b = lvm2_header();
        assert!(matches!(MdaHeader::decode(&b, 8192, "t"), Err(Error::MdaLayout { .. })));
        let mut c = b;
        c[50] ^= 4;
        assert!(matches!(MdaHeader::decode(&c, 4096, "t"), Err(Error::MdaChecksum { .. })));
        let mut c = b;
        c[5] = b'X';
        assert!(matches!(MdaHeader::decode(&c, 4096, "t"), Err(Error::MdaMagic { .. })));
        assert!(matches!(MdaHeader::decode(&[0u8; 512], 4096, "t"), Err(Error::MdaMagic { .. })));
    }

    #[test]
    fn max_size_rule() {
        assert_eq!(max_text_size(1044480), 521472);
    }

    fn apply(dev: &mut MemDevice, hdr: &MdaHeader, text: &[u8]) -> MdaHeader {
        let w = plan_text_write(hdr, text, "t").unwrap();
        for (off, data) in &w.writes {
            assert_eq!((off + data.len() as u64) % 512, 0, "writes end on a sector boundary");
            dev.write_at(*off, data).unwrap();
        }
        hdr.precommit(w.locn).commit(w.locn)
    }

    #[test]
    fn circular_buffer_wraps_and_reads_back() {
        let size = 8192u64;
        let mut dev = MemDevice::new("t", 4096 + size as usize);
        let mut hdr = MdaHeader::new(4096, size);
        let mut prev: Option<RawLocn> = None;
        for i in 0..40u32 {
            let len = 300 + (i as usize * 97) % (max_text_size(size) as usize - 300);
            let mut text: Vec<u8> = (0..len - 1).map(|j| b'a' + ((j as u32 + i) % 26) as u8).collect();
            text.push(0);
            hdr = apply(&mut dev, &hdr, &text);
            assert_eq!(hdr.committed.offset % 512, 0);
            assert_eq!(read_text(&dev, &hdr, hdr.committed).unwrap(), text);
            if let Some(p) = prev {
                assert_ne!(p.offset, hdr.committed.offset);
            }
            prev = Some(hdr.committed);
        }
    }

    #[test]
    fn lvm2_offsets() {
        // lvm2 wrote 564 bytes at 512 then real lvcreate put the next copy at 1536.
        let hdr = MdaHeader::new(4096, 1044480);
        let t1 = vec![b'x'; 564];
        let w = plan_text_write(&hdr, &t1, "t").unwrap();
        assert_eq!(w.locn.offset, 512);
        let hdr = hdr.commit(w.locn);
        let w2 = plan_text_write(&hdr, &t1, "t").unwrap();
        assert_eq!(w2.locn.offset, 1536);
    }

    #[test]
    fn too_large_is_refused() {
        let hdr = MdaHeader::new(4096, 8192);
        let big = vec![1u8; max_text_size(8192) as usize + 1];
        assert!(matches!(plan_text_write(&hdr, &big, "t"), Err(Error::MetadataTooLarge { .. })));
    }

    #[test]
    fn bad_text_checksum() {
        let mut dev = MemDevice::new("t", 4096 + 8192);
        let hdr = apply(&mut dev, &MdaHeader::new(4096, 8192), b"abc\0");
        dev.data[4096 + 512] = b'X';
        assert!(matches!(read_text(&dev, &hdr, hdr.committed), Err(Error::TextChecksum { .. })));
    }
}
