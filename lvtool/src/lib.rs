//! lvtool: LVM2-compatible volume management for sanlvm.
//!
//! The on-disk layer (label, metadata areas, config grammar, VG model, scan, commit, the lease
//! LV's layout) is the `lvmmeta` crate, re-exported here under the same module names.
//! - [`report`]: `pvs`/`vgs`/`lvs` style reports.
//! - [`session`]: where every command takes its locks; [`lockd_locker`]: lockd as the locker,
//!   and the only module that speaks lockd's protocol.

pub mod activate;
pub mod alloc;
pub mod cli;
pub mod lockd_locker;
pub mod pvformat;
pub mod report;
pub mod session;
pub mod settings;
pub mod units;

/// Device-mapper activation lives in the `devmap` crate (shared with lockd's fencer).
pub use devmap as dm;
pub use lvmmeta::{commit, config, crc, device, error, label, lockarea, mda, scan, signature, uuid, vg};
pub use lvmmeta::{Error, Result};
