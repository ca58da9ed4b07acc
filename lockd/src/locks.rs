//! The locks of one lockspace, in lvmlockd's model.
//!
//! Every resource (GL, VG, one per LV) is held on disk at most once per host, as one paxos
//! lease in the strongest mode any local holder needs. Local holders are commands (one per
//! client connection: GL and VG locks, and LV locks a metadata change takes) and the host itself
//! (persistent LV locks of activated LVs, which outlive the command). Local conflicts are
//! checked here; remote ones by the paxos acquire with OWNER_NOWAIT semantics
//! (`wait_for_owner = false`): a live holder fails the request at once, a holder our renewal
//! thread has seen silent for its host_dead no longer counts. GL/VG requests retry conflicts for
//! `Timeouts::command_lock_wait` (other commands finish quickly); LV conflicts fail at once.
//!
//! A resource being acquired, converted or released is marked busy; other requests for it wait,
//! requests for other resources run in parallel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lease::clock::Clock;
use lease::delta_lease::ProtocolFaults;
use lease::diskio::{block_on, Disk};
use lease::host_status::HostStatusTable;
use lease::ondisk::{LeaderRecord, LeaseKind, Name, PaxosDblock};
use lease::paxos_lease::{self, AcquireOptions, HeldResource, Mode as PMode, PaxosCtx, ResourceArea};
use lease::timeouts::BALLOT_BACKOFF_MAX;
use lease::LeaseError;
use tracing::{error, info, warn};

use crate::error::{Error, Result};
use crate::fence::FencedLv;
use crate::lockspace::{Backend, Lockspace};
use crate::state::{hex, unhex, SavedHeld, SavedLock};
use crate::util::mono_ms;
use proto::lockd::protocol::{LockInfo, Mode, RepairReport, Resource};

// lvmlockd's layout of the lease LV, defined once (lvmmeta), as lvtool sees it too.
pub use lvmmeta::lockarea::{
    GL_LOCK_BEGIN, LV_LOCK_BEGIN, R_NAME_GL, R_NAME_GL_DISABLED, R_NAME_UNUSED, R_NAME_VG, VG_LOCK_BEGIN,
};
/// lvmlockd's `struct val_blk` version.
pub const VAL_BLK_VERSION: u16 = 0x0101;

/// A client connection of the daemon.
pub type ConnId = u64;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Gl,
    Vg,
    Lv(String),
}

pub struct Res {
    /// LV offset of the lease.
    pub offset: u64,
    pub lv_name: Option<String>,
    /// Our paxos hold on disk.
    pub held: Option<HeldResource>,
    /// Commands holding it, and in which mode.
    pub conns: BTreeMap<ConnId, PMode>,
    /// The host's own hold (activated LV).
    pub persistent: Option<PMode>,
    pub busy: bool,
    /// An acquire or convert is in flight.
    pub pending: bool,
}

impl Res {
    fn new(offset: u64, lv_name: Option<String>) -> Res {
        Res { offset, lv_name, held: None, conns: BTreeMap::new(), persistent: None, busy: false, pending: false }
    }
    fn unused(&self) -> bool {
        self.held.is_none() && self.conns.is_empty() && self.persistent.is_none() && !self.busy
    }
}

#[derive(Default)]
pub struct Table {
    pub res: BTreeMap<Key, Res>,
}

impl Table {
    /// The locks held on disk, as `lockd status` shows them.
    pub fn lock_infos(&self) -> Vec<LockInfo> {
        self.res
            .iter()
            .filter_map(|(k, r)| {
                let h = r.held.as_ref()?;
                Some(LockInfo {
                    resource: match k {
                        Key::Gl => R_NAME_GL.into(),
                        Key::Vg => R_NAME_VG.into(),
                        Key::Lv(u) => u.clone(),
                    },
                    name: r.lv_name.clone(),
                    offset: r.offset,
                    mode: mode_of(h.mode),
                    lver: h.lver,
                    persistent: r.persistent.is_some(),
                    commands: r.conns.len(),
                })
            })
            .collect()
    }

    /// What holds for every entry between two requests' steps: at most one command holds a
    /// resource ex, and then no one else here holds it; an LV active shared here is not held
    /// ex by a command; our hold on disk is at least what the holders need, except while an
    /// acquire, convert or release of it is in flight (busy).
    pub(crate) fn check_invariants(&self) {
        for (key, r) in &self.res {
            let ex = r.conns.values().filter(|m| **m == PMode::Exclusive).count();
            assert!(ex <= 1, "{key:?}: held ex by {ex} commands here");
            assert!(
                ex == 0 || (r.conns.len() == 1 && r.persistent.is_none()) || matches!(key, Key::Lv(_)),
                "{key:?}: held ex by a command and by others here"
            );
            if matches!(key, Key::Lv(_)) && r.persistent == Some(PMode::Shared) {
                assert!(ex == 0, "{key:?}: active shared here and held ex by a command");
            }
            if !r.busy && r.conns.len() + usize::from(r.persistent.is_some()) > 0 {
                let need = required(&r.conns, r.persistent);
                let have = r.held.as_ref().map(|h| h.mode);
                assert!(
                    have == need || have == Some(PMode::Exclusive),
                    "{key:?}: holders need {need:?}, the disk hold is {have:?}"
                );
            }
        }
    }
}

fn pmode(m: Mode) -> Option<PMode> {
    match m {
        Mode::Ex => Some(PMode::Exclusive),
        Mode::Sh => Some(PMode::Shared),
        Mode::Un => None,
    }
}

fn mode_of(m: PMode) -> Mode {
    match m {
        PMode::Exclusive => Mode::Ex,
        PMode::Shared => Mode::Sh,
    }
}

/// The strongest mode any holder needs.
fn required(conns: &BTreeMap<ConnId, PMode>, persistent: Option<PMode>) -> Option<PMode> {
    let all = conns.values().copied().chain(persistent);
    all.fold(None, |acc, m| {
        if acc == Some(PMode::Exclusive) || m == PMode::Exclusive {
            Some(PMode::Exclusive)
        } else {
            Some(m)
        }
    })
}

/// Why `conn` cannot have `want` while the others here hold what they hold.
fn local_conflict(key: &Key, res: &Res, conn: ConnId, want: PMode, persistent: bool) -> Option<String> {
    let others = res.conns.iter().filter(|(c, _)| **c != conn).map(|(_, m)| *m);
    let clash = |m: PMode| m == PMode::Exclusive || want == PMode::Exclusive;
    if let Key::Lv(_) = key {
        if !persistent {
            // The host's own hold covers a command's request, unless it is shared and the
            // command needs exclusive (the LV is active shared here).
            if res.persistent == Some(PMode::Shared) && want == PMode::Exclusive {
                return Some("it is active in shared mode on this host".into());
            }
        }
    }
    if others.into_iter().any(clash) {
        return Some("another command on this host holds it".into());
    }
    None
}

/// Why a disk operation failed: a lease error (conflicts name holders from the host table,
/// which is consulted after the table lock is dropped), or a ready reply.
enum OpError {
    Lease(LeaseError),
    Reply(Error),
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Lease(e) => write!(f, "{e}"),
            OpError::Reply(r) => write!(f, "{r}"),
        }
    }
}

