//! pvcreate, pvremove, vgcreate, vgremove, vgextend, vgreduce.

use std::path::Path;

use super::args::{OptSet, O};
use super::{CmdResult, Ctx, Fail};
use crate::alloc;
use crate::device::FileDevice;
use crate::lockarea::{self, LockArea};
use crate::pvformat;
use crate::session::{GlNeed, LockMode};
use crate::units::parse_size;
use crate::uuid::Uuid;
use crate::vg::{self, Lv, Pv, Vg};

pub const PVCREATE: OptSet = OptSet::new(&[O::Uuid, O::Force], &[O::PvZero]);
pub const PVREMOVE: OptSet = OptSet::new(&[O::Force], &[]);
pub const VGCREATE: OptSet = OptSet::new(
    &[O::Physicalextentsize, O::Shared, O::Locktype, O::Addtag, O::Maxlogicalvolumes, O::Maxphysicalvolumes, O::Force],
    &[],
);
pub const VGREMOVE: OptSet = OptSet::new(&[O::Force], &[]);
/// `-f`: as pvcreate's, for devices that are not PVs yet.
pub const VGEXTEND: OptSet = OptSet::new(&[O::Force], &[]);
pub const VGREDUCE: OptSet = OptSet::new(&[], &[]);

/// The VG a scanned PV belongs to, by its UUID in some VG's metadata.
fn pv_vg(ctx: &mut Ctx, idx: usize) -> Option<String> {
    let uuid = ctx.session.scan().pvs[idx].label.pv_uuid;
    let names = ctx.session.scan().vg_names();
    names.into_iter().find(|n| ctx.session.scan().read_vg(n).is_ok_and(|r| r.vg.pvs.iter().any(|p| p.id == uuid)))
}

/// What a device holds that pvcreate must not write over unasked.
enum Occupant {
    /// Nothing known: blank, or data without a signature we know.
    Nothing,
    /// An orphan PV, read and understood (lvm2 re-creates it without asking).
    OrphanPv,
    /// A PV in a VG: needs -ff.
    VgMember(String),
    /// A PV label or metadata that cannot be read: needs -ff (why).
    Damaged(String),
    /// Filesystem, swap, LUKS or partition-table signatures: wiped with -f or -y.
    Signatures(Vec<crate::signature::Signature>),
}

fn same_device(a: &Path, b: &Path) -> bool {
    std::fs::canonicalize(a).unwrap_or_else(|_| a.into()) == std::fs::canonicalize(b).unwrap_or_else(|_| b.into())
}

fn occupant(ctx: &mut Ctx, dev: &str) -> Result<Occupant, Fail> {
    let path = Path::new(dev);
    if let Some((_, e)) = ctx.session.scan().errors.iter().find(|(p, _)| same_device(p, path)) {
        return Ok(Occupant::Damaged(e.to_string()));
    }
    if let Some(i) = ctx.session.find_device(path) {
        let pv = &ctx.session.scan().pvs[i];
        for (a, st) in &pv.mdas {
            match st {
                crate::scan::MdaState::Bad(e) => {
                    return Ok(Occupant::Damaged(format!("metadata area at {}: {e}", a.offset)));
                }
                crate::scan::MdaState::Copy(c) => return Ok(Occupant::VgMember(c.vg_name.clone())),
                _ => {}
            }
        }
        let in_use = pv.label.in_use();
        if let Some(vg) = pv_vg(ctx, i) {
            return Ok(Occupant::VgMember(vg));
        }
        if in_use {
            return Ok(Occupant::Damaged(format!("PV {dev} is used by a VG but its metadata is missing.")));
        }
        return Ok(Occupant::OrphanPv);
    }
    let d = FileDevice::open(path, false)?;
    let sigs = crate::signature::probe(&d, 0, crate::device::BlockDevice::size(&d))?;
    Ok(if sigs.is_empty() { Occupant::Nothing } else { Occupant::Signatures(sigs) })
}

