//! The [`Locker`] that asks lockd, on hosts with a host_id: one connection per command, so the
//! GL and VG locks it takes end with the command; LV locks of activations are persistent.
//!
//! Local VGs need no locks: a VG lock request for a VG whose lockspace lockd has not started
//! (or with lockd not running) is remembered as "not locked", and once the VG is read a shared
//! VG without its lock is refused for a change and read with a warning (lvm2's behaviour). The
//! global lock is skipped when no started VG holds it.
//!
//! lockd reads the lease LV's map and every LV's slot from the committed metadata itself; the
//! map ([`lease_area`]) computed here is still sent, and lockd refuses a request whose map
//! differs from its own read (a sign that this command read stale metadata).
//!
//! [`Lockd`] carries lockd's other requests (lockspaces, status, repair, moving the global
//! lock): this module is the only place in lvtool that speaks lockd's protocol.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use lease::ondisk::Geometry;
use lease::timeouts::Timeouts;
use proto::lockd::client::{Client, ClientError};
use proto::lockd::protocol::{ErrorCode, LeaseArea, Mode, Request, Resource, Response};

/// A failed lockd request (its message is lockd's, or why lockd could not be reached).
pub use proto::lockd::client::ClientError as LockdError;
/// What lockd reports, as the commands read it.
pub use proto::lockd::protocol::{DaemonStatus, RepairReport};

use crate::error::{Error, Result};
use crate::lockarea::{self, lease_area, LockArea};
use crate::session::{LockMode, Locker};
use crate::vg::{Lv, Vg};

pub fn is_shared(vg: &Vg) -> bool {
    vg.lock_type.as_deref() == Some(lockarea::LOCK_TYPE)
}

fn mode(m: LockMode) -> Mode {
    match m {
        LockMode::Ex => Mode::Ex,
        LockMode::Sh => Mode::Sh,
        LockMode::Un => Mode::Un,
    }
}

/// How many LV lock requests `lock_lvs` keeps in flight (one connection each; lockd serves
/// each connection in its own thread), so the paxos I/O of a `vgchange` overlaps.
const PARALLEL_LV_LOCKS: usize = 8;

/// A request's outcome: `Ok(None)` when lockd is not running.
type CallOutcome = std::result::Result<Option<Response>, ClientError>;

pub struct LockdLocker {
    run_dir: PathBuf,
    client: Option<Client>,
    /// Connecting failed: lockd is not running.
    absent: Option<String>,
    /// VG locks we hold, by VG name.
    vg_locks: HashMap<String, LockMode>,
    /// Why a VG's lock could not be taken (lockspace not started, lockd not running).
    unlocked: HashMap<String, String>,
    warned: HashSet<String>,
    /// Devices of PVs seen in this command, by PV UUID.
    pv_paths: HashMap<String, PathBuf>,
    /// Lease geometry per VG (read from its lockspace once).
    geometry: HashMap<String, Geometry>,
    /// This host's timeouts, bounding the reads of the lease area.
    timeouts: Timeouts,
}

impl LockdLocker {
    pub fn new(run_dir: &Path, timeouts: Timeouts) -> LockdLocker {
        LockdLocker {
            timeouts,
            run_dir: run_dir.to_path_buf(),
            client: None,
            absent: None,
            vg_locks: HashMap::new(),
            unlocked: HashMap::new(),
            warned: HashSet::new(),
            pv_paths: HashMap::new(),
            geometry: HashMap::new(),
        }
    }

    fn client(&mut self) -> Option<&mut Client> {
        if self.client.is_none() && self.absent.is_none() {
            match Client::connect(&self.run_dir) {
                Ok(c) => self.client = Some(c),
                Err(e) => self.absent = Some(e.to_string()),
            }
        }
        self.client.as_mut()
    }

    /// One request; `Ok(None)` when lockd is not running.
    fn call(&mut self, req: &Request) -> CallOutcome {
        match self.client() {
            None => Ok(None),
            Some(c) => c.call(req).map(Some),
        }
    }

