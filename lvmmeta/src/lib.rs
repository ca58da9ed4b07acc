//! lvmmeta: LVM2's on-disk format, shared by lvtool (which reads and writes it) and lockd (which
//! reads it to learn where a shared VG's leases are, instead of believing a client).
//!
//! Each module is one concept of lvm2's format:
//! - [`label`]: the PV label in sector 1 and its pv_header (areas, extension flags).
//! - [`mda`]: metadata area header, circular text buffer, precommit/commit slots.
//! - [`crc`]: LVM's CRC-32 variant used by both.
//! - [`config`]: libdm's config language (parser and writer), the syntax of metadata text.
//! - [`vg`]: the VG model read from and written to metadata text, byte-compatible with lvm2.
//! - [`uuid`]: LVM's 32-character ids.
//! - [`device`]: byte access to block devices, loop devices, files (O_DIRECT where it matters).
//! - [`scan`]: PVs and VGs found on a list of devices; choosing the newest copy.
//! - [`commit`]: writing a new VG version to every metadata area, crash-safe.
//! - [`signature`]: filesystem, swap, LUKS and partition-table magics (found, wiped).
//! - [`lockarea`]: the shared VG's `lvmlock` LV: lease layout, slots, and its map on the PVs.

pub mod commit;
pub mod config;
pub mod crc;
pub mod device;
pub mod error;
pub mod label;
pub mod lockarea;
pub mod mda;
pub mod scan;
pub mod signature;
pub mod uuid;
pub mod vg;

pub use error::{Error, Result};
