//! The one place every command goes through to read or change a VG and to activate an LV.
//! Locks are taken here, in the modes lvmlockd uses (ARCHITECTURE.md, "Command order"): the
//! global lock before anything that changes the set of VGs or orphan PVs, the VG lock before
//! reading a VG's metadata (ex to change it, sh to report it), an LV lock before activating
//! (kept after the command exits) and after deactivating (released). The [`Locker`] is lockd's
//! client ([`crate::lockd_locker`], which also carries lockd's requests that are not locks) on
//! hosts with a host_id, [`NoLocks`] otherwise and with `--nolocking`.
//!
//! Every command goes lock → check → commit → release, never commit first: a failure or a
//! kill at any step leaves the old state, or the new one plus at most a lease slot whose
//! leader names an LV UUID the committed metadata does not have (provably orphaned). So
//! lvcreate names its slot before the commit and activates after it; lvremove and lvrename
//! take the LV lock in ex and settle an activation here before the commit, and lvremove frees
//! the slot after it.

use std::path::{Path, PathBuf};

use crate::activate::{ActivationMode, Activator, LvState};
use crate::commit::{commit_to, PvTarget};
use crate::device::FileDevice;
use crate::error::{Error, Result};
use crate::lockarea::{self, LockArea};
use crate::lockd_locker::{persistent_hold, DaemonStatus, Lockd};
use crate::pvformat;
use crate::scan::{MdaState, Scan, TargetSpec, VgRead};
use crate::vg::{Lv, TextHeader, Vg};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Ex,
    Sh,
    Un,
}

/// Lock requests, in lvmlockd's vocabulary.
pub trait Locker {
    fn lock_gl(&mut self, mode: LockMode) -> Result<()>;
    /// Taken before the VG's metadata is read; `Un` at the end of the command.
    fn lock_vg(&mut self, vg: &str, mode: LockMode) -> Result<()>;
    /// `persistent`: the lock outlives the command (activation).
    fn lock_lv(&mut self, vg: &Vg, lv: &Lv, mode: LockMode, persistent: bool) -> Result<()>;
    /// Persistent LV locks of many LVs at once (`vgchange -ay`/`-an`): the results in order.
    fn lock_lvs(&mut self, vg: &Vg, lvs: &[&Lv], mode: LockMode) -> Vec<Result<()>> {
        lvs.iter().map(|lv| self.lock_lv(vg, lv, mode, true)).collect()
    }
    /// After a commit: others learn that their cached metadata is stale (VG lock value block).
    fn vg_updated(&mut self, vg: &Vg) -> Result<()>;
    /// Called after each read of a VG under its VG lock; `pv_paths[i]` is the device of
    /// `vg.pvs[i]`. A locker may refuse a shared VG whose lock it could not take (`write`: the
    /// read starts a change).
    fn vg_read(&mut self, _vg: &Vg, _pv_paths: &[Option<PathBuf>], _write: bool) -> Result<()> {
        Ok(())
    }
    /// Names a free LV lease slot after `lv` (lvmlockd's init_lv) and returns its offset;
    /// `None`: the caller formats a slot itself.
    fn init_lv(&mut self, _vg: &Vg, _lv: &Lv) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Frees the LV lease at `offset` (lvmlockd's free_lv); false: the caller does it itself.
    fn free_lv(&mut self, _vg: &Vg, _lv: &Lv, _offset: u64) -> Result<bool> {
        Ok(false)
    }
}

/// No lock manager: every request succeeds (local VGs, and shared VGs until lockd exists).
#[derive(Debug, Default)]
pub struct NoLocks;

impl Locker for NoLocks {
    fn lock_gl(&mut self, _: LockMode) -> Result<()> {
        Ok(())
    }
    fn lock_vg(&mut self, _: &str, _: LockMode) -> Result<()> {
        Ok(())
    }
    fn lock_lv(&mut self, _: &Vg, _: &Lv, _: LockMode, _: bool) -> Result<()> {
        Ok(())
    }
    fn vg_updated(&mut self, _: &Vg) -> Result<()> {
        Ok(())
    }
}

/// A change to one VG: the version read under an ex VG lock and the next version being built.
pub struct VgTxn {
    pub read: VgRead,
    /// The new version; its seqno is already one more than the one read.
    pub vg: Vg,
    /// Scan indexes of orphan PVs that join the VG with this change.
    pub joining: Vec<usize>,
    /// Scan indexes of PVs that leave the VG (made orphans after the commit).
    pub leaving: Vec<usize>,
}

pub struct Session {
    devices: Vec<PathBuf>,
    scan: Option<Scan>,
    activator: Box<dyn Activator>,
    locker: Box<dyn Locker>,
    /// The `description` recorded with each metadata write (lvm2: "Write from <command>.").
    description: String,
    /// VG locks held, released at the end of the command.
    vg_locks: Vec<String>,
    /// This host's timeouts (lvmlocal.toml), for lease areas.
    timeouts: lease::timeouts::Timeouts,
    /// lockd's run directory when the locker is lockd: the session asks lockd's status what
    /// the lock replies do not say (whether the global lock exists, what is active here).
    lockd_run_dir: Option<PathBuf>,
}

/// Where the global lock stands for a command that needs it in ex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlNeed {
    /// Every command but the one below: no global lock is an error.
    Required,
    /// `vgcreate --shared`: with no shared VG at all, the new VG will hold the global lock.
    FirstSharedVg,
}

