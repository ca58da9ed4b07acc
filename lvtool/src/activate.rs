//! Activation goes through the [`Activator`] trait, so device-mapper can be plugged in without
//! touching the commands: [`DmActivator`] drives the kernel's device-mapper; [`NoDriver`] is
//! `--driverloaded n` (as in lvm2: every activation succeeds and does nothing, state is
//! unknown); [`Unavailable`] is a host without a usable driver (activation fails with a clear
//! error; reports show the state as unknown, as lvm2 does without DM).

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
    /// Removes a device by its DM name (a stale one: there is no LV to derive it from).
    fn remove_device(&mut self, _name: &str) -> Result<()> {
        Ok(())
    }
    /// From here until [`Activator::end_batch`], an activation may stop short of making its
    /// device live, so that all of them go live together at the end: the kernel's and udev's
    /// work for each new device then does not slow down making the next ones.
    fn begin_batch(&mut self) {}
    /// Makes every activation since [`Activator::begin_batch`] live. Returns the LVs (by name)
    /// that failed; their devices are gone.
    fn end_batch(&mut self) -> Vec<(String, Error)> {
        vec![]
    }
    /// [`Activator::deactivate`] of each LV, in any order; the results in the LVs' order.
    fn deactivate_many(&mut self, vg: &Vg, lvs: &[&Lv]) -> Vec<Result<()>> {
        lvs.iter().map(|lv| self.deactivate(vg, lv)).collect()
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
            "Failure to open the kernel device-mapper driver (/dev/mapper/control; use --driverloaded n)"
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

/// Real activation through the kernel's device-mapper: one `linear` line per segment, named and
/// identified as lvm2 does, so lvm2 on the same host sees our devices as its own.
pub struct DmActivator {
    dm: crate::dm::Dm,
    devices: Vec<std::path::PathBuf>,
    /// PV id → device on this host, from the labels of the configured devices (read once).
    pv_paths: std::cell::OnceCell<std::collections::HashMap<String, std::path::PathBuf>>,
    /// PV device → its device number (one stat per PV, not one per LV segment).
    dev_nums: std::cell::RefCell<std::collections::HashMap<std::path::PathBuf, crate::dm::DevNum>>,
    /// In a batch: the (VG, LV) names whose device is loaded and waits to go live.
    batch: Option<Vec<(String, String)>>,
}

impl DmActivator {
    /// Opens device-mapper; fails on a host without it.
    pub fn open(devices: Vec<std::path::PathBuf>) -> Result<DmActivator> {
        Ok(DmActivator {
            dm: crate::dm::Dm::open()?,
            devices,
            pv_paths: Default::default(),
            dev_nums: Default::default(),
            batch: None,
        })
    }

    fn pv_path(&self, id: &crate::uuid::Uuid) -> Option<&std::path::Path> {
        let map = self.pv_paths.get_or_init(|| {
            let mut m = std::collections::HashMap::new();
            for path in &self.devices {
                let Ok(dev) = crate::device::FileDevice::open(path, false) else { continue };
                if let Ok(label) = crate::label::Label::read(&dev) {
                    m.entry(label.pv_uuid.bare().to_string()).or_insert_with(|| path.clone());
                }
            }
            m
        });
        map.get(id.bare()).map(|p| p.as_path())
    }

    fn dev_num(&self, path: &std::path::Path) -> Result<crate::dm::DevNum> {
        if let Some(&d) = self.dev_nums.borrow().get(path) {
            return Ok(d);
        }
        let d = crate::dm::DevNum::of_path(path)?;
        self.dev_nums.borrow_mut().insert(path.to_path_buf(), d);
        Ok(d)
    }

    /// The table lvm2 would load for `lv`: segments in order, each mapped to its PV extents.
    pub fn table(&self, vg: &Vg, lv: &Lv) -> Result<Vec<crate::dm::Linear>> {
        let mut table = Vec::with_capacity(lv.segments.len());
        for seg in &lv.segments {
            let [area] = &seg.stripes[..] else {
                return Err(Error::Activation(format!(
                    "{}/{}: activating striped segments is not supported yet",
                    vg.name, lv.name
                )));
            };
            let pv = vg.pvs.iter().find(|p| p.name == area.pv).ok_or_else(|| {
                Error::Activation(format!("{}/{}: segment on unknown PV {}", vg.name, lv.name, area.pv))
            })?;
            let path = self.pv_path(&pv.id).ok_or_else(|| {
                Error::Activation(format!(
                    "{}/{}: PV {} ({}) not found among the devices",
                    vg.name, lv.name, pv.name, pv.id
                ))
            })?;
            let dev = self.dev_num(path)?;
            let size = vg.extent_size as u64;
            table.push(crate::dm::Linear::extents(
                seg.start_extent as u64,
                seg.extent_count as u64,
                size,
                dev,
                pv.pe_start,
                area.pe as u64,
            ));
        }
        crate::dm::check_table(&table)?;
        Ok(table)
    }
}

impl Activator for DmActivator {
    fn enabled(&self) -> bool {
        true
    }
    fn check_available(&self) -> Result<()> {
        Ok(())
    }
    fn state(&self, vg: &Vg, lv: &Lv) -> LvState {
        match self.dm.info(&crate::dm::dm_name(&vg.name, &lv.name)) {
            Ok(Some(d)) => LvState::Active {
                open: d.open_count.max(0) as u32,
                major: d.dev.major,
                minor: d.dev.minor,
                read_only: false,
                suspended: d.suspended,
            },
            Ok(None) => LvState::Inactive,
            Err(_) => LvState::Unknown,
        }
    }
    fn activate(&mut self, vg: &Vg, lv: &Lv, _mode: ActivationMode) -> Result<()> {
        let table = self.table(vg, lv)?;
        // Create first (the kernel refuses a taken name): one ioctl fewer per LV than asking first.
        if self.dm.create_loaded(&vg.name, &lv.name, &crate::dm::dm_uuid(&vg.id, &lv.id), &table)?.is_some() {
            match &mut self.batch {
                Some(pending) => pending.push((vg.name.clone(), lv.name.clone())),
                None => {
                    self.dm.go_live(&vg.name, &lv.name)?;
                }
            }
            return Ok(());
        }
        // Already active: like lvm2, make sure it maps what the metadata says.
        let name = crate::dm::dm_name(&vg.name, &lv.name);
        if self.dm.table(&name)? != table {
            self.dm.reload(&name, &table)?;
        }
        Ok(())
    }
    fn deactivate(&mut self, vg: &Vg, lv: &Lv) -> Result<()> {
        self.dm.remove_if_exists(&crate::dm::dm_name(&vg.name, &lv.name))?;
        Ok(())
    }
    fn refresh(&mut self, vg: &Vg, lv: &Lv) -> Result<()> {
        let name = crate::dm::dm_name(&vg.name, &lv.name);
        if self.dm.info(&name)?.is_some() {
            let table = self.table(vg, lv)?;
            self.dm.reload(&name, &table)?;
        }
        Ok(())
    }
    fn remove_device(&mut self, name: &str) -> Result<()> {
        Ok(self.dm.remove(name)?)
    }
    fn begin_batch(&mut self) {
        self.batch.get_or_insert_with(Vec::new);
    }
    fn end_batch(&mut self) -> Vec<(String, Error)> {
        let pending = self.batch.take().unwrap_or_default();
        let dm = &self.dm;
        let results = crate::dm::parallel(&pending, crate::dm::PARALLEL_IOCTLS, |(vg, lv)| dm.go_live(vg, lv));
        pending.into_iter().zip(results).filter_map(|((_, lv), r)| r.err().map(|e| (lv, e.into()))).collect()
    }
    fn deactivate_many(&mut self, vg: &Vg, lvs: &[&Lv]) -> Vec<Result<()>> {
        let names: Vec<String> = lvs.iter().map(|lv| crate::dm::dm_name(&vg.name, &lv.name)).collect();
        let dm = &self.dm;
        crate::dm::parallel(&names, crate::dm::PARALLEL_IOCTLS, |name| {
            dm.remove_if_exists(name).map(|_| ()).map_err(Into::into)
        })
    }
    fn stale_devices(&self, vg: &Vg) -> Vec<String> {
        let Ok(devs) = self.dm.list_lvm() else { return vec![] };
        devs.into_iter()
            .filter(|d| match crate::dm::split_dm_uuid(&d.uuid) {
                Some((v, l)) => v == vg.id.bare() && !vg.lvs.iter().any(|lv| lv.id.bare() == l),
                None => false,
            })
            .map(|d| d.name)
            .collect()
    }
}
