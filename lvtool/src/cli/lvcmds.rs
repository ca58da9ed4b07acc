//! lvcreate, lvremove, lvextend/lvreduce/lvresize, lvrename, lvchange, vgchange.

use super::args::{OptSet, O};
use super::pvvg::not_found;
use super::{split_lv_path, CmdResult, Ctx, Fail};
use crate::activate::{ActivationMode, LvState};
use crate::alloc;
use crate::lockarea::{self, LockArea};
use crate::lockd_locker::{LockStart, Lockd, Started, Stopped};
use crate::scan::VgRead;
use crate::session::{LockMode, VgTxn};
use crate::units::{parse_extents, parse_size, PercentOf, Sign, SizeArg};
use crate::uuid::Uuid;
use crate::vg::{self, Lv, Vg};
use crate::Error;

pub const LVCREATE: OptSet =
    OptSet::new(&[O::Size, O::Extents, O::Name, O::Activate, O::Zero, O::Wipesignatures, O::Addtag], &[]);
pub const LVREMOVE: OptSet = OptSet::new(&[O::Force], &[]);
pub const RESIZE: OptSet = OptSet::new(&[O::Size, O::Extents, O::Force], &[]);
pub const LVRENAME: OptSet = OptSet::new(&[], &[]);
pub const CHANGE: OptSet = OptSet::new(&[O::Activate, O::Refresh], &[]);
pub const VGCHANGE: OptSet = OptSet::new(&[O::Activate, O::Refresh, O::LockStart, O::LockStop, O::Force], &[]);

/// Is this VG formatted for sanlock (lvmlockd's shared VG)?
fn is_sanlock(vg: &Vg) -> bool {
    vg.lock_type.as_deref() == Some(lockarea::LOCK_TYPE)
}

fn parse_activation(v: &str) -> Result<Option<ActivationMode>, Fail> {
    Ok(match v {
        "y" | "ay" => Some(ActivationMode::Plain),
        "ey" => Some(ActivationMode::Exclusive),
        "sy" => Some(ActivationMode::Shared),
        "ly" => Some(ActivationMode::Plain),
        "n" | "an" | "en" | "ln" | "sn" => None,
        _ => return Err(Fail::Usage(format!("Invalid argument for --activate: {v}"))),
    })
}

/// In a shared VG `-ay` means exclusive (lvmlockd).
fn effective(vg: &Vg, m: ActivationMode) -> ActivationMode {
    if m == ActivationMode::Plain && is_sanlock(vg) {
        ActivationMode::Exclusive
    } else {
        m
    }
}

/// Extents a percentage stands for.
fn percent_extents(vg: &Vg, p: PercentOf, pct: u64, pvs: Option<&[String]>) -> Result<u32, Fail> {
    let base = match p {
        PercentOf::Vg => vg.pvs.iter().map(|p| p.pe_count as u64).sum(),
        PercentOf::Free => alloc::free_extents(vg, None),
        PercentOf::Pvs => match pvs {
            Some(only) => vg.pvs.iter().filter(|p| only.contains(&p.name)).map(|p| p.pe_count as u64).sum(),
            None => vg.pvs.iter().map(|p| p.pe_count as u64).sum(),
        },
        PercentOf::Origin => return Err(Fail::Usage("%ORIGIN is only for snapshots".into())),
    };
    Ok((base * pct / 100).min(u32::MAX as u64) as u32)
}

/// PV section names of the devices given after the VG/LV (allocation restricted to them).
fn pv_names(ctx: &mut Ctx, read: &VgRead, devs: &[String]) -> Result<Option<Vec<String>>, Fail> {
    if devs.is_empty() {
        return Ok(None);
    }
    let paths = ctx.session.pv_paths(read);
    let mut out = vec![];
    for d in devs {
        let want = std::fs::canonicalize(d).unwrap_or_else(|_| d.into());
        let k = paths
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()) == want));
        match k {
            Some(k) => out.push(read.vg.pvs[k].name.clone()),
            None => {
                return Err(Fail::Failed(format!(
                    "Physical Volume \"{d}\" not found in Volume Group \"{}\".",
                    read.vg.name
                )))
            }
        }
    }
    Ok(Some(out))
}

fn next_lv_name(vg: &Vg) -> String {
    (0..).map(|k| format!("lvol{k}")).find(|n| vg.lv(n).is_none()).unwrap()
}

/// The lease area of a shared VG being changed.
fn lock_area(ctx: &mut Ctx, txn: &VgTxn, vg: &Vg) -> Result<LockArea, Fail> {
    Ok(ctx.session.lock_area(&txn.read, vg, None)?)
}