impl Session {
    pub fn new(
        devices: Vec<PathBuf>,
        activator: Box<dyn Activator>,
        locker: Box<dyn Locker>,
        description: String,
        timeouts: lease::timeouts::Timeouts,
    ) -> Session {
        Session { devices, scan: None, activator, locker, description, vg_locks: vec![], timeouts, lockd_run_dir: None }
    }

    /// The locker is lockd, reached in `run_dir`.
    pub fn set_lockd(&mut self, run_dir: &Path) {
        self.lockd_run_dir = Some(run_dir.to_path_buf());
    }

    /// lockd's status, when the locker is lockd. `Ok(None)`: no lockd is configured.
    fn lockd_status(&self) -> Result<Option<DaemonStatus>> {
        let Some(dir) = &self.lockd_run_dir else { return Ok(None) };
        let mut lockd = Lockd::connect(dir).map_err(|e| Error::Invalid(e.to_string()))?;
        lockd.status().map(Some).map_err(Error::Invalid)
    }

    /// Whether a lockspace running here holds the enabled global lock; `None`: no lockd is
    /// configured (local-only host); an error when lockd cannot be asked.
    fn gl_running(&self) -> Result<Option<bool>> {
        Ok(self.lockd_status()?.map(|s| s.lockspaces.iter().any(|l| l.gl_enabled && l.state == "running")))
    }

    /// Whether any VG on the scanned devices is a shared (sanlock) VG.
    fn any_shared_vg(&mut self) -> bool {
        let names = self.scan().vg_names();
        names
            .iter()
            .any(|n| self.scan().read_vg(n).is_ok_and(|r| r.vg.lock_type.as_deref() == Some(lockarea::LOCK_TYPE)))
    }

    /// Whether `lv` is active on this host: its device is mapped here, or (no view of DM, as
    /// with `--driverloaded n`) lockd holds its lease for an activation here.
    pub fn lv_active_here(&mut self, vg: &Vg, lv: &Lv) -> Result<bool> {
        Ok(self.activator.state(vg, lv).is_active() || self.lv_hold_here(vg, lv)?.is_some())
    }

    /// The mode in which lockd holds `lv`'s lease for an activation on this host, if it does.
    pub fn lv_hold_here(&mut self, vg: &Vg, lv: &Lv) -> Result<Option<LockMode>> {
        if vg.lock_type.as_deref() != Some(lockarea::LOCK_TYPE) || self.lockd_run_dir.is_none() {
            return Ok(None);
        }
        // No lockd running: it holds nothing for this host.
        if self.lockd_run_dir.as_ref().is_some_and(|d| !Lockd::running(d)) {
            return Ok(None);
        }
        let Some(status) = self.lockd_status()? else { return Ok(None) };
        Ok(persistent_hold(&status, &vg.name, &lv.id.to_string()))
    }

    pub fn timeouts(&self) -> lease::timeouts::Timeouts {
        self.timeouts
    }

    pub fn devices(&self) -> &[PathBuf] {
        &self.devices
    }

