//! Signatures of what else a device (or an LV's extents) may hold: filesystems, swap, LUKS,
//! partition tables. pvcreate refuses to write over one unless told to wipe it, and lvcreate
//! wipes them from a new LV, as lvm2 does with libblkid. Detection is our own table of the
//! common magics (no dependence on what is installed); wiping zeroes the magic bytes, as
//! wipefs does, so the rest of the old data is left alone.

use crate::device::BlockDevice;
use crate::error::Result;

/// One signature found: what it is, where its magic lies (relative to the probed range).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// blkid's name for it: ext4, xfs, btrfs, swap, crypto_LUKS, dos, gpt.
    pub kind: &'static str,
    /// Offset of the magic from the start of the probed range.
    pub offset: u64,
    /// Length of the magic (what wiping zeroes).
    pub len: usize,
}

/// Magic bytes at a fixed offset.
struct Magic {
    kind: &'static str,
    offset: u64,
    bytes: &'static [u8],
}

const MAGICS: &[Magic] = &[
    Magic { kind: "xfs", offset: 0, bytes: b"XFSB" },
    Magic { kind: "crypto_LUKS", offset: 0, bytes: b"LUKS\xba\xbe" },
    Magic { kind: "btrfs", offset: 0x10040, bytes: b"_BHRfS_M" },
    Magic { kind: "swap", offset: 4096 - 10, bytes: b"SWAPSPACE2" },
    Magic { kind: "swap", offset: 4096 - 10, bytes: b"SWAP-SPACE" },
    Magic { kind: "gpt", offset: 512, bytes: b"EFI PART" },
];

/// ext2/3/4: the superblock's magic 0xEF53 at 1024 + 0x38; the feature flags tell them apart.
fn ext_kind(sb: &[u8]) -> &'static str {
    let compat = u32::from_le_bytes(sb[0x5c..0x60].try_into().unwrap());
    let incompat = u32::from_le_bytes(sb[0x60..0x64].try_into().unwrap());
    const HAS_JOURNAL: u32 = 0x4;
    const EXT4_INCOMPAT: u32 = 0x40 | 0x80 | 0x200 | 0x2000; // extents, 64bit, flex_bg, csum_seed
    if incompat & EXT4_INCOMPAT != 0 {
        "ext4"
    } else if compat & HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    }
}

/// The signatures in `len` bytes of `dev` from `base` (the whole device, or an LV's extents).
pub fn probe(dev: &dyn BlockDevice, base: u64, len: u64) -> Result<Vec<Signature>> {
    let len = len.min(dev.size().saturating_sub(base));
    // Everything we look at lies in the first 68 KiB.
    let head_len = len.min(0x11000) as usize;
    let mut head = vec![0u8; head_len];
    dev.read_at(base, &mut head)?;
    let mut found = vec![];
    for m in MAGICS {
        let (o, n) = (m.offset as usize, m.bytes.len());
        if head.get(o..o + n) == Some(m.bytes) {
            found.push(Signature { kind: m.kind, offset: m.offset, len: n });
        }
    }
    if head.get(0x438..0x43a) == Some(&[0x53, 0xef]) {
        found.push(Signature { kind: ext_kind(&head[1024..2048]), offset: 0x438, len: 2 });
    }
    // An MBR (dos partition table) has 0x55AA at 510; a GPT disk has one too (protective).
    if head.get(510..512) == Some(&[0x55, 0xaa]) && head.get(446..510).is_some_and(|p| p.iter().any(|&b| b != 0)) {
        found.push(Signature { kind: "dos", offset: 510, len: 2 });
    }
    // GPT's backup header in the last sector.
    if found.iter().any(|s| s.kind == "gpt") && len >= 1024 {
        let mut last = [0u8; 8];
        dev.read_at(base + len - 512, &mut last)?;
        if &last == b"EFI PART" {
            found.push(Signature { kind: "gpt", offset: len - 512, len: 8 });
        }
    }
    found.sort_by_key(|s| s.offset);
    Ok(found)
}

/// Zeroes the magic of each signature (`base` as given to [`probe`]). The caller flushes,
/// once for all its writes (pvcreate's label write follows; lvcreate also zeroes 4 KiB).
pub fn wipe(dev: &mut dyn BlockDevice, base: u64, sigs: &[Signature]) -> Result<()> {
    for s in sigs {
        dev.write_at(base + s.offset, &vec![0u8; s.len])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDevice;

    #[test]
    fn finds_and_wipes_common_magics() {
        let mut d = MemDevice::new("m", 1 << 20);
        assert!(probe(&d, 0, 1 << 20).unwrap().is_empty());
        d.data[0x438] = 0x53;
        d.data[0x439] = 0xef;
        d.data[1024 + 0x60] = 0x40;
        d.data[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
        d.data[4086..4096].copy_from_slice(b"SWAPSPACE2");
        let s = probe(&d, 0, 1 << 20).unwrap();
        let kinds: Vec<_> = s.iter().map(|s| (s.kind, s.offset)).collect();
        assert_eq!(kinds, vec![("ext4", 0x438), ("swap", 4086), ("btrfs", 0x10040)]);
        wipe(&mut d, 0, &s).unwrap();
        assert!(probe(&d, 0, 1 << 20).unwrap().is_empty());
        assert_eq!(d.data[1024 + 0x60], 0x40, "only the magic is wiped");
        // At an offset (an LV's extents), and a range too short for the btrfs superblock.
        d.data[8192..8196].copy_from_slice(b"XFSB");
        assert_eq!(probe(&d, 8192, 4096).unwrap(), vec![Signature { kind: "xfs", offset: 0, len: 4 }]);
    }
}