/// Gives a new LV in a shared VG its lease, as lvmlockd's `init_lv`: the first free slot,
/// after growing the lvmlock LV by 256 MiB (new slots `#unused`) when there is none.
fn init_lv_lease(ctx: &mut Ctx, txn: &mut VgTxn, lv_name: &str) -> Result<(), Fail> {
    let lv = txn.vg.lv(lv_name).expect("just added").clone();
    // lockd names a slot itself when it runs this VG's lockspace (and has a free one).
    if let Some(slot) = ctx.session.init_lv_lease(&txn.vg, &lv)? {
        txn.vg.lv_mut(lv_name)?.lock_args = Some(lockarea::lv_lock_args(slot));
        return Ok(());
    }
    let resource = lv.id.to_string();
    let area = lock_area(ctx, txn, &txn.vg.clone())?;
    let slot = match area.find_free(&resource)? {
        Some(o) => o,
        None => {
            let old_size = area.size;
            let ext = txn.vg.extent_size as u64 * 512;
            let extents = ((lockarea::LV_EXTEND_MIB << 20) / ext).max(1) as u32;
            alloc::extend(&mut txn.vg, lockarea::LOCK_LV_NAME, extents, None)?;
            let paths: Vec<_> = (0..txn.vg.pvs.len()).map(|i| pv_path_for(ctx, txn, i)).collect();
            let grown =
                LockArea::new(&txn.vg, &|i| paths.get(i).cloned().flatten(), area.geometry, ctx.session.timeouts())?;
            grown.init_unused(old_size)?;
            ctx.say(&format!("Extended internal lvmlock LV by {} MiB", lockarea::LV_EXTEND_MIB));
            grown
                .find_free(&resource)?
                .ok_or_else(|| Fail::Failed("no free lease slot after extending lvmlock".into()))?
        }
    };
    let area = lock_area(ctx, txn, &txn.vg.clone())?;
    area.init_lv(slot, &lv)?;
    txn.vg.lv_mut(lv_name)?.lock_args = Some(lockarea::lv_lock_args(slot));
    Ok(())
}

fn pv_path_for(ctx: &mut Ctx, txn: &VgTxn, i: usize) -> Option<std::path::PathBuf> {
    let id = txn.vg.pvs.get(i)?.id;
    let paths = ctx.session.pv_paths(&txn.read);
    let j = txn.read.vg.pvs.iter().position(|p| p.id == id)?;
    paths[j].clone()
}