    /// The devices as scanned since the last change (scanned once per command otherwise).
    pub fn scan(&mut self) -> &Scan {
        let devices = &self.devices;
        self.scan.get_or_insert_with(|| Scan::devices(devices))
    }

    /// Forgets the scan: the next read sees the devices as they are now.
    pub fn rescan(&mut self) {
        self.scan = None;
    }

    pub fn activator(&self) -> &dyn Activator {
        &*self.activator
    }

    /// The global lock. In ex it must really be held: a host with lockd fails when no started
    /// VG holds the enabled global lock (lvm2: "Global lock failed"), rather than changing
    /// orphan PVs or VG names unprotected; see [`Session::lock_gl_ex`].
    pub fn lock_gl(&mut self, mode: LockMode) -> Result<()> {
        if mode == LockMode::Ex {
            return self.lock_gl_ex(GlNeed::Required).map(|_| ());
        }
        self.locker.lock_gl(mode)?;
        // Orphans and VG names may have changed before we got the lock.
        self.rescan();
        Ok(())
    }

    /// The global lock in ex. Returns true when no global lock exists anywhere and `need`
    /// allows that (the first shared VG, which will hold it). lockd decides, from its own reads
    /// of the disk, whether exactly one enabled global lock can be had; its refusal says why
    /// (none enabled, a duplicate, shared VGs not started here) and is passed on as it is.
    /// lockd grants without a lock only when no shared VG exists on its devices.
    pub fn lock_gl_ex(&mut self, need: GlNeed) -> Result<bool> {
        let running = match self.gl_running() {
            Ok(s) => s,
            // Formatting the first shared VG needs no lockd (it is started afterwards).
            Err(_) if need == GlNeed::FirstSharedVg && !self.any_shared_vg() => return Ok(true),
            Err(e) => return Err(Error::Invalid(format!("Global lock failed: {e}"))),
        };
        self.locker.lock_gl(LockMode::Ex)?;
        // Orphans and VG names may have changed before we got the lock.
        self.rescan();
        // Local-only host (no lock manager), or lockd found no shared VG: nothing holds a GL.
        let held = running.is_some() && self.gl_running().ok().flatten() == Some(true);
        Ok(!held && need == GlNeed::FirstSharedVg && !self.any_shared_vg())
    }

    fn lock_vg(&mut self, vg: &str, mode: LockMode) -> Result<()> {
        self.locker.lock_vg(vg, mode)?;
        if !self.vg_locks.iter().any(|v| v == vg) {
            self.vg_locks.push(vg.to_string());
        }
        Ok(())
    }

    /// Reads a VG under a VG lock in `mode`.
    pub fn read_vg(&mut self, name: &str, mode: LockMode) -> Result<VgRead> {
        self.lock_vg(name, mode)?;
        let read = self.find_vg(name)?;
        let paths = self.pv_paths(&read);
        self.locker.vg_read(&read.vg, &paths, false)?;
        Ok(read)
    }

    /// Reads `name` from the scan. Not found while some device or metadata area could not be
    /// read: the VG may be on it, so the error says what is damaged instead of only "not found".
    pub fn find_vg(&mut self, name: &str) -> Result<VgRead> {
        match self.scan().read_vg(name) {
            Err(Error::VgNotFound { .. }) if !self.scan().damage().is_empty() => {
                let lines: Vec<String> = self.scan().damage().iter().map(|d| format!("  {d}")).collect();
                Err(Error::Invalid(format!(
                    "Volume group \"{name}\" not found; it may be on a device whose LVM data cannot be read:\n{}",
                    lines.join("\n")
                )))
            }
            r => r,
        }
    }

    /// Starts a change of `name`: ex VG lock, fresh read, refuses what must not be written.
    pub fn begin(&mut self, name: &str) -> Result<VgTxn> {
        self.lock_vg(name, LockMode::Ex)?;
        self.rescan();
        let read = self.find_vg(name)?;
        let paths = self.pv_paths(&read);
        self.locker.vg_read(&read.vg, &paths, true)?;
        read.check_writable()?;
        let mut vg = read.vg.clone();
        vg.seqno = vg.seqno.wrapping_add(1);
        Ok(VgTxn { read, vg, joining: vec![], leaving: vec![] })
    }

    fn header(&self) -> TextHeader {
        TextHeader::now(&self.description)
    }

