//! The daemon: started lockspaces by VG name, request dispatch, and resuming the lockspaces a
//! previous lockd of this boot recorded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar};

use lease::delta_lease::HostIdentity;
use lease::ondisk::{BootStamp, Name};
use tracing::{error, info, warn};

use crate::error::Error;
use crate::fence::Fencer;
use crate::guarded::Guarded;
use crate::locks::ConnId;
use crate::lockspace::{Env, Lockspace, Phase};
use crate::state::{boot_id, Recorded, StateDir};
use crate::watchdog::WatchdogFactory;
use proto::config::Config;
use proto::lockd::protocol::{DaemonStatus, LeaseArea, Mode, Request, Resource, Response, PROTOCOL_VERSION};

pub struct Daemon {
    pub cfg: Config,
    pub env: Arc<Env>,
    lockspaces: Guarded<BTreeMap<String, Arc<Lockspace>>>,
    /// Signalled when a lock start finishes.
    started: Condvar,
    next_conn: AtomicU64,
}

impl Daemon {
    pub fn new(cfg: Config, watchdog: Arc<dyn WatchdogFactory>, fencer: Arc<dyn Fencer>) -> Result<Daemon, String> {
        let host_id = cfg.require_host_id().map_err(|e| e.to_string())?;
        let host_name = Name::new(&cfg.host_name).map_err(|e| format!("host_name: {e}"))?;
        let boot = boot_id();
        let identity = HostIdentity { host_id, host_name, boot: BootStamp::parse_uuid(&boot) };
        let state = StateDir::new(&cfg.run_dir).map_err(|e| format!("{}: {e}", cfg.run_dir.display()))?;
        let env = Env {
            timeouts: cfg.timeouts(),
            host: identity,
            watchdog,
            fencer,
            kill_command: cfg.kill_command.clone(),
            state,
            boot_id: boot,
            devices: cfg.devices.clone(),
        };
        Ok(Daemon {
            cfg,
            env: Arc::new(env),
            lockspaces: Guarded::new("lockspace map", BTreeMap::new()),
            started: Condvar::new(),
            next_conn: AtomicU64::new(1),
        })
    }

    pub fn new_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn get(&self, vg: &str) -> Result<Arc<Lockspace>, Error> {
        self.lockspaces
            .lock()
            .get(vg)
            .cloned()
            .ok_or_else(|| Error::not_started(format!("VG {vg} lockspace is not started on this host")))
    }

    /// The running lockspaces, sorted by VG name.
    pub fn running(&self) -> Vec<Arc<Lockspace>> {
        let map = self.lockspaces.lock();
        map.values().filter(|l| l.phase() == Phase::Running).cloned().collect()
    }

    pub fn handle(&self, conn: ConnId, req: Request) -> Response {
        let r = match req {
            Request::Hello { version } if version == PROTOCOL_VERSION => {
                Ok(Response::Hello { version, host_id: self.env.host.host_id, host_name: self.cfg.host_name.clone() })
            }
            Request::Hello { version } => Err(Error::invalid(format!(
                "protocol version {version} is not supported (this lockd speaks {PROTOCOL_VERSION})"
            ))),
            Request::LockStart { vg, vg_uuid, area } => self.lock_start(&vg, &vg_uuid, area),
            Request::LockStop { vg, force } => self.lock_stop(&vg, force),
            Request::Lock { vg, resource, mode, persistent, area } => {
                self.lock(conn, &vg, &resource, mode, persistent, area.as_ref())
            }
            Request::InitLv { vg, lv_uuid, area } => self.with_area(&vg, area.as_ref()).and_then(|ls| {
                let offset = ls.init_lv(conn, &lv_uuid)?;
                Ok(Response::LvLease { offset })
            }),
            Request::FreeLv { vg, lv_uuid, offset, area } => self.with_area(&vg, area.as_ref()).and_then(|ls| {
                ls.free_lv(conn, &lv_uuid, offset)?;
                Ok(Response::Ok)
            }),
            Request::VgUpdate { vg, version } => self.get(&vg).and_then(|ls| {
                ls.vg_update(conn, version)?;
                Ok(Response::Ok)
            }),
            Request::Status => Ok(Response::Status(self.status())),
            Request::GlEnable { vg } => crate::glctl::change(self, conn, &vg, true),
            Request::GlDisable { vg } => crate::glctl::change(self, conn, &vg, false),
            Request::Repair { vg, keep } => self.get(&vg).and_then(|ls| ls.repair(conn, &keep)).map(Response::Repaired),
        };
        r.unwrap_or_else(|e| Response::Error(e.into()))
    }

