//! Which started VG holds "the" global lock, and moving it (`lockd gl-enable/gl-disable`).
//!
//! Every shared VG has a GL slot at A×65, named `GLLK` when that VG's GL is enabled and
//! `_GLLK_disabled` otherwise. The rules, and what each relies on:
//!
//! 1. A GL request is granted only when exactly one VG started here has its slot named
//!    `GLLK`, read from the disk for that request (no cache that another host's move could
//!    leave stale). None: refused, saying how to enable one; two or more: refused as a
//!    duplicate global lock, naming them ([`select`]).
//! 2. The paxos acquire checks the slot's name in every read; after it, the name and the
//!    count of enabled slots are read again, and the hold is dropped unless they still say
//!    this slot is the one GL (a rename that completed during the acquire).
//! 3. Changing which slot is enabled ([`change`]) first holds, in VG-name order, the GL slot
//!    of every VG started here in ex (under whatever name it has), then renames, disabled
//!    ones first. So no host holds any of those slots — as the GL or otherwise — while they
//!    change, and two concurrent moves on hosts sharing a VG serialize on its slot (the fixed
//!    order keeps them from deadlocking; a loser fails after the usual command wait).
//! 4. gl-enable refuses when a shared VG that is not started here (so cannot be held and
//!    disabled here) has its GL enabled on disk.
//!
//! Two hosts can each hold "the" GL in ex only if they hold different slots X and Y, both
//! named GLLK when granted. Host A granted X saw Y disabled or did not have Y started; if A
//! had Y started, Y was enabled later by a move that held X in ex (rule 3) — impossible while
//! A holds X. The residual case, which lvmlockd has too: hosts with disjoint started VG sets,
//! where the enabling host does not have the other VG started and both gl-enables pass rule
//! 4 at the same time (each read the other's slot before it changed).

use std::sync::Arc;

use tracing::info;

use crate::daemon::Daemon;
use crate::error::Error;
use crate::leasemap;
use crate::locks::{ConnId, GL_LOCK_BEGIN, R_NAME_GL, R_NAME_GL_DISABLED};
use crate::lockspace::Lockspace;
use proto::lockd::protocol::{Mode, Resource, Response};

/// The one started VG whose GL slot is enabled (rule 1).
pub fn select(d: &Daemon) -> Result<Arc<Lockspace>, Error> {
    let all = d.running();
    let mut enabled = vec![];
    let mut unreadable = vec![];
    for ls in &all {
        match ls.gl_slot_name() {
            Ok(n) if n == R_NAME_GL => enabled.push(ls.clone()),
            Ok(_) => {}
            Err(e) => unreadable.push(e.to_string()),
        }
    }
    if !unreadable.is_empty() {
        // An unreadable slot may be an enabled GL: granting another could make two.
        return Err(Error::corrupt(None, format!("cannot tell where the global lock is: {}", unreadable.join("; "))));
    }
    match enabled.len() {
        1 => Ok(enabled.pop().expect("one")),
        0 => Err(no_gl(d, &all)),
        _ => {
            let names: Vec<&str> = enabled.iter().map(|l| l.vg.as_str()).collect();
            Err(Error::duplicate_global_lock(format!(
                "duplicate global lock: enabled in VGs {}; run `lockd gl-disable VG` on all but one",
                names.join(" and ")
            )))
        }
    }
}

/// Why there is no GL to grant.
fn no_gl(d: &Daemon, started: &[Arc<Lockspace>]) -> Error {
    let names: Vec<String> = started.iter().map(|l| l.vg.clone()).collect();
    let others: Vec<String> =
        leasemap::shared_vgs(&d.cfg.devices).into_iter().map(|(n, _)| n).filter(|n| !names.contains(n)).collect();
    if names.is_empty() && others.is_empty() {
        // No shared VG anywhere we look: there is no global lock to take (lvmlockd skips it).
        return Error::not_started("no shared VG is started here");
    }
    let not_started = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; shared VGs not started here: {} (their global lock cannot be used until `lvtool vgchange --lock-start`)",
            others.join(", ")
        )
    };
    let msg = if names.is_empty() {
        format!("no shared VG is started here, so no global lock is available{not_started}")
    } else {
        format!(
            "no global lock is enabled in any started shared VG ({}); enable one with `lockd gl-enable VG`{not_started}",
            names.join(", ")
        )
    };
    Error::no_global_lock(msg)
}

/// Takes the global lock for `conn` (rules 1 and 2). A GL that moved while we acquired it
/// (its slot renamed under a concurrent gl-enable) is looked up again, a few times.
pub fn acquire(d: &Daemon, conn: ConnId, mode: Mode) -> Result<Response, Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        let ls = select(d)?;
        match ls.lock(conn, &Resource::Gl, mode, false) {
            Ok(_) => {}
            Err(e) => {
                // The slot no longer says GLLK: the lock moved; anything else is the answer.
                let moved = ls.gl_slot_name().is_ok_and(|n| n != R_NAME_GL);
                if moved && tries < 3 {
                    continue;
                }
                return Err(e);
            }
        }
        match confirm(d, &ls) {
            Ok(()) => return Ok(Response::Locked { vg_version: None }),
            Err(e) => {
                let _ = ls.lock(conn, &Resource::Gl, Mode::Un, false);
                if matches!(e, Error::NoGlobalLock(_)) && tries < 3 {
                    continue;
                }
                return Err(e);
            }
        }
    }
}