    fn orphan_target(&mut self, idx: usize) -> Result<TargetSpec> {
        let pv = &self.scan().pvs[idx];
        let mut mdas = vec![];
        for (a, s) in &pv.mdas {
            match s {
                MdaState::Empty(_) => mdas.push((*a, None)),
                MdaState::Ignored(_) => {}
                MdaState::Copy(c) => {
                    return Err(Error::Invalid(format!(
                        "Physical volume \"{}\" is already in volume group \"{}\"",
                        pv.path.display(),
                        c.vg_name
                    )))
                }
                MdaState::Bad(e) => return Err(Error::Invalid(format!("{}: {e}", pv.path.display()))),
            }
        }
        Ok(TargetSpec { path: pv.path.clone(), mdas })
    }

    fn write(&mut self, specs: Vec<TargetSpec>, vg: &Vg) -> Result<()> {
        let header = self.header();
        let mut targets = vec![];
        for t in specs {
            targets.push(PvTarget { dev: Box::new(FileDevice::open(&t.path, true)?), mdas: t.mdas });
        }
        commit_to(&mut targets, vg, &header)
    }

    /// Writes the new version to every metadata area of the VG (joining PVs included), then
    /// marks joining PVs used and makes leaving PVs orphans.
    pub fn commit(&mut self, txn: VgTxn) -> Result<Vg> {
        let VgTxn { read, vg, joining, leaving } = txn;
        read.check_writable()?;
        if vg.seqno != read.vg.seqno.wrapping_add(1) || vg.id != read.vg.id {
            return Err(Error::Invalid("internal: new VG version must follow the one read".into()));
        }
        let leaving_paths: Vec<PathBuf> = leaving.iter().map(|&i| self.scan().pvs[i].path.clone()).collect();
        let mut specs: Vec<TargetSpec> = read.targets(self.scan());
        specs.retain(|t| !leaving_paths.contains(&t.path));
        for &i in &joining {
            specs.push(self.orphan_target(i)?);
        }
        self.write(specs, &vg)?;
        for &i in &joining {
            let (path, label) = self.pv_label(i);
            pvformat::set_used(&mut FileDevice::open(&path, true)?, &label, true)?;
        }
        for &i in &leaving {
            let (path, label) = self.pv_label(i);
            pvformat::orphan(&mut FileDevice::open(&path, true)?, &label)?;
        }
        self.locker.vg_updated(&vg)?;
        self.rescan();
        Ok(vg)
    }

    fn pv_label(&mut self, idx: usize) -> (PathBuf, crate::label::Label) {
        let pv = &self.scan().pvs[idx];
        (pv.path.clone(), pv.label.clone())
    }

    /// Writes a brand-new VG to orphan PVs (`pvs` are scan indexes, in `vg.pvs` order) and
    /// marks them used. The caller holds the global lock.
    pub fn create_vg(&mut self, vg: &Vg, pvs: &[usize]) -> Result<()> {
        self.lock_vg(&vg.name, LockMode::Ex)?;
        let specs = pvs.iter().map(|&i| self.orphan_target(i)).collect::<Result<Vec<_>>>()?;
        self.write(specs, vg)?;
        for &i in pvs {
            let (path, label) = self.pv_label(i);
            pvformat::set_used(&mut FileDevice::open(&path, true)?, &label, true)?;
        }
        self.rescan();
        Ok(())
    }

    /// Removes a VG read under an ex lock: every PV becomes an orphan.
    pub fn remove_vg(&mut self, read: &VgRead) -> Result<()> {
        read.check_writable()?;
        for &i in read.devices.iter().flatten() {
            let (path, label) = self.pv_label(i);
            pvformat::orphan(&mut FileDevice::open(&path, true)?, &label)?;
        }
        self.rescan();
        Ok(())
    }

    /// Device path of each PV of a VG read in this session (None: missing).
    pub fn pv_paths(&mut self, read: &VgRead) -> Vec<Option<PathBuf>> {
        let scan = self.scan();
        read.devices.iter().map(|d| d.map(|i| scan.pvs[i].path.clone())).collect()
    }

