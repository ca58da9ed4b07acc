//! pvs, vgs, lvs.

use super::args::{OptSet, O};
use super::pvvg::not_found;
use super::{split_lv_path, units_from, CmdResult, Ctx, Fail};
use crate::activate::LvState;
use crate::report::{self, Obj, Options, PvRow, ReportType, Row, VgInfo};
use crate::scan::{Disagreement, MdaState, VgRead};
use crate::session::LockMode;

/// The options of all three reports.
macro_rules! report_opts {
    ($($o:expr),*) => {
        &[
            O::Options, O::Sort, O::Units, O::Nosuffix, O::Noheadings, O::Separator, O::Reportformat,
            O::ReportShared, O::Foreign, O::Aligned, $($o),*
        ]
    };
}
pub const PVS: OptSet = OptSet::new(report_opts!(), &[O::PvsAll]);
pub const VGS: OptSet = OptSet::new(report_opts!(O::All), &[]);
pub const LVS: OptSet = OptSet::new(report_opts!(O::All, O::Segments), &[]);

/// A VG read for a report, with what the rows need besides the metadata.
pub(super) struct Loaded {
    pub read: VgRead,
    pub paths: Vec<Option<String>>,
    pub mdas: usize,
    pub states: Vec<LvState>,
    /// Holders of the LV leases (`-o lock_owner`), `vg.lvs` order.
    pub owners: Vec<String>,
}

impl Loaded {
    pub fn info(&self) -> VgInfo<'_> {
        VgInfo {
            vg: &self.read.vg,
            pv_paths: self.paths.clone(),
            mda_count: self.mdas,
            states: self.states.clone(),
            lock_owners: self.owners.clone(),
        }
    }
}

/// Who holds each LV's lease, read from the disk: `2 (node2)` for an exclusive holder, `sh 1
/// (node1),3 (node3)` for shared ones, empty when free. Host names come from the holders'
/// delta leases in the lockspace.
fn lock_owners(ctx: &mut Ctx, l: &Loaded) -> Vec<String> {
    use lease::diskio::{block_on, DeviceDisk, Disk};
    use lease::ondisk::{delta_sector_offset, LeaderRecord, LeaseKind, Name};
    use lease::paxos_lease::{read_resource, ResourceArea};
    let vg = &l.read.vg;
    if vg.lock_type.as_deref() != Some(crate::lockarea::LOCK_TYPE) {
        return vec![String::new(); vg.lvs.len()];
    }
    let area = match ctx.session.lock_area(&l.read, vg, None) {
        Ok(a) => a,
        Err(e) => return vec![format!("error: {e}"); vg.lvs.len()],
    };
    let g = area.geometry;
    let t = lease::timeouts::Timeouts::default();
    let host = |id: u64| -> String {
        let name = area.locate(0).ok().and_then(|(p, at)| {
            let d = DeviceDisk::open(p).ok()?;
            let b = block_on(d.read(at + delta_sector_offset(g, id), g.sector_bytes(), t.io())).ok()?;
            let r = LeaderRecord::verify_any_name(&b, LeaseKind::Delta).ok()?;
            Some(r.resource_name.as_str_lossy()).filter(|n| !n.is_empty())
        });
        match name {
            Some(n) => format!("{id} ({n})"),
            None => id.to_string(),
        }
    };
    let Ok(ls) = Name::new(&crate::lockarea::lockspace_name(&vg.name)) else { return vec![] };
    vg.lvs
        .iter()
        .map(|lv| {
            let Some(offset) = lv.lock_args.as_deref().and_then(crate::lockarea::parse_lv_lock_args) else {
                return String::new();
            };
            let view = area.locate(offset).map_err(|e| e.to_string()).and_then(|(p, at)| {
                let d = DeviceDisk::open(p).map_err(|e| e.to_string())?;
                let name = Name::new(&lv.id.to_string()).map_err(|e| e.to_string())?;
                let ra = ResourceArea { lockspace: ls, name, offset: at, geometry: g };
                block_on(read_resource(&d, &ra, t)).map_err(|e| e.to_string())
            });
            match view {
                Err(e) => format!("error: {e}"),
                Ok(v) if v.leader.timestamp != 0 => host(v.leader.owner_id),
                Ok(v) => {
                    let sh: Vec<String> = v.shared_holders(0).into_iter().map(|(id, _)| host(id)).collect();
                    if sh.is_empty() {
                        String::new()
                    } else {
                        format!("sh {}", sh.join(","))
                    }
                }
            }
        })
        .collect()
}

