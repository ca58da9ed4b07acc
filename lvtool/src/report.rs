//! Minimal `pvs`/`vgs`/`lvs` reports in lvm2's default layout (columns, sizes in MiB-style units).

use crate::scan::Scan;
use crate::vg::Vg;

/// lvm2's human size with two decimals and a lowercase unit suffix (`--units h` default).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["", "k", "m", "g", "t", "p", "e"];
    if bytes == 0 {
        return "0 ".to_string();
    }
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        return format!("{bytes}.00b");
    }
    format!("{v:.2}{}", UNITS[u])
}

fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> =
            (0..cols)
                .map(|c| {
                    if right[c] {
                        format!("{:>w$}", r[c], w = widths[c])
                    } else {
                        format!("{:<w$}", r[c], w = widths[c])
                    }
                })
                .collect();
        out.push_str("  ");
        out.push_str(cells.join(" ").trim_end());
        out.push('\n');
    }
    out
}

fn vgs_read(scan: &Scan) -> Vec<Vg> {
    scan.vg_names().iter().filter_map(|n| scan.read_vg(n).ok()).map(|r| r.vg).collect()
}

fn used_extents(vg: &Vg, pv: &str) -> u64 {
    let p = vg.pv_by_name(pv).map_or(0, |p| p.pe_count as u64);
    p - vg.free_ranges(pv).iter().map(|r| r.1 as u64).sum::<u64>()
}

pub fn pvs(scan: &Scan) -> String {
    let mut rows = vec![["PV", "VG", "Fmt", "Attr", "PSize", "PFree"].map(String::from).to_vec()];
    let vgs = vgs_read(scan);
    for spv in &scan.pvs {
        let in_vg = vgs.iter().find_map(|vg| vg.pvs.iter().find(|p| p.id == spv.label.pv_uuid).map(|p| (vg, p)));
        let row = match in_vg {
            Some((vg, p)) => {
                let ext = vg.extent_size as u64 * 512;
                let alloc = if p.status.iter().any(|s| s == "ALLOCATABLE") { 'a' } else { '-' };
                let free = p.pe_count as u64 - used_extents(vg, &p.name);
                vec![
                    spv.path.display().to_string(),
                    vg.name.clone(),
                    "lvm2".into(),
                    format!("{alloc}--"),
                    human_size(p.pe_count as u64 * ext),
                    human_size(free * ext),
                ]
            }
            None => {
                let size = human_size(spv.label.device_size);
                vec![spv.path.display().to_string(), String::new(), "lvm2".into(), "---".into(), size.clone(), size]
            }
        };
        rows.push(row);
    }
    table(&rows, &[false, false, false, false, true, true])
}

pub fn vgs(scan: &Scan) -> String {
    let mut rows = vec![["VG", "#PV", "#LV", "#SN", "Attr", "VSize", "VFree"].map(String::from).to_vec()];
    for vg in vgs_read(scan) {
        let ext = vg.extent_size as u64 * 512;
        let total: u64 = vg.pvs.iter().map(|p| p.pe_count as u64).sum();
        let used: u64 = vg.pvs.iter().map(|p| used_extents(&vg, &p.name)).sum();
        let w = if vg.status.iter().any(|s| s == "WRITE") || vg.flags.iter().any(|s| s == "WRITE_LOCKED") {
            'w'
        } else {
            'r'
        };
        let z = if vg.status.iter().any(|s| s == "RESIZEABLE") { 'z' } else { '-' };
        let s = if vg.lock_type.is_some() { 's' } else { '-' };
        rows.push(vec![
            vg.name.clone(),
            vg.pvs.len().to_string(),
            vg.lvs.iter().filter(|l| l.is_visible()).count().to_string(),
            "0".into(),
            format!("{w}{z}--n{s}"),
            human_size(total * ext),
            human_size((total - used) * ext),
        ]);
    }
    table(&rows, &[false, true, true, true, false, true, true])
}

pub fn lvs(scan: &Scan) -> String {
    let mut rows = vec![["LV", "VG", "Attr", "LSize"].map(String::from).to_vec()];
    for vg in vgs_read(scan) {
        for lv in vg.lvs.iter().filter(|l| l.is_visible()) {
            let w = if lv.status.iter().any(|s| s == "WRITE") || lv.flags.iter().any(|s| s == "WRITE_LOCKED") {
                'w'
            } else {
                'r'
            };
            let kind = if lv.is_supported() { '-' } else { '?' };
            rows.push(vec![
                lv.name.clone(),
                vg.name.clone(),
                format!("{kind}{w}i-------"),
                human_size(lv.extent_count as u64 * vg.extent_size as u64 * 512),
            ]);
        }
    }
    table(&rows, &[false, false, false, true])
}