/// pvcreate of one device; returns a message on failure. Nothing is written over what the
/// device holds unless the user forced it as lvm2 allows: `-f` or `-y` wipe signatures,
/// `-ff` overwrites a PV of a VG or one whose label or metadata cannot be read.
fn create_pv(ctx: &mut Ctx, dev: &str) -> Result<(), Fail> {
    if !Path::new(dev).exists() {
        return Err(Fail::Failed(format!("No device found for {dev}.")));
    }
    let force = ctx.args.all(O::Force).len();
    let not_init = |m: String| Fail::Failed(format!("{m}\n  {dev}: physical volume not initialized."));
    // `--uuid` is pvcreate's; vgcreate and vgextend make PVs with new UUIDs.
    let given = if ctx.opts_accept(O::Uuid) { ctx.args.get(O::Uuid) } else { None };
    let uuid = match given {
        Some(u) => Uuid::parse(u).map_err(|e| Fail::Usage(e.to_string()))?,
        None => Uuid::generate()?,
    };
    let mut wipe = vec![];
    match occupant(ctx, dev)? {
        Occupant::Nothing | Occupant::OrphanPv => {}
        Occupant::VgMember(vg) => {
            if force < 2 {
                return Err(not_init(format!(
                    "Can't initialize physical volume \"{dev}\" of volume group \"{vg}\" without -ff"
                )));
            }
            if !ctx.confirm(&format!("Really INITIALIZE physical volume \"{dev}\" of volume group \"{vg}\"?")) {
                return Err(not_init(format!("{dev}: physical volume not initialized (not confirmed).")));
            }
            ctx.err(&format!("WARNING: Forcing physical volume creation on {dev} of volume group \"{vg}\""));
        }
        Occupant::Damaged(why) => {
            if force < 2 {
                return Err(not_init(format!("{why}\n  Can't initialize PV '{dev}' without -ff.")));
            }
            if !ctx.confirm(&format!("Really INITIALIZE physical volume \"{dev}\" whose LVM data cannot be read?")) {
                return Err(not_init(format!("{dev}: physical volume not initialized (not confirmed).")));
            }
            ctx.err(&format!("WARNING: Forcing physical volume creation on {dev} ({why})"));
        }
        Occupant::Signatures(sigs) => {
            for s in &sigs {
                let yes = force > 0
                    || ctx.confirm(&format!(
                        "WARNING: {} signature detected on {dev} at offset {}. Wipe it?",
                        s.kind, s.offset
                    ));
                if !yes {
                    ctx.err(&format!("Aborted wiping of {}.", s.kind));
                    return Err(not_init(format!(
                        "{} existing signature(s) left on the device.",
                        sigs.len() - wipe.len()
                    )));
                }
                wipe.push(s.clone());
            }
        }
    }
    let mut d = FileDevice::open(Path::new(dev), true)?;
    for s in &wipe {
        ctx.say(&format!("Wiping {} signature on {dev}.", s.kind));
    }
    crate::signature::wipe(&mut d, 0, &wipe)?;
    pvformat::create(&mut d, uuid).map_err(|e| Fail::Failed(e.to_string()))?;
    ctx.session.rescan();
    ctx.say(&format!("Physical volume \"{dev}\" successfully created."));
    Ok(())
}

pub fn pvcreate(ctx: &mut Ctx) -> CmdResult {
    if ctx.args.pos.is_empty() {
        return Err(Fail::Usage("No command with matching syntax recognised.".into()));
    }
    ctx.session.lock_gl(LockMode::Ex)?;
    for dev in ctx.args.pos.clone() {
        if let Err(f) = create_pv(ctx, &dev) {
            ctx.fail_one(f);
        }
    }
    Ok(())
}

