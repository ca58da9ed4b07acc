//! One started shared VG: lockspace `lvm_<vg>`, our delta lease in it, the renewal thread, the
//! host table, the locks (see `locks.rs`), and failure handling.
//!
//! Renewal: every 2N (`Timeouts::renewal_interval`) read the whole lockspace area, check our
//! record is what we last wrote, write a new timestamp; after each success tell wdmd the expiry
//! (renewal + 8N), fold the area into the host table and record the state for a restart.
//! A failed attempt is retried after `Timeouts::renewal_retry`; 6N without success logs a
//! warning; at 8N (or at once on a corrupt or foreign record) the lockspace has failed:
//! new requests are refused, the VG's LVs are fenced, the kill command runs, the leases are
//! released and wdmd is told the lockspace is clean — or, if any of that fails, nothing is
//! cleared and the watchdog resets the host before another host may take our leases.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use lease::clock::SystemClock;
use lease::delta_lease::{self, AcquirePath, DeltaLease, HostIdentity, LockspaceArea, ProtocolFaults};
use lease::diskio::{block_on, AlignedBuf, DeviceDisk, Disk};
use lease::host_status::{HostState, HostStatusTable};
use lease::ondisk::{Align, Geometry, HostBitmap, LeaderRecord, LeaseKind, Name, SectorSize};
use lease::timeouts::Timeouts;
use lease::LeaseError;
use tracing::{error, info, warn};

use crate::disk::LvDisk;
use crate::fence::{run_kill_command, FencedLv, Fencer};
use crate::leasemap::{self, VgLeases};
use crate::locks::Table;
use crate::protocol::{ErrorCode, ErrorReply, HostInfo, LeaseArea, LockspaceStatus};
use crate::state::{hex, unhex, SavedLockspace, StateDir, FORMAT};
use crate::util::{mono, mono_ms, ms, rfc3339};
use crate::watchdog::{client_name, Watchdog, WatchdogFactory};

/// What every lockspace of the daemon shares.
pub struct Env {
    pub timeouts: Timeouts,
    pub host: HostIdentity,
    pub watchdog: Arc<dyn WatchdogFactory>,
    pub fencer: Arc<dyn Fencer>,
    pub kill_command: Option<Vec<String>>,
    pub state: StateDir,
    pub boot_id: String,
    /// lvmlocal.toml `devices`: where lockd reads LVM metadata (see `leasemap`).
    pub devices: Vec<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Running,
    /// Renewals stopped; the reason.
    Failed(String),
    Stopping,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Failed(_) => "failed",
            Phase::Stopping => "stopping",
        }
    }
}

/// State shared between the renewal thread and request handlers.
pub struct Shared {
    pub phase: Phase,
    pub generation: u64,
    /// Our clock when the last successful renewal write was issued.
    pub last_success: Duration,
    pub delta_sector: Vec<u8>,
    pub hosts: HostStatusTable,
    pub renewal_last: Duration,
    pub renewal_max: Duration,
    stop: bool,
    /// Failure handling finished: fenced, kill command done, expiry cleared.
    pub clean_after_failure: bool,
    /// When (wall clock) we first saw each host incarnation alive.
    live_since: HashMap<(u64, u64), SystemTime>,
    /// Delta records that failed validation at the last read, and why. The host table keeps
    /// no entry for a record it never read intact; `lockd status` must still show it.
    pub corrupt_hosts: BTreeMap<u64, String>,
}

pub struct Lockspace {
    pub vg: String,
    pub vg_uuid: String,
    pub ls_name: Name,
    /// In LV coordinates: offset 0 of the lease LV.
    pub ls_area: LockspaceArea,
    pub geometry: Geometry,
    /// This VG holds the enabled global lock (GLLK, not `_GLLK_disabled`), as last read from
    /// its GL slot. Only a hint for status and records: GL requests read the slot again.
    pub gl_enabled: AtomicBool,
    pub env: Arc<Env>,
    area: Mutex<(LeaseArea, Arc<LvDisk>)>,
    /// The last read of the VG's committed metadata (see `leasemap`); its `area` is the one
    /// in `area`. Changes only when the lock LV grows (under the VG lock in ex).
    pub(crate) leases: Mutex<Option<Arc<VgLeases>>>,
    open_disks: Mutex<HashMap<PathBuf, Arc<DeviceDisk>>>,
    pub(crate) sh: Mutex<Shared>,
    sh_cv: Condvar,
    pub(crate) table: Mutex<Table>,
    pub(crate) table_cv: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    watchdog: Mutex<Option<Box<dyn Watchdog>>>,
    /// Serializes state records, so they reach the files in the order things changed.
    pub(crate) save_mutex: Mutex<()>,
}

pub fn err(code: ErrorCode, message: impl Into<String>) -> ErrorReply {
    ErrorReply { code, message: message.into(), holders: vec![] }
}