pub fn lvcreate(ctx: &mut Ctx) -> CmdResult {
    let pos = ctx.args.pos.clone();
    let [target, devs @ ..] = pos.as_slice() else {
        return Err(Fail::Usage("No command with matching syntax recognised.".into()));
    };
    let devs = devs.to_vec();
    let (vg_name, lv_in_path) = split_lv_path(target);
    let size = ctx.args.get(O::Size).map(parse_size).transpose()?;
    let extents_arg = ctx.args.get(O::Extents).map(parse_extents).transpose()?;
    if size.is_some() && extents_arg.is_some() {
        return Err(Fail::Usage("Please specify either size or extents (not both).".into()));
    }
    if size.is_none() && extents_arg.is_none() {
        return Err(Fail::Usage("No command with matching syntax recognised.".into()));
    }
    if size.is_some_and(|s| s.sign != Sign::None) || extents_arg.is_some_and(|s| s.sign == Sign::Minus) {
        return Err(Fail::Usage("Negative size is invalid.".into()));
    }
    if size.is_some_and(|s| s.value == 0) {
        return Err(Fail::Usage("--size may not be zero.".into()));
    }
    if extents_arg.is_some_and(|s| s.value == 0) {
        return Err(Fail::Usage("--extents may not be zero.".into()));
    }
    let name = ctx.args.get(O::Name).map(String::from).or(lv_in_path);
    if let Some(n) = &name {
        if n.starts_with("snapshot") || n.starts_with("pvmove") {
            let p = if n.starts_with("snapshot") { "snapshot" } else { "pvmove" };
            return Err(Fail::Usage(format!(
                "Names starting \"{p}\" are reserved. Please choose a different LV name."
            )));
        }
        if vg::validate_new_lv_name(n).is_err() {
            return Err(Fail::Usage(format!("Logical volume name \"{n}\" is invalid.")));
        }
    }
    let tags = ctx.args.all(O::Addtag).to_vec();
    for t in &tags {
        vg::validate_tag(t)?;
    }
    let activate = parse_activation(ctx.args.get(O::Activate).unwrap_or("y"))?;
    if activate.is_some() {
        ctx.session.activator().check_available()?;
    }
    let zero_arg = ctx.args.get(O::Zero).map(|v| yes_no(v, "zero")).transpose()?;
    let wipe_arg = ctx.args.get(O::Wipesignatures).map(|v| yes_no(v, "wipesignatures")).transpose()?;
    // lvm2 clears an LV's start through its active device: an inactive new LV cannot be
    // cleared, which is refused when asked for and warned about by default.
    if activate.is_none() && (zero_arg == Some(true) || (wipe_arg == Some(true) && zero_arg != Some(false))) {
        return Err(Fail::Failed("Cannot zero inactive logical volume with option -Zy or -Wy.".into()));
    }
    let (zero, wipe) = (zero_arg.unwrap_or(true), wipe_arg.unwrap_or(true));
    let mut txn = ctx.session.begin(&vg_name).map_err(|e| not_found(e, &vg_name))?;
    let only = pv_names(ctx, &txn.read, &devs)?;
    let name = name.unwrap_or_else(|| next_lv_name(&txn.vg));
    if is_sanlock(&txn.vg) && name == lockarea::LOCK_LV_NAME {
        return Err(Fail::Usage(format!("Logical volume name \"{name}\" is reserved for the lock LV.")));
    }
    if txn.vg.lv(&name).is_some() {
        return Err(Fail::Failed(format!("Logical Volume \"{name}\" already exists in volume group \"{vg_name}\"")));
    }
    let ext = txn.vg.extent_size as u64;
    let extents = match (size, extents_arg) {
        (Some(s), _) => {
            let e = s.value.div_ceil(ext);
            if s.value % ext != 0 {
                ctx.say(&format!("Rounding up size to full physical extent {}", ctx.size(e * ext)));
            }
            e
        }
        (_, Some(SizeArg { value, percent: Some(p), .. })) => {
            percent_extents(&txn.vg, p, value, only.as_deref())? as u64
        }
        (_, Some(a)) => a.value,
        _ => unreachable!(),
    };
    if extents == 0 {
        return Err(Fail::Failed("Insufficient extents for the requested size".into()));
    }
    let free = alloc::free_extents(&txn.vg, only.as_deref());
    if extents > free || extents > u32::MAX as u64 {
        return Err(Fail::Failed(format!(
            "Volume group \"{vg_name}\" has insufficient free space ({free} extents): {extents} required."
        )));
    }
    let (host, now) = {
        let h = vg::TextHeader::now("");
        (h.creation_host, h.creation_time)
    };
    let mut lv = Lv::new(&name, Uuid::generate()?, vec![], &host, now);
    lv.tags = tags;
    if is_sanlock(&txn.vg) {
        lv.status = vec!["READ".into(), "VISIBLE".into()];
        lv.flags = vec!["WRITE_LOCKED".into()];
    }
    txn.vg.add_lv(lv)?;
    alloc::extend(&mut txn.vg, &name, extents as u32, only.as_deref())?;
    if is_sanlock(&txn.vg) {
        init_lv_lease(ctx, &mut txn, &name)?;
    }
    let vg = ctx.session.commit(txn)?;
    match activate {
        Some(mode) => {
            // Locked and active before its extents are written: no other host can use it.
            let lv = vg.lv(&name).expect("created").clone();
            ctx.session.activate(&vg, &lv, effective(&vg, mode))?;
            clear_new_lv(ctx, &vg, &lv, zero, wipe)?;
        }
        None if zero => ctx.err(&format!("WARNING: Logical volume {vg_name}/{name} not zeroed.")),
        None => {}
    }
    ctx.say(&format!("Logical volume \"{name}\" created."));
    Ok(())
}

fn yes_no(v: &str, opt: &str) -> Result<bool, Fail> {
    match v {
        "y" | "yes" => Ok(true),
        "n" | "no" => Ok(false),
        _ => Err(Fail::Usage(format!("Invalid argument for --{opt}: {v}"))),
    }
}

/// What lvm2 does to a new LV (`-W y`, `-Z y`, its defaults): signatures of what the extents
/// held before (a filesystem of an earlier LV) are wiped and the first 4 KiB zeroed, so that
/// nothing mistakes the new LV for the old one. Written through the PV at the LV's first
/// segment, which works with and without a device-mapper device.
fn clear_new_lv(ctx: &mut Ctx, vg: &Vg, lv: &Lv, zero: bool, wipe: bool) -> Result<(), Fail> {
    use crate::device::BlockDevice;
    if !zero && !wipe {
        ctx.err(&format!("WARNING: Logical volume {}/{} not zeroed.", vg.name, lv.name));
        return Ok(());
    }
    let Some((seg, area)) = lv.segments.first().and_then(|s| s.stripes.first().map(|a| (s, a))) else {
        return Ok(());
    };
    let pv = vg.pv_by_name(&area.pv).ok_or_else(|| Error::metadata(&vg.name, format!("no PV {}", area.pv)))?;
    let path = ctx.session.scan().pvs.iter().find(|p| p.label.pv_uuid == pv.id).map(|p| p.path.clone());
    let Some(path) = path else {
        return Err(Fail::Failed(format!("Failed to clear {}/{}: PV {} not found.", vg.name, lv.name, pv.id)));
    };
    let ext = vg.extent_size as u64 * 512;
    let base = pv.pe_start * 512 + area.pe as u64 * ext;
    let len = seg.extent_count as u64 * ext;
    let mut dev = crate::device::FileDevice::open(&path, true)?;
    if wipe {
        let sigs = crate::signature::probe(&dev, base, len)?;
        for s in &sigs {
            ctx.say(&format!("Wiping {} signature on /dev/{}/{}.", s.kind, vg.name, lv.name));
        }
        crate::signature::wipe(&mut dev, base, &sigs)?;
    }
    if zero {
        dev.write_at(base, &vec![0u8; len.min(4096) as usize])?;
    }
    // One flush for the wipe and the zeroing.
    dev.flush()?;
    Ok(())
}