pub fn pvremove(ctx: &mut Ctx) -> CmdResult {
    if ctx.args.pos.is_empty() {
        return Err(Fail::Usage("No command with matching syntax recognised.".into()));
    }
    ctx.session.lock_gl(LockMode::Ex)?;
    let force = ctx.args.all(O::Force).len();
    for dev in ctx.args.pos.clone() {
        let Some(i) = ctx.session.find_device(Path::new(&dev)) else {
            ctx.fail_one(Fail::Failed(format!("No PV found on device {dev}.")));
            continue;
        };
        // A PV of a VG, or one whose metadata cannot be read (it may be a VG's), is only
        // wiped when the user insists, as lvm2 asks.
        let why = match occupant(ctx, &dev)? {
            Occupant::VgMember(vg) => Some(format!("PV {dev} is used by VG {vg} so please use vgreduce first.")),
            Occupant::Damaged(why) => Some(format!("PV {dev} cannot be read: {why}")),
            _ => None,
        };
        if let Some(why) = why {
            if force < 2 {
                ctx.fail_one(Fail::Failed(format!(
                    "{why}\n  (If you are certain you need pvremove, then confirm by using --force twice.)"
                )));
                continue;
            }
            if !ctx.confirm(&format!("Really WIPE LABELS from physical volume \"{dev}\" ({why})?")) {
                ctx.fail_one(Fail::Failed(format!("{dev}: physical volume label not removed.")));
                continue;
            }
            ctx.err(&format!("WARNING: Wiping physical volume label from {dev}: {why}"));
        }
        let label = ctx.session.scan().pvs[i].label.clone();
        let r = ctx.session.open_pv(i, true).and_then(|mut d| pvformat::remove(&mut d, &label));
        match r {
            Ok(()) => ctx.say(&format!("Labels on physical volume \"{dev}\" successfully wiped.")),
            Err(e) => ctx.fail_one(e.into()),
        }
        ctx.session.rescan();
    }
    Ok(())
}

/// Scan index of `dev` as an orphan PV, creating the PV first when the device has no label
/// (vgcreate and vgextend do that, as lvm2).
fn orphan_pv(ctx: &mut Ctx, dev: &str, vg_name: &str) -> Result<usize, Fail> {
    let unable =
        |m: String| Fail::Failed(format!("{m}\n  Unable to add physical volume '{dev}' to volume group '{vg_name}'"));
    if ctx.session.find_device(Path::new(dev)).is_none() {
        create_pv(ctx, dev).map_err(|f| match f {
            Fail::Failed(m) | Fail::Usage(m) => unable(m),
            Fail::Quiet => Fail::Quiet,
        })?;
    }
    let i = ctx.session.find_device(Path::new(dev)).ok_or_else(|| unable(format!("Device {dev} not found.")))?;
    if let Some(vg) = pv_vg(ctx, i) {
        return Err(unable(format!("Physical volume '{dev}' is already in volume group '{vg}'")));
    }
    Ok(i)
}

/// A VG's `pvN` entry for a scanned orphan PV.
fn new_pv(ctx: &mut Ctx, idx: usize, name: String, extent_size: u32) -> Pv {
    let p = &ctx.session.scan().pvs[idx];
    let pe_start = p.label.data_areas.first().map_or(pvformat::PE_START_BYTES, |d| d.offset);
    Pv {
        name,
        id: p.label.pv_uuid,
        device: Some(p.path.display().to_string()),
        device_id_type: None,
        device_id: None,
        status: vec!["ALLOCATABLE".into()],
        flags: vec![],
        tags: vec![],
        dev_size: Some(p.size / 512),
        pe_start: pe_start / 512,
        pe_count: ((p.size.saturating_sub(pe_start) / 512) / extent_size as u64) as u32,
        ba_start: None,
        ba_size: None,
        extra: vec![],
    }
}

fn host_and_time() -> (String, u64) {
    let h = crate::vg::TextHeader::now("");
    (h.creation_host, h.creation_time)
}