    fn with_area(&self, vg: &str, area: Option<&LeaseArea>) -> Result<Arc<Lockspace>, Error> {
        let ls = self.get(vg)?;
        if let Some(a) = area {
            ls.check_hint(a)?;
        }
        Ok(ls)
    }

    fn lock(
        &self,
        conn: ConnId,
        vg: &str,
        resource: &Resource,
        mode: Mode,
        persistent: bool,
        area: Option<&LeaseArea>,
    ) -> Result<Response, Error> {
        if persistent && !matches!(resource, Resource::Lv { .. }) {
            return Err(Error::invalid("only LV locks can be persistent"));
        }
        let ls = match resource {
            Resource::Gl if mode == Mode::Un => match self.gl_held_by(conn) {
                Some(ls) => ls,
                None => return Ok(Response::Locked { vg_version: None }),
            },
            Resource::Gl => return crate::glctl::acquire(self, conn, mode),
            // A release is never refused over a stale hint: the hold must be able to end.
            _ if mode == Mode::Un => self.get(vg)?,
            _ => self.with_area(vg, area)?,
        };
        let vg_version = ls.lock(conn, resource, mode, persistent)?;
        Ok(Response::Locked { vg_version })
    }

    /// The lockspace in which `conn` holds the GL (an unlock goes there, wherever the GL is now).
    fn gl_held_by(&self, conn: ConnId) -> Option<Arc<Lockspace>> {
        let all: Vec<Arc<Lockspace>> = self.lockspaces.lock().values().cloned().collect();
        all.into_iter().find(|l| l.holds(conn, &crate::locks::Key::Gl))
    }

    fn lock_start(&self, vg: &str, vg_uuid: &str, area: LeaseArea) -> Result<Response, Error> {
        let already = |ls: &Lockspace| Response::Started {
            already: true,
            host_id: self.env.host.host_id,
            generation: ls.generation(),
        };
        {
            let mut map = self.lockspaces.lock();
            while let Some(ls) = map.get(vg).cloned() {
                if ls.vg_uuid != vg_uuid {
                    return Err(Error::refused(format!(
                        "a VG {vg} with another UUID ({}) is started here",
                        ls.vg_uuid
                    )));
                }
                match ls.phase() {
                    Phase::Running => return Ok(already(&ls)),
                    Phase::Joining => map = self.lockspaces.wait(&self.started, map),
                    Phase::Stopping | Phase::Stopped => {
                        return Err(Error::busy(format!("VG {vg} lock stop in progress")))
                    }
                    Phase::Failing(r) | Phase::Failed { reason: r, .. } => {
                        return Err(Error::failed(format!(
                            "VG {vg} lockspace failed ({r}); lock-stop it before starting again"
                        )))
                    }
                }
            }
        }
        // The map comes from lockd's own read of the metadata; the request's is only checked.
        crate::lockspace::geometry_of(&area)?;
        let devices = if self.cfg.devices.is_empty() {
            area.pieces.iter().map(|p| p.pv_path.clone()).collect()
        } else {
            self.cfg.devices.clone()
        };
        let leases = crate::leasemap::read(&devices, vg, vg_uuid, self.env.timeouts)?;
        if leases.area != area {
            return Err(Error::invalid(format!(
                "VG {vg}: the lease area in the request ({}) is not the lvmlock LV of the committed metadata \
                     on this lockd's devices ({})",
                crate::lockspace::describe_area(&area),
                crate::lockspace::describe_area(&leases.area)
            )));
        }
        let ls = Arc::new(Lockspace::new(self.env.clone(), vg, vg_uuid, area)?);
        ls.set_leases(leases);
        {
            let mut map = self.lockspaces.lock();
            if map.contains_key(vg) {
                // Another start got in first; it answers as above.
                drop(map);
                return self.lock_start(vg, vg_uuid, ls.lease_area());
            }
            map.insert(vg.to_string(), ls.clone());
        }
        let r = ls.join();
        let mut map = self.lockspaces.lock();
        if r.is_err() {
            map.remove(vg);
        }
        self.started.notify_all();
        drop(map);
        let generation = r?;
        crate::glctl::after_start(self);
        Ok(Response::Started { already: false, host_id: self.env.host.host_id, generation })
    }