/// The LVs named by positional arguments: `VG/LV` one LV, `VG` all its visible LVs.
fn targets(ctx: &Ctx) -> Result<Vec<(String, Option<String>)>, Fail> {
    if ctx.args.pos.is_empty() {
        return Err(Fail::Usage("No command with matching syntax recognised.".into()));
    }
    Ok(ctx.args.pos.iter().map(|p| split_lv_path(p)).collect())
}

pub fn lvremove(ctx: &mut Ctx) -> CmdResult {
    for (vg_name, lv) in targets(ctx)? {
        let names = match &lv {
            Some(l) => vec![l.clone()],
            None => match ctx.session.read_vg(&vg_name, LockMode::Ex) {
                Ok(r) => r.vg.lvs.iter().filter(|l| l.is_visible()).map(|l| l.name.clone()).collect(),
                Err(e) => {
                    ctx.fail_one(not_found(e, &vg_name));
                    continue;
                }
            },
        };
        for n in names {
            if let Err(f) = remove_lv(ctx, &vg_name, &n) {
                ctx.fail_one(f);
            }
        }
    }
    Ok(())
}

fn remove_lv(ctx: &mut Ctx, vg_name: &str, name: &str) -> Result<(), Fail> {
    let mut txn = ctx.session.begin(vg_name).map_err(|e| not_found(e, vg_name))?;
    let Some(lv) = txn.vg.lv(name).cloned() else {
        return Err(Fail::Failed(format!("Failed to find logical volume \"{vg_name}/{name}\"")));
    };
    if name == lockarea::LOCK_LV_NAME && is_sanlock(&txn.vg) {
        return Err(Fail::Failed(format!("Cannot remove the internal lock LV {vg_name}/{name}.")));
    }
    txn.vg.lv_mut(name)?;
    let hold = ctx.session.lv_hold_here(&txn.vg, &lv)?;
    let active = hold.is_some() || ctx.session.lv_state(&txn.vg, &lv).is_active();
    if active
        && !ctx.args.has(O::Force)
        && !ctx.confirm(&format!("Do you really want to remove active logical volume {vg_name}/{name}?"))
    {
        return Err(Fail::Failed(format!("Logical volume {vg_name}/{name} not removed.")));
    }
    // The LV lock in ex before the commit: refused while another host has the LV active,
    // naming the holder. Taken before deactivating here (as lvm2), so a refusal changes
    // nothing; except when this host holds it shared, which lockd does not convert: that
    // activation goes first, and other shared holders then refuse the lock.
    if hold == Some(LockMode::Sh) {
        ctx.session.deactivate(&txn.vg, &lv)?;
        ctx.session.lock_lv(&txn.vg, &lv, LockMode::Ex)?;
    } else {
        ctx.session.lock_lv(&txn.vg, &lv, LockMode::Ex)?;
        // Deactivated before the commit, so that it never leaves a device or an activation
        // hold of an LV that no longer exists.
        if active {
            ctx.session.deactivate(&txn.vg, &lv)?;
        }
    }
    let slot = lv.lock_args.as_deref().and_then(lockarea::parse_lv_lock_args);
    let area = match (is_sanlock(&txn.vg), slot) {
        (true, Some(_)) => Some(lock_area(ctx, &txn, &txn.vg.clone())?),
        _ => None,
    };
    txn.vg.lvs.retain(|l| l.name != name);
    txn.vg.validate()?;
    let vg = ctx.session.commit(txn)?;
    if let (Some(area), Some(o)) = (area, slot) {
        // After the commit, as lvmlockd's free_lv: a crash in between leaks a slot, never
        // frees the lease of an LV that still exists. lockd first drops its hold of it.
        if !ctx.session.free_lv_lease(&vg, &lv, o)? {
            area.free_lv(o)?;
        }
    }
    ctx.say(&format!("Logical volume \"{name}\" successfully removed."));
    Ok(())
}