    /// The lease area of a shared VG. `geometry`: known (vgcreate) or read from the lockspace.
    pub fn lock_area(&mut self, read: &VgRead, vg: &Vg, geometry: Option<lease::ondisk::Geometry>) -> Result<LockArea> {
        let paths = self.pv_paths(read);
        // PVs joining in this change are not in `read`; find them by UUID.
        let scan_paths: Vec<(crate::uuid::Uuid, PathBuf)> =
            self.scan().pvs.iter().map(|p| (p.label.pv_uuid, p.path.clone())).collect();
        let lookup = |i: usize| -> Option<PathBuf> {
            let id = vg.pvs[i].id;
            read.vg
                .pvs
                .iter()
                .position(|p| p.id == id)
                .and_then(|j| paths[j].clone())
                .or_else(|| scan_paths.iter().find(|(u, _)| *u == id).map(|(_, p)| p.clone()))
        };
        let g = geometry.unwrap_or(lease::ondisk::Geometry::DEFAULT_512);
        let mut area = LockArea::new(vg, &lookup, g, self.timeouts)?;
        if geometry.is_none() {
            area.geometry = area.read_geometry()?;
        }
        Ok(area)
    }

    /// Whether a shared VG other than `except` holds the enabled global lock (lvmlockd enables
    /// the GL only in the first sanlock VG).
    pub fn other_gl_enabled(&mut self, except: &str) -> bool {
        let names = self.scan().vg_names();
        for n in names.iter().filter(|n| n.as_str() != except) {
            let Ok(r) = self.scan().read_vg(n) else { continue };
            if r.vg.lock_type.as_deref() != Some(lockarea::LOCK_TYPE) {
                continue;
            }
            let vg = r.vg.clone();
            if let Ok(area) = self.lock_area(&r, &vg, None) {
                if matches!(area.gl_name(), Ok(lockarea::Slot::Named(n)) if n == lockarea::R_NAME_GL) {
                    return true;
                }
            }
        }
        false
    }

    pub fn lv_state(&self, vg: &Vg, lv: &Lv) -> LvState {
        self.activator.state(vg, lv)
    }

    /// Activates an LV: LV lock (ex, or sh for `-asy`; kept after we exit), then the device.
    pub fn activate(&mut self, vg: &Vg, lv: &Lv, mode: ActivationMode) -> Result<()> {
        let mut results = self.activate_many(vg, std::slice::from_ref(lv), mode);
        results.pop().expect("one result per LV")
    }