/// Reads the named VGs (all when `names` is empty) under sh VG locks, sorted by name.
pub(super) fn load(ctx: &mut Ctx, names: &[String]) -> Vec<Loaded> {
    let all = names.is_empty();
    let mut names: Vec<String> = if all {
        // Listing every VG reads the VG namespace: the global lock in sh (as lvm2).
        if let Err(e) = ctx.session.lock_gl(LockMode::Sh) {
            ctx.fail_one(e.into());
            return vec![];
        }
        ctx.session.scan().vg_names()
    } else {
        names.to_vec()
    };
    // Damage anywhere may hide a VG (a VG whose every copy is unreadable has no name to list).
    let mut damage_reported = false;
    if all && ctx.cmd != "pvs" {
        report_damage(ctx, None);
        damage_reported = true;
    }
    names.sort();
    names.dedup();
    let mut out = vec![];
    for n in names {
        let read = match ctx.session.read_vg(&n, LockMode::Sh) {
            Ok(r) => r,
            Err(e) => {
                let missing = matches!(e, crate::Error::VgNotFound { .. });
                ctx.fail_one(not_found(e, &n));
                if missing && !damage_reported {
                    report_damage(ctx, None);
                    damage_reported = true;
                }
                continue;
            }
        };
        for d in &read.disagreements {
            let msg = format!("VG {n}: {} metadata area at byte {}: {}", d.device.display(), d.mda_start, d.problem);
            match d.problem {
                // Already said, with every damaged area, when all devices are reported.
                Disagreement::Unreadable(_) if all => ctx.partial_failure = true,
                // A copy that cannot be read, or two different texts of one version: damage.
                Disagreement::Unreadable(_) | Disagreement::DifferentText => ctx.fail_one(Fail::Failed(msg)),
                _ => ctx.err(&format!("WARNING: {msg}")),
            }
        }
        for m in &read.missing {
            ctx.err(&format!("WARNING: Couldn't find device with uuid {m}."));
        }
        let paths: Vec<Option<String>> =
            ctx.session.pv_paths(&read).into_iter().map(|p| p.map(|p| p.display().to_string())).collect();
        let scan = ctx.session.scan();
        let mdas = read
            .devices
            .iter()
            .flatten()
            .map(|&i| scan.pvs[i].mdas.iter().filter(|(_, s)| !matches!(s, MdaState::Ignored(_))).count())
            .sum();
        let states = read.vg.lvs.iter().map(|l| ctx.session.lv_state(&read.vg, l)).collect();
        out.push(Loaded { read, paths, mdas, states, owners: vec![] });
    }
    out
}

/// Reports every scanned device whose PV label or metadata area cannot be read, saying why
/// and where (device, byte offset), and fails the command: a damaged PV or VG must not look
/// like an orphan or like nothing at all. `only`: just these devices (canonical paths).
pub(super) fn report_damage(ctx: &mut Ctx, only: Option<&[std::path::PathBuf]>) {
    let wanted = |p: &std::path::Path| {
        only.is_none_or(|o| o.is_empty() || o.contains(&std::fs::canonicalize(p).unwrap_or_else(|_| p.into())))
    };
    let mut msgs = vec![];
    let scan = ctx.session.scan();
    for (p, e) in scan.errors.iter().filter(|(p, _)| wanted(p)) {
        msgs.push(match e {
            crate::Error::Io { .. } => format!("Cannot read {}: {e}", p.display()),
            _ => format!("PV label on {} is damaged: {e}", p.display()),
        });
    }
    for pv in scan.pvs.iter().filter(|pv| wanted(&pv.path)) {
        for (a, m) in &pv.mdas {
            if let MdaState::Bad(e) = m {
                msgs.push(format!(
                    "Metadata on PV {} (metadata area at byte {}) is damaged: {e}",
                    pv.path.display(),
                    a.offset
                ));
            }
        }
        let in_vg = pv.mdas.iter().any(|(_, m)| matches!(m, MdaState::Copy(_)));
        if pv.label.in_use() && !in_vg && pv.mdas.iter().all(|(_, m)| !matches!(m, MdaState::Bad(_))) {
            let uuid = pv.label.pv_uuid;
            let names = scan.vg_names();
            if !names.iter().any(|n| scan.read_vg(n).is_ok_and(|r| r.vg.pvs.iter().any(|p| p.id == uuid))) {
                msgs.push(format!("PV {} is marked in use but no VG was found using it.", pv.path.display()));
            }
        }
    }
    for m in msgs {
        ctx.fail_one(Fail::Failed(m));
    }
}