pub fn lvresize(ctx: &mut Ctx) -> CmdResult {
    let pos = ctx.args.pos.clone();
    let [target, devs @ ..] = pos.as_slice() else {
        return Err(Fail::Usage("No command with matching syntax recognised.".into()));
    };
    let devs = devs.to_vec();
    let (vg_name, Some(lv_name)) = split_lv_path(target) else {
        return Err(Fail::Usage(format!("Please specify a logical volume path ({target} is a VG)")));
    };
    let size = ctx.args.get(O::Size).map(parse_size).transpose()?;
    let ext_arg = ctx.args.get(O::Extents).map(parse_extents).transpose()?;
    let arg = match (size, ext_arg) {
        (Some(_), Some(_)) => return Err(Fail::Usage("Please specify either size or extents (not both).".into())),
        (None, None) => return Err(Fail::Usage("No command with matching syntax recognised.".into())),
        (Some(a), _) | (_, Some(a)) => a,
    };
    if arg.value == 0 {
        let what = if size.is_some() { "--size" } else { "--extents" };
        return Err(Fail::Usage(format!("{what} may not be zero.")));
    }
    let cmd = ctx.cmd.clone();
    match (cmd.as_str(), arg.sign) {
        ("lvextend", Sign::Minus) => return Err(Fail::Usage("Negative argument not permitted - use lvreduce".into())),
        ("lvreduce", Sign::Plus) => return Err(Fail::Usage("Positive sign not permitted - use lvextend".into())),
        _ => {}
    }
    let mut txn = ctx.session.begin(&vg_name).map_err(|e| not_found(e, &vg_name))?;
    let only = pv_names(ctx, &txn.read, &devs)?;
    let Some(lv) = txn.vg.lv(&lv_name).cloned() else {
        return Err(Fail::Failed(format!("Failed to find logical volume \"{vg_name}/{lv_name}\"")));
    };
    txn.vg.lv_mut(&lv_name)?;
    let ext = txn.vg.extent_size as u64;
    let cur = lv.extent_count as u64;
    let new: i128 = if size.is_some() {
        let (amount, rounded) = match arg.sign {
            Sign::Minus => (arg.value / ext, arg.value % ext != 0),
            _ => (arg.value.div_ceil(ext), arg.value % ext != 0),
        };
        let new = match arg.sign {
            Sign::None => amount as i128,
            Sign::Plus => cur as i128 + amount as i128,
            Sign::Minus => cur as i128 - amount as i128,
        };
        if rounded {
            let shown = if arg.sign == Sign::None { new.max(0) as u64 } else { amount };
            ctx.say(&format!("Rounding size to boundary between physical extents: {}.", ctx.size(shown * ext)));
        }
        new
    } else {
        let amount = match arg.percent {
            Some(p) => percent_extents(&txn.vg, p, arg.value, only.as_deref())? as u64,
            None => arg.value,
        };
        match arg.sign {
            Sign::None => amount as i128,
            Sign::Plus => cur as i128 + amount as i128,
            Sign::Minus => cur as i128 - amount as i128,
        }
    };
    if new == cur as i128 {
        return Err(Fail::Failed(format!("New size ({new} extents) matches existing size ({cur} extents).")));
    }
    if new < cur as i128 && cmd == "lvextend" {
        return Err(Fail::Failed(format!(
            "New size given ({new} extents) not larger than existing size ({cur} extents)"
        )));
    }
    if new > cur as i128 && cmd == "lvreduce" {
        return Err(Fail::Failed(format!(
            "New size given ({new} extents) not less than existing size ({cur} extents)"
        )));
    }
    if new < 1 {
        return Err(Fail::Failed(format!("Unable to reduce {vg_name}/{lv_name} below 1 extent.")));
    }
    if new > u32::MAX as i128 {
        return Err(Fail::Failed("Size is too big.".into()));
    }
    let new = new as u64;
    ctx.session.lock_lv(&txn.vg, &lv, LockMode::Ex)?;
    let state = ctx.session.lv_state(&txn.vg, &lv);
    // Active here as lockd knows it too (no DM view with --driverloaded n).
    let active_here = ctx.session.lv_active_here(&txn.vg, &lv)?;
    if new > cur {
        let free = alloc::free_extents(&txn.vg, only.as_deref());
        if new - cur > free {
            return Err(Fail::Failed(format!(
                "Insufficient free space: {} extents needed, but only {free} available",
                new - cur
            )));
        }
        alloc::extend(&mut txn.vg, &lv_name, (new - cur) as u32, only.as_deref())?;
    } else {
        if active_here
            && !ctx.args.has(O::Force)
            && !ctx.confirm(&format!(
                "  WARNING: Reducing active logical volume to {}.\n  THIS MAY DESTROY YOUR DATA (filesystem etc.)\nDo you really want to reduce {vg_name}/{lv_name}?",
                ctx.size(new * ext)
            ))
        {
            return Err(Fail::Failed(format!("Logical volume {lv_name} NOT reduced.")));
        }
        alloc::reduce(&mut txn.vg, &lv_name, new as u32)?;
    }
    let vg = ctx.session.commit(txn)?;
    ctx.say(&format!(
        "Size of logical volume {vg_name}/{lv_name} changed from {} ({cur} extents) to {} ({new} extents).",
        ctx.size(cur * ext),
        ctx.size(new * ext)
    ));
    if state.is_active() {
        let lv = vg.lv(&lv_name).expect("resized").clone();
        ctx.session.refresh(&vg, &lv)?;
    }
    ctx.say(&format!("Logical volume {vg_name}/{lv_name} successfully resized."));
    Ok(())
}

