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
use std::sync::{Arc, Condvar};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use lease::clock::{Clock, SystemClock};
use lease::delta_lease::{self, AcquirePath, DeltaLease, HostIdentity, LockspaceArea, ProtocolFaults};
use lease::diskio::{block_on, AlignedBuf, DeviceDisk, Disk};
use lease::host_status::{HostState, HostStatusTable};
use lease::ondisk::{Align, Geometry, HostBitmap, LeaderRecord, LeaseKind, Name, SectorSize};
use lease::timeouts::Timeouts;
use lease::LeaseError;
use tracing::{error, info, warn};

use crate::disk::LvDisk;
use crate::error::{Error, Result};
use crate::fence::{run_kill_command, FencedLv, Fencer};
use crate::guarded::Guarded;
use crate::leasemap::{self, VgLeases};
use crate::locks::Table;
use crate::state::{hex, unhex, SavedLockspace, StateDir, FORMAT};
use crate::util::{mono_ms, ms, rfc3339};
use crate::watchdog::{client_name, Watchdog, WatchdogFactory};
use proto::lockd::protocol::{HostInfo, LeaseArea, LockspaceStatus};

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

/// Where a lockspace does its I/O and reads its time: the PVs and CLOCK_MONOTONIC in the
/// daemon ([`Devices`]), an in-memory disk and a stepped clock in unit tests.
pub trait Backend: 'static {
    type Disk: Disk;
    type Clock: Clock;
    fn clock(&self) -> Self::Clock;
    fn now(&self) -> Duration;
    /// The lease LV of `area`, reusing devices already open in `open`.
    fn open(&self, area: &LeaseArea, open: &mut HashMap<PathBuf, Arc<DeviceDisk>>) -> std::io::Result<Self::Disk>;
}

/// The daemon's backend: the lease LV on its PVs, CLOCK_MONOTONIC (the clock wdmd uses).
pub struct Devices;

impl Backend for Devices {
    type Disk = LvDisk;
    type Clock = SystemClock;
    fn clock(&self) -> SystemClock {
        SystemClock::default()
    }
    fn now(&self) -> Duration {
        lease::clock::clock_monotonic()
    }
    fn open(&self, area: &LeaseArea, open: &mut HashMap<PathBuf, Arc<DeviceDisk>>) -> std::io::Result<LvDisk> {
        LvDisk::open(area, open)
    }
}

/// The life of a lockspace on this host.
///
/// ```text
/// Joining ──> Running ──> Failing ──> Failed ──> Stopped
///    │  │       ↑  │                    ↑
///    │  │       │  └──> Stopping ──> Stopped
///    │  │       └─────────┘ (stop refused: LVs active)
///    │  └──> Failing (a recorded lockspace that cannot be resumed)
///    └──> Stopped (the join failed)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Acquiring the delta lease (or resuming a recorded one).
    Joining,
    /// Renewed: new locks may be granted.
    Running,
    /// Renewals stopped (the reason): fencing, kill command and releases under way.
    Failing(String),
    /// Failure handling done; `clean`: everything was made safe and wdmd's expiry cleared,
    /// otherwise the watchdog resets the host.
    Failed { reason: String, clean: bool },
    /// lock-stop: releasing locks, then the delta lease.
    Stopping,
    /// The delta lease is given up (or was never ours); the lockspace is leaving the daemon.
    Stopped,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Joining => "starting",
            Phase::Running => "running",
            Phase::Failing(_) | Phase::Failed { .. } => "failed",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
        }
    }

    /// Renewals have stopped for good.
    pub fn is_failed(&self) -> bool {
        matches!(self, Phase::Failing(_) | Phase::Failed { .. })
    }

    /// Why it failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        match self {
            Phase::Failing(r) | Phase::Failed { reason: r, .. } => Some(r),
            _ => None,
        }
    }

    /// The transitions of the diagram above.
    fn may_become(&self, to: &Phase) -> bool {
        use Phase::*;
        matches!(
            (self, to),
            (Joining, Running | Failing(_) | Stopped)
                | (Running, Failing(_) | Stopping)
                | (Stopping, Running | Stopped)
                | (Failing(_), Failed { .. } | Stopped)
                | (Failed { .. }, Stopped)
        )
    }
}

/// Everything about a lockspace that changes, behind its one lock (see `guarded`).
pub(crate) struct State<D> {
    pub(crate) phase: Phase,
    pub(crate) generation: u64,
    /// Our clock when the last successful renewal write was issued.
    pub(crate) last_success: Duration,
    pub(crate) delta_sector: Vec<u8>,
    pub(crate) hosts: HostStatusTable,
    renewal_last: Duration,
    renewal_max: Duration,
    /// Successful renewals since the join (the join's write included).
    pub(crate) renewals: u64,
    /// lock-stop asks the renewal thread to release the delta lease and end.
    stop_requested: bool,
    /// When (wall clock) we first saw each host incarnation alive.
    live_since: HashMap<(u64, u64), SystemTime>,
    /// Delta records that failed validation at the last read, and why. The host table keeps
    /// no entry for a record it never read intact; `lockd status` must still show it.
    corrupt_hosts: BTreeMap<u64, String>,
    /// The lease LV's map and the disk it gives.
    area: LeaseArea,
    disk: Arc<D>,
    open_disks: HashMap<PathBuf, Arc<DeviceDisk>>,
    /// The last read of the VG's committed metadata (see `leasemap`); its `area` is `area`.
    /// Changes only when the lock LV grows (under the VG lock in ex).
    pub(crate) leases: Option<Arc<VgLeases>>,
    pub(crate) table: Table,
    /// Our wdmd client, from the join until lock-stop. Only the renewal thread (or failure
    /// handling, which runs in it) uses it while the lockspace runs.
    watchdog: Option<Box<dyn Watchdog>>,
    renewal_thread: Option<JoinHandle<()>>,
}