fn options(ctx: &Ctx) -> Result<Options, Fail> {
    let json = match ctx.args.get(O::Reportformat) {
        None | Some("basic") => false,
        Some("json") => true,
        Some(f) => return Err(Fail::Usage(format!("Unknown report format: {f}"))),
    };
    Ok(Options {
        units: units_from(&ctx.args)?,
        headings: !ctx.args.has(O::Noheadings),
        separator: ctx.args.get(O::Separator).map(String::from),
        aligned: ctx.args.has(O::Aligned),
        json,
    })
}

fn fields(ctx: &Ctx, default: &str, t: ReportType) -> Result<Vec<&'static report::Field>, Fail> {
    // An unknown field is a failed command in lvm2 (exit 5), not a usage error.
    report::resolve_fields(ctx.args.all(O::Options), default, t).map_err(Fail::Failed)
}

/// `-O`: the last one given replaces the default order (rows are built in that order).
fn sort_keys(ctx: &Ctx, t: ReportType) -> Result<Vec<report::SortKey>, Fail> {
    match ctx.args.get(O::Sort) {
        None => Ok(vec![]),
        Some(s) => report::resolve_sort(s, t).map_err(Fail::Failed),
    }
}

/// Devices still mapped here for LVs that are gone from the metadata (seed 000).
fn warn_stale(ctx: &Ctx, infos: &[VgInfo]) {
    for v in infos {
        for name in ctx.session.stale_devices(v.vg) {
            eprintln!(
                "  WARNING: Device {name} is active but its LV is no longer in VG {}; remove it with vgchange --refresh {}.",
                v.vg.name, v.vg.name
            );
        }
    }
}

pub fn vgs(ctx: &mut Ctx) -> CmdResult {
    let opts = options(ctx)?;
    let fields = fields(ctx, report::VGS_DEFAULT, ReportType::Vgs)?;
    let keys = sort_keys(ctx, ReportType::Vgs)?;
    // `-a`: all VGs, which is what no VG names means too.
    let names = ctx.args.pos.clone();
    let loaded = load(ctx, &names);
    let infos: Vec<VgInfo> = loaded.iter().map(Loaded::info).collect();
    warn_stale(ctx, &infos);
    let mut rows: Vec<Row> = infos.iter().map(|v| Row { vg: Some(v), pv: None, lv: None, seg: None }).collect();
    report::sort_rows(&mut rows, &keys, &opts);
    print!("{}", report::render(ReportType::Vgs, &fields, &rows, &opts));
    Ok(())
}

