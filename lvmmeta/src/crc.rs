//! LVM's CRC-32 (`calc_crc` in lvm2): the reflected zlib polynomial, seeded with 0xF597A6CF and
//! without the final inversion. crc32fast inverts on entry and exit, so seeding it with the
//! inverted seed and inverting its result gives LVM's value.

/// The seed lvm2 uses for every checksum (`INITIAL_CRC`).
pub const INITIAL_CRC: u32 = 0xF597_A6CF;

/// LVM's checksum of `buf`, as stored in labels, mda headers and raw_locn slots.
pub fn lvm_crc(buf: &[u8]) -> u32 {
    lvm_crc_update(INITIAL_CRC, buf)
}

/// Continues an LVM checksum over more bytes (used for wrapped metadata text).
pub fn lvm_crc_update(crc: u32, buf: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(!crc);
    h.update(buf);
    !h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time reference, written from the definition (reflected poly 0xEDB88320, no xor-out).
    fn reference(mut crc: u32, buf: &[u8]) -> u32 {
        for &b in buf {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        crc
    }

    #[test]
    fn matches_reference() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(lvm_crc(&data), reference(INITIAL_CRC, &data));
        assert_eq!(lvm_crc(b""), INITIAL_CRC);
        let (a, b) = data.split_at(333);
        assert_eq!(lvm_crc_update(lvm_crc(a), b), lvm_crc(&data));
    }

    /// Metadata text and its checksum as written by real lvm2 2.03.16 (raw_locn[0].checksum).
    #[test]
    fn matches_lvm2_metadata_checksum() {
        let text = include_bytes!("../tests/data/lvm2-2.03.16-vgA.txt");
        let mut with_nul = text.to_vec();
        with_nul.push(0);
        assert_eq!(lvm_crc(&with_nul), 0x72b8_04ec);
    }
}