pub fn lvrename(ctx: &mut Ctx) -> CmdResult {
    let pos = ctx.args.pos.clone();
    let (vg_name, old, new) = match pos.as_slice() {
        [vg, old, new] => (vg.clone(), old.clone(), new.clone()),
        [old, new] => {
            let (vg, o) = split_lv_path(old);
            let Some(o) = o else {
                return Err(Fail::Usage("Old logical volume name must be given as VG/LV".into()));
            };
            let (vg2, n) = split_lv_path(new);
            let n = match n {
                Some(_) if vg2 != vg => {
                    return Err(Fail::Usage(format!(
                        "Logical volume names must have the same volume group (\"{vg}\" or \"{vg2}\")."
                    )))
                }
                Some(n) => n,
                None => vg2,
            };
            (vg, o, n)
        }
        _ => return Err(Fail::Usage("Old and new logical volume names required".into())),
    };
    if new.starts_with("snapshot") || new.starts_with("pvmove") || vg::validate_new_lv_name(&new).is_err() {
        return Err(Fail::Usage(format!("New logical volume name \"{new}\" is invalid.")));
    }
    let mut txn = ctx.session.begin(&vg_name).map_err(|e| not_found(e, &vg_name))?;
    if txn.vg.lv(&old).is_none() {
        return Err(Fail::Failed(format!("Existing logical volume \"{old}\" not found in volume group \"{vg_name}\"")));
    }
    if old == lockarea::LOCK_LV_NAME && is_sanlock(&txn.vg) {
        return Err(Fail::Failed("Cannot rename the internal lock LV.".into()));
    }
    if txn.vg.lv(&new).is_some() {
        return Err(Fail::Failed(format!("Logical Volume \"{new}\" already exists in volume group \"{vg_name}\"")));
    }
    let lv = txn.vg.lv(&old).cloned().expect("checked");
    txn.vg.lv_mut(&old)?;
    // As lvm2: the LV lock in ex, refused while the LV is active on another host (whose device
    // would keep the old name). Active here, the rename is refused too: lvm2 renames the
    // device as well, which this tool does not do yet; refusing leaves no device behind under
    // a name the metadata no longer knows.
    ctx.session.lock_lv(&txn.vg, &lv, LockMode::Ex)?;
    if ctx.session.lv_active_here(&txn.vg, &lv)? {
        return Err(Fail::Failed(format!(
            "Cannot rename logical volume {vg_name}/{old} while it is active on this host: deactivate it first \
             (lvchange -an {vg_name}/{old})."
        )));
    }
    txn.vg.lv_mut(&old)?.name = new.clone();
    txn.vg.validate()?;
    ctx.session.commit(txn)?;
    ctx.say(&format!("Renamed \"{old}\" to \"{new}\" in volume group \"{vg_name}\""));
    Ok(())
}

/// What lvchange/vgchange do to each LV.
#[derive(Clone, Copy)]
enum Change {
    Activate(ActivationMode),
    Deactivate,
    Refresh,
}

fn change_from_args(ctx: &Ctx) -> Result<Change, Fail> {
    match (ctx.args.get(O::Activate), ctx.args.has(O::Refresh)) {
        (Some(_), true) => Err(Fail::Usage("Only one of --activate and --refresh".into())),
        (Some(a), false) => Ok(parse_activation(a)?.map_or(Change::Deactivate, Change::Activate)),
        (None, true) => Ok(Change::Refresh),
        (None, false) => Err(Fail::Usage("No command with matching syntax recognised.".into())),
    }
}