/// A lease error as a reply: corrupt records and I/O keep their own codes.
pub fn lease_err(what: &str, e: &LeaseError) -> ErrorReply {
    let code = match e {
        LeaseError::Record(_) | LeaseError::RenewOwner | LeaseError::RenewDiff => ErrorCode::Corrupt,
        LeaseError::Read(_) | LeaseError::Write(_) => ErrorCode::Io,
        LeaseError::Expired => ErrorCode::LockspaceFailed,
        LeaseError::Invalid(_) => ErrorCode::Refused,
        _ => ErrorCode::Conflict,
    };
    err(code, format!("{what}: {e}"))
}

pub fn geometry_of(area: &LeaseArea) -> Result<Geometry, ErrorReply> {
    let sector = SectorSize::from_bytes(area.sector_size as u64)
        .ok_or_else(|| err(ErrorCode::BadRequest, format!("sector size {} is not 512 or 4096", area.sector_size)))?;
    let align =
        [Align::M1, Align::M2, Align::M4, Align::M8].into_iter().find(|a| a.bytes() == area.align_bytes).ok_or_else(
            || err(ErrorCode::BadRequest, format!("align size {} is not 1, 2, 4 or 8 MiB", area.align_bytes)),
        )?;
    Geometry::new(sector, align).map_err(|e| err(ErrorCode::BadRequest, e.to_string()))
}

fn check_area(area: &LeaseArea, geometry: Geometry) -> Result<(), ErrorReply> {
    let a = geometry.area_bytes();
    let bad = |m: String| Err(err(ErrorCode::BadRequest, m));
    if area.pieces.is_empty() {
        return bad("lease area without pieces".into());
    }
    for p in &area.pieces {
        if p.lv_start % a != 0 || p.len % a != 0 || p.pv_start % geometry.sector_bytes() as u64 != 0 {
            return bad(format!("lease area piece {p:?} is not aligned to {a} bytes"));
        }
        if !p.pv_path.is_absolute() {
            return bad(format!("lease area device {} is not an absolute path", p.pv_path.display()));
        }
    }
    if area.locate(0).is_none() {
        return bad("lease area does not cover its lockspace at offset 0".into());
    }
    Ok(())
}

impl Lockspace {
    /// Checks the area and opens its devices; the lockspace is not joined yet.
    pub fn new(env: Arc<Env>, vg: &str, vg_uuid: &str, area: LeaseArea) -> Result<Lockspace, ErrorReply> {
        let geometry = geometry_of(&area)?;
        check_area(&area, geometry)?;
        let ls_name = Name::new(&format!("lvm_{vg}")).map_err(|e| err(ErrorCode::BadRequest, e.to_string()))?;
        let ls_area = LockspaceArea { name: ls_name, offset: 0, geometry };
        ls_area
            .check_host_id(env.host.host_id)
            .map_err(|e| err(ErrorCode::Refused, format!("lockspace {ls_name}: {e}")))?;
        let mut open = HashMap::new();
        let disk = LvDisk::open(&area, &mut open)
            .map_err(|e| err(ErrorCode::Io, format!("lockspace {ls_name}: cannot open lease device: {e}")))?;
        let disk = Arc::new(disk);
        // The lockspace leader must be ours and agree on the geometry; then the GL slot tells
        // whether this VG has the global lock.
        let t = env.timeouts;
        let first = block_on(disk.read(0, geometry.sector_bytes(), t.io()))
            .map_err(|e| err(ErrorCode::Io, format!("lockspace {ls_name}: read: {e}")))?;
        let leader = delta_lease::verify_sector(&ls_area, &first)
            .map_err(|e| lease_err(&format!("lockspace {ls_name} at offset 0 of the lease LV"), &e))?;
        if Geometry::from_leader(&leader).ok() != Some(geometry) {
            return Err(err(ErrorCode::BadRequest, format!("lockspace {ls_name}: geometry differs from the request")));
        }
        let gl_at = crate::locks::GL_LOCK_BEGIN * geometry.area_bytes();
        let gl = block_on(disk.read(gl_at, geometry.sector_bytes(), t.io()))
            .map_err(|e| err(ErrorCode::Io, format!("lockspace {ls_name}: read GL: {e}")))?;
        let gl_enabled = match LeaderRecord::verify_any_name(&gl, LeaseKind::Paxos) {
            Ok(l) => l.resource_name.as_str_lossy() == crate::locks::R_NAME_GL,
            Err(_) => false,
        };
        let hosts = HostStatusTable::new(t);
        Ok(Lockspace {
            vg: vg.to_string(),
            vg_uuid: vg_uuid.to_string(),
            ls_name,
            ls_area,
            geometry,
            gl_enabled: AtomicBool::new(gl_enabled),
            env,
            area: Mutex::new((area, disk)),
            leases: Mutex::new(None),
            open_disks: Mutex::new(open),
            sh: Mutex::new(Shared {
                phase: Phase::Starting,
                generation: 0,
                last_success: Duration::ZERO,
                delta_sector: vec![],
                hosts,
                renewal_last: Duration::ZERO,
                renewal_max: Duration::ZERO,
                stop: false,
                clean_after_failure: false,
                live_since: HashMap::new(),
                corrupt_hosts: BTreeMap::new(),
            }),
            sh_cv: Condvar::new(),
            table: Mutex::new(Table::default()),
            table_cv: Condvar::new(),
            thread: Mutex::new(None),
            watchdog: Mutex::new(None),
            save_mutex: Mutex::new(()),
        })
    }