/// A table entry marked busy while its disk operation runs without the state lock. Dropped
/// only when that code unwinds: the entry is unmarked, keeping its last hold and holders (a
/// lease it may have taken on disk stays recorded as pending, for the next request or a
/// restart to resolve), and waiters are woken.
struct BusyMark<'a, B: Backend> {
    ls: &'a Lockspace<B>,
    key: &'a Key,
}

impl<B: Backend> Drop for BusyMark<'_, B> {
    fn drop(&mut self) {
        let mut st = self.ls.state.lock();
        if let Some(r) = st.table.res.get_mut(self.key) {
            r.busy = false;
        }
        self.ls.table_changed.notify_all();
        error!("lockspace {}: a request failed in the middle of a lock change", self.ls.ls_name);
    }
}

/// What a request is about, resolved against the lockspace.
struct Target {
    key: Key,
    area: ResourceArea,
    lv_name: Option<String>,
}

impl<B: Backend> Lockspace<B> {
    fn target(&self, r: &Resource) -> Result<Target> {
        let a = self.geometry.area_bytes();
        let (key, offset, name, lv_name) = match r {
            // Which VG's GL is "the" global lock is decided by the caller (`glctl`); the paxos
            // acquire refuses the slot unless its leader is still named GLLK.
            Resource::Gl => (Key::Gl, GL_LOCK_BEGIN * a, R_NAME_GL.to_string(), None),
            Resource::Vg => (Key::Vg, VG_LOCK_BEGIN * a, R_NAME_VG.to_string(), None),
            Resource::Lv { uuid, offset, name } => {
                check_lv_name(uuid)?;
                let bad = || {
                    Error::invalid(format!(
                        "LV {}/{name}: lease offset {offset} is not an LV slot of the lease LV",
                        self.vg
                    ))
                };
                // Never the lockspace, GLLK or VGLK, never between two slots.
                if *offset < LV_LOCK_BEGIN * a || offset % a != 0 {
                    return Err(bad());
                }
                // Beyond our map: the lock LV may have grown; the metadata decides.
                self.ensure_covers(*offset)?;
                if offset.checked_add(a).is_none_or(|e| e > self.lease_area().size()) {
                    return Err(bad());
                }
                (Key::Lv(uuid.clone()), *offset, uuid.clone(), Some(name.clone()).filter(|n| !n.is_empty()))
            }
        };
        let name = Name::new(&name).map_err(|e| Error::invalid(format!("resource name: {e}")))?;
        Ok(Target {
            key,
            area: ResourceArea { lockspace: self.ls_name, name, offset, geometry: self.geometry },
            lv_name,
        })
    }

    /// An LV lock may only be taken at the slot the committed metadata gives that LV: a
    /// client naming another slot would hold (and later free) another LV's lease. An LV not
    /// in the metadata yet (lvcreate names its slot with `init_lv` before the commit) may
    /// use a slot no committed LV names; the paxos acquire then insists that the slot's
    /// leader carries this LV's UUID, which only `init_lv` writes. The cached read serves
    /// the common case (activating many LVs reads the metadata once); anything else is
    /// decided by a fresh read.
    fn check_lv_slot(&self, uuid: &str, offset: u64) -> Result<()> {
        if self.leases()?.lvs.get(uuid).is_some_and(|(_, o)| *o == Some(offset)) {
            return Ok(());
        }
        let fresh = self.read_leases(None)?;
        match fresh.lvs.get(uuid) {
            Some((_, Some(o))) if *o == offset => Ok(()),
            Some((name, o)) => Err(Error::refused(format!(
                "LV {}/{name}: its lease in the committed metadata is {}, not offset {offset}; refused",
                self.vg,
                o.map_or("missing (no lock_args)".to_string(), |o| format!("at offset {o}"))
            ))),
            None => match fresh.slot_owner_other_than(offset, uuid) {
                Some(other) => Err(Error::refused(format!(
                    "VG {}: the lease at offset {offset} belongs to LV {} ({other}), not {uuid}; refused",
                    self.vg,
                    fresh.lvs.get(other).map_or("?", |(n, _)| n.as_str())
                ))),
                None => Ok(()),
            },
        }
    }

    /// How a resource is called in messages.
    fn describe(&self, key: &Key, lv_name: Option<&str>) -> String {
        match key {
            Key::Gl => format!("global lock (in VG {})", self.vg),
            Key::Vg => format!("VG {} lock", self.vg),
            Key::Lv(u) => format!("LV {}/{}", self.vg, lv_name.unwrap_or(u)),
        }
    }

    /// A conflict with other hosts as a reply naming them.
    fn conflict(&self, t: &Target, e: &LeaseError) -> Error {
        let what = self.describe(&t.key, t.lv_name.as_deref());
        let holders = match e {
            LeaseError::IdLive { owner_id, owner_generation }
            | LeaseError::OwnedRetry { owner_id, owner_generation }
            | LeaseError::Owned { owner_id, owner_generation } => {
                vec![self.describe_host(*owner_id, *owner_generation, false)]
            }
            LeaseError::Other { owner_id } => vec![self.describe_host(*owner_id, 0, false)],
            LeaseError::SharedHeld { holders } => holders.iter().map(|h| self.describe_host(*h, 0, true)).collect(),
            LeaseError::ShortHoldRetry => vec![],
            _ => return Error::lease(&what, Some(t.area.offset), e),
        };
        let list: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
        let verb = if matches!(t.key, Key::Lv(_)) { "is locked" } else { "is held" };
        let message = if list.is_empty() {
            format!("{what} {verb} by other hosts (busy)")
        } else {
            format!("{what} {verb} by {}", list.join(", "))
        };
        if holders.is_empty() {
            Error::Contention(message)
        } else {
            Error::HeldBy { message, holders }
        }
    }

    /// Generation and host table for an operation; `new`: it takes a new hold (refused unless
    /// running), otherwise it releases (allowed while stopping).
    fn io_ctx(&self, new: bool) -> Result<(u64, HostStatusTable)> {
        if new {
            return self.check_usable();
        }
        let t = self.env.timeouts;
        let st = self.state.lock();
        if st.phase.is_failed() || self.now() + t.io() >= st.last_success + t.renewal_fail() {
            return Err(Error::failed(format!("VG {} lockspace is not renewed", self.vg)));
        }
        Ok((st.generation, st.hosts.clone()))
    }