    /// [`Session::activate`] of many LVs of `vg`, their LV locks taken together
    /// ([`Locker::lock_lvs`]). The results in the LVs' order.
    pub fn activate_many(&mut self, vg: &Vg, lvs: &[Lv], mode: ActivationMode) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = lvs.iter().map(|lv| lv_activatable(vg, lv)).collect();
        let lock = if mode == ActivationMode::Shared { LockMode::Sh } else { LockMode::Ex };
        let mut locked = self.locker.lock_lvs(vg, &still_ok(lvs, &results), lock).into_iter();
        for (lv, r) in lvs.iter().zip(results.iter_mut()) {
            if r.is_err() {
                continue;
            }
            *r = locked.next().expect("one result per LV");
            if r.is_ok() {
                if let Err(e) = self.activator.activate(vg, lv, mode) {
                    let _ = self.locker.lock_lv(vg, lv, LockMode::Un, true);
                    *r = Err(e);
                }
            }
        }
        results
    }

    /// Lets the activations until [`Session::end_activations`] go live together (see
    /// [`Activator::begin_batch`]).
    pub fn begin_activations(&mut self) {
        self.activator.begin_batch();
    }

    /// Makes the activations since [`Session::begin_activations`] live; an LV that fails here
    /// loses its device and its LV lock. Returns those failures.
    pub fn end_activations(&mut self, vg: &Vg) -> Vec<(String, Error)> {
        let failed = self.activator.end_batch();
        for (name, _) in &failed {
            if let Some(lv) = vg.lv(name) {
                let _ = self.locker.lock_lv(vg, lv, LockMode::Un, true);
            }
        }
        failed
    }

    /// Deactivates an LV, then releases its LV lock.
    pub fn deactivate(&mut self, vg: &Vg, lv: &Lv) -> Result<()> {
        lv_activatable(vg, lv)?;
        self.activator.deactivate(vg, lv)?;
        self.locker.lock_lv(vg, lv, LockMode::Un, true)
    }

    /// [`Session::deactivate`] of many LVs of `vg`: their devices go in parallel, then each LV
    /// whose device is gone has its lock released. The results in the LVs' order.
    pub fn deactivate_many(&mut self, vg: &Vg, lvs: &[Lv]) -> Vec<Result<()>> {
        let mut results: Vec<Result<()>> = lvs.iter().map(|lv| lv_activatable(vg, lv)).collect();
        let mut removed = self.activator.deactivate_many(vg, &still_ok(lvs, &results)).into_iter();
        for r in results.iter_mut().filter(|r| r.is_ok()) {
            *r = removed.next().expect("one result per LV");
        }
        let mut unlocked = self.locker.lock_lvs(vg, &still_ok(lvs, &results), LockMode::Un).into_iter();
        for r in results.iter_mut().filter(|r| r.is_ok()) {
            *r = unlocked.next().expect("one result per LV");
        }
        results
    }

    /// Devices of `vg` active here whose LV is gone from the metadata: removed or renamed on
    /// another host. Writes to them would land on extents that may now belong to other LVs.
    pub fn stale_devices(&self, vg: &Vg) -> Vec<String> {
        self.activator.stale_devices(vg)
    }

    /// Removes stale devices of `vg`; returns the names removed. No LV lock: the LV is gone.
    pub fn remove_stale(&mut self, vg: &Vg) -> Result<Vec<String>> {
        let stale = self.activator.stale_devices(vg);
        for name in &stale {
            self.activator.remove_device(name)?;
        }
        Ok(stale)
    }

    /// Reloads an active LV's table from the metadata (no LV lock, as lvm2).
    pub fn refresh(&mut self, vg: &Vg, lv: &Lv) -> Result<()> {
        lv_activatable(vg, lv)?;
        self.activator.refresh(vg, lv)
    }

    /// An LV lock for a metadata change (lvextend/lvremove: ex; released after).
    pub fn lock_lv(&mut self, vg: &Vg, lv: &Lv, mode: LockMode) -> Result<()> {
        self.locker.lock_lv(vg, lv, mode, false)
    }

    /// See [`Locker::init_lv`].
    pub fn init_lv_lease(&mut self, vg: &Vg, lv: &Lv) -> Result<Option<u64>> {
        self.locker.init_lv(vg, lv)
    }

    /// See [`Locker::free_lv`].
    pub fn free_lv_lease(&mut self, vg: &Vg, lv: &Lv, offset: u64) -> Result<bool> {
        self.locker.free_lv(vg, lv, offset)
    }

    /// Releases the VG locks of this command.
    pub fn finish(&mut self) {
        // Every command ends its batches itself; this only keeps a bug from leaving devices
        // loaded but never live.
        for (lv, e) in self.activator.end_batch() {
            eprintln!("  {lv}: {e}");
        }
        for vg in std::mem::take(&mut self.vg_locks) {
            let _ = self.locker.lock_vg(&vg, LockMode::Un);
        }
    }

    /// Opens the device of a scanned PV.
    pub fn open_pv(&mut self, idx: usize, writable: bool) -> Result<FileDevice> {
        let path = self.scan().pvs[idx].path.clone();
        FileDevice::open(&path, writable)
    }

    /// Index in the scan of the device `path` names (resolving symlinks).
    pub fn find_device(&mut self, path: &Path) -> Option<usize> {
        let want = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.scan().pvs.iter().position(|p| std::fs::canonicalize(&p.path).unwrap_or_else(|_| p.path.clone()) == want)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Why a command that needs the global lock cannot have it.
/// The LVs whose step so far succeeded (`results` in the LVs' order).
fn still_ok<'a>(lvs: &'a [Lv], results: &[Result<()>]) -> Vec<&'a Lv> {
    lvs.iter().zip(results).filter(|(_, r)| r.is_ok()).map(|(lv, _)| lv).collect()
}

/// Only plain LVs are ever activated by lvtool.
fn lv_activatable(vg: &Vg, lv: &Lv) -> Result<()> {
    match &lv.support {
        crate::vg::Support::Supported => Ok(()),
        crate::vg::Support::Unsupported(r) => {
            Err(Error::UnsupportedLv { vg: vg.name.clone(), lv: lv.name.clone(), reason: r.clone() })
        }
    }
}