    pub fn disk(&self) -> Arc<LvDisk> {
        self.area.lock().unwrap().1.clone()
    }

    pub fn lease_area(&self) -> LeaseArea {
        self.area.lock().unwrap().0.clone()
    }

    /// Whether this VG holds the enabled global lock, as last read.
    pub fn gl_enabled(&self) -> bool {
        self.gl_enabled.load(Ordering::SeqCst)
    }

    pub fn set_gl_enabled(&self, on: bool) {
        self.gl_enabled.store(on, Ordering::SeqCst);
    }

    /// Devices to read the VG's metadata from: `devices` of lvmlocal.toml, or when that is
    /// empty the PVs of the current map and of `hint` (only metadata found there counts).
    fn meta_devices(&self, hint: Option<&LeaseArea>) -> Vec<PathBuf> {
        if !self.env.devices.is_empty() {
            return self.env.devices.clone();
        }
        let mut d: Vec<PathBuf> = self.lease_area().pieces.iter().map(|p| p.pv_path.clone()).collect();
        d.extend(hint.into_iter().flat_map(|h| h.pieces.iter().map(|p| p.pv_path.clone())));
        d.sort();
        d.dedup();
        d
    }

    /// Reads the committed metadata again and installs its map (the lock LV may have grown).
    pub fn read_leases(&self, hint: Option<&LeaseArea>) -> Result<Arc<VgLeases>, ErrorReply> {
        let l = leasemap::read(&self.meta_devices(hint), &self.vg, &self.vg_uuid, self.env.timeouts)?;
        self.install_area(&l.area)?;
        let l = Arc::new(l);
        *self.leases.lock().unwrap() = Some(l.clone());
        Ok(l)
    }

    /// The cached read of the metadata (read now if there is none yet).
    pub fn leases(&self) -> Result<Arc<VgLeases>, ErrorReply> {
        if let Some(l) = self.leases.lock().unwrap().clone() {
            return Ok(l);
        }
        self.read_leases(None)
    }

    /// Installs a read made before the lockspace existed (lock-start).
    pub fn set_leases(&self, l: VgLeases) {
        *self.leases.lock().unwrap() = Some(Arc::new(l));
    }

    /// A map sent by a client is only a hint: it must be what the committed metadata says
    /// (read again when it differs from ours, since the lock LV may have grown). It never
    /// changes the map by itself: a request pointing leases elsewhere would let this host
    /// write where other hosts do not look, and hold a lease twice.
    pub fn check_hint(&self, hint: &LeaseArea) -> Result<(), ErrorReply> {
        if *hint == self.lease_area() {
            return Ok(());
        }
        self.read_leases(Some(hint))?;
        let ours = self.lease_area();
        if *hint == ours {
            return Ok(());
        }
        Err(err(
            ErrorCode::BadRequest,
            format!(
                "VG {}: the lease area in the request ({}) is not the lvmlock LV of the committed metadata \
                 ({}); refused",
                self.vg,
                describe_area(hint),
                describe_area(&ours)
            ),
        ))
    }

    /// Makes sure the map covers LV bytes [offset, offset + align): a request outside the
    /// cached map makes lockd read the metadata again (the lock LV grew), never trust it.
    pub fn ensure_covers(&self, offset: u64) -> Result<(), ErrorReply> {
        let a = self.geometry.area_bytes();
        let inside = |s: &Self| offset.checked_add(a).is_some_and(|e| e <= s.lease_area().size());
        if inside(self) {
            return Ok(());
        }
        self.read_leases(None)?;
        Ok(())
    }

    /// Replaces the map of the lease LV with one read from the metadata (it grew); the
    /// lockspace must stay where it is.
    fn install_area(&self, new: &LeaseArea) -> Result<(), ErrorReply> {
        let mut cur = self.area.lock().unwrap();
        if &cur.0 == new {
            return Ok(());
        }
        if geometry_of(new)? != self.geometry {
            return Err(err(
                ErrorCode::Refused,
                format!("VG {}: lease geometry in the metadata changed; lock-stop and start again", self.vg),
            ));
        }
        check_area(new, self.geometry)?;
        if new.locate(0) != cur.0.locate(0) {
            return Err(err(
                ErrorCode::Refused,
                format!("VG {}: the lockspace moved in the metadata; lock-stop and start again", self.vg),
            ));
        }
        let disk = LvDisk::open(new, &mut self.open_disks.lock().unwrap())
            .map_err(|e| err(ErrorCode::Io, format!("cannot open lease device: {e}")))?;
        *cur = (new.clone(), Arc::new(disk));
        info!("lockspace {}: lease LV map read from the metadata ({} bytes)", self.ls_name, new.size());
        Ok(())
    }

