//! Lock maintenance of shared VGs: `vgck --lock-repair VG` (orphaned LV lease slots and stale
//! LV locks, freed by lockd under the VG lock) and moving the global lock out of a VG that is
//! about to be removed.

use super::args::{OptSet, O};
use super::lvcmds::lockd;
use super::pvvg::not_found;
use super::{CmdResult, Ctx, Fail};
use crate::lockd_locker::RepairReport;

pub const VGCK: OptSet = OptSet::new(&[O::LockRepair], &[]);

/// `vgck --lock-repair VG...`: asks lockd to free this VG's orphaned LV slots (leases of LVs the
/// committed metadata no longer has, held by nobody alive) and to release this host's locks of
/// such LVs, unless a device of the VG that the metadata no longer explains is still active
/// here. Prints what was freed and what was left (a lease a live host holds is only reported).
pub fn vgck(ctx: &mut Ctx) -> CmdResult {
    if !ctx.args.has(O::LockRepair) {
        return Err(Fail::Usage("vgck checks only leases here: use vgck --lock-repair VG".into()));
    }
    if ctx.args.pos.is_empty() {
        return Err(Fail::Usage("Please enter a volume group name.".into()));
    }
    for name in ctx.args.pos.clone() {
        if let Err(f) = repair_one(ctx, &name) {
            ctx.fail_one(f);
        }
    }
    Ok(())
}

fn repair_one(ctx: &mut Ctx, name: &str) -> Result<(), Fail> {
    let mut c = lockd(ctx)?;
    // The VG lock in ex on the connection that asks for the repair: lockd requires it, and
    // nothing changes the metadata or the leases of this VG meanwhile.
    c.lock_vg_ex(name).map_err(|e| Fail::Failed(format!("VG {name}: {e}")))?;
    ctx.session.rescan();
    let read = ctx.session.scan().read_vg(name).map_err(|e| not_found(e, name))?;
    if !crate::lockd_locker::is_shared(&read.vg) {
        ctx.say(&format!("VG {name} is not a shared VG: no leases to repair"));
        return Ok(());
    }
    let stale = ctx.session.stale_devices(&read.vg);
    // Devices active here that the metadata does not explain may belong to LVs whose locks
    // lockd still holds: keep every such lock then (the devices must go first).
    let mut keep = vec![];
    if !stale.is_empty() {
        ctx.err(&format!(
            "WARNING: VG {name}: devices {} are active here without an LV in the metadata; \
             their locks are kept (remove the devices first)",
            stale.join(", ")
        ));
        let s = c.status().map_err(|e| Fail::Failed(format!("VG {name}: {e}")))?;
        if let Some(ls) = s.lockspaces.iter().find(|l| l.vg == name) {
            keep = ls.locks.iter().map(|l| l.resource.clone()).collect();
        }
    }
    let RepairReport { freed, released, left } = c.repair(name, keep).map_err(Fail::Failed)?;
    for (o, u) in &freed {
        ctx.say(&format!("VG {name}: freed orphaned lease of LV {u} at offset {o}"));
    }
    for u in &released {
        ctx.say(&format!("VG {name}: released stale lock of LV {u} (no longer in the metadata)"));
    }
    for (o, why) in &left {
        ctx.say(&format!("VG {name}: left lease at offset {o}: {why}"));
    }
    if freed.is_empty() && released.is_empty() && left.is_empty() {
        ctx.say(&format!("VG {name}: no orphaned leases"));
    }
    Ok(())
}

/// Before VG `name` is removed: if it holds the enabled global lock here, lockd moves it to
/// the first other shared VG started here (holding every GL slot meanwhile); with none, warns
/// that no global lock will be enabled afterwards.
pub fn move_gl_away(ctx: &mut Ctx, name: &str) {
    if ctx.settings.host_id.is_none() || ctx.args.has(O::Nolocking) {
        return;
    }
    let Ok(mut c) = lockd(ctx) else { return };
    let Ok(s) = c.status() else { return };
    if !s.lockspaces.iter().any(|l| l.vg == name) {
        return;
    }
    // Whether its GL slot says GLLK now, from the disk (lockd's flag is its last read).
    let on_disk = ctx.session.scan().read_vg(name).ok().and_then(|read| {
        let vg = read.vg.clone();
        let area = ctx.session.lock_area(&read, &vg, None).ok()?;
        area.gl_name().ok()
    });
    let enabled = match on_disk {
        Some(crate::lockarea::Slot::Named(n)) => n == crate::lockarea::R_NAME_GL,
        Some(crate::lockarea::Slot::Unformatted) => false,
        None => s.lockspaces.iter().any(|l| l.vg == name && l.gl_enabled),
    };
    if !enabled {
        return;
    }
    let mut others: Vec<&str> =
        s.lockspaces.iter().filter(|l| l.vg != name && l.state == "running").map(|l| l.vg.as_str()).collect();
    others.sort();
    let Some(to) = others.first() else {
        ctx.err(&format!(
            "WARNING: VG {name} holds the global lock and no other shared VG is started here; after its \
             removal no global lock is enabled (start a shared VG and run `lockd gl-enable VG`)"
        ));
        return;
    };
    match c.gl_enable(to) {
        Ok(_) => ctx.say(&format!("Global lock moved from VG {name} to VG {to}")),
        Err(e) => ctx.err(&format!("WARNING: VG {name} holds the global lock; moving it to VG {to} failed: {e}")),
    }
}