    fn area(&mut self, vg: &Vg) -> Result<LeaseArea> {
        let paths = &self.pv_paths;
        let lookup = |i: usize| vg.pvs.get(i).and_then(|p| paths.get(&p.id.to_string()).cloned());
        let g = match self.geometry.get(&vg.name) {
            Some(g) => *g,
            None => {
                let g = LockArea::new(vg, &lookup, Geometry::DEFAULT_512, self.timeouts)?.read_geometry()?;
                self.geometry.insert(vg.name.clone(), g);
                g
            }
        };
        lease_area(vg, &lookup, g)
    }

    /// The request for `lv`'s lease.
    fn lv_request(&mut self, vg: &Vg, lv: &Lv, m: LockMode, persistent: bool) -> Result<Request> {
        let Some(offset) = lv.lock_args.as_deref().and_then(lockarea::parse_lv_lock_args) else {
            return Err(Error::metadata(&vg.name, format!("LV {} has no lease (lock_args)", lv.name)));
        };
        Ok(Request::Lock {
            vg: vg.name.clone(),
            resource: Resource::Lv { uuid: lv.id.to_string(), offset, name: lv.name.clone() },
            mode: mode(m),
            persistent,
            area: Some(self.area(vg)?),
        })
    }

    /// What an LV lock request's reply means for the command.
    fn lv_outcome(&self, vg: &str, m: LockMode, out: CallOutcome) -> Result<()> {
        match out {
            Ok(Some(_)) => Ok(()),
            // Nothing can be held where nothing runs.
            Ok(None) if m == LockMode::Un => Ok(()),
            Err(ClientError::Daemon(e)) if e.code == ErrorCode::NoLockspace && m == LockMode::Un => Ok(()),
            Ok(None) => Err(Error::Invalid(self.not_started(vg))),
            Err(ClientError::Daemon(e)) if e.code == ErrorCode::NoLockspace => {
                Err(Error::Invalid(self.not_started(vg)))
            }
            Err(e) => Err(lock_err(e)),
        }
    }

    fn not_started(&self, vg: &str) -> String {
        match &self.absent {
            Some(why) => format!("VG {vg} lock failed: {why}"),
            None => {
                format!("VG {vg} lock failed: its lockspace is not started here (lvtool vgchange --lock-start {vg})")
            }
        }
    }
}

fn lock_err(e: ClientError) -> Error {
    Error::Invalid(e.to_string())
}

impl Locker for LockdLocker {
    fn lock_gl(&mut self, m: LockMode) -> Result<()> {
        let req =
            Request::Lock { vg: String::new(), resource: Resource::Gl, mode: mode(m), persistent: false, area: None };
        match self.call(&req) {
            Ok(_) => Ok(()),
            // No shared VG exists, or lockd is not running: there is no global lock to take.
            Err(ClientError::Daemon(e)) if e.code == ErrorCode::NoLockspace => Ok(()),
            // Shared VGs exist but no single enabled GL can be had: a change (ex) must not run
            // without it; a report (sh) goes on with a warning, as lvm2 does.
            Err(ClientError::Daemon(e))
                if m == LockMode::Sh && matches!(e.code, ErrorCode::NoGlobalLock | ErrorCode::DuplicateGlobalLock) =>
            {
                eprintln!("  WARNING: Skipping global lock: {}", e.message);
                Ok(())
            }
            Err(e) => Err(Error::Invalid(format!("Global lock failed: {e}"))),
        }
    }