pub fn lvs(ctx: &mut Ctx) -> CmdResult {
    let opts = options(ctx)?;
    let segments = ctx.args.has(O::Segments);
    let default = if segments { report::SEGS_DEFAULT } else { report::LVS_DEFAULT };
    let t = if segments { ReportType::Segs } else { ReportType::Lvs };
    let fields = fields(ctx, default, t)?;
    let keys = sort_keys(ctx, t)?;
    let per_seg = segments || fields.iter().any(|f| f.obj == Obj::Seg);
    let targets: Vec<(String, Option<String>)> = ctx.args.pos.iter().map(|p| split_lv_path(p)).collect();
    let vg_names: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
    let mut loaded = load(ctx, &vg_names);
    if fields.iter().any(|f| f.id == "lock_owner") {
        for l in loaded.iter_mut() {
            l.owners = lock_owners(ctx, l);
        }
    }
    let infos: Vec<VgInfo> = loaded.iter().map(Loaded::info).collect();
    warn_stale(ctx, &infos);
    let all = ctx.args.has(O::All);
    let mut rows = vec![];
    for v in &infos {
        let wanted: Vec<&str> = targets.iter().filter(|t| t.0 == v.vg.name).filter_map(|t| t.1.as_deref()).collect();
        let whole_vg = targets.is_empty() || targets.iter().any(|t| t.0 == v.vg.name && t.1.is_none());
        let mut lvs: Vec<_> =
            v.vg.lvs
                .iter()
                .filter(|l| if whole_vg { all || l.is_visible() } else { wanted.contains(&l.name.as_str()) })
                .collect();
        for w in &wanted {
            if !v.vg.lvs.iter().any(|l| l.name == *w) {
                ctx.fail_one(Fail::Failed(format!("Failed to find logical volume \"{}/{w}\"", v.vg.name)));
            }
        }
        // lvm2's default order is by name; `-O` sorts the LVs as the metadata lists them.
        if keys.is_empty() {
            lvs.sort_by(|a, b| a.name.cmp(&b.name));
        }
        for lv in lvs {
            if per_seg && !lv.segments.is_empty() {
                for s in &lv.segments {
                    rows.push(Row { vg: Some(v), pv: None, lv: Some(lv), seg: Some(s) });
                }
            } else {
                rows.push(Row { vg: Some(v), pv: None, lv: Some(lv), seg: None });
            }
        }
    }
    let t = if per_seg { ReportType::Segs } else { ReportType::Lvs };
    report::sort_rows(&mut rows, &keys, &opts);
    print!("{}", report::render(t, &fields, &rows, &opts));
    Ok(())
}

pub fn pvs(ctx: &mut Ctx) -> CmdResult {
    let opts = options(ctx)?;
    let fields = fields(ctx, report::PVS_DEFAULT, ReportType::Pvs)?;
    let keys = sort_keys(ctx, ReportType::Pvs)?;
    let loaded = load(ctx, &[]);
    let infos: Vec<VgInfo> = loaded.iter().map(Loaded::info).collect();
    let wanted: Vec<std::path::PathBuf> =
        ctx.args.pos.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.into())).collect();
    report_damage(ctx, Some(&wanted));
    let scan = ctx.session.scan();
    let mut pv_rows: Vec<PvRow> = vec![];
    for sp in &scan.pvs {
        let vg = infos.iter().find_map(|v| v.vg.pvs.iter().find(|p| p.id == sp.label.pv_uuid).map(|p| (v, p))).filter(
            |(v, p)| {
                let k = v.vg.pvs.iter().position(|x| x.id == p.id).unwrap();
                v.pv_paths[k].as_deref() == Some(&*sp.path.display().to_string())
            },
        );
        let damaged = vg.is_none() && (sp.mdas.iter().any(|(_, m)| matches!(m, MdaState::Bad(_))) || sp.label.in_use());
        pv_rows.push(PvRow {
            path: sp.path.display().to_string(),
            label: Some(&sp.label),
            dev_size: sp.size,
            vg,
            damaged,
        });
    }
    for v in &infos {
        for (k, p) in v.vg.pvs.iter().enumerate() {
            if v.pv_paths[k].is_none() {
                let dev_size = p.dev_size.unwrap_or(0) * 512;
                pv_rows.push(PvRow {
                    path: "[unknown]".into(),
                    label: None,
                    dev_size,
                    vg: Some((v, p)),
                    damaged: false,
                });
            }
        }
    }
    pv_rows.retain(|r| {
        wanted.is_empty() || wanted.contains(&std::fs::canonicalize(&r.path).unwrap_or_else(|_| r.path.clone().into()))
    });
    pv_rows.sort_by(|a, b| a.path.cmp(&b.path));
    let mut rows: Vec<Row> =
        pv_rows.iter().map(|p| Row { vg: p.vg.map(|v| v.0), pv: Some(p), lv: None, seg: None }).collect();
    report::sort_rows(&mut rows, &keys, &opts);
    print!("{}", report::render(ReportType::Pvs, &fields, &rows, &opts));
    Ok(())
}
