//! vgdisplay and lvdisplay in lvm2's layout. Lines that need the kernel's view (LV Status,
//! # open, Block device) are printed only when activation is enabled, as lvm2 does.

use super::args::{OptSet, O};
use super::reports::{load, Loaded};
use super::{split_lv_path, units_from, CmdResult, Ctx, Fail};
use crate::activate::LvState;
use crate::report::format_time;
use crate::units::SuffixStyle;

pub const VGDISPLAY: OptSet = OptSet::new(&[O::Units, O::Nosuffix], &[O::Colon]);
pub const LVDISPLAY: OptSet = OptSet::new(&[O::Units, O::Nosuffix, O::All], &[O::Colon]);

pub fn vgdisplay(ctx: &mut Ctx) -> CmdResult {
    ctx.units = units_from(&ctx.args)?;
    let names = ctx.args.pos.clone();
    let loaded = load(ctx, &names);
    for l in &loaded {
        print!("{}", vg_text(ctx, l));
    }
    Ok(())
}

fn vg_text(ctx: &Ctx, l: &Loaded) -> String {
    let v = l.info();
    let vg = v.vg;
    let sz = |s: u64| ctx.units.format(s, SuffixStyle::Short);
    let ext = vg.extent_size as u64;
    let total: u64 = vg.pvs.iter().map(|p| p.pe_count as u64).sum();
    let free: u64 = vg.pvs.iter().flat_map(|p| vg.free_ranges(&p.name)).map(|r| r.1 as u64).sum();
    let alloc = total - free;
    let writable = crate::report::is_writable(&vg.status, &vg.flags);
    let readable = vg.status.iter().any(|s| s == "READ");
    let access = match (readable, writable) {
        (true, true) => "read/write",
        (true, false) => "read",
        (false, true) => "write",
        (false, false) => "error",
    };
    let exported = if vg.status.iter().any(|s| s == "EXPORTED") { "exported/" } else { "" };
    let resizable = if vg.status.iter().any(|s| s == "RESIZEABLE") { "" } else { "NOT " };
    let open = l.states.iter().filter(|s| matches!(s, LvState::Active { open: 1.., .. })).count();
    let missing = l.paths.iter().filter(|p| p.is_none()).count();
    let lines = [
        "--- Volume group ---".to_string(),
        format!("VG Name               {}", vg.name),
        format!("System ID             {}", vg.system_id.as_deref().unwrap_or("")),
        "Format                lvm2".to_string(),
        format!("Metadata Areas        {}", l.mdas),
        format!("Metadata Sequence No  {}", vg.seqno),
        format!("VG Access             {access}"),
        format!("VG Status             {exported}{resizable}resizable"),
        format!("MAX LV                {}", vg.max_lv),
        format!("Cur LV                {}", vg.lvs.iter().filter(|l| l.is_visible()).count()),
        format!("Open LV               {open}"),
        format!("Max PV                {}", vg.max_pv),
        format!("Cur PV                {}", vg.pvs.len()),
        format!("Act PV                {}", vg.pvs.len() - missing),
        format!("VG Size               {}", sz(total * ext)),
        format!("PE Size               {}", sz(ext)),
        format!("Total PE              {total}"),
        format!("Alloc PE / Size       {alloc} / {}", sz(alloc * ext)),
        format!("Free  PE / Size       {free} / {}", sz(free * ext)),
        format!("VG UUID               {}", vg.id),
        " ".to_string(),
    ];
    lines.iter().map(|l| format!("  {l}\n")).collect()
}

pub fn lvdisplay(ctx: &mut Ctx) -> CmdResult {
    ctx.units = units_from(&ctx.args)?;
    let targets: Vec<(String, Option<String>)> = ctx.args.pos.iter().map(|p| split_lv_path(p)).collect();
    let names: Vec<String> = targets.iter().map(|t| t.0.clone()).collect();
    let loaded = load(ctx, &names);
    let all = ctx.args.has(O::All);
    let enabled = ctx.session.activator().enabled();
    for l in &loaded {
        let vg = &l.read.vg;
        let whole = targets.is_empty() || targets.iter().any(|t| t.0 == vg.name && t.1.is_none());
        for w in targets.iter().filter(|t| t.0 == vg.name).filter_map(|t| t.1.as_ref()) {
            if vg.lv(w).is_none() {
                ctx.fail_one(Fail::Failed(format!("Failed to find logical volume \"{}/{w}\"", vg.name)));
            }
        }
        for (i, lv) in vg.lvs.iter().enumerate() {
            let named = targets.iter().any(|t| t.0 == vg.name && t.1.as_deref() == Some(lv.name.as_str()));
            if !(named || whole && (all || lv.is_visible())) {
                continue;
            }
            let state = l.states[i];
            let sz = |s: u64| ctx.units.format(s, SuffixStyle::Short);
            let mut out: Vec<String> = vec!["--- Logical volume ---".into()];
            if lv.is_visible() {
                out.push(format!("LV Path                /dev/{}/{}", vg.name, lv.name));
                out.push(format!("LV Name                {}", lv.name));
            } else {
                out.push(format!("Internal LV Name       {}", lv.name));
            }
            out.push(format!("VG Name                {}", vg.name));
            out.push(format!("LV UUID                {}", lv.id));
            let writable = crate::report::is_writable(&lv.status, &lv.flags);
            let access = match (writable, state) {
                (true, LvState::Active { read_only: true, .. }) => "read/write (activated read only)",
                (true, _) => "read/write",
                (false, _) => "read only",
            };
            out.push(format!("LV Write Access        {access}"));
            out.push(format!(
                "LV Creation host, time {}, {}",
                lv.creation_host.as_deref().unwrap_or(""),
                lv.creation_time.map(format_time).unwrap_or_default()
            ));
            let partial = lv
                .segments
                .iter()
                .flat_map(|s| &s.stripes)
                .any(|a| vg.pvs.iter().position(|p| p.name == a.pv).is_some_and(|k| l.paths[k].is_none()));
            match state {
                LvState::Active { suspended: true, .. } => out.push("LV Status              suspended".into()),
                s if enabled => out.push(format!(
                    "LV Status              {}available{}",
                    if s.is_active() { "" } else { "NOT " },
                    if partial { " (partial)" } else { "" }
                )),
                _ => {}
            }
            if let LvState::Active { open, .. } = state {
                out.push(format!("# open                 {open}"));
            }
            out.push(format!("LV Size                {}", sz(lv.extent_count as u64 * vg.extent_size as u64)));
            out.push(format!("Current LE             {}", lv.extent_count));
            let segs = if lv.is_supported() { lv.segments.len() } else { lv.segtypes.len() };
            out.push(format!("Segments               {segs}"));
            out.push(format!("Allocation             {}", lv.allocation_policy.as_deref().unwrap_or("inherit")));
            out.push(match lv.read_ahead {
                None => "Read ahead sectors     auto".into(),
                Some(-1) | Some(0) => "Read ahead sectors     0".into(),
                Some(n) => format!("Read ahead sectors     {n}"),
            });
            if lv.status.iter().any(|s| s == "FIXED_MINOR") {
                if let Some(m) = lv.major.filter(|&m| m >= 0) {
                    out.push(format!("Persistent major       {m}"));
                }
                out.push(format!("Persistent minor       {}", lv.minor.unwrap_or(-1)));
            }
            if let LvState::Active { major, minor, .. } = state {
                out.push(format!("Block device           {major}:{minor}"));
            }
            out.push(" ".into());
            for line in out {
                println!("  {line}");
            }
        }
    }
    Ok(())
}