    fn lock_vg(&mut self, vg: &str, m: LockMode) -> Result<()> {
        if m == LockMode::Un && !self.vg_locks.contains_key(vg) {
            return Ok(());
        }
        let req = Request::Lock { vg: vg.into(), resource: Resource::Vg, mode: mode(m), persistent: false, area: None };
        match self.call(&req) {
            Ok(Some(_)) => {
                if m == LockMode::Un {
                    self.vg_locks.remove(vg);
                } else {
                    self.vg_locks.insert(vg.into(), m);
                    self.unlocked.remove(vg);
                }
                Ok(())
            }
            Ok(None) => {
                let why = self.not_started(vg);
                self.unlocked.insert(vg.into(), why);
                Ok(())
            }
            Err(ClientError::Daemon(e)) if e.code == ErrorCode::NoLockspace => {
                let why = self.not_started(vg);
                self.unlocked.insert(vg.into(), why);
                Ok(())
            }
            Err(e) => Err(lock_err(e)),
        }
    }

    fn vg_read(&mut self, vg: &Vg, pv_paths: &[Option<PathBuf>], write: bool) -> Result<()> {
        for (p, path) in vg.pvs.iter().zip(pv_paths) {
            if let Some(path) = path {
                self.pv_paths.insert(p.id.to_string(), path.clone());
            }
        }
        if !is_shared(vg) || self.vg_locks.contains_key(&vg.name) {
            return Ok(());
        }
        let why = self.unlocked.get(&vg.name).cloned().unwrap_or_else(|| self.not_started(&vg.name));
        if write {
            return Err(Error::Invalid(format!("{why}\n  Cannot access VG {} due to failed lock.", vg.name)));
        }
        if self.warned.insert(vg.name.clone()) {
            eprintln!("  WARNING: Reading VG {} without a lock.", vg.name);
        }
        Ok(())
    }

    fn lock_lv(&mut self, vg: &Vg, lv: &Lv, m: LockMode, persistent: bool) -> Result<()> {
        if !is_shared(vg) {
            return Ok(());
        }
        let req = self.lv_request(vg, lv, m, persistent)?;
        let out = self.call(&req);
        self.lv_outcome(&vg.name, m, out)
    }

    fn lock_lvs(&mut self, vg: &Vg, lvs: &[&Lv], m: LockMode) -> Vec<Result<()>> {
        if !is_shared(vg) {
            return lvs.iter().map(|_| Ok(())).collect();
        }
        let reqs: Vec<Result<Request>> = lvs.iter().map(|lv| self.lv_request(vg, lv, m, true)).collect();
        let mut outs: Vec<Option<CallOutcome>> = reqs.iter().map(|_| None).collect();
        if self.client().is_some() && reqs.len() > 1 {
            let next = AtomicUsize::new(0);
            let done = Mutex::new(&mut outs);
            let (run_dir, reqs) = (&self.run_dir, &reqs);
            std::thread::scope(|s| {
                for _ in 0..PARALLEL_LV_LOCKS.min(reqs.len()) {
                    s.spawn(|| {
                        // A worker that cannot connect leaves its share to the loop below.
                        let Ok(mut client) = Client::connect(run_dir) else { return };
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(r) = reqs.get(i) else { return };
                            if let Ok(req) = r {
                                let out = client.call(req).map(Some);
                                done.lock().unwrap()[i] = Some(out);
                            }
                        }
                    });
                }
            });
        }
        reqs.into_iter()
            .zip(outs)
            .map(|(req, out)| {
                let req = req?;
                let out = out.unwrap_or_else(|| self.call(&req));
                self.lv_outcome(&vg.name, m, out)
            })
            .collect()
    }

    fn vg_updated(&mut self, vg: &Vg) -> Result<()> {
        if !is_shared(vg) || self.vg_locks.get(&vg.name) != Some(&LockMode::Ex) {
            return Ok(());
        }
        let req = Request::VgUpdate { vg: vg.name.clone(), version: vg.seqno };
        self.call(&req).map(|_| ()).map_err(lock_err)
    }

    fn init_lv(&mut self, vg: &Vg, lv: &Lv) -> Result<Option<u64>> {
        if !is_shared(vg) || self.vg_locks.get(&vg.name) != Some(&LockMode::Ex) {
            return Ok(None);
        }
        let area = self.area(vg)?;
        let req = Request::InitLv { vg: vg.name.clone(), lv_uuid: lv.id.to_string(), area: Some(area) };
        match self.call(&req) {
            Ok(Some(Response::LvLease { offset })) => Ok(Some(offset)),
            Ok(_) => Ok(None),
            // The lease LV is full: the caller grows it and formats a slot itself.
            Err(ClientError::Daemon(e)) if e.code == ErrorCode::NoSpace => Ok(None),
            Err(e) => Err(lock_err(e)),
        }
    }

    fn free_lv(&mut self, vg: &Vg, lv: &Lv, offset: u64) -> Result<bool> {
        if !is_shared(vg) || self.vg_locks.get(&vg.name) != Some(&LockMode::Ex) {
            return Ok(false);
        }
        let area = self.area(vg)?;
        let req = Request::FreeLv { vg: vg.name.clone(), lv_uuid: lv.id.to_string(), offset, area: Some(area) };
        match self.call(&req) {
            Ok(Some(_)) => Ok(true),
            Ok(None) => Ok(false),
            Err(e) => Err(lock_err(e)),
        }
    }
}