fn apply(ctx: &mut Ctx, vg: &Vg, lv: &Lv, change: Change) -> Result<(), Error> {
    match change {
        Change::Activate(m) => ctx.session.activate(vg, lv, effective(vg, m)),
        Change::Deactivate => ctx.session.deactivate(vg, lv),
        Change::Refresh => match ctx.session.lv_state(vg, lv) {
            LvState::Active { .. } | LvState::Unknown => ctx.session.refresh(vg, lv),
            LvState::Inactive => Ok(()),
        },
    }
}

pub fn lvchange(ctx: &mut Ctx) -> CmdResult {
    let change = change_from_args(ctx)?;
    if !matches!(change, Change::Refresh) {
        ctx.session.activator().check_available()?;
    }
    for (vg_name, lv) in targets(ctx)? {
        let read = match ctx.session.read_vg(&vg_name, LockMode::Sh) {
            Ok(r) => r,
            Err(e) => {
                ctx.fail_one(not_found(e, &vg_name));
                continue;
            }
        };
        let vg = read.vg;
        let lvs: Vec<Lv> = match &lv {
            Some(n) => match vg.lv(n) {
                Some(l) => vec![l.clone()],
                None => {
                    // Gone from the metadata but still mapped here (removed on another host).
                    let dm_name = crate::dm::dm_name(&vg.name, n);
                    if matches!(change, Change::Deactivate) && ctx.session.stale_devices(&vg).contains(&dm_name) {
                        match ctx.session.remove_stale(&vg) {
                            Ok(names) => ctx.say(&format!("Removed stale device(s) {}", names.join(", "))),
                            Err(e) => ctx.fail_one(e.into()),
                        }
                        continue;
                    }
                    ctx.fail_one(Fail::Failed(format!("Failed to find logical volume \"{vg_name}/{n}\"")));
                    continue;
                }
            },
            None => vg.lvs.iter().filter(|l| l.is_visible()).cloned().collect(),
        };
        for l in &lvs {
            if let Err(e) = apply(ctx, &vg, l, change) {
                ctx.fail_one(e.into());
            }
        }
    }
    Ok(())
}

pub fn vgchange(ctx: &mut Ctx) -> CmdResult {
    match (ctx.args.has(O::LockStart), ctx.args.has(O::LockStop)) {
        (true, true) => return Err(Fail::Usage("Only one of --lock-start and --lock-stop".into())),
        (true, false) => return lock_start(ctx),
        (false, true) => return lock_stop(ctx),
        _ => {}
    }
    let change = change_from_args(ctx)?;
    if !matches!(change, Change::Refresh) {
        ctx.session.activator().check_available()?;
    }
    // -aay: autoactivation (the boot unit), of every VG when none is named.
    let auto = ctx.args.get(O::Activate) == Some("ay");
    if ctx.args.pos.is_empty() && !auto {
        return Err(Fail::Usage("Please give volume group name(s)".into()));
    }
    let names = if ctx.args.pos.is_empty() { ctx.session.scan().vg_names() } else { ctx.args.pos.clone() };
    for vg_name in names {
        let read = match ctx.session.read_vg(&vg_name, LockMode::Sh) {
            Ok(r) => r,
            Err(e) => {
                ctx.fail_one(not_found(e, &vg_name));
                continue;
            }
        };
        let vg = read.vg;
        let lvs: Vec<Lv> = vg
            .lvs
            .iter()
            .filter(|l| l.is_visible() && l.is_supported() && (!auto || autoactivated(&ctx.settings, &vg, l)))
            .cloned()
            .collect();
        let batch = matches!(change, Change::Activate(_));
        if batch {
            ctx.session.begin_activations();
        }
        let results = match change {
            Change::Deactivate => Some(ctx.session.deactivate_many(&vg, &lvs)),
            Change::Activate(m) => Some(ctx.session.activate_many(&vg, &lvs, effective(&vg, m))),
            Change::Refresh => None,
        };
        if let Some(results) = results {
            for e in results.into_iter().filter_map(|r| r.err()) {
                ctx.fail_one(e.into());
            }
        } else {
            for l in &lvs {
                if let Err(e) = apply(ctx, &vg, l, change) {
                    ctx.fail_one(e.into());
                }
            }
        }
        if batch {
            for (_, e) in ctx.session.end_activations(&vg) {
                ctx.fail_one(e.into());
            }
        }
        if matches!(change, Change::Refresh | Change::Deactivate) {
            match ctx.session.remove_stale(&vg) {
                Ok(names) if !names.is_empty() => ctx.say(&format!("Removed stale device(s) {}", names.join(", "))),
                Ok(_) => {}
                Err(e) => ctx.fail_one(e.into()),
            }
        }
        if !matches!(change, Change::Refresh) {
            let active = lvs.iter().filter(|l| ctx.session.lv_state(&vg, l).is_active()).count();
            ctx.say(&format!("{active} logical volume(s) in volume group \"{vg_name}\" now active"));
        }
    }
    Ok(())
}