pub fn vgcreate(ctx: &mut Ctx) -> CmdResult {
    let pos = ctx.args.pos.clone();
    let [name, devs @ ..] = pos.as_slice() else {
        return Err(Fail::Usage("No command with matching syntax recognised.".into()));
    };
    let name = name.clone();
    let devs = devs.to_vec();
    if devs.is_empty() {
        return Err(Fail::Usage("No command with matching syntax recognised.".into()));
    }
    if let Err(e) = vg::validate_name(&name) {
        let reason = match e {
            crate::Error::InvalidName { reason, .. } => reason,
            _ => "invalid",
        };
        return Err(Fail::Usage(format!("{reason}\n  New volume group name \"{name}\" is invalid.")));
    }
    let extent_size = match ctx.args.get(O::Physicalextentsize) {
        None => 8192u64,
        Some(s) => parse_size(s)?.value,
    };
    if extent_size == 0 {
        return Err(Fail::Usage("Physical extent size may not be zero".into()));
    }
    if extent_size % 8 != 0 || extent_size > u32::MAX as u64 {
        return Err(Fail::Usage("Physical extent size must be a multiple of 4 KiB and below 2 TiB".into()));
    }
    let shared = ctx.args.has(O::Shared) || ctx.args.get(O::Locktype).is_some();
    if let Some(t) = ctx.args.get(O::Locktype) {
        if t != "sanlock" && t != "none" {
            return Err(Fail::Usage(format!("lock type {t} is not supported (sanlock only)")));
        }
    }
    let shared = shared && ctx.args.get(O::Locktype) != Some("none");
    if shared && lockarea::lockspace_name(&name).len() > lease::ondisk::NAME_LEN {
        return Err(Fail::Usage(format!("VG name {name} is too long for a sanlock lockspace (max 44 characters)")));
    }
    let tags = ctx.args.all(O::Addtag).to_vec();
    for t in &tags {
        vg::validate_tag(t)?;
    }
    // The first shared VG is made without a global lock (there is none yet) and enables it.
    let need = if shared { GlNeed::FirstSharedVg } else { GlNeed::Required };
    ctx.session.lock_gl_ex(need)?;
    if ctx.session.scan().vg_names().contains(&name) {
        return Err(Fail::Failed(format!("A volume group called {name} already exists.")));
    }
    let mut idxs = vec![];
    for d in &devs {
        let i = orphan_pv(ctx, d, &name)?;
        if idxs.contains(&i) {
            return Err(Fail::Failed(format!("Physical volume '{d}' listed more than once.")));
        }
        idxs.push(i);
    }
    let text = format!(
        "{name} {{\nid = \"{}\"\nseqno = 1\nformat = \"lvm2\"\nstatus = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []\nextent_size = {extent_size}\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\nphysical_volumes {{\n}}\n}}\ncontents = \"Text Format Volume Group\"\nversion = 1\n",
        Uuid::generate()?
    );
    let mut vg = Vg::from_text(text.as_bytes())?;
    vg.tags = tags;
    vg.max_lv = ctx
        .args
        .get(O::Maxlogicalvolumes)
        .map_or(Ok(0), |s| s.parse())
        .map_err(|_| Fail::Usage("Invalid argument for --maxlogicalvolumes".into()))?;
    vg.max_pv = ctx
        .args
        .get(O::Maxphysicalvolumes)
        .map_or(Ok(0), |s| s.parse())
        .map_err(|_| Fail::Usage("Invalid argument for --maxphysicalvolumes".into()))?;
    for (k, &i) in idxs.iter().enumerate() {
        let pv = new_pv(ctx, i, format!("pv{k}"), extent_size as u32);
        vg.pvs.push(pv);
    }
    let mut gl_enabled = false;
    if shared {
        gl_enabled = !ctx.session.other_gl_enabled(&name);
        make_shared(ctx, &mut vg, &idxs, gl_enabled)?;
    }
    vg.validate()?;
    ctx.session.create_vg(&vg, &idxs)?;
    if shared {
        if gl_enabled {
            ctx.say("Enabling sanlock global lock");
        }
        ctx.say(&format!("Logical volume \"{}\" created.", lockarea::LOCK_LV_NAME));
    }
    ctx.say(&format!("Volume group \"{name}\" successfully created"));
    Ok(())
}