impl<D> State<D> {
    /// Moves to `to`; only along the transitions [`Phase`] shows.
    pub(crate) fn enter(&mut self, to: Phase) {
        debug_assert!(self.phase.may_become(&to), "lockspace phase {:?} -> {to:?} is not a transition", self.phase);
        if to == Phase::Running {
            debug_assert!(
                self.generation != 0 && !self.delta_sector.is_empty(),
                "a running lockspace holds its delta lease"
            );
        }
        if !self.phase.may_become(&to) {
            error!("lockspace phase {:?} -> {to:?} is not a transition; ignored", self.phase);
            return;
        }
        self.phase = to;
    }

    /// Generation and host table for a new lock: running, and our lease well within 8N at
    /// `now`.
    pub(crate) fn usable(&self, vg: &str, now: Duration, t: Timeouts) -> Result<(u64, HostStatusTable)> {
        match &self.phase {
            Phase::Running => {}
            Phase::Joining => return Err(Error::busy(format!("VG {vg} lock start in progress"))),
            Phase::Stopping | Phase::Stopped => return Err(Error::busy(format!("VG {vg} lock stop in progress"))),
            Phase::Failing(r) | Phase::Failed { reason: r, .. } => {
                return Err(Error::failed(format!("VG {vg} lockspace has failed: {r}")))
            }
        }
        // A lease that may expire during the operation cannot back a new lock.
        if now + t.io() >= self.last_success + t.renewal_fail() {
            return Err(Error::failed(format!("VG {vg} lockspace is not being renewed (last renewal too old)")));
        }
        Ok((self.generation, self.hosts.clone()))
    }
}

pub struct Lockspace<B: Backend = Devices> {
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
    pub(crate) backend: B,
    pub(crate) state: Guarded<State<B::Disk>>,
    /// Signalled when a lock table entry stops being busy or goes away.
    pub(crate) table_changed: Condvar,
    /// Wakes the renewal thread (lock-stop).
    renewal_wake: Condvar,
    /// Serializes state records, so they reach the files in the order things changed.
    /// Taken before `state`, never while holding it.
    pub(crate) save_order: Guarded<()>,
    /// Test hook: the next lock request panics while it holds the state.
    #[cfg(test)]
    pub(crate) panic_in_next_lock: AtomicBool,
}

pub fn geometry_of(area: &LeaseArea) -> Result<Geometry> {
    let sector = SectorSize::from_bytes(area.sector_size as u64)
        .ok_or_else(|| Error::invalid(format!("sector size {} is not 512 or 4096", area.sector_size)))?;
    let align = [Align::M1, Align::M2, Align::M4, Align::M8]
        .into_iter()
        .find(|a| a.bytes() == area.align_bytes)
        .ok_or_else(|| Error::invalid(format!("align size {} is not 1, 2, 4 or 8 MiB", area.align_bytes)))?;
    Geometry::new(sector, align).map_err(|e| Error::invalid(e.to_string()))
}

fn check_area(area: &LeaseArea, geometry: Geometry) -> Result<()> {
    let a = geometry.area_bytes();
    let bad = |m: String| Err(Error::invalid(m));
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

impl Lockspace<Devices> {
    /// Checks the area and opens its devices; the lockspace is not joined yet.
    pub fn new(env: Arc<Env>, vg: &str, vg_uuid: &str, area: LeaseArea) -> Result<Lockspace> {
        Lockspace::with_backend(env, vg, vg_uuid, area, Devices)
    }

    /// Joins the lockspace (see [`Lockspace::join_lease`]) and starts renewing.
    pub fn join(self: &Arc<Self>) -> Result<u64> {
        let (gen, lease) = self.join_lease()?;
        self.spawn_renewal(lease);
        Ok(gen)
    }

    /// Resumes a lockspace recorded by a previous lockd of this boot (see
    /// [`Lockspace::resume_lease`]) and goes on renewing the same generation.
    pub fn resume(self: &Arc<Self>, saved: &SavedLockspace) -> Result<()> {
        let lease = self.resume_lease(saved)?;
        self.spawn_renewal(lease);
        // Wake the loop: it renews as soon as the recorded renewal is due.
        self.renewal_wake.notify_all();
        Ok(())
    }

    fn spawn_renewal(self: &Arc<Self>, lease: DeltaLease) {
        let me = self.clone();
        let h = std::thread::Builder::new()
            .name(format!("renew-{}", self.vg))
            .spawn(move || me.renew_loop(Renewal::new(lease)))
            .expect("spawn renewal thread");
        self.state.lock().renewal_thread = Some(h);
    }

    /// The renewal thread. It shares nothing with requests but the state lock, which a
    /// panicking request cannot make unusable (`guarded`).
    fn renew_loop(self: Arc<Self>, mut r: Renewal) {
        let t = self.env.timeouts;
        loop {
            {
                let mut st = self.state.lock();
                loop {
                    if st.stop_requested {
                        drop(st);
                        self.release_delta(&r.lease);
                        return;
                    }
                    let due = r.due(t);
                    let now = self.now();
                    if now >= due {
                        break;
                    }
                    st = self.state.wait_timeout(&self.renewal_wake, st, due - now);
                }
            }
            if self.renew_once(&mut r) == Renewed::Failed {
                return;
            }
        }
    }
}

/// The renewal thread's own state: our delta lease as last written.
pub(crate) struct Renewal {
    pub(crate) lease: DeltaLease,
    retry_at: Option<Duration>,
    warned: bool,
}

impl Renewal {
    pub(crate) fn new(lease: DeltaLease) -> Renewal {
        Renewal { lease, retry_at: None, warned: false }
    }

    /// When the next attempt is due.
    pub(crate) fn due(&self, t: Timeouts) -> Duration {
        self.retry_at.unwrap_or(self.lease.last_success + t.renewal_interval())
    }
}

/// What one renewal attempt did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Renewed {
    Yes,
    /// Failed; retried after `renewal_retry`.
    Retry,
    /// The lockspace failed (8N, or our record is no longer ours); failure handling ran.
    Failed,
}