/// The mode in which lockd holds the lease of LV `lv_uuid` of `vg` for an activation here.
pub fn persistent_hold(status: &DaemonStatus, vg: &str, lv_uuid: &str) -> Option<LockMode> {
    status
        .lockspaces
        .iter()
        .filter(|l| l.vg == vg)
        .flat_map(|l| &l.locks)
        .find(|k| k.persistent && k.resource == lv_uuid)
        .map(|k| if k.mode == Mode::Sh { LockMode::Sh } else { LockMode::Ex })
}

/// One VG whose lockspace `vgchange --lock-start` joins.
pub struct LockStart {
    pub vg: String,
    pub vg_uuid: String,
    /// The VG's lease map as this command computed it (lockd checks it against its own read).
    pub area: LeaseArea,
}

/// How lockd answered a lock-start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Already,
    Joined { host_id: u64, generation: u64 },
}

/// How lockd answered a lock-stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Left the lockspace; `released_lv_locks` LV locks were dropped by `force`.
    Left { released_lv_locks: usize },
    /// The lockspace was not started here.
    NotStarted,
}

/// lockd's requests other than the locks of one command: one connection, whose VG lock (see
/// [`Lockd::lock_vg_ex`]) lasts as long as it.
pub struct Lockd {
    run_dir: PathBuf,
    client: Client,
}

impl Lockd {
    /// Connects to the lockd of `run_dir`; fails when it is not running.
    pub fn connect(run_dir: &Path) -> std::result::Result<Lockd, LockdError> {
        Ok(Lockd { run_dir: run_dir.to_path_buf(), client: Client::connect(run_dir)? })
    }

    /// Whether a lockd answers in `run_dir`.
    pub fn running(run_dir: &Path) -> bool {
        Client::connect(run_dir).is_ok()
    }

    /// lockd's view: lockspaces, their hosts and the locks held here. Errors are worded for
    /// the user (`lockd status: ...`).
    pub fn status(&mut self) -> std::result::Result<DaemonStatus, String> {
        match self.client.call(&Request::Status) {
            Ok(Response::Status(s)) => Ok(s),
            Ok(other) => Err(format!("lockd status: unexpected reply {other:?}")),
            Err(e) => Err(format!("lockd status: {e}")),
        }
    }

    /// Joins the lockspaces of `vgs`, several at once (one connection each: a join waits for
    /// its delta lease). The results in `vgs`' order, with each VG's name.
    pub fn lock_start(&self, vgs: Vec<LockStart>) -> Vec<(String, std::result::Result<Started, String>)> {
        let run_dir = &self.run_dir;
        std::thread::scope(|s| {
            let hs: Vec<_> = vgs
                .into_iter()
                .map(|v| {
                    let name = v.vg.clone();
                    let req = Request::LockStart { vg: v.vg, vg_uuid: v.vg_uuid, area: v.area };
                    (name, s.spawn(move || Client::connect(run_dir)?.call(&req)))
                })
                .collect();
            hs.into_iter()
                .map(|(vg, h)| {
                    let r = match h.join().expect("lock start thread") {
                        Ok(Response::Started { already: true, .. }) => Ok(Started::Already),
                        Ok(Response::Started { host_id, generation, .. }) => {
                            Ok(Started::Joined { host_id, generation })
                        }
                        Ok(other) => Err(format!("VG {vg} lock start: unexpected reply {other:?}")),
                        Err(e) => Err(format!("VG {vg} lock start failed: {e}")),
                    };
                    (vg, r)
                })
                .collect()
        })
    }