/// Turns a new VG into a sanlock VG as lvmlockd does: lock fields, WRITE_LOCKED, the hidden
/// `lvmlock` LV at the start of the first PV, and the lease area initialised in it (before
/// the metadata that makes it a VG is written: the extents are still free space until then).
fn make_shared(ctx: &mut Ctx, vg: &mut Vg, idxs: &[usize], gl_enabled: bool) -> Result<(), Fail> {
    vg.status.retain(|s| s != "WRITE");
    vg.flags = vec!["WRITE_LOCKED".into()];
    vg.lock_type = Some(lockarea::LOCK_TYPE.into());
    vg.lock_args = Some(lockarea::VG_LOCK_ARGS.into());
    let first = ctx.session.scan().pvs[idxs[0]].path.clone();
    let (logical, physical) = lockarea::block_sizes(&first)?;
    let geometry = lockarea::geometry_for(logical, physical);
    let bytes = lockarea::initial_lv_mib(geometry) << 20;
    let extents = (bytes / (vg.extent_size as u64 * 512)) as u32;
    if extents == 0 {
        return Err(Fail::Failed("extent size too large for the lvmlock LV".into()));
    }
    let (host, now) = host_and_time();
    let mut lv = Lv::new(lockarea::LOCK_LV_NAME, Uuid::generate()?, vec![], &host, now);
    lv.status = vec!["READ".into()];
    lv.flags = vec!["WRITE_LOCKED".into()];
    lv.read_ahead = Some(-1);
    vg.lvs.push(lv);
    let only = vec![vg.pvs[0].name.clone()];
    let first_name = first.display().to_string();
    let ext_text = ctx.size(vg.extent_size as u64);
    alloc::extend(vg, lockarea::LOCK_LV_NAME, extents, Some(&only)).map_err(|e| match e {
        crate::Error::InsufficientSpace { .. } => Fail::Failed(format!(
            "Failed to create sanlock lv lvmlock in vg {}: {} needs {} extents of {}",
            vg.name, first_name, extents, ext_text
        )),
        e => e.into(),
    })?;
    let paths: Vec<_> = idxs.iter().map(|&i| ctx.session.scan().pvs[i].path.clone()).collect();
    let area = LockArea::new(vg, &|i| paths.get(i).cloned(), geometry, ctx.session.timeouts())?;
    area.init_vg(gl_enabled)?;
    Ok(())
}

pub fn vgremove(ctx: &mut Ctx) -> CmdResult {
    if ctx.args.pos.is_empty() {
        return Err(Fail::Usage("No command with matching syntax recognised.".into()));
    }
    // The global lock must not go with its VG: moved first, before this command takes it.
    for name in ctx.args.pos.clone() {
        super::repair::move_gl_away(ctx, &name);
    }
    ctx.session.lock_gl(LockMode::Ex)?;
    for name in ctx.args.pos.clone() {
        if let Err(f) = remove_one_vg(ctx, &name) {
            ctx.fail_one(f);
        }
    }
    Ok(())
}

fn remove_one_vg(ctx: &mut Ctx, name: &str) -> Result<(), Fail> {
    let txn = ctx.session.begin(name).map_err(|e| not_found(e, name))?;
    let vg = txn.read.vg.clone();
    let visible: Vec<&Lv> = vg.lvs.iter().filter(|l| l.is_visible()).collect();
    if !visible.is_empty()
        && !ctx.args.has(O::Force)
        && !ctx.confirm(&format!(
            "Do you really want to remove volume group \"{name}\" containing {} logical volumes?",
            visible.len()
        ))
    {
        return Err(Fail::Failed(format!("Volume group \"{name}\" not removed")));
    }
    if let Some(lv) = vg.lvs.iter().find(|l| !l.is_supported()) {
        return Err(crate::Error::UnsupportedLv {
            vg: name.into(),
            lv: lv.name.clone(),
            reason: "vgremove would remove it".into(),
        }
        .into());
    }
    // Without locking (no host_id, or --nolocking, as lvm2's), nobody is asked.
    let shared = crate::lockd_locker::is_shared(&vg) && ctx.settings.host_id.is_some() && !ctx.args.has(O::Nolocking);
    if shared {
        no_other_hosts(ctx, &txn.read, name)?;
    }
    for lv in &visible {
        ctx.session.deactivate(&vg, lv)?;
    }
    ctx.session.remove_vg(&txn.read)?;
    for lv in &visible {
        ctx.say(&format!("Logical volume \"{}\" successfully removed.", lv.name));
    }
    ctx.say(&format!("Volume group \"{name}\" successfully removed"));
    if shared {
        // The lease area went with the VG: give back our host_id lease (lvmlockd's free_vg).
        if let Err(e) = super::lvcmds::lockd(ctx)?.vg_removed(name) {
            ctx.err(&format!("WARNING: VG {name} removed, but its lockspace did not stop: {e}"));
        }
    }
    Ok(())
}

