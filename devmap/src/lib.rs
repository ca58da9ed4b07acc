//! devmap: sanlvm's device-mapper knowledge, in one place for lvtool and lockd.
//!
//! - [`lv`]: lvm2's DM names and UUIDs of LVs (`vg-lv`, `LVM-<vg uuid><lv uuid>`), `linear`
//!   tables, and [`lv::Dm`], which creates, reloads and removes LV devices with their `/dev` links.
//! - [`udev_free`]: the resume and remove ioctls issued without waiting for udev (the
//!   `devicemapper` crate always waits; activation of many LVs and fencing cannot afford it).
//! - [`fence`]: every device of a VG switched to the `error` target (lockd's fencer).
//!
//! The one rule this crate keeps for both users: an LV's device is recognised by its DM UUID
//! prefix ([`lv::vg_uuid_prefix`]), never by its name, which a rename changes.

pub mod error;
pub mod fence;
pub mod lv;
pub mod udev_free;

pub use error::{Error, Result};
pub use lv::*;