    pub fn shared(&self) -> MutexGuard<'_, Shared> {
        self.sh.lock().unwrap()
    }

    pub fn phase(&self) -> Phase {
        self.shared().phase.clone()
    }

    /// Fails unless new lock requests may run: running, and our lease well within 8N.
    pub fn check_usable(&self) -> Result<(u64, HostStatusTable), ErrorReply> {
        let sh = self.shared();
        match &sh.phase {
            Phase::Running => {}
            Phase::Starting => return Err(err(ErrorCode::Busy, format!("VG {} lock start in progress", self.vg))),
            Phase::Stopping => return Err(err(ErrorCode::Busy, format!("VG {} lock stop in progress", self.vg))),
            Phase::Failed(r) => {
                return Err(err(ErrorCode::LockspaceFailed, format!("VG {} lockspace has failed: {r}", self.vg)))
            }
        }
        let t = self.env.timeouts;
        // A lease that may expire during the operation cannot back a new lock.
        if mono() + t.io() >= sh.last_success + t.renewal_fail() {
            return Err(err(
                ErrorCode::LockspaceFailed,
                format!("VG {} lockspace is not being renewed (last renewal too old)", self.vg),
            ));
        }
        Ok((sh.generation, sh.hosts.clone()))
    }

    /// Joins the lockspace: the full delta lease acquire (2N, or 8N+W for a record this host
    /// may still hold from an earlier daemon of this boot), then the watchdog, then renewals.
    pub fn join(self: &Arc<Self>) -> Result<u64, ErrorReply> {
        let t = self.env.timeouts;
        let clock = SystemClock::default();
        let disk = self.disk();
        info!("lockspace {}: joining as host_id {} mono_ms={}", self.ls_name, self.env.host.host_id, mono_ms());
        let what = format!("lockspace {} host_id {}", self.ls_name, self.env.host.host_id);
        let (mut lease, path) =
            block_on(delta_lease::acquire(&*disk, &clock, &self.ls_area, &self.env.host, t, ProtocolFaults::default()))
                .map_err(|e| lease_err(&what, &e))?;
        let gen = lease.generation;
        // The acquire confirms its write within 7N of issuing it (the lease crate writes again
        // when a confirmation comes later), so a first renewal is due at most now. If this
        // thread stalled until the write is nearly 8N old, its expiry can no longer reach wdmd
        // in time and a peer may soon count the record as dead: the join fails (a retry waits
        // 8N+W, as for any record of this boot) rather than pretend the write is recent.
        if mono() >= lease.last_success + t.renewal_interval() {
            if mono() + t.io() >= lease.last_success + t.renewal_fail() {
                return Err(err(
                    ErrorCode::Io,
                    format!("{what}: the join's write is {:?} old, too late to renew", mono() - lease.last_success),
                ));
            }
            let t0 = mono();
            let buf = block_on(delta_lease::renew(&*disk, &clock, &mut lease, &HostBitmap::default(), t))
                .map_err(|e| lease_err(&format!("{what}: first renewal"), &e))?;
            let mut sh = self.shared();
            self.fold_area(&mut sh, &buf, mono());
            sh.renewal_last = mono().saturating_sub(t0);
        }
        match path {
            AcquirePath::WaitedForOwner => {
                info!("lockspace {}: host_id record was possibly in use; waited 8N+W", self.ls_name)
            }
            AcquirePath::Rejoin => info!("lockspace {}: record from an earlier boot of this host", self.ls_name),
            AcquirePath::Free => {}
        }
        let name = client_name(&self.ls_name.as_str_lossy(), self.env.host.host_id, gen);
        let wd = self.env.watchdog.register(&name, false).map_err(|e| {
            // Without the watchdog our leases are unprotected: give the host_id back.
            let _ = block_on(delta_lease::release(&*disk, &lease, t));
            err(ErrorCode::Internal, format!("lockspace {}: watchdog: {e}", self.ls_name))
        })?;
        *self.watchdog.lock().unwrap() = Some(wd);
        self.after_renewal(&lease, None, Duration::ZERO);
        {
            let mut sh = self.shared();
            sh.phase = Phase::Running;
            sh.generation = gen;
        }
        // Seed the host table now, so a dead holder's silence is timed from here.
        if let Ok(buf) = block_on(disk.read(0, self.geometry.area_bytes() as usize, t.io())) {
            let mut sh = self.shared();
            self.fold_area(&mut sh, &buf, mono());
        }
        // A new generation holds nothing yet: records of an earlier one must not be restored.
        if let Err(e) = self.env.state.clear_locks(&self.vg) {
            warn!("lockspace {}: cannot clear old lock records: {e}", self.ls_name);
        }
        self.save();
        info!(
            "lockspace {}: joined host_id {} generation {gen} mono_ms={}",
            self.ls_name,
            self.env.host.host_id,
            mono_ms()
        );
        self.spawn_renewal(lease);
        Ok(gen)
    }

    /// Resumes a lockspace recorded by a previous lockd of this boot: our record on disk must
    /// still be the one we wrote (same owner, generation, name), and the recorded expiry must
    /// not have passed. Then the same generation goes on being renewed.
    pub fn resume(self: &Arc<Self>, saved: &SavedLockspace) -> Result<(), String> {
        let t = self.env.timeouts;
        let host_id = self.env.host.host_id;
        let last_success = Duration::from_millis(saved.last_success_ms);
        let disk = self.disk();
        let at = self.ls_area.sector_offset(host_id);
        let sector = block_on(disk.read(at, self.geometry.sector_bytes(), t.io())).map_err(|e| format!("read: {e}"))?;
        let found = delta_lease::verify_sector(&self.ls_area, &sector).map_err(|e| e.to_string())?;
        let recorded = unhex(&saved.delta_sector)
            .and_then(|b| LeaderRecord::decode(&b).ok())
            .ok_or("recorded delta sector is unreadable")?;
        if found.owner_id != host_id
            || found.owner_generation != saved.generation
            || found.resource_name != self.env.host.host_name
            || found.timestamp == 0
            || recorded.owner_generation != saved.generation
        {
            return Err(format!(
                "our delta lease changed on disk: now owner {} generation {} name {:?} timestamp {}",
                found.owner_id,
                found.owner_generation,
                found.resource_name.as_str_lossy(),
                found.timestamp
            ));
        }
        if mono() + t.io() >= last_success + t.renewal_fail() {
            return Err(format!("the recorded renewal is {:?} old, past 8N", mono().saturating_sub(last_success)));
        }
        let name = client_name(&self.ls_name.as_str_lossy(), host_id, saved.generation);
        let wd = self.env.watchdog.register(&name, true).map_err(|e| format!("watchdog: {e}"))?;
        *self.watchdog.lock().unwrap() = Some(wd);
        // What is on disk now is what the next renewal must find (a renewal write of the
        // previous daemon may have landed after it recorded the one before).
        let lease = DeltaLease {
            area: self.ls_area,
            identity: self.env.host,
            generation: saved.generation,
            io_timeout: t.io_timeout as u16,
            last_written: AlignedBuf::from_slice(&sector),
            last_success,
            maybe_written: vec![],
        };
        {
            let mut sh = self.shared();
            sh.phase = Phase::Running;
            sh.generation = saved.generation;
            sh.last_success = last_success;
            sh.delta_sector = sector.to_vec();
        }
        info!(
            "lockspace {}: resumed host_id {host_id} generation {} (last renewal {:?} ago) mono_ms={}",
            self.ls_name,
            saved.generation,
            mono().saturating_sub(last_success),
            mono_ms()
        );
        self.spawn_renewal(lease);
        // Renew now rather than at the next interval: the gap since the last renewal is unknown.
        self.sh_cv.notify_all();
        Ok(())
    }

    /// Marks a resumed lockspace that could not be resumed as failed and runs failure handling
    /// (its LVs may still be in use here).
    pub fn fail_resumed(self: &Arc<Self>, saved: &SavedLockspace, reason: String) {
        {
            let mut sh = self.shared();
            sh.generation = saved.generation;
            sh.last_success = Duration::from_millis(saved.last_success_ms);
        }
        // Adopt the previous incarnation's wdmd entry, so clearing it is possible once clean.
        let name = client_name(&self.ls_name.as_str_lossy(), self.env.host.host_id, saved.generation);
        match self.env.watchdog.register(&name, true) {
            Ok(wd) => *self.watchdog.lock().unwrap() = Some(wd),
            Err(e) => warn!("lockspace {}: cannot adopt watchdog entry {name}: {e}", self.ls_name),
        }
        self.fail(&reason);
    }

    fn spawn_renewal(self: &Arc<Self>, lease: DeltaLease) {
        let me = self.clone();
        let h = std::thread::Builder::new()
            .name(format!("renew-{}", self.vg))
            .spawn(move || me.renew_loop(lease))
            .expect("spawn renewal thread");
        *self.thread.lock().unwrap() = Some(h);
    }

    /// After a successful renewal (or the acquire): publish, tell the watchdog, record.
    fn after_renewal(&self, lease: &DeltaLease, area: Option<&[u8]>, took: Duration) {
        let t = self.env.timeouts;
        let now = mono();
        {
            let mut sh = self.shared();
            sh.last_success = lease.last_success;
            sh.delta_sector = lease.last_written.to_vec();
            sh.renewal_last = took;
            sh.renewal_max = sh.renewal_max.max(took);
            if let Some(buf) = area {
                self.fold_area(&mut sh, buf, now);
            }
        }
        if let Some(wd) = self.watchdog.lock().unwrap().as_mut() {
            if let Err(e) = wd.set_expiry(lease.last_success, t.wdmd_expiry(lease.last_success)) {
                // The previous expiry stands: the host is reset if this keeps failing.
                error!("lockspace {}: cannot tell wdmd the new expiry: {e}", self.ls_name);
            }
        }
    }

    /// Folds a read of the whole lockspace area (completed at `now`) into the host table.
    fn fold_area(&self, sh: &mut Shared, buf: &[u8], now: Duration) {
        sh.hosts.update_from_area(&self.ls_area, buf, now);
        let g = self.geometry;
        let sector = g.sector_bytes();
        for host_id in 1..=g.max_hosts() {
            let at = lease::ondisk::delta_sector_offset(g, host_id) as usize;
            let Some(bytes) = buf.get(at..at + sector) else { break };
            match delta_lease::verify_sector(&self.ls_area, bytes) {
                Ok(_) => {
                    sh.corrupt_hosts.remove(&host_id);
                }
                Err(e) => {
                    sh.corrupt_hosts.insert(host_id, e.to_string());
                }
            }
        }
        let live: Vec<(u64, u64)> = sh
            .hosts
            .iter()
            .filter(|(id, _)| sh.hosts.state(**id, now) == HostState::Live)
            .map(|(id, h)| (*id, h.generation))
            .collect();
        let wall = SystemTime::now();
        for k in live {
            sh.live_since.entry(k).or_insert(wall);
        }
    }

    fn renew_loop(self: Arc<Self>, mut lease: DeltaLease) {
        let t = self.env.timeouts;
        let clock = SystemClock::default();
        let mut retry_at: Option<Duration> = None;
        let mut warned = false;
        loop {
            {
                let mut sh = self.shared();
                loop {
                    if sh.stop {
                        drop(sh);
                        self.release_delta(&lease);
                        return;
                    }
                    let due = retry_at.unwrap_or(lease.last_success + t.renewal_interval());
                    let now = mono();
                    if now >= due {
                        break;
                    }
                    sh = self.sh_cv.wait_timeout(sh, due - now).unwrap().0;
                }
            }
            let disk = self.disk();
            let t0 = mono();
            let r = block_on(delta_lease::renew(&*disk, &clock, &mut lease, &HostBitmap::default(), t));
            let took = mono().saturating_sub(t0);
            match r {
                Ok(buf) => {
                    retry_at = None;
                    if warned {
                        info!("lockspace {}: renewals succeed again", self.ls_name);
                        warned = false;
                    }
                    self.after_renewal(&lease, Some(&buf), took);
                    self.save();
                    tracing::debug!("lockspace {}: renewed in {took:?} mono_ms={}", self.ls_name, mono_ms());
                }
                Err(e) => {
                    let corrupt = matches!(e, LeaseError::Record(_) | LeaseError::RenewOwner | LeaseError::RenewDiff);
                    let age = mono().saturating_sub(lease.last_success);
                    if corrupt {
                        self.fail(&format!("our delta lease is no longer ours: {e}"));
                        return;
                    }
                    if e == LeaseError::Expired || age >= t.renewal_fail() {
                        self.fail(&format!("no successful renewal for {age:?} (last error: {e})"));
                        return;
                    }
                    if age >= t.renewal_warn() && !warned {
                        warn!("lockspace {}: renewal failing for {age:?}: {e}", self.ls_name);
                        warned = true;
                    } else {
                        warn!("lockspace {}: renewal failed: {e}", self.ls_name);
                    }
                    retry_at = Some(mono() + t.renewal_retry());
                }
            }
        }
    }

    fn release_delta(&self, lease: &DeltaLease) {
        let t = self.env.timeouts;
        let disk = self.disk();
        // A release after our expiry could land after others took the host_id over.
        if mono() + t.io() >= lease.last_success + t.renewal_fail() {
            warn!("lockspace {}: delta lease near expiry; not writing its release", self.ls_name);
            return;
        }
        match block_on(delta_lease::release(&*disk, lease, t)) {
            Ok(()) => info!("lockspace {}: delta lease released mono_ms={}", self.ls_name, mono_ms()),
            Err(e) => warn!("lockspace {}: delta lease release failed: {e}", self.ls_name),
        }
    }

    /// The lockspace can no longer be renewed: see the module comment.
    fn fail(self: &Arc<Self>, reason: &str) {
        let t = self.env.timeouts;
        let last_success = {
            let mut sh = self.shared();
            sh.phase = Phase::Failed(reason.to_string());
            sh.last_success
        };
        error!("lockspace {} FAILED: {reason}; fencing VG {} mono_ms={}", self.ls_name, self.vg, mono_ms());
        // The earliest the watchdog may fire once wdmd stopped petting for our expiry.
        let expiry = t.wdmd_expiry(last_success);
        let deadline = t.watchdog_reset_by(t.wdmd_last_pet(expiry)).saturating_sub(t.wdmd_test_interval());
        let held: Vec<FencedLv> = self.held_lvs();
        let mut clean = match self.env.fencer.fence(&self.vg, &self.vg_uuid, &held) {
            Ok(()) => {
                info!("lockspace {}: {} active LV(s) of VG {} fenced", self.ls_name, held.len(), self.vg);
                true
            }
            Err(e) => {
                error!("lockspace {}: fencing VG {} failed: {e}", self.ls_name, self.vg);
                false
            }
        };
        if clean {
            if let Some(argv) = &self.env.kill_command {
                let limit = deadline.saturating_sub(mono());
                info!("lockspace {}: running kill command {argv:?} {} (limit {limit:?})", self.ls_name, self.vg);
                match run_kill_command(argv, &self.vg, limit) {
                    Ok(()) => info!("lockspace {}: kill command succeeded", self.ls_name),
                    Err(e) => {
                        error!("lockspace {}: {e}", self.ls_name);
                        clean = false;
                    }
                }
            }
        }
        if !clean {
            error!(
                "lockspace {}: VG {} could not be made safe; leaving the expiry with wdmd (watchdog: {})",
                self.ls_name,
                self.vg,
                if self.env.watchdog.enabled() {
                    "the host will be reset"
                } else {
                    "DISABLED, nothing resets this host"
                }
            );
            return;
        }
        // Nothing of ours writes to the VG any more: give back what can still be written
        // before others may take it anyway (host_dead), then let wdmd pet again.
        self.release_all_after_failure(last_success + t.host_dead());
        let cleared = match self.watchdog.lock().unwrap().as_mut() {
            Some(wd) => match wd.clear() {
                Ok(()) => true,
                Err(e) => {
                    error!("lockspace {}: cannot clear the wdmd expiry: {e}", self.ls_name);
                    false
                }
            },
            None => true,
        };
        if cleared {
            self.shared().clean_after_failure = true;
            info!("lockspace {}: clean after failure; wdmd expiry cleared mono_ms={}", self.ls_name, mono_ms());
        }
        self.save();
    }

    /// Stops renewing and releases the delta lease (after the locks were released).
    fn stop_renewal(&self) {
        self.shared().stop = true;
        self.sh_cv.notify_all();
        if let Some(h) = self.thread.lock().unwrap().take() {
            let _ = h.join();
        }
    }

    /// Leaves the lockspace: locks released (LV locks only with `force`), delta lease
    /// released, watchdog cleared. Returns the number of LV locks released.
    pub fn stop(self: &Arc<Self>, force: bool) -> Result<usize, ErrorReply> {
        // Stopping first (no new locks), then look at the table: the lock order is table
        // before shared state, never the other way.
        let failed = {
            let mut sh = self.shared();
            match &sh.phase {
                Phase::Starting | Phase::Stopping => {
                    return Err(err(ErrorCode::Busy, format!("VG {} lock start or stop in progress", self.vg)))
                }
                Phase::Failed(_) => true,
                Phase::Running => {
                    sh.phase = Phase::Stopping;
                    false
                }
            }
        };
        if !failed && !force {
            let lvs = self.held_lvs();
            if !lvs.is_empty() {
                self.shared().phase = Phase::Running;
                let names: Vec<String> = lvs.iter().map(|l| l.name.clone().unwrap_or_else(|| l.uuid.clone())).collect();
                return Err(err(
                    ErrorCode::Refused,
                    format!(
                        "VG {} has {} LV lock(s) held here (active LVs: {}); deactivate them first",
                        self.vg,
                        lvs.len(),
                        names.join(", ")
                    ),
                ));
            }
        }
        info!("lockspace {}: stopping{} mono_ms={}", self.ls_name, if force { " (forced)" } else { "" }, mono_ms());
        let released = if failed { 0 } else { self.release_all() };
        self.stop_renewal();
        // A failed lockspace that could not be made safe keeps its expiry: the watchdog acts.
        let mut wd = self.watchdog.lock().unwrap().take();
        let clean = !failed || self.shared().clean_after_failure;
        if let Some(w) = wd.as_mut().filter(|_| clean) {
            match w.clear() {
                Ok(()) => w.close(),
                Err(e) => error!("lockspace {}: cannot clear the wdmd expiry: {e}", self.ls_name),
            }
        }
        if let Err(e) = self.env.state.remove(&self.vg) {
            warn!("lockspace {}: cannot remove its state file: {e}", self.ls_name);
        }
        info!("lockspace {}: stopped mono_ms={}", self.ls_name, mono_ms());
        Ok(released)
    }

    /// Records our delta lease for a restarted lockd (the locks: `save_lock`).
    pub fn save(&self) {
        let _g = self.save_mutex.lock().unwrap();
        let (generation, delta_sector, last_success) = {
            let sh = self.shared();
            if matches!(sh.phase, Phase::Starting) {
                return;
            }
            (sh.generation, sh.delta_sector.clone(), sh.last_success)
        };
        let s = SavedLockspace {
            format: FORMAT,
            vg: self.vg.clone(),
            vg_uuid: self.vg_uuid.clone(),
            boot_id: self.env.boot_id.clone(),
            host_id: self.env.host.host_id,
            host_name: self.env.host.host_name.as_str_lossy(),
            generation,
            area: self.lease_area(),
            delta_sector: hex(&delta_sector),
            last_success_ms: ms(last_success),
            gl_enabled: self.gl_enabled(),
        };
        if let Err(e) = self.env.state.save(&s) {
            // A restart would then lose this lockspace's locks (the watchdog covers safety).
            error!("lockspace {}: cannot record state in {}: {e}", self.ls_name, self.env.state.dir.display());
        }
    }

    /// The host table as `lockd status` shows it.
    pub fn status(&self) -> LockspaceStatus {
        let now = mono();
        let (area, locks) = (self.lease_area(), self.lock_infos());
        let (pv_path, offset) = area.locate(0).map(|(p, o)| (p.clone(), o)).unwrap_or_default();
        let sh = self.shared();
        let mut hosts: Vec<HostInfo> = sh
            .hosts
            .iter()
            .map(|(id, h)| HostInfo {
                host_id: *id,
                host_name: h.host_name.as_str_lossy(),
                generation: h.generation,
                state: match sh.corrupt_hosts.get(id) {
                    Some(why) => format!("corrupt: {why}"),
                    None if h.corrupt => "corrupt".into(),
                    None => sh.hosts.state(*id, now).to_string(),
                },
                io_timeout: h.io_timeout,
                last_live_age_ms: h.last_live.map(|l| ms(now.saturating_sub(l))),
            })
            .collect();
        // A record never read intact has no table entry: shown from the last read alone.
        for (id, why) in &sh.corrupt_hosts {
            if sh.hosts.get(*id).is_none() {
                hosts.push(HostInfo {
                    host_id: *id,
                    host_name: String::new(),
                    generation: 0,
                    state: format!("corrupt: {why}"),
                    io_timeout: 0,
                    last_live_age_ms: None,
                });
            }
        }
        hosts.sort_by_key(|h| h.host_id);
        LockspaceStatus {
            vg: self.vg.clone(),
            lockspace: self.ls_name.as_str_lossy(),
            state: match &sh.phase {
                Phase::Failed(r) => format!("failed: {r}"),
                p => p.name().to_string(),
            },
            host_id: self.env.host.host_id,
            generation: sh.generation,
            pv_path,
            offset,
            renewal_last_ms: ms(sh.renewal_last),
            renewal_max_ms: ms(sh.renewal_max),
            renewal_age_ms: ms(now.saturating_sub(sh.last_success)),
            gl_enabled: self.gl_enabled(),
            hosts,
            locks,
        }
    }

    /// Name, state and "live since" of a host, from our table.
    pub fn describe_host(&self, host_id: u64, generation: u64, shared: bool) -> crate::protocol::Holder {
        let now = mono();
        let sh = self.shared();
        let h = sh.hosts.get(host_id);
        let state = match h {
            Some(h) if h.corrupt => "corrupt".to_string(),
            Some(h) if h.generation == generation || generation == 0 => sh.hosts.state(host_id, now).to_string(),
            Some(_) => "unknown".to_string(),
            None => "unknown".to_string(),
        };
        crate::protocol::Holder {
            host_id,
            generation,
            host_name: h.map(|h| h.host_name.as_str_lossy()).filter(|n| !n.is_empty()),
            state,
            live_since: {
                // A shared holder's generation is not in the error: it is the current one.
                let g = if generation == 0 { h.map_or(0, |h| h.generation) } else { generation };
                sh.live_since.get(&(host_id, g)).map(|t| rfc3339(*t))
            },
            shared,
        }
    }

    /// The hosts table entries by id (for tests and status).
    pub fn host_ids(&self) -> BTreeMap<u64, u64> {
        self.shared().hosts.iter().map(|(id, h)| (*id, h.generation)).collect()
    }
}

/// A lease area for messages: sector/align size and each piece's device and range.
pub fn describe_area(a: &LeaseArea) -> String {
    let pieces: Vec<String> =
        a.pieces.iter().map(|p| format!("{}@{}+{}", p.pv_path.display(), p.pv_start, p.len)).collect();
    format!("{}/{} {}", a.sector_size, a.align_bytes, pieces.join(","))
}