    /// Leaves `vg`'s lockspace; lockd refuses while LVs of it are active here, unless `force`.
    pub fn lock_stop(&mut self, vg: &str, force: bool) -> std::result::Result<Stopped, String> {
        match self.client.call(&Request::LockStop { vg: vg.into(), force }) {
            Ok(Response::Stopped { released_lv_locks }) => Ok(Stopped::Left { released_lv_locks }),
            Ok(other) => Err(format!("VG {vg} lock stop: unexpected reply {other:?}")),
            Err(ClientError::Daemon(e)) if e.code == ErrorCode::NoLockspace => Ok(Stopped::NotStarted),
            Err(e) => Err(format!("VG {vg} lock stop failed: {e}")),
        }
    }

    /// After `vg` was removed: its lease area went with it, so lockd gives back this host's
    /// host_id lease (lvmlockd's free_vg).
    pub fn vg_removed(&mut self, vg: &str) -> std::result::Result<(), LockdError> {
        self.client.call(&Request::LockStop { vg: vg.into(), force: false }).map(|_| ())
    }

    /// Enables the global lock in `vg` (disabling it wherever else it is enabled here).
    pub fn gl_enable(&mut self, vg: &str) -> std::result::Result<(), LockdError> {
        self.client.call(&Request::GlEnable { vg: vg.into() }).map(|_| ())
    }

    /// The VG lock in ex, held by this connection until it is dropped ([`Lockd::repair`]
    /// requires it).
    pub fn lock_vg_ex(&mut self, vg: &str) -> std::result::Result<(), LockdError> {
        let req =
            Request::Lock { vg: vg.into(), resource: Resource::Vg, mode: Mode::Ex, persistent: false, area: None };
        self.client.call(&req).map(|_| ())
    }

    /// Frees `vg`'s orphaned LV slots and this host's stale LV locks, except the locks of the
    /// resources in `keep`. Needs [`Lockd::lock_vg_ex`] on this connection first.
    pub fn repair(&mut self, vg: &str, keep: Vec<String>) -> std::result::Result<RepairReport, String> {
        match self.client.call(&Request::Repair { vg: vg.into(), keep }) {
            Ok(Response::Repaired(r)) => Ok(r),
            Ok(_) => Err(format!("VG {vg}: unexpected reply from lockd")),
            Err(e) => Err(format!("VG {vg}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The command modules reach lockd only through this module's API.
    #[test]
    fn only_this_module_speaks_lockds_protocol() {
        let sources = [
            ("cli/mod.rs", include_str!("cli/mod.rs")),
            ("cli/args.rs", include_str!("cli/args.rs")),
            ("cli/display.rs", include_str!("cli/display.rs")),
            ("cli/lvcmds.rs", include_str!("cli/lvcmds.rs")),
            ("cli/pvvg.rs", include_str!("cli/pvvg.rs")),
            ("cli/repair.rs", include_str!("cli/repair.rs")),
            ("cli/reports.rs", include_str!("cli/reports.rs")),
            ("session.rs", include_str!("session.rs")),
            ("activate.rs", include_str!("activate.rs")),
        ];
        for (name, src) in sources {
            for word in ["Client::", "Request::", "Response::", "client::", "protocol::"] {
                assert!(!src.contains(word), "{name} uses lockd's protocol directly ({word})");
            }
        }
    }
}