    /// The context of a paxos operation by this host in this lockspace.
    fn paxos_ctx<'a>(
        &self,
        disk: &'a B::Disk,
        clock: &'a B::Clock,
        generation: u64,
        hosts: &'a HostStatusTable,
    ) -> PaxosCtx<'a, B::Disk, B::Clock> {
        PaxosCtx {
            disk,
            clock,
            timeouts: self.env.timeouts,
            lockspace: self.ls_area,
            host_id: self.env.host.host_id,
            generation,
            hosts: Some(hosts),
            faults: ProtocolFaults::default(),
        }
    }

    /// Moves our disk hold from `held` to `new`. Returns the hold afterwards and the outcome.
    fn paxos_change(
        &self,
        area: &ResourceArea,
        held: Option<HeldResource>,
        new: Option<PMode>,
    ) -> (Option<HeldResource>, Result<(), OpError>) {
        let (gen, hosts) = match self.io_ctx(new.is_some()) {
            Ok(x) => x,
            Err(e) => return (held, Err(OpError::Reply(e))),
        };
        let disk = self.disk();
        let clock = self.backend.clock();
        let ctx = self.paxos_ctx(&disk, &clock, gen, &hosts);
        let wrap = |e: LeaseError| Err(OpError::Lease(e));
        match (held, new) {
            (None, None) => (None, Ok(())),
            (None, Some(mode)) => {
                match block_on(paxos_lease::acquire(&ctx, area, AcquireOptions { mode, wait_for_owner: false })) {
                    Ok(h) => (Some(h), Ok(())),
                    Err(e) => (None, wrap(e)),
                }
            }
            (Some(h), None) => match block_on(paxos_lease::release(&ctx, &h)) {
                Ok(()) => (None, Ok(())),
                Err(e) => (Some(h), wrap(e)),
            },
            (Some(mut h), Some(mode)) => {
                let r = block_on(paxos_lease::convert(&ctx, &mut h, mode));
                (Some(h), r.or_else(wrap))
            }
        }
    }

    /// Takes, converts or releases a lock for `conn` (or the host, `persistent`). For the VG
    /// lock, returns the version in its value block.
    pub fn lock(&self, conn: ConnId, r: &Resource, mode: Mode, persistent: bool) -> Result<Option<u32>> {
        if mode != Mode::Un {
            // A failed or stopping lockspace answers as such before any metadata is read.
            self.check_usable()?;
        }
        let t = self.target(r)?;
        if let (Resource::Lv { uuid, offset, .. }, Some(_)) = (r, pmode(mode)) {
            // Releases are never refused: only new holds are checked against the metadata.
            self.check_lv_slot(uuid, *offset)?;
        }
        let v = self.lock_target(conn, &t, pmode(mode), persistent)?;
        if let (Key::Vg, Some(version)) = (&t.key, v) {
            // The VG lock's value block carries the seqno of the last commit any host
            // announced: a newer one than our read means the cached map may be stale (the
            // lock LV may have grown or moved), so it is read again now, under the VG lock.
            let cached = self.state.lock().leases.as_ref().map(|l| l.seqno);
            if cached.is_some_and(|s| s != version) {
                if let Err(e) = self.read_leases(None) {
                    warn!("lockspace {}: re-reading the metadata after a change: {}", self.ls_name, e);
                }
            }
        }
        if t.key == Key::Gl && mode != Mode::Un {
            // The GL may have been disabled (renamed) while we acquired it: then what we hold
            // is not the global lock. The acquire checked the name in its reads; this read
            // after it covers a rename that completed in between.
            if let Err(e) = self.verify_gl_name() {
                let _ = self.lock_target(conn, &t, None, persistent);
                return Err(e);
            }
        }
        Ok(v)
    }

    /// The GL slot still says GLLK.
    fn verify_gl_name(&self) -> Result<()> {
        match self.gl_slot_name()? {
            n if n == R_NAME_GL => Ok(()),
            n => Err(Error::no_global_lock(format!(
                "the global lock in VG {} was disabled meanwhile (slot now {n:?}); retry",
                self.vg
            ))),
        }
    }

    /// The resource name in this VG's GL slot (`GLLK` or `_GLLK_disabled`), read now.
    pub fn gl_slot_name(&self) -> Result<String> {
        let at = GL_LOCK_BEGIN * self.geometry.area_bytes();
        let buf = block_on(self.disk().read(at, self.geometry.sector_bytes(), self.env.timeouts.io()))
            .map_err(|e| Error::io(format!("VG {}: read the GL slot: {e}", self.vg)))?;
        let l = LeaderRecord::verify_any_name(&buf, LeaseKind::Paxos)
            .map_err(|e| Error::corrupt(None, format!("VG {}: GL slot at offset {at}: {e}", self.vg)))?;
        let n = l.resource_name.as_str_lossy();
        self.set_gl_enabled(n == R_NAME_GL);
        Ok(n)
    }

    fn lock_target(&self, conn: ConnId, t: &Target, want: Option<PMode>, persistent: bool) -> Result<Option<u32>> {
        let timeouts = self.env.timeouts;
        let deadline = self.now() + timeouts.command_lock_wait();
        // Commands' GL/VG locks wait a little for other commands; LV locks never wait.
        let may_wait = !persistent && !matches!(t.key, Key::Lv(_));
        let clock = self.backend.clock();
        loop {
            let mut st = self.state.lock();
            while st.table.res.get(&t.key).is_some_and(|x| x.busy) {
                st = self.state.wait(&self.table_changed, st);
            }
            #[cfg(test)]
            if self.panic_in_next_lock.swap(false, std::sync::atomic::Ordering::SeqCst) {
                // Mid-change: the entry exists, nothing is decided yet.
                st.table.res.entry(t.key.clone()).or_insert_with(|| Res::new(t.area.offset, t.lv_name.clone()));
                panic!("injected fault: a lock request's bug while it holds the lockspace state");
            }
            if want.is_some() {
                // Before creating an entry: a failed or stopping lockspace takes no new locks.
                st.usable(&self.vg, self.now(), timeouts)?;
            }
            let failed = st.phase.is_failed();
            let tb = &mut st.table;
            let res = tb.res.entry(t.key.clone()).or_insert_with(|| Res::new(t.area.offset, t.lv_name.clone()));
            if res.offset != t.area.offset {
                let held_at = res.offset;
                if res.unused() {
                    tb.res.remove(&t.key);
                }
                return Err(Error::invalid(format!(
                    "{}: lease offset {} differs from {held_at} held here",
                    self.describe(&t.key, None),
                    t.area.offset
                )));
            }
            if t.lv_name.is_some() {
                res.lv_name = t.lv_name.clone();
            }
            let mut conns = res.conns.clone();
            let mut pers = res.persistent;
            if persistent {
                pers = want;
            } else {
                match want {
                    Some(m) => conns.insert(conn, m),
                    None => conns.remove(&conn),
                };
            }
            if let Some(w) = want {
                if let Some(why) = local_conflict(&t.key, res, conn, w, persistent) {
                    if res.unused() {
                        tb.res.remove(&t.key);
                    }
                    if may_wait && self.now() < deadline {
                        let left = deadline.saturating_sub(self.now());
                        drop(self.state.wait_timeout(&self.table_changed, st, left));
                        continue;
                    }
                    let what = self.describe(&t.key, t.lv_name.as_deref());
                    return Err(Error::contention(format!("{what} is busy: {why}")));
                }
            }
            let old = res.held.as_ref().map(|h| h.mode);
            let new = required(&conns, pers);
            // In a failed lockspace an unlock only forgets (nothing may be written).
            if old == new || (want.is_none() && failed) {
                let changed = res.persistent != pers || res.conns.is_empty() != conns.is_empty();
                res.conns = conns;
                res.persistent = pers;
                if failed && res.conns.is_empty() && res.persistent.is_none() {
                    res.held = None;
                }
                if res.unused() {
                    tb.res.remove(&t.key);
                }
                #[cfg(debug_assertions)]
                tb.check_invariants();
                drop(st);
                if changed {
                    self.save_lock(&t.key, t.area.offset);
                }
                return Ok(self.vg_version(t, want));
            }
            res.busy = true;
            res.pending = new.is_some();
            let held = res.held.clone();
            drop(st);
            // From here until the outcome is in the table, a panic must not leave the entry
            // busy for ever (every later request for it would wait on it).
            let mark = BusyMark { ls: self, key: &t.key };
            if new.is_some() {
                // Record the intent: a restart finds out whether the lease became ours.
                self.save_lock(&t.key, t.area.offset);
            }
            let (after, outcome) = self.paxos_change(&t.area, held, new);
            std::mem::forget(mark);
            let mut st = self.state.lock();
            let Some(res) = st.table.res.get_mut(&t.key) else {
                // Failure handling took the table meanwhile: the lockspace has failed.
                self.table_changed.notify_all();
                return Err(Error::failed(format!("VG {} lockspace failed during the request", self.vg)));
            };
            res.busy = false;
            res.pending = false;
            res.held = after;
            let ok = outcome.is_ok();
            // A release that failed still ends the holders' claims; the hold stays for a retry.
            if ok || want.is_none() {
                res.conns = conns;
                res.persistent = pers;
            }
            if res.unused() {
                st.table.res.remove(&t.key);
            }
            #[cfg(debug_assertions)]
            st.table.check_invariants();
            self.table_changed.notify_all();
            drop(st);
            self.save_lock(&t.key, t.area.offset);
            match outcome {
                Ok(()) => {
                    info!(
                        "lockspace {}: {} {} {} mono_ms={}",
                        self.ls_name,
                        self.describe(&t.key, t.lv_name.as_deref()),
                        match new {
                            Some(PMode::Exclusive) => "held ex",
                            Some(PMode::Shared) => "held sh",
                            None => "released",
                        },
                        if persistent { "(persistent)" } else { "" },
                        mono_ms()
                    );
                    return Ok(self.vg_version(t, want));
                }
                Err(e) => {
                    let reply = match e {
                        OpError::Lease(le) => self.conflict(t, &le),
                        OpError::Reply(r) => r,
                    };
                    if reply.is_conflict() && may_wait && self.now() < deadline {
                        clock_sleep(&clock, clock.random_delay(BALLOT_BACKOFF_MAX));
                        continue;
                    }
                    info!("lockspace {}: {reply} mono_ms={}", self.ls_name, mono_ms());
                    return Err(reply);
                }
            }
        }
    }

    /// The VG lease's value block version, after taking the VG lock.
    fn vg_version(&self, t: &Target, want: Option<PMode>) -> Option<u32> {
        if t.key != Key::Vg || want.is_none() || !self.geometry.has_lvb() {
            return None;
        }
        let disk = self.disk();
        let buf = block_on(paxos_lease::read_lvb(&*disk, &t.area, self.env.timeouts)).ok()?;
        let version = u16::from_le_bytes([buf[0], buf[1]]);
        let r_version = u32::from_le_bytes(buf[4..8].try_into().unwrap());
        (version == VAL_BLK_VERSION).then_some(r_version)
    }

    /// Releases every lock `conn` holds (its command ended).
    pub fn release_conn(&self, conn: ConnId) {
        let keys: Vec<(Key, u64, Option<String>)> = {
            let st = self.state.lock();
            let tb = &st.table;
            tb.res
                .iter()
                .filter(|(_, r)| r.conns.contains_key(&conn))
                .map(|(k, r)| (k.clone(), r.offset, r.lv_name.clone()))
                .collect()
        };
        for (key, offset, lv_name) in keys {
            let name = match &key {
                Key::Gl => R_NAME_GL.to_string(),
                Key::Vg => R_NAME_VG.to_string(),
                Key::Lv(u) => u.clone(),
            };
            let Ok(name) = Name::new(&name) else { continue };
            let t = Target {
                key,
                area: ResourceArea { lockspace: self.ls_name, name, offset, geometry: self.geometry },
                lv_name,
            };
            if let Err(e) = self.lock_target(conn, &t, None, false) {
                warn!("lockspace {}: releasing a lock of a finished command: {}", self.ls_name, e);
            }
        }
    }

    /// Whether `conn` holds the VG lock exclusively (needed to change the lease area).
    fn require_vg_ex(&self, conn: ConnId, what: &str) -> Result<()> {
        let st = self.state.lock();
        let tb = &st.table;
        match tb.res.get(&Key::Vg).and_then(|r| r.conns.get(&conn)) {
            Some(PMode::Exclusive) => Ok(()),
            _ => Err(Error::refused(format!("{what} needs the VG {} lock in ex mode", self.vg))),
        }
    }

    /// Whether the holder recorded in leader `l` is gone: never held (timestamp 0), its host
    /// free or dead by the host_dead rule in our table, or this host with no local holder.
    fn owner_gone(&self, l: &LeaderRecord, key: &Key) -> bool {
        if l.timestamp == 0 {
            return true;
        }
        let now = self.now();
        let st = self.state.lock();
        if l.owner_id == self.env.host.host_id {
            return st.table.res.get(key).is_none_or(|r| r.conns.is_empty() && r.persistent.is_none() && !r.busy);
        }
        st.hosts.holder_dead(l.owner_id, l.owner_generation, now)
    }

    /// lvmlockd's find_free_lock + init_lv: names a free LV slot after `lv_uuid`.
    ///
    /// A slot is free only when its leader verifies and is named `#unused`, nobody live holds
    /// it, and no LV of the committed metadata names it in its `lock_args` (a slot zeroed or
    /// freed by mistake still belongs to that LV). A slot that does not verify is an error
    /// naming its offset, never free. The metadata is read afresh: the caller holds the VG
    /// lock in ex, so it cannot change under us, and the lock LV may have grown.
    pub fn init_lv(&self, conn: ConnId, lv_uuid: &str) -> Result<u64> {
        self.check_usable()?;
        self.require_vg_ex(conn, "init_lv")?;
        check_lv_name(lv_uuid)?;
        let name = Name::new(lv_uuid).map_err(|e| Error::invalid(format!("LV uuid: {e}")))?;
        let meta = self.read_leases(None)?;
        if let Some((n, Some(o))) = meta.lvs.get(lv_uuid) {
            return Err(Error::refused(format!(
                "VG {}: LV {n} ({lv_uuid}) already has its lease at offset {o}",
                self.vg
            )));
        }
        let a = self.geometry.area_bytes();
        let size = self.lease_area().size();
        let disk = self.disk();
        let t = self.env.timeouts;
        let key = Key::Lv(lv_uuid.to_string());
        let mut offset = LV_LOCK_BEGIN * a;
        while offset + a <= size {
            if meta.slots.contains_key(&offset) {
                offset += a;
                continue;
            }
            let buf = block_on(disk.read(offset, self.geometry.sector_bytes(), t.io()))
                .map_err(|e| Error::io(format!("VG {}: read LV slot at {offset}: {e}", self.vg)))?;
            let free = match LeaderRecord::verify_any_name(&buf, LeaseKind::Paxos) {
                Ok(l) if l.resource_name.as_str_lossy() == R_NAME_UNUSED => self.owner_gone(&l, &key),
                Ok(l) if l.resource_name == name => {
                    return Err(Error::refused(format!("VG {}: a lease for LV {lv_uuid} exists at {offset}", self.vg)))
                }
                Ok(_) => false,
                Err(e) => {
                    return Err(Error::corrupt(
                        None,
                        format!(
                            "VG {}: LV slot at offset {offset} does not verify ({e}); it is not free \
                             (`lvtool vgck --lock-repair {}` lists it)",
                            self.vg, self.vg
                        ),
                    ))
                }
            };
            if free {
                let area = ResourceArea { lockspace: self.ls_name, name, offset, geometry: self.geometry };
                block_on(paxos_lease::init(&*disk, &area, 0, false, t)).map_err(|e| {
                    Error::lease(&format!("VG {}: init LV lease at {offset}", self.vg), Some(offset), &e)
                })?;
                info!("lockspace {}: LV lease {lv_uuid} initialised at {offset}", self.ls_name);
                return Ok(offset);
            }
            offset += a;
        }
        Err(Error::no_space(format!("VG {}: no free LV lease slot in the lease LV ({size} bytes)", self.vg)))
    }

    /// lvmlockd's free_lv: our holds of the lease end, its slot becomes `#unused`.
    ///
    /// lvremove frees after the commit that removes the LV, so the rule is: the LV must no
    /// longer be in the committed metadata, and no committed LV may name the slot. The slot's
    /// leader must name this LV. Then the lease is taken in ex for the command: the paxos
    /// acquire is what proves no live host holds it (an owner is taken over only when free
    /// or dead by host_dead), and holding it keeps others out until `#unused` is written.
    pub fn free_lv(&self, conn: ConnId, lv_uuid: &str, offset: u64) -> Result<()> {
        self.check_usable()?;
        self.require_vg_ex(conn, "free_lv")?;
        check_lv_name(lv_uuid)?;
        let meta = self.read_leases(None)?;
        if let Some((n, _)) = meta.lvs.get(lv_uuid) {
            return Err(Error::refused(format!(
                "VG {}: LV {n} ({lv_uuid}) is still in the committed metadata; its lease is freed only \
                     after the commit that removes it",
                self.vg
            )));
        }
        if let Some(other) = meta.slot_owner_other_than(offset, lv_uuid) {
            return Err(Error::refused(format!(
                "VG {}: the lease at offset {offset} belongs to LV {other}; not freed",
                self.vg
            )));
        }
        let t = self.target(&Resource::Lv { uuid: lv_uuid.into(), offset, name: String::new() })?;
        let holders: Vec<ConnId> = {
            let st = self.state.lock();
            let tb = &st.table;
            match tb.res.get(&t.key) {
                Some(r) if r.persistent.is_some() => {
                    return Err(Error::refused(format!(
                        "{} is active on this host; deactivate it first",
                        self.describe(&t.key, r.lv_name.as_deref())
                    )))
                }
                Some(r) if r.offset != offset => {
                    return Err(Error::refused(format!("LV {lv_uuid}: held here at offset {}, not {offset}", r.offset)))
                }
                Some(r) => r.conns.keys().copied().filter(|c| *c != conn).collect(),
                None => vec![],
            }
        };
        let disk = self.disk();
        let timeouts = self.env.timeouts;
        let buf = block_on(disk.read(offset, self.geometry.sector_bytes(), timeouts.io()))
            .map_err(|e| Error::io(format!("VG {}: read LV slot at {offset}: {e}", self.vg)))?;
        match LeaderRecord::verify_any_name(&buf, LeaseKind::Paxos) {
            Ok(l) if l.resource_name == t.area.name => {}
            Ok(l) if l.resource_name.as_str_lossy() == R_NAME_UNUSED => return Ok(()),
            Ok(l) => {
                return Err(Error::refused(format!(
                    "VG {}: slot at {offset} holds {}, not LV {lv_uuid}",
                    self.vg, l.resource_name
                )))
            }
            Err(e) => {
                return Err(Error::corrupt(
                    None,
                    format!("VG {}: LV slot at offset {offset} does not verify: {e}", self.vg),
                ))
            }
        }
        for c in holders {
            self.lock_target(c, &t, None, false)?;
        }
        self.lock_target(conn, &t, Some(PMode::Exclusive), false)?;
        let unused = ResourceArea { name: Name::new(R_NAME_UNUSED).expect("valid"), ..t.area };
        let r = block_on(paxos_lease::init(&*disk, &unused, 0, false, timeouts));
        if let Err(e) = r {
            // Maybe written: our hold stays recorded; a retry or lock-stop sorts it out.
            return Err(Error::lease(&format!("VG {}: free LV lease at {offset}", self.vg), Some(offset), &e));
        }
        // The slot is `#unused` now: our hold of the LV's lease went with its leader.
        self.forget(&t.key, offset);
        info!("lockspace {}: LV lease {lv_uuid} at {offset} freed", self.ls_name);
        Ok(())
    }

    /// Drops a table entry whose lease was rewritten by us (nothing left to release).
    pub(crate) fn forget(&self, key: &Key, offset: u64) {
        let mut st = self.state.lock();
        while st.table.res.get(key).is_some_and(|r| r.busy) {
            st = self.state.wait(&self.table_changed, st);
        }
        st.table.res.remove(key);
        self.table_changed.notify_all();
        drop(st);
        self.save_lock(key, offset);
    }

    /// lvmlockd's vg_update: the VG lease's value block carries the new metadata version.
    pub fn vg_update(&self, conn: ConnId, version: u32) -> Result<()> {
        self.check_usable()?;
        self.require_vg_ex(conn, "vg_update")?;
        if !self.geometry.has_lvb() {
            return Ok(());
        }
        let t = self.target(&Resource::Vg)?;
        let mut vb = [0u8; 8];
        vb[..2].copy_from_slice(&VAL_BLK_VERSION.to_le_bytes());
        vb[4..].copy_from_slice(&version.to_le_bytes());
        block_on(paxos_lease::write_lvb(&*self.disk(), &t.area, &vb, self.env.timeouts)).map_err(|e| {
            Error::lease(&format!("VG {}: write the VG lock value block", self.vg), Some(t.area.offset), &e)
        })
    }

    /// LVs whose leases we hold (or hold for the host).
    pub fn held_lvs(&self) -> Vec<FencedLv> {
        let st = self.state.lock();
        let tb = &st.table;
        tb.res
            .iter()
            .filter_map(|(k, r)| match k {
                Key::Lv(u) if r.persistent.is_some() || r.held.is_some() => {
                    Some(FencedLv { uuid: u.clone(), name: r.lv_name.clone() })
                }
                _ => None,
            })
            .collect()
    }

    /// Releases every hold on disk (lock-stop). Returns how many LV locks were released.
    pub fn release_all(&self) -> usize {
        let mut lvs = 0;
        let keys: Vec<Key> = self.state.lock().table.res.keys().cloned().collect();
        for key in keys {
            let (offset, held) = {
                let mut st = self.state.lock();
                while st.table.res.get(&key).is_some_and(|r| r.busy) {
                    st = self.state.wait(&self.table_changed, st);
                }
                let Some(r) = st.table.res.remove(&key) else { continue };
                if matches!(key, Key::Lv(_)) && r.persistent.is_some() {
                    lvs += 1;
                }
                (r.offset, r.held)
            };
            if let Some(h) = held {
                let area = h.area;
                if let (_, Err(e)) = self.paxos_change(&area, Some(h), None) {
                    warn!("lockspace {}: release of {} failed: {e}", self.ls_name, area.name);
                }
            }
            self.save_lock(&key, offset);
        }
        self.table_changed.notify_all();
        lvs
    }

    /// After a failure, once fenced: releases what can still be written safely, i.e. well
    /// before `host_dead` (when others may take our leases anyway), and forgets every lock.
    pub fn release_all_after_failure(&self, host_dead: Duration) {
        let io = self.env.timeouts.io();
        let (res, gen) = {
            let mut st = self.state.lock();
            (std::mem::take(&mut st.table.res), st.generation)
        };
        self.table_changed.notify_all();
        let disk = self.disk();
        let clock = self.backend.clock();
        let hosts = HostStatusTable::new(self.env.timeouts);
        let ctx = self.paxos_ctx(&disk, &clock, gen, &hosts);
        for (key, r) in res {
            // Forgotten here, so forgotten by a restarted lockd too.
            self.save_lock(&key, r.offset);
            let Some(h) = r.held else { continue };
            if self.now() + 2 * io >= host_dead {
                warn!("lockspace {}: too close to host_dead to release {}; left to expire", self.ls_name, h.area.name);
                continue;
            }
            match block_on(paxos_lease::release(&ctx, &h)) {
                Ok(()) => info!("lockspace {}: released {} after failure", self.ls_name, h.area.name),
                Err(e) => warn!("lockspace {}: release of {} after failure: {e}", self.ls_name, h.area.name),
            }
        }
    }

    /// Records the lock on `key` (its lease at `offset`) as the table has it now, or forgets it.
    pub fn save_lock(&self, key: &Key, offset: u64) {
        // Read the table under the save mutex: records reach the file in the order it changed.
        let _order = self.save_order.lock();
        let record = {
            let st = self.state.lock();
            let generation = st.generation;
            st.table.res.get(key).filter(|r| r.held.is_some() || r.pending).map(|r| SavedLock {
                generation,
                resource: match key {
                    Key::Gl => Resource::Gl,
                    Key::Vg => Resource::Vg,
                    Key::Lv(u) => {
                        Resource::Lv { uuid: u.clone(), offset: r.offset, name: r.lv_name.clone().unwrap_or_default() }
                    }
                },
                persistent: r.persistent.map(mode_of),
                transient: !r.conns.is_empty(),
                pending: r.pending,
                held: r.held.as_ref().map(|h| SavedHeld {
                    mode: mode_of(h.mode),
                    lver: h.lver,
                    leader: hex(&h.leader.to_bytes()),
                    dblock: {
                        let mut b = [0u8; lease::ondisk::DBLOCK_LEN];
                        let mut d = h.dblock;
                        d.encode(&mut b);
                        hex(&b)
                    },
                }),
            })
        };
        if let Err(e) = self.env.state.save_lock(&self.vg, offset, record.as_ref()) {
            // A restart would then lose this lock (the watchdog covers safety).
            error!("lockspace {}: cannot record a lock in {}: {e}", self.ls_name, self.env.state.dir.display());
        }
    }

    /// What our own sector and the leader say we hold of `area` on disk now.
    fn read_ours(&self, area: &ResourceArea, generation: u64) -> Result<Option<HeldResource>, LeaseError> {
        let view = block_on(paxos_lease::read_resource(&*self.disk(), area, self.env.timeouts))?;
        let me = self.env.host.host_id;
        let Some(dblock) = view.dblocks.get(me as usize - 1).copied() else { return Ok(None) };
        let l = &view.leader;
        if l.timestamp != 0 && l.owner_id == me && l.owner_generation == generation {
            return Ok(Some(HeldResource {
                area: *area,
                mode: PMode::Exclusive,
                lver: l.lver,
                leader: l.clone(),
                dblock,
            }));
        }
        let mb = view.mode_blocks.get(me as usize - 1).copied().unwrap_or_default();
        if mb.shared() && mb.generation == generation {
            return Ok(Some(HeldResource {
                area: *area,
                mode: PMode::Shared,
                lver: l.lver,
                leader: l.clone(),
                dblock,
            }));
        }
        Ok(None)
    }

    /// Loads recorded holds without touching the disk (a lockspace that could not be resumed
    /// still needs to know which LVs to fence).
    pub fn load_records(&self, saved: &[SavedLock]) {
        // Targets first: resolving one takes the state lock.
        let targets: Vec<(Target, &SavedLock)> =
            saved.iter().filter_map(|s| self.target(&s.resource).ok().map(|t| (t, s))).collect();
        let mut st = self.state.lock();
        for (t, s) in targets {
            let mut r = Res::new(t.area.offset, t.lv_name.clone());
            r.persistent = s.persistent.and_then(pmode);
            r.held = s.held.as_ref().and_then(|h| recorded_hold(h, t.area));
            st.table.res.insert(t.key, r);
        }
    }

    /// A resumed lockspace takes back its locks: the host's (persistent) ones stay held; those
    /// of commands that died with the old daemon are released; an operation that was in flight
    /// is resolved from the disk.
    pub fn restore_locks(&self, saved: &[SavedLock], generation: u64) {
        for s in saved {
            let t = match self.target(&s.resource) {
                Ok(t) => t,
                Err(e) => {
                    warn!("lockspace {}: recorded lock {:?} is unusable: {}", self.ls_name, s.resource, e);
                    continue;
                }
            };
            let recorded = s.held.as_ref().and_then(|h| recorded_hold(h, t.area));
            let held = if s.pending || recorded.is_none() {
                match self.read_ours(&t.area, generation) {
                    Ok(h) => h,
                    Err(e) => {
                        warn!("lockspace {}: cannot read {}: {e}; keeping the record", self.ls_name, t.area.name);
                        recorded
                    }
                }
            } else {
                recorded
            };
            let Some(held) = held else {
                self.save_lock(&t.key, t.area.offset);
                continue;
            };
            let keep = s.persistent.is_some();
            let mut r = Res::new(t.area.offset, t.lv_name.clone());
            r.persistent = if keep { Some(held.mode) } else { None };
            r.held = Some(held);
            self.state.lock().table.res.insert(t.key.clone(), r);
            self.save_lock(&t.key, t.area.offset);
            if keep {
                info!(
                    "lockspace {}: kept {} mono_ms={}",
                    self.ls_name,
                    self.describe(&t.key, t.lv_name.as_deref()),
                    mono_ms()
                );
            } else if let Err(e) = self.lock_target(0, &t, None, true) {
                warn!("lockspace {}: release of a dead command's lock failed: {}", self.ls_name, e);
            }
        }
    }

    fn gl_target(&self, name: &str) -> Result<Target> {
        let name = Name::new(name).map_err(|e| Error::invalid(format!("GL name: {e}")))?;
        let offset = GL_LOCK_BEGIN * self.geometry.area_bytes();
        Ok(Target {
            key: Key::Gl,
            area: ResourceArea { lockspace: self.ls_name, name, offset, geometry: self.geometry },
            lv_name: None,
        })
    }

    /// Holds this VG's GL slot in ex for `conn`, under its current name (`GLLK` or
    /// `_GLLK_disabled`): a GL move holds every slot it may change (see `glctl`).
    pub(crate) fn gl_hold(&self, conn: ConnId, name: &str) -> Result<()> {
        let t = self.gl_target(name)?;
        self.lock_target(conn, &t, Some(PMode::Exclusive), false).map(|_| ())
    }

    pub(crate) fn gl_release(&self, conn: ConnId, name: &str) {
        if let Ok(t) = self.gl_target(name) {
            if let Err(e) = self.lock_target(conn, &t, None, false) {
                warn!("lockspace {}: release of the GL slot failed: {}", self.ls_name, e);
            }
        }
    }

    /// Renames the GL slot (held in ex by the caller) to `to`: a new leader, unowned, so our
    /// hold goes with the old one.
    pub(crate) fn gl_rename(&self, to: &str) -> Result<()> {
        self.check_usable()?;
        let t = self.gl_target(to)?;
        block_on(paxos_lease::init(&*self.disk(), &t.area, 0, false, self.env.timeouts)).map_err(|e| {
            Error::lease(&format!("VG {}: rename the GL slot to {to}", self.vg), Some(t.area.offset), &e)
        })?;
        self.forget(&Key::Gl, t.area.offset);
        self.set_gl_enabled(to == R_NAME_GL);
        info!("lockspace {}: global lock slot is now {to}", self.ls_name);
        Ok(())
    }

    /// Whether `conn` holds `key` here.
    pub fn holds(&self, conn: ConnId, key: &Key) -> bool {
        self.state.lock().table.res.get(key).is_some_and(|r| r.conns.contains_key(&conn))
    }

    /// Needs the VG lock in ex. Releases this host's locks of LVs the committed metadata no
    /// longer has (unless `keep` names them: a device of theirs is active here), and frees
    /// orphaned slots: a leader naming an LV UUID that no committed LV's `lock_args` give
    /// this slot. Each orphan is taken in ex first, so one a live host holds is reported,
    /// never freed (the acquire takes an owner over only when it is free or dead).
    pub fn repair(&self, conn: ConnId, keep: &[String]) -> Result<RepairReport> {
        self.check_usable()?;
        self.require_vg_ex(conn, "repair")?;
        let meta = self.read_leases(None)?;
        let mut rep = RepairReport::default();
        let stale: Vec<(String, u64, bool, Vec<ConnId>)> = {
            let st = self.state.lock();
            let tb = &st.table;
            tb.res
                .iter()
                .filter_map(|(k, r)| match k {
                    Key::Lv(u) if !meta.lvs.contains_key(u) && !keep.contains(u) => {
                        Some((u.clone(), r.offset, r.persistent.is_some(), r.conns.keys().copied().collect()))
                    }
                    _ => None,
                })
                .collect()
        };
        for (uuid, offset, persistent, conns) in stale {
            let Ok(name) = Name::new(&uuid) else { continue };
            let t = Target {
                key: Key::Lv(uuid.clone()),
                area: ResourceArea { lockspace: self.ls_name, name, offset, geometry: self.geometry },
                lv_name: None,
            };
            let mut ok = true;
            if persistent {
                ok &= self.lock_target(0, &t, None, true).is_ok();
            }
            for c in conns {
                ok &= self.lock_target(c, &t, None, false).is_ok();
            }
            if ok {
                rep.released.push(uuid);
            } else {
                rep.left.push((offset, format!("lock of LV {uuid} held here could not be released")));
            }
        }
        let a = self.geometry.area_bytes();
        let size = self.lease_area().size();
        let disk = self.disk();
        let timeouts = self.env.timeouts;
        let mut offset = LV_LOCK_BEGIN * a;
        while offset + a <= size {
            let at = offset;
            offset += a;
            if meta.slots.contains_key(&at) {
                continue;
            }
            let buf = match block_on(disk.read(at, self.geometry.sector_bytes(), timeouts.io())) {
                Ok(b) => b,
                Err(e) => {
                    rep.left.push((at, format!("unreadable: {e}")));
                    continue;
                }
            };
            let uuid = match LeaderRecord::verify_any_name(&buf, LeaseKind::Paxos) {
                Ok(l) if l.resource_name.as_str_lossy() == R_NAME_UNUSED => continue,
                Ok(l) => l.resource_name.as_str_lossy(),
                Err(e) => {
                    // Not free, and not ours to guess about: a person decides.
                    rep.left.push((at, format!("does not verify: {e}")));
                    continue;
                }
            };
            let t = match self.target(&Resource::Lv { uuid: uuid.clone(), offset: at, name: String::new() }) {
                Ok(t) => t,
                Err(e) => {
                    rep.left.push((at, e.to_string()));
                    continue;
                }
            };
            if let Err(e) = self.lock_target(conn, &t, Some(PMode::Exclusive), false) {
                rep.left.push((at, format!("orphan lease of {uuid} not freed: {}", e)));
                continue;
            }
            let unused = ResourceArea { name: Name::new(R_NAME_UNUSED).expect("valid"), ..t.area };
            match block_on(paxos_lease::init(&*disk, &unused, 0, false, timeouts)) {
                Ok(()) => {
                    self.forget(&t.key, at);
                    info!("lockspace {}: orphan lease {uuid} at {at} freed", self.ls_name);
                    rep.freed.push((at, uuid));
                }
                Err(e) => rep.left.push((at, format!("free of {uuid} failed (maybe written): {e}"))),
            }
        }
        Ok(rep)
    }
}