/// A shared VG is removed only when no other host is in its lockspace (as lvmlockd's free_vg):
/// another host may have its LVs active and go on writing to extents the removal frees. Hosts
/// lockd has seen dead (past host_dead), or whose record reads free now (stopped cleanly, maybe
/// since lockd last looked), are gone; any other state, including not yet known, might be
/// writing.
fn no_other_hosts(ctx: &mut Ctx, read: &crate::scan::VgRead, name: &str) -> Result<(), Fail> {
    let status = super::lvcmds::lockd(ctx)?.status().map_err(Fail::Failed)?;
    let Some(ls) = status.lockspaces.iter().find(|l| l.vg == name) else {
        return Err(Fail::Failed(format!(
            "VG {name} lockspace is not started here; start it (vgchange --lock-start) to remove the VG"
        )));
    };
    let area = ctx.session.lock_area(read, &read.vg, None)?;
    let mut others = vec![];
    for h in ls.hosts.iter().filter(|h| h.host_id != ls.host_id && !matches!(h.state.as_str(), "free" | "dead")) {
        if !area.host_record_free(h.host_id)? {
            others.push(format!("{} ({}, {})", h.host_id, h.host_name, h.state));
        }
    }
    if !others.is_empty() {
        return Err(Fail::Failed(format!(
            "VG {name} lockspace is in use by other hosts: {}; stop it there first (vgchange --lock-stop {name})",
            others.join(", ")
        )));
    }
    Ok(())
}

/// lvm2's two lines for a VG that is not there.
pub fn not_found(e: crate::Error, name: &str) -> Fail {
    match e {
        crate::Error::VgNotFound { .. } => {
            Fail::Failed(format!("Volume group \"{name}\" not found\n  Cannot process volume group {name}"))
        }
        e => e.into(),
    }
}

pub fn vgextend(ctx: &mut Ctx) -> CmdResult {
    let pos = ctx.args.pos.clone();
    let [name, devs @ ..] = pos.as_slice() else {
        return Err(Fail::Usage("Please enter volume group name and physical volume(s)".into()));
    };
    if devs.is_empty() {
        return Err(Fail::Usage("Please enter physical volume(s)".into()));
    }
    ctx.session.lock_gl(LockMode::Ex)?;
    let mut idxs = vec![];
    for d in devs {
        idxs.push(orphan_pv(ctx, d, name)?);
    }
    let mut txn = ctx.session.begin(name).map_err(|e| not_found(e, name))?;
    for &i in &idxs {
        let n = (0..).map(|k| format!("pv{k}")).find(|n| txn.vg.pv_by_name(n).is_none()).unwrap();
        let pv = new_pv(ctx, i, n, txn.vg.extent_size);
        txn.vg.pvs.push(pv);
        txn.joining.push(i);
    }
    txn.vg.validate()?;
    ctx.session.commit(txn)?;
    ctx.say(&format!("Volume group \"{name}\" successfully extended"));
    Ok(())
}

pub fn vgreduce(ctx: &mut Ctx) -> CmdResult {
    let pos = ctx.args.pos.clone();
    let [name, devs @ ..] = pos.as_slice() else {
        return Err(Fail::Usage("Please give volume group name and physical volume paths".into()));
    };
    if devs.is_empty() {
        return Err(Fail::Usage("Please enter physical volume paths".into()));
    }
    ctx.session.lock_gl(LockMode::Ex)?;
    for d in devs {
        let r = (|| -> Result<(), Fail> {
            let mut txn = ctx.session.begin(name).map_err(|e| not_found(e, name))?;
            let idx = ctx.session.find_device(Path::new(d));
            let uuid = idx.map(|i| ctx.session.scan().pvs[i].label.pv_uuid);
            let Some(k) = txn.vg.pvs.iter().position(|p| Some(p.id) == uuid) else {
                return Err(Fail::Failed(format!("Failed to find physical volume \"{d}\".")));
            };
            let pv_name = txn.vg.pvs[k].name.clone();
            if txn.vg.free_ranges(&pv_name) != vec![(0, txn.vg.pvs[k].pe_count)] && txn.vg.pvs[k].pe_count > 0 {
                return Err(Fail::Failed(format!("Physical volume \"{d}\" still in use")));
            }
            if txn.vg.pvs.len() == 1 {
                return Err(Fail::Failed(format!(
                    "Can't remove final physical volume \"{d}\" from volume group \"{name}\""
                )));
            }
            txn.vg.pvs.remove(k);
            txn.leaving.push(idx.expect("found above"));
            txn.vg.validate()?;
            ctx.session.commit(txn)?;
            ctx.say(&format!("Removed \"{d}\" from volume group \"{name}\""));
            Ok(())
        })();
        if let Err(f) = r {
            ctx.fail_one(f);
        }
    }
    Ok(())
}
