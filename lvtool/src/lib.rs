//! lvtool: LVM2-compatible volume management for sanlvm.
//!
//! The on-disk layer, each module one concept of lvm2's format:
//! - [`label`]: the PV label in sector 1 and its pv_header (areas, extension flags).
//! - [`mda`]: metadata area header, circular text buffer, precommit/commit slots.
//! - [`crc`]: LVM's CRC-32 variant used by both.
//! - [`config`]: libdm's config language (parser and writer), the syntax of metadata text.
//! - [`vg`]: the VG model read from and written to metadata text, byte-compatible with lvm2.
//! - [`uuid`]: LVM's 32-character ids.
//! - [`device`]: byte access to block devices, loop devices, files (O_DIRECT where it matters).
//! - [`scan`]: PVs and VGs found on a list of devices; choosing the newest copy.
//! - [`commit`]: writing a new VG version to every metadata area, crash-safe.
//! - [`report`]: `pvs`/`vgs`/`lvs` style reports.
//! - [`session`]: where every command takes its locks; [`lockd_locker`]: lockd as the locker.

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85 (rust-version).

pub mod activate;
pub mod alloc;
pub mod cli;
pub mod commit;
pub mod config;
pub mod crc;
pub mod device;
pub mod dm;
pub mod error;
pub mod label;
pub mod lockarea;
pub mod lockd_locker;
pub mod mda;
pub mod pvformat;
pub mod report;
pub mod scan;
pub mod session;
pub mod settings;
pub mod units;
pub mod uuid;
pub mod vg;

pub use error::{Error, Result};