/// Resource names lvmlockd reserves can never be an LV's: a request naming one as an LV UUID
/// would address the GL, VG or a free slot through the LV path.
fn check_lv_name(uuid: &str) -> Result<()> {
    if uuid.is_empty() || [R_NAME_GL, R_NAME_VG, R_NAME_UNUSED, R_NAME_GL_DISABLED].contains(&uuid) {
        return Err(Error::invalid(format!("{uuid:?} is not an LV UUID")));
    }
    Ok(())
}

/// A hold as a state record has it (`None`: the record is unreadable).
fn recorded_hold(h: &SavedHeld, area: ResourceArea) -> Option<HeldResource> {
    let leader = LeaderRecord::decode(&unhex(&h.leader)?).ok()?;
    let dblock = PaxosDblock::decode(&unhex(&h.dblock)?).ok()?;
    Some(HeldResource { area, mode: pmode(h.mode)?, lver: h.lver, leader, dblock })
}

fn clock_sleep(clock: &impl Clock, d: Duration) {
    block_on(clock.sleep(d));
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Arc<Lockspace>>();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testenv::*;
    use lease::testkit::StepClock;

    fn running() -> (Host, Arc<Lockspace<TestBackend>>) {
        let h = host(1, &scratch_dir());
        let disk = new_disk();
        let clock = StepClock::new(Duration::from_secs(10_000));
        let ls = lockspace(&h, &disk, &clock);
        ls.join_lease().unwrap();
        (h, ls)
    }

    /// Commands, the host's mode and the disk hold of LV slot `i` in the table.
    type Entry = (BTreeMap<ConnId, PMode>, Option<PMode>, Option<PMode>);

    fn entry(ls: &Lockspace<TestBackend>, i: u64) -> Option<Entry> {
        let st = ls.state.lock();
        st.table.res.get(&Key::Lv(lv(i).1)).map(|r| (r.conns.clone(), r.persistent, r.held.as_ref().map(|h| h.mode)))
    }

    /// Our hold of LV slot `i` as the disk shows it.
    fn on_disk(ls: &Lockspace<TestBackend>, i: u64) -> Option<PMode> {
        let t = ls.target(&lv_resource(i)).unwrap();
        ls.read_ours(&t.area, ls.generation()).unwrap().map(|h| h.mode)
    }

    #[test]
    fn grant_convert_and_release_follow_the_holders() {
        let (_h, ls) = running();
        ls.lock(1, &lv_resource(0), Mode::Ex, false).unwrap();
        assert_eq!(entry(&ls, 0), Some((BTreeMap::from([(1, PMode::Exclusive)]), None, Some(PMode::Exclusive))));
        assert_eq!(on_disk(&ls, 0), Some(PMode::Exclusive));

        // ex -> sh: the disk hold follows.
        ls.lock(1, &lv_resource(0), Mode::Sh, false).unwrap();
        assert_eq!(on_disk(&ls, 0), Some(PMode::Shared));
        // A second command shares it.
        ls.lock(2, &lv_resource(0), Mode::Sh, false).unwrap();
        let (conns, _, held) = entry(&ls, 0).unwrap();
        assert_eq!(conns.len(), 2);
        assert_eq!(held, Some(PMode::Shared));

        // One releases: the other keeps the shared hold.
        ls.lock(1, &lv_resource(0), Mode::Un, false).unwrap();
        assert_eq!(on_disk(&ls, 0), Some(PMode::Shared));
        // The last one may convert sh -> ex now.
        ls.lock(2, &lv_resource(0), Mode::Ex, false).unwrap();
        assert_eq!(on_disk(&ls, 0), Some(PMode::Exclusive));
        ls.lock(2, &lv_resource(0), Mode::Un, false).unwrap();
        assert_eq!(entry(&ls, 0), None);
        assert_eq!(on_disk(&ls, 0), None);
    }

    #[test]
    fn two_commands_conflict_on_ex() {
        let (_h, ls) = running();
        ls.lock(1, &lv_resource(1), Mode::Ex, false).unwrap();
        let e = ls.lock(2, &lv_resource(1), Mode::Sh, false).unwrap_err();
        assert!(matches!(e, Error::Contention(_)), "{e:?}");
        let e = ls.lock(2, &lv_resource(1), Mode::Ex, false).unwrap_err();
        assert!(matches!(e, Error::Contention(_)), "{e:?}");
        // The refused requests left nothing behind.
        assert_eq!(entry(&ls, 1), Some((BTreeMap::from([(1, PMode::Exclusive)]), None, Some(PMode::Exclusive))));
        // Shared by one, ex for another: refused as well.
        ls.lock(1, &lv_resource(1), Mode::Sh, false).unwrap();
        assert!(ls.lock(2, &lv_resource(1), Mode::Ex, false).unwrap_err().is_conflict());
        ls.release_conn(1);
        ls.lock(2, &lv_resource(1), Mode::Ex, false).unwrap();
        assert_eq!(on_disk(&ls, 1), Some(PMode::Exclusive));
    }

    #[test]
    fn persistent_locks_outlive_commands_and_block_stop() {
        let (_h, ls) = running();
        ls.lock(0, &lv_resource(2), Mode::Sh, true).unwrap();
        // Active shared here: a command may share it, not take it ex.
        ls.lock(1, &lv_resource(2), Mode::Sh, false).unwrap();
        let e = ls.lock(2, &lv_resource(2), Mode::Ex, false).unwrap_err();
        assert!(e.to_string().contains("active in shared mode"), "{e}");
        ls.release_conn(1);
        assert_eq!(entry(&ls, 2), Some((BTreeMap::new(), Some(PMode::Shared), Some(PMode::Shared))));
        assert_eq!(ls.held_lvs().len(), 1);

        // lock-stop refuses while an LV is active, and the lockspace goes on running.
        assert!(matches!(ls.stop(false), Err(Error::Refused(_))));
        assert_eq!(ls.phase(), crate::lockspace::Phase::Running);
        ls.lock(3, &lv_resource(1), Mode::Ex, false).unwrap();

        ls.lock(0, &lv_resource(2), Mode::Un, true).unwrap();
        assert_eq!(on_disk(&ls, 2), None);
        ls.release_conn(3);
        assert_eq!(ls.stop(false).unwrap(), 0);
        assert_eq!(ls.phase(), crate::lockspace::Phase::Stopped);
    }

    #[test]
    fn another_host_holding_it_is_named() {
        let (h1, ls1) = running();
        let h2 = host(2, &scratch_dir());
        let clock = ls1.backend.clock.clone();
        let ls2 = lockspace(&h2, &ls1.backend.disk, &clock);
        let (gen2, _lease2) = ls2.join_lease().unwrap();
        ls2.lock(7, &lv_resource(0), Mode::Ex, false).unwrap();
        // Host 1 renews, seeing host 2 alive; its lease is then recent enough for new locks.
        let mut r = crate::lockspace::Renewal::new(fresh_lease(&ls1));
        assert_eq!(ls1.renew_once(&mut r), crate::lockspace::Renewed::Yes);
        let e = ls1.lock(1, &lv_resource(0), Mode::Ex, false).unwrap_err();
        match &e {
            Error::HeldBy { holders, .. } => {
                assert_eq!((holders[0].host_id, holders[0].generation), (2, gen2), "{e}")
            }
            other => panic!("expected held by host 2, got {other:?}"),
        }
        drop(h1);
    }

    /// The delta lease of a joined test lockspace, as its renewal thread would hold it.
    fn fresh_lease(ls: &Lockspace<TestBackend>) -> lease::delta_lease::DeltaLease {
        let st = ls.state.lock();
        lease::delta_lease::DeltaLease {
            area: ls.ls_area,
            identity: ls.env.host,
            generation: st.generation,
            io_timeout: ls.env.timeouts.io_timeout as u16,
            last_written: lease::diskio::AlignedBuf::from_slice(&st.delta_sector),
            last_success: st.last_success,
            maybe_written: vec![],
        }
    }

    #[test]
    fn a_busy_entry_is_unmarked_when_its_request_unwinds() {
        let (_h, ls) = running();
        let key = Key::Lv(lv(0).1);
        ls.state.lock().table.res.insert(key.clone(), Res { busy: true, ..Res::new(lv(0).0, None) });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _mark = BusyMark { ls: &*ls, key: &key };
            panic!("a bug during the disk operation");
        }));
        assert!(r.is_err());
        assert!(!ls.state.lock().table.res[&key].busy);
        // The next request for it does not wait for ever.
        ls.lock(1, &lv_resource(0), Mode::Ex, false).unwrap();
    }
}