impl<B: Backend> Lockspace<B> {
    /// Checks the area and opens it through `backend`; the lockspace is not joined yet.
    pub fn with_backend(env: Arc<Env>, vg: &str, vg_uuid: &str, area: LeaseArea, backend: B) -> Result<Self> {
        let geometry = geometry_of(&area)?;
        check_area(&area, geometry)?;
        let ls_name = Name::new(&format!("lvm_{vg}")).map_err(|e| Error::invalid(e.to_string()))?;
        let ls_area = LockspaceArea { name: ls_name, offset: 0, geometry };
        ls_area.check_host_id(env.host.host_id).map_err(|e| Error::refused(format!("lockspace {ls_name}: {e}")))?;
        let mut open = HashMap::new();
        let disk = backend
            .open(&area, &mut open)
            .map_err(|e| Error::io(format!("lockspace {ls_name}: cannot open lease device: {e}")))?;
        let disk = Arc::new(disk);
        // The lockspace leader must be ours and agree on the geometry; then the GL slot tells
        // whether this VG has the global lock.
        let t = env.timeouts;
        let first = block_on(disk.read(0, geometry.sector_bytes(), t.io()))
            .map_err(|e| Error::io(format!("lockspace {ls_name}: read: {e}")))?;
        let leader = delta_lease::verify_sector(&ls_area, &first)
            .map_err(|e| Error::lease(&format!("lockspace {ls_name} at offset 0 of the lease LV"), Some(0), &e))?;
        if Geometry::from_leader(&leader).ok() != Some(geometry) {
            return Err(Error::invalid(format!("lockspace {ls_name}: geometry differs from the request")));
        }
        let gl_at = crate::locks::GL_LOCK_BEGIN * geometry.area_bytes();
        let gl = block_on(disk.read(gl_at, geometry.sector_bytes(), t.io()))
            .map_err(|e| Error::io(format!("lockspace {ls_name}: read GL: {e}")))?;
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
            backend,
            state: Guarded::new(
                "lockspace state",
                State {
                    phase: Phase::Joining,
                    generation: 0,
                    last_success: Duration::ZERO,
                    delta_sector: vec![],
                    hosts,
                    renewal_last: Duration::ZERO,
                    renewal_max: Duration::ZERO,
                    renewals: 0,
                    stop_requested: false,
                    live_since: HashMap::new(),
                    corrupt_hosts: BTreeMap::new(),
                    area,
                    disk,
                    open_disks: open,
                    leases: None,
                    table: Table::default(),
                    watchdog: None,
                    renewal_thread: None,
                },
            ),
            table_changed: Condvar::new(),
            renewal_wake: Condvar::new(),
            save_order: Guarded::new("lockspace record order", ()),
            #[cfg(test)]
            panic_in_next_lock: AtomicBool::new(false),
        })
    }

    /// This host's time, in the clock our leases are timed with.
    pub fn now(&self) -> Duration {
        self.backend.now()
    }

    pub fn disk(&self) -> Arc<B::Disk> {
        self.state.lock().disk.clone()
    }

    pub fn lease_area(&self) -> LeaseArea {
        self.state.lock().area.clone()
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
    pub fn read_leases(&self, hint: Option<&LeaseArea>) -> Result<Arc<VgLeases>> {
        let l = leasemap::read(&self.meta_devices(hint), &self.vg, &self.vg_uuid, self.env.timeouts)?;
        self.install_area(&l.area)?;
        let l = Arc::new(l);
        self.state.lock().leases = Some(l.clone());
        Ok(l)
    }

    /// The cached read of the metadata (read now if there is none yet).
    pub fn leases(&self) -> Result<Arc<VgLeases>> {
        if let Some(l) = self.state.lock().leases.clone() {
            return Ok(l);
        }
        self.read_leases(None)
    }

    /// Installs a read made before the lockspace existed (lock-start).
    pub fn set_leases(&self, l: VgLeases) {
        self.state.lock().leases = Some(Arc::new(l));
    }

    /// A map sent by a client is only a hint: it must be what the committed metadata says
    /// (read again when it differs from ours, since the lock LV may have grown). It never
    /// changes the map by itself: a request pointing leases elsewhere would let this host
    /// write where other hosts do not look, and hold a lease twice.
    pub fn check_hint(&self, hint: &LeaseArea) -> Result<()> {
        if *hint == self.lease_area() {
            return Ok(());
        }
        self.read_leases(Some(hint))?;
        let ours = self.lease_area();
        if *hint == ours {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "VG {}: the lease area in the request ({}) is not the lvmlock LV of the committed metadata ({}); \
             refused",
            self.vg,
            describe_area(hint),
            describe_area(&ours)
        )))
    }

    /// Makes sure the map covers LV bytes [offset, offset + align): a request outside the
    /// cached map makes lockd read the metadata again (the lock LV grew), never trust it.
    pub fn ensure_covers(&self, offset: u64) -> Result<()> {
        let a = self.geometry.area_bytes();
        if offset.checked_add(a).is_some_and(|e| e <= self.lease_area().size()) {
            return Ok(());
        }
        self.read_leases(None)?;
        Ok(())
    }

    /// Replaces the map of the lease LV with one read from the metadata (it grew); the
    /// lockspace must stay where it is.
    fn install_area(&self, new: &LeaseArea) -> Result<()> {
        let (cur, mut open) = {
            let st = self.state.lock();
            if &st.area == new {
                return Ok(());
            }
            (st.area.clone(), st.open_disks.clone())
        };
        if geometry_of(new)? != self.geometry {
            return Err(Error::refused(format!(
                "VG {}: lease geometry in the metadata changed; lock-stop and start again",
                self.vg
            )));
        }
        check_area(new, self.geometry)?;
        if new.locate(0) != cur.locate(0) {
            return Err(Error::refused(format!(
                "VG {}: the lockspace moved in the metadata; lock-stop and start again",
                self.vg
            )));
        }
        // Devices are opened without the state lock: an open may block on a sick device.
        let disk =
            self.backend.open(new, &mut open).map_err(|e| Error::io(format!("cannot open lease device: {e}")))?;
        let mut st = self.state.lock();
        st.open_disks.extend(open);
        if st.area == cur {
            st.area = new.clone();
            st.disk = Arc::new(disk);
            info!("lockspace {}: lease LV map read from the metadata ({} bytes)", self.ls_name, new.size());
        }
        Ok(())
    }

    pub fn phase(&self) -> Phase {
        self.state.lock().phase.clone()
    }

    /// The generation of our delta lease (0 before the join).
    pub fn generation(&self) -> u64 {
        self.state.lock().generation
    }

    /// Fails unless new lock requests may run: running, and our lease well within 8N.
    pub fn check_usable(&self) -> Result<(u64, HostStatusTable)> {
        self.state.lock().usable(&self.vg, self.now(), self.env.timeouts)
    }

    /// The full delta lease acquire (2N, or 8N+W for a record this host may still hold from
    /// an earlier daemon of this boot), then the watchdog; the lockspace is then running and
    /// the caller renews the lease returned.
    pub(crate) fn join_lease(self: &Arc<Self>) -> Result<(u64, DeltaLease)> {
        let t = self.env.timeouts;
        let clock = self.backend.clock();
        let disk = self.disk();
        info!("lockspace {}: joining as host_id {} mono_ms={}", self.ls_name, self.env.host.host_id, mono_ms());
        let what = format!("lockspace {} host_id {}", self.ls_name, self.env.host.host_id);
        let at = Some(self.ls_area.sector_offset(self.env.host.host_id));
        let joined =
            block_on(delta_lease::acquire(&*disk, &clock, &self.ls_area, &self.env.host, t, ProtocolFaults::default()))
                .map_err(|e| Error::lease(&what, at, &e));
        let (mut lease, path) = match joined {
            Ok(x) => x,
            Err(e) => {
                self.state.lock().enter(Phase::Stopped);
                return Err(e);
            }
        };
        let gen = lease.generation;
        let fail_join = |e: Error| {
            self.state.lock().enter(Phase::Stopped);
            e
        };
        // The acquire confirms its write within 7N of issuing it (the lease crate writes again
        // when a confirmation comes later), so a first renewal is due at most now. If this
        // thread stalled until the write is nearly 8N old, its expiry can no longer reach wdmd
        // in time and a peer may soon count the record as dead: the join fails (a retry waits
        // 8N+W, as for any record of this boot) rather than pretend the write is recent.
        if self.now() >= lease.last_success + t.renewal_interval() {
            if self.now() + t.io() >= lease.last_success + t.renewal_fail() {
                let age = self.now() - lease.last_success;
                return Err(fail_join(Error::Timeout(format!(
                    "{what}: the join's write is {age:?} old, too late to renew"
                ))));
            }
            let t0 = self.now();
            let buf = block_on(delta_lease::renew(&*disk, &clock, &mut lease, &HostBitmap::default(), t))
                .map_err(|e| fail_join(Error::lease(&format!("{what}: first renewal"), at, &e)))?;
            let mut st = self.state.lock();
            self.fold_area(&mut st, &buf, self.now());
            st.renewal_last = self.now().saturating_sub(t0);
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
            fail_join(Error::internal(format!("lockspace {}: watchdog: {e}", self.ls_name)))
        })?;
        self.state.lock().watchdog = Some(wd);
        {
            let mut st = self.state.lock();
            st.generation = gen;
        }
        self.after_renewal(&lease, None, Duration::ZERO);
        self.state.lock().enter(Phase::Running);
        // Seed the host table now, so a dead holder's silence is timed from here.
        if let Ok(buf) = block_on(disk.read(0, self.geometry.area_bytes() as usize, t.io())) {
            let mut st = self.state.lock();
            self.fold_area(&mut st, &buf, self.now());
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
        Ok((gen, lease))
    }

    /// Takes back a lockspace recorded by a previous lockd of this boot: our record on disk
    /// must still be the one we wrote (same owner, generation, name), and the recorded expiry
    /// must not have passed. Returns the lease the caller goes on renewing.
    pub(crate) fn resume_lease(&self, saved: &SavedLockspace) -> Result<DeltaLease> {
        let t = self.env.timeouts;
        let host_id = self.env.host.host_id;
        let last_success = Duration::from_millis(saved.last_success_ms);
        let disk = self.disk();
        let at = self.ls_area.sector_offset(host_id);
        let sector = block_on(disk.read(at, self.geometry.sector_bytes(), t.io()))
            .map_err(|e| Error::io(format!("read of our delta lease at offset {at}: {e}")))?;
        let found = delta_lease::verify_sector(&self.ls_area, &sector)
            .map_err(|e| Error::lease("our delta lease", Some(at), &e))?;
        let recorded = unhex(&saved.delta_sector)
            .and_then(|b| LeaderRecord::decode(&b).ok())
            .ok_or_else(|| Error::corrupt(None, "recorded delta sector is unreadable"))?;
        if found.owner_id != host_id
            || found.owner_generation != saved.generation
            || found.resource_name != self.env.host.host_name
            || found.timestamp == 0
            || recorded.owner_generation != saved.generation
        {
            return Err(Error::refused(format!(
                "our delta lease changed on disk: now owner {} generation {} name {:?} timestamp {}",
                found.owner_id,
                found.owner_generation,
                found.resource_name.as_str_lossy(),
                found.timestamp
            )));
        }
        if self.now() + t.io() >= last_success + t.renewal_fail() {
            let age = self.now().saturating_sub(last_success);
            return Err(Error::failed(format!("the recorded renewal is {age:?} old, past 8N")));
        }
        let name = client_name(&self.ls_name.as_str_lossy(), host_id, saved.generation);
        let wd = self.env.watchdog.register(&name, true).map_err(|e| Error::internal(format!("watchdog: {e}")))?;
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
            let mut st = self.state.lock();
            st.watchdog = Some(wd);
            st.generation = saved.generation;
            st.last_success = last_success;
            st.delta_sector = sector.to_vec();
            st.enter(Phase::Running);
        }
        info!(
            "lockspace {}: resumed host_id {host_id} generation {} (last renewal {:?} ago) mono_ms={}",
            self.ls_name,
            saved.generation,
            self.now().saturating_sub(last_success),
            mono_ms()
        );
        Ok(lease)
    }

    /// Marks a resumed lockspace that could not be resumed as failed and runs failure handling
    /// (its LVs may still be in use here).
    pub fn fail_resumed(self: &Arc<Self>, saved: &SavedLockspace, reason: String) {
        {
            let mut st = self.state.lock();
            st.generation = saved.generation;
            st.last_success = Duration::from_millis(saved.last_success_ms);
        }
        // Adopt the previous incarnation's wdmd entry, so clearing it is possible once clean.
        let name = client_name(&self.ls_name.as_str_lossy(), self.env.host.host_id, saved.generation);
        match self.env.watchdog.register(&name, true) {
            Ok(wd) => self.state.lock().watchdog = Some(wd),
            Err(e) => warn!("lockspace {}: cannot adopt watchdog entry {name}: {e}", self.ls_name),
        }
        self.fail(&reason);
    }

    /// One renewal attempt, when due: on success publish it; on failure retry later, or at
    /// 8N (at once when our record is no longer ours) fail the lockspace.
    pub(crate) fn renew_once(self: &Arc<Self>, r: &mut Renewal) -> Renewed {
        let t = self.env.timeouts;
        let disk = self.disk();
        let clock = self.backend.clock();
        let t0 = self.now();
        let result = block_on(delta_lease::renew(&*disk, &clock, &mut r.lease, &HostBitmap::default(), t));
        let took = self.now().saturating_sub(t0);
        match result {
            Ok(buf) => {
                r.retry_at = None;
                if r.warned {
                    info!("lockspace {}: renewals succeed again", self.ls_name);
                    r.warned = false;
                }
                self.after_renewal(&r.lease, Some(&buf), took);
                self.save();
                tracing::debug!("lockspace {}: renewed in {took:?} mono_ms={}", self.ls_name, mono_ms());
                Renewed::Yes
            }
            Err(e) => {
                let corrupt = matches!(e, LeaseError::Record(_) | LeaseError::RenewOwner | LeaseError::RenewDiff);
                let age = self.now().saturating_sub(r.lease.last_success);
                if corrupt {
                    self.fail(&format!("our delta lease is no longer ours: {e}"));
                    return Renewed::Failed;
                }
                if e == LeaseError::Expired || age >= t.renewal_fail() {
                    self.fail(&format!("no successful renewal for {age:?} (last error: {e})"));
                    return Renewed::Failed;
                }
                if age >= t.renewal_warn() && !r.warned {
                    warn!("lockspace {}: renewal failing for {age:?}: {e}", self.ls_name);
                    r.warned = true;
                } else {
                    warn!("lockspace {}: renewal failed: {e}", self.ls_name);
                }
                r.retry_at = Some(self.now() + t.renewal_retry());
                Renewed::Retry
            }
        }
    }

    /// After a successful renewal (or the acquire): publish, tell the watchdog, record.
    fn after_renewal(&self, lease: &DeltaLease, area: Option<&[u8]>, took: Duration) {
        let t = self.env.timeouts;
        let now = self.now();
        let mut wd = {
            let mut st = self.state.lock();
            st.last_success = lease.last_success;
            st.delta_sector = lease.last_written.to_vec();
            st.renewal_last = took;
            st.renewal_max = st.renewal_max.max(took);
            st.renewals += 1;
            if let Some(buf) = area {
                self.fold_area(&mut st, buf, now);
            }
            // Only this thread uses the client while running; it is talked to without the lock.
            st.watchdog.take()
        };
        if let Some(w) = wd.as_mut() {
            if let Err(e) = w.set_expiry(lease.last_success, t.wdmd_expiry(lease.last_success)) {
                // The previous expiry stands: the host is reset if this keeps failing.
                error!("lockspace {}: cannot tell wdmd the new expiry: {e}", self.ls_name);
            }
        }
        let mut st = self.state.lock();
        if st.watchdog.is_none() {
            st.watchdog = wd;
        }
    }

    /// Folds a read of the whole lockspace area (completed at `now`) into the host table.
    fn fold_area(&self, st: &mut State<B::Disk>, buf: &[u8], now: Duration) {
        st.hosts.update_from_area(&self.ls_area, buf, now);
        let g = self.geometry;
        let sector = g.sector_bytes();
        for host_id in 1..=g.max_hosts() {
            let at = lease::ondisk::delta_sector_offset(g, host_id) as usize;
            let Some(bytes) = buf.get(at..at + sector) else { break };
            match delta_lease::verify_sector(&self.ls_area, bytes) {
                Ok(_) => {
                    st.corrupt_hosts.remove(&host_id);
                }
                Err(e) => {
                    st.corrupt_hosts.insert(host_id, e.to_string());
                }
            }
        }
        let live: Vec<(u64, u64)> = st
            .hosts
            .iter()
            .filter(|(id, _)| st.hosts.state(**id, now) == HostState::Live)
            .map(|(id, h)| (*id, h.generation))
            .collect();
        let wall = SystemTime::now();
        for k in live {
            st.live_since.entry(k).or_insert(wall);
        }
    }

    fn release_delta(&self, lease: &DeltaLease) {
        let t = self.env.timeouts;
        let disk = self.disk();
        // A release after our expiry could land after others took the host_id over.
        if self.now() + t.io() >= lease.last_success + t.renewal_fail() {
            warn!("lockspace {}: delta lease near expiry; not writing its release", self.ls_name);
            return;
        }
        match block_on(delta_lease::release(&*disk, lease, t)) {
            Ok(()) => info!("lockspace {}: delta lease released mono_ms={}", self.ls_name, mono_ms()),
            Err(e) => warn!("lockspace {}: delta lease release failed: {e}", self.ls_name),
        }
    }

    /// The lockspace can no longer be renewed: see the module comment.
    pub(crate) fn fail(self: &Arc<Self>, reason: &str) {
        let t = self.env.timeouts;
        let last_success = {
            let mut st = self.state.lock();
            st.enter(Phase::Failing(reason.to_string()));
            st.last_success
        };
        let done = |clean: bool| {
            self.state.lock().enter(Phase::Failed { reason: reason.to_string(), clean });
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
                let limit = deadline.saturating_sub(self.now());
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
            done(false);
            return;
        }
        // Nothing of ours writes to the VG any more: give back what can still be written
        // before others may take it anyway (host_dead), then let wdmd pet again.
        self.release_all_after_failure(last_success + t.host_dead());
        let mut wd = self.state.lock().watchdog.take();
        let cleared = match wd.as_mut() {
            Some(w) => match w.clear() {
                Ok(()) => true,
                Err(e) => {
                    error!("lockspace {}: cannot clear the wdmd expiry: {e}", self.ls_name);
                    false
                }
            },
            None => true,
        };
        self.state.lock().watchdog = wd;
        done(cleared);
        if cleared {
            info!("lockspace {}: clean after failure; wdmd expiry cleared mono_ms={}", self.ls_name, mono_ms());
        }
        self.save();
    }

    /// Stops renewing and releases the delta lease (after the locks were released).
    fn stop_renewal(&self) {
        let thread = {
            let mut st = self.state.lock();
            st.stop_requested = true;
            st.renewal_thread.take()
        };
        self.renewal_wake.notify_all();
        if let Some(h) = thread {
            if h.join().is_err() {
                error!("lockspace {}: the renewal thread had panicked", self.ls_name);
            }
        }
    }

    /// Leaves the lockspace: locks released (LV locks only with `force`), delta lease
    /// released, watchdog cleared. Returns the number of LV locks released.
    pub fn stop(self: &Arc<Self>, force: bool) -> Result<usize> {
        // Stopping first: no new locks are granted while the table is looked at.
        let failed = {
            let mut st = self.state.lock();
            match &st.phase {
                Phase::Joining | Phase::Stopping | Phase::Stopped => {
                    return Err(Error::busy(format!("VG {} lock start or stop in progress", self.vg)))
                }
                Phase::Failing(_) | Phase::Failed { .. } => true,
                Phase::Running => {
                    st.enter(Phase::Stopping);
                    false
                }
            }
        };
        if !failed && !force {
            let lvs = self.held_lvs();
            if !lvs.is_empty() {
                self.state.lock().enter(Phase::Running);
                let names: Vec<String> = lvs.iter().map(|l| l.name.clone().unwrap_or_else(|| l.uuid.clone())).collect();
                return Err(Error::refused(format!(
                    "VG {} has {} LV lock(s) held here (active LVs: {}); deactivate them first",
                    self.vg,
                    lvs.len(),
                    names.join(", ")
                )));
            }
        }
        info!("lockspace {}: stopping{} mono_ms={}", self.ls_name, if force { " (forced)" } else { "" }, mono_ms());
        let released = if failed { 0 } else { self.release_all() };
        self.stop_renewal();
        // A failed lockspace that could not be made safe keeps its expiry: the watchdog acts.
        let (mut wd, clean) = {
            let mut st = self.state.lock();
            let clean = match &st.phase {
                Phase::Failed { clean, .. } => *clean,
                Phase::Failing(_) => false,
                _ => true,
            };
            st.enter(Phase::Stopped);
            (st.watchdog.take(), clean)
        };
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
        let _order = self.save_order.lock();
        let (generation, delta_sector, last_success, area) = {
            let st = self.state.lock();
            if matches!(st.phase, Phase::Joining | Phase::Stopped) {
                return;
            }
            (st.generation, st.delta_sector.clone(), st.last_success, st.area.clone())
        };
        let s = SavedLockspace {
            format: FORMAT,
            vg: self.vg.clone(),
            vg_uuid: self.vg_uuid.clone(),
            boot_id: self.env.boot_id.clone(),
            host_id: self.env.host.host_id,
            host_name: self.env.host.host_name.as_str_lossy(),
            generation,
            area,
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
        let now = self.now();
        let st = self.state.lock();
        let locks = st.table.lock_infos();
        let (pv_path, offset) = st.area.locate(0).map(|(p, o)| (p.clone(), o)).unwrap_or_default();
        let mut hosts: Vec<HostInfo> = st
            .hosts
            .iter()
            .map(|(id, h)| HostInfo {
                host_id: *id,
                host_name: h.host_name.as_str_lossy(),
                generation: h.generation,
                state: match st.corrupt_hosts.get(id) {
                    Some(why) => format!("corrupt: {why}"),
                    None if h.corrupt => "corrupt".into(),
                    None => st.hosts.state(*id, now).to_string(),
                },
                io_timeout: h.io_timeout,
                last_live_age_ms: h.last_live.map(|l| ms(now.saturating_sub(l))),
            })
            .collect();
        // A record never read intact has no table entry: shown from the last read alone.
        for (id, why) in &st.corrupt_hosts {
            if st.hosts.get(*id).is_none() {
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
            state: match st.phase.failure() {
                Some(r) => format!("failed: {r}"),
                None => st.phase.name().to_string(),
            },
            host_id: self.env.host.host_id,
            generation: st.generation,
            pv_path,
            offset,
            renewal_last_ms: ms(st.renewal_last),
            renewal_max_ms: ms(st.renewal_max),
            renewal_age_ms: ms(now.saturating_sub(st.last_success)),
            gl_enabled: self.gl_enabled(),
            hosts,
            locks,
        }
    }

    /// Name, state and "live since" of a host, from our table.
    pub fn describe_host(&self, host_id: u64, generation: u64, shared: bool) -> proto::lockd::protocol::Holder {
        let now = self.now();
        let st = self.state.lock();
        let h = st.hosts.get(host_id);
        let state = match h {
            Some(h) if h.corrupt => "corrupt".to_string(),
            Some(h) if h.generation == generation || generation == 0 => st.hosts.state(host_id, now).to_string(),
            Some(_) => "unknown".to_string(),
            None => "unknown".to_string(),
        };
        proto::lockd::protocol::Holder {
            host_id,
            generation,
            host_name: h.map(|h| h.host_name.as_str_lossy()).filter(|n| !n.is_empty()),
            state,
            live_since: {
                // A shared holder's generation is not in the error: it is the current one.
                let g = if generation == 0 { h.map_or(0, |h| h.generation) } else { generation };
                st.live_since.get(&(host_id, g)).map(|t| rfc3339(*t))
            },
            shared,
        }
    }

    /// The hosts table entries by id (for tests and status).
    pub fn host_ids(&self) -> BTreeMap<u64, u64> {
        self.state.lock().hosts.iter().map(|(id, h)| (*id, h.generation)).collect()
    }
}

/// A lease area for messages: sector/align size and each piece's device and range.
pub fn describe_area(a: &LeaseArea) -> String {
    let pieces: Vec<String> =
        a.pieces.iter().map(|p| format!("{}@{}+{}", p.pv_path.display(), p.pv_start, p.len)).collect();
    format!("{}/{} {}", a.sector_size, a.align_bytes, pieces.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testenv::*;
    use lease::diskio::IoError;
    use lease::testkit::{MemDisk, StepClock};
    use proto::lockd::protocol::Mode;

    fn start() -> (Host, Arc<Lockspace<TestBackend>>, Renewal) {
        let h = host(1, &scratch_dir());
        let ls = lockspace(&h, &new_disk(), &StepClock::new(Duration::from_secs(10_000)));
        let (_, lease) = ls.join_lease().unwrap();
        (h, ls, Renewal::new(lease))
    }

    /// A host whose run directory, disk and clock outlive one lockspace object (a restart).
    fn restartable() -> (std::path::PathBuf, Host, MemDisk, StepClock) {
        let dir = scratch_dir();
        let h = host(1, &dir);
        (dir, h, new_disk(), StepClock::new(Duration::from_secs(10_000)))
    }

    /// Runs the renewal loop's next attempt at the time it is due.
    fn renew_when_due(ls: &Arc<Lockspace<TestBackend>>, r: &mut Renewal) -> Renewed {
        let due = r.due(ls.env.timeouts);
        let now = ls.now();
        ls.backend.clock.advance(due.saturating_sub(now));
        ls.renew_once(r)
    }

    #[test]
    fn phases_change_only_along_the_diagram() {
        use Phase::*;
        let failed = || Failed { reason: "x".into(), clean: true };
        assert!(Joining.may_become(&Running));
        assert!(Running.may_become(&Failing("x".into())));
        assert!(Failing("x".into()).may_become(&failed()));
        assert!(Stopping.may_become(&Running));
        assert!(!failed().may_become(&Running), "a failed lockspace never runs again");
        assert!(!Stopped.may_become(&Running));
        assert!(!Joining.may_become(&Stopping));
        assert!(!Running.may_become(&Joining));
    }

    #[test]
    fn renewals_advance_and_reach_wdmd() {
        let (h, ls, mut r) = start();
        assert_eq!(ls.phase(), Phase::Running);
        let before = ls.state.lock().last_success;
        assert_eq!(renew_when_due(&ls, &mut r), Renewed::Yes);
        assert_eq!(renew_when_due(&ls, &mut r), Renewed::Yes);
        let st = ls.state.lock();
        assert_eq!(st.last_success, before + 2 * ls.env.timeouts.renewal_interval());
        assert_eq!(h.wd.lock().unwrap().expiries.last(), Some(&ls.env.timeouts.wdmd_expiry(st.last_success)));
    }

    #[test]
    fn renewals_failing_for_8n_fail_the_lockspace_and_fence() {
        let (h, ls, mut r) = start();
        ls.lock(1, &lv_resource(0), Mode::Ex, true).unwrap();
        let t = ls.env.timeouts;
        let last = ls.state.lock().last_success;
        *ls.backend.disk.fail_with.borrow_mut() = Some(IoError::Os(libc::EIO));
        loop {
            match renew_when_due(&ls, &mut r) {
                Renewed::Retry => {
                    // Still within 8N: running, and no LV fenced.
                    assert!(ls.now() < last + t.renewal_fail());
                    assert!(h.fencer.fenced.lock().unwrap().is_empty());
                    assert_eq!(ls.phase(), Phase::Running);
                }
                Renewed::Failed => break,
                Renewed::Yes => panic!("a renewal succeeded on a failing disk"),
            }
        }
        assert!(ls.now() >= last + t.renewal_fail(), "failed before 8N");
        assert_eq!(*h.fencer.fenced.lock().unwrap(), vec![vec![lv(0).1]]);
        assert!(matches!(ls.phase(), Phase::Failed { clean: true, .. }), "{:?}", ls.phase());
        assert!(h.wd.lock().unwrap().cleared);
        // No new locks, and the lock table was emptied by failure handling.
        *ls.backend.disk.fail_with.borrow_mut() = None;
        assert!(matches!(ls.lock(2, &lv_resource(1), Mode::Ex, false), Err(Error::Failed(_))));
        assert!(ls.held_lvs().is_empty());
        assert!(ls.status().state.starts_with("failed: no successful renewal"));
    }

    #[test]
    fn a_foreign_record_fails_the_lockspace_at_once() {
        let (h, ls, mut r) = start();
        // Someone else's write over our delta lease: not ours any more, no 8N wait.
        let at = ls.ls_area.sector_offset(1);
        let other = ls.backend.disk.snapshot(ls.ls_area.sector_offset(2), 512);
        ls.backend.disk.poke(at, &other);
        assert_eq!(renew_when_due(&ls, &mut r), Renewed::Failed);
        assert!(ls.phase().is_failed());
        assert_eq!(h.fencer.fenced.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_restarted_daemon_resumes_the_same_generation_and_its_locks() {
        let (dir, h, disk, clock) = restartable();
        let ls = lockspace(&h, &disk, &clock);
        let (gen, lease) = ls.join_lease().unwrap();
        let mut r = Renewal::new(lease);
        ls.lock(0, &lv_resource(1), Mode::Ex, true).unwrap();
        ls.lock(5, &lv_resource(2), Mode::Sh, false).unwrap();
        assert_eq!(renew_when_due(&ls, &mut r), Renewed::Yes);
        drop(ls); // the daemon is killed: nothing released

        clock.advance(Duration::from_secs(3));
        let h2 = host(1, &dir);
        let (saved, bad) = h2.env.state.load_all();
        assert!(bad.is_empty());
        let rec = &saved[0];
        let ls2 = lockspace(&h2, &disk, &clock);
        let lease = ls2.resume_lease(&rec.lockspace).unwrap();
        assert_eq!((lease.generation, ls2.generation()), (gen, gen));
        assert_eq!(ls2.phase(), Phase::Running);
        ls2.restore_locks(&rec.locks, rec.lockspace.generation);
        // The host's lock stays; the dead command's is released.
        let infos = ls2.status().locks;
        assert_eq!(infos.len(), 1, "{infos:?}");
        assert_eq!((infos[0].resource.as_str(), infos[0].persistent), (lv(1).1.as_str(), true));
        // And the resumed lease renews.
        let mut r2 = Renewal::new(lease);
        assert_eq!(renew_when_due(&ls2, &mut r2), Renewed::Yes);
    }

    #[test]
    fn a_record_past_8n_or_changed_on_disk_is_not_resumed() {
        let (_dir, h, disk, clock) = restartable();
        let ls = lockspace(&h, &disk, &clock);
        ls.join_lease().unwrap();
        drop(ls);
        let (saved, _) = h.env.state.load_all();
        let mut changed = saved[0].lockspace.clone();
        changed.generation += 1;
        let ls2 = lockspace(&h, &disk, &clock);
        assert!(matches!(ls2.resume_lease(&changed), Err(Error::Refused(_))));
        clock.advance(timeouts().renewal_fail());
        assert!(matches!(ls2.resume_lease(&saved[0].lockspace), Err(Error::Failed(_))));
        assert_eq!(ls2.phase(), Phase::Joining);
    }

    #[test]
    fn a_request_panicking_with_the_state_held_does_not_stop_renewals() {
        let (_h, ls, mut r) = start();
        ls.panic_in_next_lock.store(true, Ordering::SeqCst);
        // As the server runs a request: a panic becomes that request's error reply.
        let req =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ls.lock(1, &lv_resource(0), Mode::Ex, false)));
        assert!(req.is_err());
        assert!(ls.state.is_poisoned(), "the fault struck while the state was held");

        let (count, last) = {
            let st = ls.state.lock();
            (st.renewals, st.last_success)
        };
        assert_eq!(renew_when_due(&ls, &mut r), Renewed::Yes);
        assert_eq!(renew_when_due(&ls, &mut r), Renewed::Yes);
        let st = ls.state.lock();
        assert_eq!(st.renewals, count + 2);
        assert!(st.last_success > last);
        assert_eq!(st.phase, Phase::Running);
        drop(st);
        // The next request is served normally.
        ls.lock(1, &lv_resource(0), Mode::Ex, false).unwrap();
        assert_eq!(ls.status().locks.len(), 1);
    }
}