/// After a lock-start: a duplicate global lock among the started VGs is logged at once (GL
/// requests are refused until one is disabled).
pub fn after_start(d: &Daemon) {
    if let Err(e) = select(d) {
        if matches!(e, Error::DuplicateGlobalLock(_)) {
            tracing::warn!("{e}");
        }
    }
}

/// After a GL acquire in `ls`: still the one enabled GL (rule 2).
fn confirm(d: &Daemon, ls: &Lockspace) -> Result<(), Error> {
    let now = select(d)?;
    if now.vg != ls.vg {
        return Err(Error::no_global_lock(format!(
            "the global lock moved from VG {} to VG {} meanwhile; retry",
            ls.vg, now.vg
        )));
    }
    Ok(())
}

/// gl-enable (`enable`) or gl-disable of VG `vg` (rule 3).
pub fn change(d: &Daemon, conn: ConnId, vg: &str, enable: bool) -> Result<Response, Error> {
    let all = d.running();
    if !all.iter().any(|l| l.vg == vg) {
        return Err(Error::not_started(format!("VG {vg} lockspace is not started on this host")));
    }
    if enable {
        refuse_enabled_elsewhere(d, &all)?;
    }
    let mut held: Vec<(Arc<Lockspace>, String)> = vec![];
    let release = |held: &[(Arc<Lockspace>, String)]| {
        for (ls, name) in held.iter().rev() {
            ls.gl_release(conn, name);
        }
    };
    // `all` is sorted by VG name: the fixed order of rule 3.
    for ls in &all {
        let r = ls.gl_slot_name().and_then(|name| ls.gl_hold(conn, &name).map(|_| name));
        match r {
            Ok(name) => held.push((ls.clone(), name)),
            Err(e) => {
                release(&held);
                return Err(e.context("changing the global lock needs every GL slot here: "));
            }
        }
    }
    let mut disabled = vec![];
    let mut outcome = Ok(());
    // Disabled ones first: at no moment are two slots we changed enabled.
    let plan: Vec<(usize, &str)> = held
        .iter()
        .enumerate()
        .filter_map(|(i, (ls, name))| {
            let want = if ls.vg == vg {
                if enable {
                    R_NAME_GL
                } else {
                    R_NAME_GL_DISABLED
                }
            } else if enable && name == R_NAME_GL {
                R_NAME_GL_DISABLED
            } else {
                return None;
            };
            (want != name).then_some((i, want))
        })
        .collect();
    let (dis, en): (Vec<_>, Vec<_>) = plan.into_iter().partition(|(_, w)| *w == R_NAME_GL_DISABLED);
    for (i, want) in dis.into_iter().chain(en) {
        let ls = &held[i].0;
        if let Err(e) = ls.gl_rename(want) {
            outcome = Err(e);
            break;
        }
        if want == R_NAME_GL_DISABLED {
            disabled.push(ls.vg.clone());
        }
        held[i].1 = want.to_string();
    }
    release(&held);
    outcome?;
    let enabled = all.iter().find(|l| l.gl_enabled()).map(|l| l.vg.clone());
    info!("global lock: enabled in {enabled:?}, disabled in {disabled:?}");
    Ok(Response::Gl { enabled, disabled })
}

/// Rule 4: a shared VG we cannot hold has the GL enabled.
fn refuse_enabled_elsewhere(d: &Daemon, started: &[Arc<Lockspace>]) -> Result<(), Error> {
    for (name, uuid) in leasemap::shared_vgs(&d.cfg.devices) {
        if started.iter().any(|l| l.vg == name) {
            continue;
        }
        let Ok(l) = leasemap::read(&d.cfg.devices, &name, &uuid, d.env.timeouts) else { continue };
        let at = GL_LOCK_BEGIN * l.area.align_bytes;
        if leasemap::resource_name(&l.area, at, d.env.timeouts).as_deref() != Ok(R_NAME_GL_DISABLED) {
            return Err(Error::refused(format!(
                "VG {name} is not started here and its global lock is not known to be disabled; \
                     start it here (so this host can disable it) or run `lockd gl-disable {name}` where it is started"
            )));
        }
    }
    Ok(())
}

/// `lockd gl-enable|gl-disable [--config PATH] VG`: asks the running lockd.
pub fn cli(cmd: &str, args: &[String]) -> Result<(), String> {
    let mut path = None;
    let mut vg = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => path = Some(it.next().ok_or("--config needs a PATH")?.clone()),
            v if vg.is_none() && !v.starts_with('-') => vg = Some(v.to_string()),
            other => {
                return Err(format!("{cmd}: unexpected argument {other:?}; usage: lockd {cmd} [--config PATH] VG"))
            }
        }
    }
    let vg = vg.ok_or_else(|| format!("usage: lockd {cmd} [--config PATH] VG"))?;
    let cfg = proto::config::Config::load(path.as_deref().map(std::path::Path::new)).map_err(|e| e.to_string())?;
    let mut c = proto::lockd::client::Client::connect(&cfg.run_dir).map_err(|e| e.to_string())?;
    let req = if cmd == "gl-enable" {
        proto::lockd::protocol::Request::GlEnable { vg }
    } else {
        proto::lockd::protocol::Request::GlDisable { vg }
    };
    match c.call(&req).map_err(|e| e.to_string())? {
        Response::Gl { enabled, disabled } => {
            for d in disabled {
                println!("global lock disabled in VG {d}");
            }
            match enabled {
                Some(e) => println!("global lock enabled in VG {e}"),
                None => println!("no started VG has the global lock enabled"),
            }
            Ok(())
        }
        other => Err(format!("unexpected reply {other:?}")),
    }
}