    fn lock_stop(&self, vg: &str, force: bool) -> Result<Response, Error> {
        let ls = self.get(vg)?;
        let released_lv_locks = ls.stop(force)?;
        self.lockspaces.lock().remove(vg);
        Ok(Response::Stopped { released_lv_locks })
    }

    /// A client connection closed: its commands' locks end.
    pub fn conn_closed(&self, conn: ConnId) {
        let all: Vec<Arc<Lockspace>> = self.lockspaces.lock().values().cloned().collect();
        for ls in all {
            ls.release_conn(conn);
        }
    }

    pub fn status(&self) -> DaemonStatus {
        let all: Vec<Arc<Lockspace>> = self.lockspaces.lock().values().cloned().collect();
        DaemonStatus {
            host_id: self.env.host.host_id,
            host_name: self.cfg.host_name.clone(),
            pid: std::process::id(),
            io_timeout: self.cfg.io_timeout,
            watchdog_fire_timeout: self.cfg.watchdog_fire_timeout,
            use_watchdog: self.cfg.use_watchdog,
            lockspaces: all.iter().map(|l| l.status()).collect(),
        }
    }

    /// Names of the lockspaces started here.
    pub fn started(&self) -> Vec<String> {
        self.lockspaces.lock().keys().cloned().collect()
    }

    /// Resumes the lockspaces recorded by a previous lockd of this boot (see `state.rs`).
    pub fn resume_all(&self) {
        let (saved, bad) = self.env.state.load_all();
        for (p, e) in bad {
            error!("state file {}: {e}; ignored", p.display());
        }
        for Recorded { lockspace: s, locks } in saved {
            if s.boot_id != self.env.boot_id {
                info!("lockspace lvm_{}: state from an earlier boot; discarded", s.vg);
                let _ = self.env.state.remove(&s.vg);
                continue;
            }
            if s.host_id != self.env.host.host_id || s.host_name != self.cfg.host_name {
                error!(
                    "lockspace lvm_{}: recorded as host_id {} name {:?}, but this lockd is host_id {} name {:?}; \
                     not resumed (its leases expire; the watchdog covers any LV still in use)",
                    s.vg, s.host_id, s.host_name, self.env.host.host_id, self.cfg.host_name
                );
                continue;
            }
            let ls = match Lockspace::new(self.env.clone(), &s.vg, &s.vg_uuid, s.area.clone()) {
                Ok(l) => Arc::new(l),
                Err(e) => {
                    error!("lockspace lvm_{}: cannot resume: {e}; its leases expire", s.vg);
                    continue;
                }
            };
            self.lockspaces.lock().insert(s.vg.clone(), ls.clone());
            match ls.resume(&s) {
                Ok(()) => ls.restore_locks(&locks, s.generation),
                Err(reason) => {
                    warn!("lockspace lvm_{}: cannot resume: {reason}", s.vg);
                    ls.load_records(&locks);
                    ls.fail_resumed(&s, format!("not resumable after restart: {reason}"));
                }
            }
        }
    }
}
