//! Activation goes through the [`Activator`] trait, so device-mapper can be plugged in without
//! touching the commands. Today there are two: [`NoDriver`] for `--driverloaded n` (as in lvm2:
//! every activation succeeds and does nothing, state is unknown) and [`Unavailable`] when this
//! host has no usable device-mapper driver (activation fails with a clear error; reports show
//! the state as unknown, as lvm2 does without DM).

use crate::error::{Error, Result};
use crate::vg::{Lv, Vg};

/// How an LV is to be activated (`-ay`, `-aey`, `-asy`). In a shared VG `-ay` means exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationMode {
    /// `-ay` in a local VG.
    Plain,
    Exclusive,
    Shared,
}

/// What this host knows about an LV's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LvState {
    /// No device-mapper interaction possible: lvm2 prints `X` in the attr and no LV Status.
    Unknown,
    Inactive,
    Active {
        open: u32,
        major: u32,
        minor: u32,
        read_only: bool,
        suspended: bool,
    },
}

impl LvState {
    pub fn is_active(self) -> bool {
        matches!(self, LvState::Active { .. })
    }
}

pub trait Activator {
    /// lvm2's `activation()`: false when no DM interaction is attempted at all.
    fn enabled(&self) -> bool;
    /// Fails when activating cannot work here; called before any metadata is written by a
    /// command that will activate.
    fn check_available(&self) -> Result<()>;
    fn state(&self, vg: &Vg, lv: &Lv) -> LvState;
    fn activate(&mut self, vg: &Vg, lv: &Lv, mode: ActivationMode) -> Result<()>;
    fn deactivate(&mut self, vg: &Vg, lv: &Lv) -> Result<()>;
    /// Reloads the table from the metadata (suspend, load, resume) of an active LV.
    fn refresh(&mut self, vg: &Vg, lv: &Lv) -> Result<()>;
    /// Names of devices of this VG active here whose LV is gone from the metadata.
    fn stale_devices(&self, _vg: &Vg) -> Vec<String> {
        vec![]
    }
}

/// `--driverloaded n`: no device-mapper interaction; every request succeeds.
#[derive(Debug, Default)]
pub struct NoDriver;

impl Activator for NoDriver {
    fn enabled(&self) -> bool {
        false
    }
    fn check_available(&self) -> Result<()> {
        Ok(())
    }
    fn state(&self, _: &Vg, _: &Lv) -> LvState {
        LvState::Unknown
    }
    fn activate(&mut self, _: &Vg, _: &Lv, _: ActivationMode) -> Result<()> {
        Ok(())
    }
    fn deactivate(&mut self, _: &Vg, _: &Lv) -> Result<()> {
        Ok(())
    }
    fn refresh(&mut self, _: &Vg, _: &Lv) -> Result<()> {
        Ok(())
    }
}

/// No usable device-mapper here: metadata commands work, activation is refused.
#[derive(Debug)]
pub struct Unavailable {
    pub reason: String,
}

impl Unavailable {
    /// Why activation cannot happen on this host.
    pub fn probe() -> Unavailable {
        let reason = if std::path::Path::new("/dev/mapper/control").exists() {
            "device-mapper activation is not implemented in this lvtool build (use --driverloaded n)"
        } else {
            "Failure to communicate with kernel device-mapper driver (no /dev/mapper/control; use --driverloaded n)"
        };
        Unavailable { reason: reason.to_string() }
    }
}

impl Activator for Unavailable {
    fn enabled(&self) -> bool {
        false
    }
    fn check_available(&self) -> Result<()> {
        Err(Error::Activation(self.reason.clone()))
    }
    fn state(&self, _: &Vg, _: &Lv) -> LvState {
        LvState::Unknown
    }
    fn activate(&mut self, _: &Vg, _: &Lv, _: ActivationMode) -> Result<()> {
        self.check_available()
    }
    fn deactivate(&mut self, _: &Vg, _: &Lv) -> Result<()> {
        self.check_available()
    }
    fn refresh(&mut self, _: &Vg, _: &Lv) -> Result<()> {
        self.check_available()
    }
}