/// Whether `-aay` activates `lv`: not flagged NOAUTOACTIVATE, and named by lvmlocal.toml's
/// `auto_activation_volume_list` (`VG`, `VG/LV` or `@tag`). Without that list every LV of a local
/// VG qualifies (as lvm2) and none of a shared VG: which host runs which shared LV is a choice.
fn autoactivated(settings: &crate::settings::Settings, vg: &Vg, lv: &Lv) -> bool {
    let no = |flags: &[String]| flags.iter().any(|f| f == "NOAUTOACTIVATE");
    if no(&vg.flags) || no(&lv.flags) {
        return false;
    }
    match &settings.auto_activation {
        None => !is_sanlock(vg),
        Some(list) => list.iter().any(|e| match e.strip_prefix('@') {
            Some(tag) => lv.tags.iter().chain(&vg.tags).any(|t| t == tag),
            None => *e == vg.name || *e == format!("{}/{}", vg.name, lv.name),
        }),
    }
}

/// The shared VGs named, or all shared VGs on the scanned devices.
fn shared_vgs(ctx: &mut Ctx) -> Result<Vec<VgRead>, Fail> {
    let names = if ctx.args.pos.is_empty() { ctx.session.scan().vg_names() } else { ctx.args.pos.clone() };
    let mut out = vec![];
    for n in names {
        match ctx.session.find_vg(&n) {
            Ok(r) if is_sanlock(&r.vg) => out.push(r),
            Ok(_) if !ctx.args.pos.is_empty() => ctx.fail_one(Fail::Failed(format!("VG {n} is not a shared VG."))),
            Ok(_) => {}
            Err(e) => ctx.fail_one(not_found(e, &n)),
        }
    }
    Ok(out)
}

/// lockd, for requests that are not the locks of the command (those go through the session).
pub(super) fn lockd(ctx: &Ctx) -> Result<Lockd, Fail> {
    if ctx.settings.host_id.is_none() {
        return Err(Fail::Failed("Using a shared VG requires host_id in lvmlocal.toml (and lockd running).".into()));
    }
    Lockd::connect(&ctx.settings.run_dir).map_err(|e| Fail::Failed(e.to_string()))
}

/// `vgchange --lock-start [VG...]`: lockd joins each VG's lockspace; several VGs in parallel.
fn lock_start(ctx: &mut Ctx) -> CmdResult {
    let lockd = lockd(ctx)?;
    let mut starts = vec![];
    for read in shared_vgs(ctx)? {
        let vg = read.vg.clone();
        let area = ctx.session.lock_area(&read, &vg, None).and_then(|a| {
            let paths = ctx.session.pv_paths(&read);
            crate::lockarea::lease_area(&vg, &|i| paths.get(i).cloned().flatten(), a.geometry)
        });
        match area {
            Ok(area) => starts.push(LockStart { vg: vg.name.clone(), vg_uuid: vg.id.to_string(), area }),
            Err(e) => ctx.fail_one(Fail::Failed(format!("VG {} lock start failed: {e}", vg.name))),
        }
    }
    for s in &starts {
        ctx.say(&format!("VG {} starting sanlock lockspace", s.vg));
    }
    for (vg, r) in lockd.lock_start(starts) {
        match r {
            Ok(Started::Already) => ctx.say(&format!("VG {vg} lockspace already started")),
            Ok(Started::Joined { host_id, generation }) => {
                ctx.say(&format!("VG {vg} lockspace started (host_id {host_id}, generation {generation})"))
            }
            Err(m) => ctx.fail_one(Fail::Failed(m)),
        }
    }
    Ok(())
}

/// `vgchange --lock-stop [VG...]`: lockd leaves each VG's lockspace (refused while LVs of the VG
/// are active here, unless --force).
fn lock_stop(ctx: &mut Ctx) -> CmdResult {
    let mut lockd = lockd(ctx)?;
    let names: Vec<String> = if ctx.args.pos.is_empty() {
        shared_vgs(ctx)?.into_iter().map(|r| r.vg.name).collect()
    } else {
        ctx.args.pos.clone()
    };
    let force = ctx.args.has(O::Force);
    for vg in names {
        match lockd.lock_stop(&vg, force) {
            Ok(Stopped::Left { released_lv_locks: 0 }) => ctx.say(&format!("VG {vg} lockspace stopped")),
            Ok(Stopped::Left { released_lv_locks: n }) => {
                ctx.say(&format!("VG {vg} lockspace stopped ({n} LV lock(s) released by force)"))
            }
            Ok(Stopped::NotStarted) => ctx.say(&format!("VG {vg} lockspace is not started")),
            Err(m) => ctx.fail_one(Fail::Failed(m)),
        }
    }
    Ok(())
}
