//! `pvs`/`vgs`/`lvs` reports laid out as lvm2 (libdm report) does: the same field names,
//! headings and minimum widths (lvm2's `columns.h`), numbers and sizes right-aligned, every
//! column padded, two leading spaces; `--noheadings`, `--separator` (padded with `--aligned`),
//! `--units`, `--nosuffix`, `-O` sort keys, and `--reportformat json` with lvm2's
//! `{"report": [{"vg": [...]}]}` shape. [`FIELDS`] and `value` are checked against each other
//! by unit tests: every computed field is declared, every declared field has a value of its kind.

use std::fmt::Write as _;

use crate::activate::LvState;
use crate::label::Label;
use crate::units::{SuffixStyle, Units};
use crate::vg::{Lv, Pv, Segment, Vg};

/// The kind of an object a field describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Obj {
    Pv,
    Vg,
    Lv,
    Seg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    Num,
    Size,
    Bin,
    List,
}

pub struct Field {
    pub id: &'static str,
    head: &'static str,
    kind: Kind,
    width: usize,
    pub obj: Obj,
}

const fn f(id: &'static str, head: &'static str, kind: Kind, width: usize, obj: Obj) -> Field {
    Field { id, head, kind, width, obj }
}

use Kind::*;
use Obj::{Lv as L, Pv as P, Seg as S, Vg as V};

/// The fields lvtool knows, as lvm2 2.03.16 names and heads them.
pub static FIELDS: &[Field] = &[
    f("lv_uuid", "LV UUID", Str, 38, L),
    f("lv_name", "LV", Str, 4, L),
    f("lv_full_name", "LV", Str, 4, L),
    f("lv_path", "Path", Str, 0, L),
    f("lv_dm_path", "DMPath", Str, 0, L),
    f("lv_layout", "Layout", List, 10, L),
    f("lv_role", "Role", List, 10, L),
    f("lv_allocation_policy", "AllocPol", Str, 10, L),
    f("lv_skip_activation", "SkipAct", Bin, 15, L),
    f("lv_active", "Active", Str, 0, L),
    f("lv_active_locally", "ActLocal", Bin, 10, L),
    f("lv_active_exclusively", "ActExcl", Bin, 10, L),
    f("lv_major", "Maj", Num, 0, L),
    f("lv_minor", "Min", Num, 0, L),
    f("lv_read_ahead", "Rahead", Size, 0, L),
    f("lv_size", "LSize", Size, 0, L),
    f("seg_count", "#Seg", Num, 0, L),
    f("origin", "Origin", Str, 0, L),
    f("move_pv", "Move", Str, 0, L),
    f("convert_lv", "Convert", Str, 0, L),
    f("mirror_log", "Log", Str, 0, L),
    f("pool_lv", "Pool", Str, 0, L),
    f("lv_tags", "LV Tags", List, 0, L),
    f("lv_lockargs", "LLockArgs", Str, 0, L),
    // Not an lvm2 field: the holder of the LV's lease, read from disk (sanlvm).
    f("lock_owner", "LockOwner", Str, 0, L),
    f("lv_time", "CTime", Str, 26, L),
    f("lv_host", "Host", Str, 10, L),
    f("lv_kernel_major", "KMaj", Num, 0, L),
    f("lv_kernel_minor", "KMin", Num, 0, L),
    f("lv_permissions", "LPerms", Str, 8, L),
    f("lv_device_open", "DevOpen", Bin, 10, L),
    f("data_percent", "Data%", Num, 6, L),
    f("metadata_percent", "Meta%", Num, 6, L),
    f("copy_percent", "Cpy%Sync", Num, 0, L),
    f("lv_attr", "Attr", Str, 0, L),
    f("pv_fmt", "Fmt", Str, 0, P),
    f("pv_uuid", "PV UUID", Str, 38, P),
    f("dev_size", "DevSize", Size, 0, P),
    f("pv_name", "PV", Str, 10, P),
    f("pv_mda_size", "PMdaSize", Size, 9, P),
    f("pv_ext_vsn", "PExtVsn", Num, 0, P),
    f("pe_start", "1st PE", Size, 7, P),
    f("pv_size", "PSize", Size, 0, P),
    f("pv_free", "PFree", Size, 0, P),
    f("pv_used", "Used", Size, 0, P),
    f("pv_attr", "Attr", Str, 0, P),
    f("pv_allocatable", "Allocatable", Bin, 0, P),
    f("pv_missing", "Missing", Bin, 10, P),
    f("pv_pe_count", "PE", Num, 3, P),
    f("pv_pe_alloc_count", "Alloc", Num, 0, P),
    f("pv_tags", "PV Tags", List, 0, P),
    f("pv_mda_count", "#PMda", Num, 0, P),
    f("pv_in_use", "PInUse", Bin, 0, P),
    f("vg_fmt", "Fmt", Str, 0, V),
    f("vg_uuid", "VG UUID", Str, 38, V),
    f("vg_name", "VG", Str, 0, V),
    f("vg_attr", "Attr", Str, 5, V),
    f("vg_permissions", "VPerms", Str, 10, V),
    f("vg_allocation_policy", "AllocPol", Str, 10, V),
    f("vg_shared", "Shared", Bin, 7, V),
    f("vg_size", "VSize", Size, 0, V),
    f("vg_free", "VFree", Size, 0, V),
    f("vg_systemid", "System ID", Str, 0, V),
    f("vg_lock_type", "LockType", Str, 0, V),
    f("vg_lock_args", "VLockArgs", Str, 0, V),
    f("vg_extent_size", "Ext", Size, 0, V),
    f("vg_extent_count", "#Ext", Num, 0, V),
    f("vg_free_count", "Free", Num, 0, V),
    f("max_lv", "MaxLV", Num, 0, V),
    f("max_pv", "MaxPV", Num, 0, V),
    f("pv_count", "#PV", Num, 0, V),
    f("vg_missing_pv_count", "#PV Missing", Num, 0, V),
    f("lv_count", "#LV", Num, 0, V),
    f("snap_count", "#SN", Num, 0, V),
    f("vg_seqno", "Seq", Num, 0, V),
    f("vg_tags", "VG Tags", List, 0, V),
    f("vg_mda_count", "#VMda", Num, 0, V),
    f("segtype", "Type", Str, 0, S),
    f("stripes", "#Str", Num, 0, S),
    f("stripe_size", "Stripe", Size, 0, S),
    f("seg_start", "Start", Size, 0, S),
    f("seg_start_pe", "Start", Num, 0, S),
    f("seg_size", "SSize", Size, 0, S),
    f("seg_size_pe", "SSize", Num, 0, S),
    f("seg_tags", "Seg Tags", List, 0, S),
    f("seg_pe_ranges", "PE Ranges", List, 0, S),
    f("devices", "Devices", List, 0, S),
];

pub const PVS_DEFAULT: &str = "pv_name,vg_name,pv_fmt,pv_attr,pv_size,pv_free";
pub const VGS_DEFAULT: &str = "vg_name,pv_count,lv_count,snap_count,vg_attr,vg_size,vg_free";
pub const LVS_DEFAULT: &str =
    "lv_name,vg_name,lv_attr,lv_size,pool_lv,origin,data_percent,metadata_percent,move_pv,mirror_log,copy_percent,convert_lv";
pub const SEGS_DEFAULT: &str = "lv_name,vg_name,lv_attr,stripes,segtype,seg_size";

/// The report types: which objects a row stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportType {
    Pvs,
    Vgs,
    Lvs,
    Segs,
}

impl ReportType {
    /// lvm2's JSON key for the rows.
    fn json_key(self) -> &'static str {
        match self {
            ReportType::Pvs => "pv",
            ReportType::Vgs => "vg",
            ReportType::Lvs => "lv",
            ReportType::Segs => "seg",
        }
    }
    /// Field name prefixes tried when a name does not match as given (`-o name` = `vg_name`).
    fn prefixes(self) -> &'static [&'static str] {
        match self {
            ReportType::Pvs => &["pv_", "vg_"],
            ReportType::Vgs => &["vg_"],
            ReportType::Lvs => &["lv_", "vg_", "seg_"],
            ReportType::Segs => &["seg_", "lv_", "vg_"],
        }
    }
    fn allows(self, o: Obj) -> bool {
        match self {
            ReportType::Pvs => matches!(o, Obj::Pv | Obj::Vg),
            ReportType::Vgs => o == Obj::Vg,
            ReportType::Lvs | ReportType::Segs => matches!(o, Obj::Lv | Obj::Vg | Obj::Seg),
        }
    }
}

/// lvm2 compares field names ignoring underscores and case.
fn norm(s: &str) -> String {
    s.chars().filter(|&c| c != '_').map(|c| c.to_ascii_lowercase()).collect()
}

fn lookup(name: &str, t: ReportType) -> Option<&'static Field> {
    let by = |n: &str| FIELDS.iter().find(|f| norm(f.id) == norm(n));
    // Aliases lvm2 accepts through its own tables.
    let name = match name {
        "lv_lock_args" => "lv_lockargs",
        n => n,
    };
    by(name).or_else(|| t.prefixes().iter().find_map(|p| by(&format!("{p}{name}")))).filter(|f| t.allows(f.obj))
}

/// Resolves a `-o` list (`a,b`, `+c` to add to the defaults, several `-o` accumulate).
pub fn resolve_fields(
    options: &[String],
    default: &str,
    t: ReportType,
) -> std::result::Result<Vec<&'static Field>, String> {
    let mut names: Vec<String> = vec![];
    let mut replaced = false;
    for o in options {
        if let Some(add) = o.strip_prefix('+') {
            if !replaced && names.is_empty() {
                names.extend(default.split(',').map(String::from));
            }
            names.extend(add.split(',').filter(|s| !s.is_empty()).map(String::from));
        } else {
            if !replaced {
                names.clear();
                replaced = true;
            }
            names.extend(o.split(',').filter(|s| !s.is_empty()).map(String::from));
        }
    }
    if names.is_empty() {
        names.extend(default.split(',').map(String::from));
    }
    names.iter().map(|n| lookup(n.trim(), t).ok_or_else(|| format!("Unrecognised field: {}", n.trim()))).collect()
}

/// One key of `-O`: a field, and whether it sorts in descending order.
#[derive(Clone, Copy)]
pub struct SortKey {
    pub field: &'static Field,
    pub descending: bool,
}

/// Resolves a `-O` list: field names as `-o` takes them, each optionally prefixed by `-`
/// (descending) or `+` (ascending). A field need not be among those displayed.
pub fn resolve_sort(sort: &str, t: ReportType) -> std::result::Result<Vec<SortKey>, String> {
    let mut keys = vec![];
    for item in sort.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, descending) = match item.strip_prefix('-') {
            Some(n) => (n, true),
            None => (item.strip_prefix('+').unwrap_or(item), false),
        };
        let field = lookup(name.trim(), t).ok_or_else(|| format!("Unrecognised field: {}", name.trim()))?;
        keys.push(SortKey { field, descending });
    }
    Ok(keys)
}

/// A value as `-O` compares it: numbers and sizes by value, everything else as printed.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortVal {
    Num(i128),
    Text(String),
}

fn sort_val(f: &Field, r: &Row, o: &Options) -> SortVal {
    match value(f.id, r) {
        Some(Val::N(n)) => SortVal::Num(n as i128),
        Some(Val::Sz(n)) => SortVal::Num(n as i128),
        Some(Val::B(b, _)) => SortVal::Num(b as i128),
        Some(v) => SortVal::Text(v.text(o)),
        None => SortVal::Text(String::new()),
    }
}

/// Orders `rows` by `keys`, stably: rows equal in every key keep their order.
pub fn sort_rows(rows: &mut [Row], keys: &[SortKey], o: &Options) {
    if keys.is_empty() {
        return;
    }
    let mut keyed: Vec<(Vec<SortVal>, usize)> =
        rows.iter().enumerate().map(|(i, r)| (keys.iter().map(|k| sort_val(k.field, r, o)).collect(), i)).collect();
    keyed.sort_by(|(a, _), (b, _)| {
        keys.iter()
            .zip(a.iter().zip(b))
            .map(|(k, (x, y))| if k.descending { y.cmp(x) } else { x.cmp(y) })
            .find(|c| c.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let sorted: Vec<Row> = keyed.into_iter().map(|(_, i)| rows[i]).collect();
    rows.copy_from_slice(&sorted);
}

/// Options of one report.
#[derive(Clone, Debug)]
pub struct Options {
    pub units: Units,
    pub headings: bool,
    pub separator: Option<String>,
    /// `--aligned`: with a separator, columns are still padded to their width.
    pub aligned: bool,
    pub json: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { units: Units::default(), headings: true, separator: None, aligned: false, json: false }
    }
}

/// A value before formatting.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    S(String),
    N(i64),
    /// Sectors.
    Sz(u64),
    /// A binary field: set or not, and the word lvm2 prints when set.
    B(bool, &'static str),
    L(Vec<String>),
}

impl Val {
    fn text(&self, o: &Options) -> String {
        match self {
            Val::S(s) => s.clone(),
            Val::N(n) => n.to_string(),
            Val::Sz(s) => o.units.format(*s, SuffixStyle::Unit),
            Val::B(b, w) => {
                if *b {
                    w.to_string()
                } else {
                    String::new()
                }
            }
            Val::L(l) => {
                let mut l = l.clone();
                l.sort();
                l.join(",")
            }
        }
    }
}

/// Everything known about a VG for reporting.
pub struct VgInfo<'a> {
    pub vg: &'a Vg,
    /// Device path of each `vg.pvs[i]` (None: missing).
    pub pv_paths: Vec<Option<String>>,
    /// Metadata areas on the VG's PVs.
    pub mda_count: usize,
    /// State of each LV (`vg.lvs` order).
    pub states: Vec<LvState>,
    /// Holder of each LV's lease (`vg.lvs` order), when asked for; empty otherwise.
    pub lock_owners: Vec<String>,
}

impl VgInfo<'_> {
    fn ext(&self) -> u64 {
        self.vg.extent_size as u64
    }
    fn pv_path(&self, pv_name: &str) -> String {
        let i = self.vg.pvs.iter().position(|p| p.name == pv_name);
        i.and_then(|i| self.pv_paths[i].clone()).unwrap_or_else(|| "[unknown]".into())
    }
    fn missing(&self) -> usize {
        self.pv_paths.iter().filter(|p| p.is_none()).count()
    }
    fn used(&self, pv: &Pv) -> u64 {
        pv.pe_count as u64 - self.vg.free_ranges(&pv.name).iter().map(|r| r.1 as u64).sum::<u64>()
    }
    fn total(&self) -> u64 {
        self.vg.pvs.iter().map(|p| p.pe_count as u64).sum()
    }
    fn free(&self) -> u64 {
        self.total() - self.vg.pvs.iter().map(|p| self.used(p)).sum::<u64>()
    }
    fn state(&self, lv: &Lv) -> LvState {
        self.vg.lvs.iter().position(|l| l.name == lv.name).map_or(LvState::Unknown, |i| self.states[i])
    }
}

/// One PV row: a scanned device, the label, and the VG it belongs to, if any.
pub struct PvRow<'a> {
    pub path: String,
    pub label: Option<&'a Label>,
    pub dev_size: u64,
    pub vg: Option<(&'a VgInfo<'a>, &'a Pv)>,
    /// Its label or metadata cannot be read: shown as lvm2 shows such a PV (VG `[unknown]`,
    /// attr `u--`, nothing free), never as an empty orphan.
    pub damaged: bool,
}

/// What one report row describes.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    pub vg: Option<&'a VgInfo<'a>>,
    pub pv: Option<&'a PvRow<'a>>,
    pub lv: Option<&'a Lv>,
    pub seg: Option<&'a Segment>,
}

pub fn is_writable(status: &[String], flags: &[String]) -> bool {
    status.iter().any(|s| s == "WRITE") || flags.iter().any(|s| s == "WRITE_LOCKED")
}

fn alloc_char(policy: Option<&str>, default: char) -> char {
    match policy {
        Some("contiguous") => 'c',
        Some("cling") | Some("cling_by_tags") => 'l',
        Some("normal") => 'n',
        Some("anywhere") => 'a',
        Some("inherit") => 'i',
        _ => default,
    }
}

/// lvm2's 6-character VG attribute string.
pub fn vg_attr(v: &VgInfo) -> String {
    let vg = v.vg;
    let has = |f: &str| vg.status.iter().any(|s| s == f);
    let mut a = String::new();
    a.push(if is_writable(&vg.status, &vg.flags) { 'w' } else { 'r' });
    a.push(if has("RESIZEABLE") { 'z' } else { '-' });
    a.push(if has("EXPORTED") { 'x' } else { '-' });
    a.push(if v.missing() > 0 { 'p' } else { '-' });
    a.push(alloc_char(vg.allocation_policy.as_deref(), 'n'));
    a.push(match vg.lock_type.as_deref() {
        Some("sanlock") | Some("dlm") | Some("idm") => 's',
        _ if has("CLUSTERED") => 'c',
        _ => '-',
    });
    a
}

/// lvm2's 10-character LV attribute string.
pub fn lv_attr(v: &VgInfo, lv: &Lv) -> String {
    let state = v.state(lv);
    let mut a = String::new();
    a.push(if lv.is_supported() {
        '-'
    } else {
        match lv.segtypes.first().map(String::as_str) {
            Some("thin") => 'V',
            Some("thin-pool") => 't',
            Some("mirror") => 'm',
            Some(t) if t.starts_with("raid") => 'r',
            Some("cache") | Some("cache-pool") | Some("writecache") => 'C',
            Some("snapshot") => 's',
            Some("vdo") => 'v',
            Some("vdo-pool") => 'd',
            _ => '?',
        }
    });
    let ro = matches!(state, LvState::Active { read_only: true, .. });
    a.push(match (is_writable(&lv.status, &lv.flags), ro) {
        (true, true) => 'R',
        (true, false) => 'w',
        _ => 'r',
    });
    a.push(alloc_char(lv.allocation_policy.as_deref(), 'i'));
    a.push(if lv.status.iter().any(|s| s == "FIXED_MINOR") { 'm' } else { '-' });
    let (s, o) = match state {
        LvState::Unknown => ('X', 'X'),
        LvState::Inactive => ('-', '-'),
        LvState::Active { suspended, open, .. } => {
            (if suspended { 's' } else { 'a' }, if open > 0 { 'o' } else { '-' })
        }
    };
    a.push(s);
    a.push(o);
    a.push('-');
    a.push('-');
    let partial = lv.segments.iter().flat_map(|s| &s.stripes).any(|st| {
        let i = v.vg.pvs.iter().position(|p| p.name == st.pv);
        i.is_some_and(|i| v.pv_paths[i].is_none())
    });
    a.push(if partial { 'p' } else { '-' });
    a.push(if lv.flags.iter().any(|f| f == "ACTIVATION_SKIP") { 'k' } else { '-' });
    a
}

/// lvm2's `lv_time` format: local time with the UTC offset.
pub fn format_time(t: u64) -> String {
    let tt = t as libc::time_t;
    // SAFETY: tm is plain data, filled by localtime_r.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a time_t and a tm.
    if unsafe { libc::localtime_r(&tt, &mut tm) }.is_null() {
        return String::new();
    }
    let mut buf = [0u8; 64];
    let fmt = b"%Y-%m-%d %H:%M:%S %z\0";
    // SAFETY: buf has room for 64 bytes; fmt is NUL-terminated.
    let n = unsafe { libc::strftime(buf.as_mut_ptr() as *mut libc::c_char, buf.len(), fmt.as_ptr() as _, &tm) };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn seg_devices(v: &VgInfo, s: &Segment) -> Vec<String> {
    s.stripes.iter().map(|a| format!("{}({})", v.pv_path(&a.pv), a.pe)).collect()
}

/// The value of field `id` for a row; None when the row has no such object (printed empty).
fn value(id: &str, r: &Row) -> Option<Val> {
    use Val::*;
    let s = |x: &str| Some(S(x.to_string()));
    if let (Some(v), Some(lv)) = (r.vg, r.lv) {
        let vg = v.vg;
        let state = v.state(lv);
        let active = state.is_active();
        let visible = lv.is_visible();
        match id {
            "lv_uuid" => return s(&lv.id.to_string()),
            "lv_name" if !visible => return s(&format!("[{}]", lv.name)),
            "lv_name" => return s(&lv.name),
            "lv_full_name" => return s(&format!("{}/{}", vg.name, lv.name)),
            "lv_path" if visible => return s(&format!("/dev/{}/{}", vg.name, lv.name)),
            "lv_path" => return s(""),
            "lv_dm_path" => {
                return s(&format!("/dev/mapper/{}-{}", vg.name.replace('-', "--"), lv.name.replace('-', "--")))
            }
            "lv_layout" => {
                let striped = lv.segments.iter().any(|s| s.stripes.len() > 1);
                return Some(L(vec![if !lv.is_supported() {
                    lv.segtypes.first().cloned().unwrap_or_default()
                } else if striped {
                    "striped".into()
                } else {
                    "linear".into()
                }]));
            }
            "lv_role" => {
                let mut r = vec![if visible { "public".to_string() } else { "private".to_string() }];
                if lv.name == crate::lockarea::LOCK_LV_NAME && vg.lock_type.is_some() {
                    r.push("lockd".into());
                }
                return Some(L(r));
            }
            "lv_allocation_policy" => return s(lv.allocation_policy.as_deref().unwrap_or("inherit")),
            "lv_skip_activation" => return Some(B(lv.flags.iter().any(|f| f == "ACTIVATION_SKIP"), "skip activation")),
            "lv_active" => {
                return s(match state {
                    LvState::Unknown => "unknown",
                    LvState::Inactive => "",
                    LvState::Active { .. } => "active",
                })
            }
            "lv_active_locally" => return Some(B(active, "active locally")),
            "lv_active_exclusively" => return Some(B(active, "active exclusively")),
            "lv_major" => return Some(N(lv.major.unwrap_or(-1))),
            "lv_minor" => return Some(N(lv.minor.unwrap_or(-1))),
            "lv_read_ahead" => {
                return Some(match lv.read_ahead {
                    None => S("auto".into()),
                    Some(-1) => Sz(0),
                    Some(n) => Sz(n.max(0) as u64),
                })
            }
            "lv_size" => return Some(Sz(lv.extent_count as u64 * v.ext())),
            "seg_count" => {
                return Some(N(if lv.is_supported() { lv.segments.len() } else { lv.segtypes.len() } as i64))
            }
            "origin" | "move_pv" | "convert_lv" | "mirror_log" | "pool_lv" => return s(""),
            "data_percent" | "metadata_percent" | "copy_percent" => return s(""),
            "lv_tags" => return Some(L(lv.tags.clone())),
            "lv_lockargs" => return s(lv.lock_args.as_deref().unwrap_or("")),
            "lock_owner" => {
                let i = vg.lvs.iter().position(|l| l.name == lv.name);
                return s(i.and_then(|i| v.lock_owners.get(i)).map_or("", String::as_str));
            }
            "lv_time" => return s(&lv.creation_time.map(format_time).unwrap_or_default()),
            "lv_host" => return s(lv.creation_host.as_deref().unwrap_or("")),
            "lv_kernel_major" => {
                return Some(N(if let LvState::Active { major, .. } = state { major as i64 } else { -1 }))
            }
            "lv_kernel_minor" => {
                return Some(N(if let LvState::Active { minor, .. } = state { minor as i64 } else { -1 }))
            }
            "lv_permissions" => {
                return s(match (is_writable(&lv.status, &lv.flags), state) {
                    (true, LvState::Active { read_only: true, .. }) => "read-only-override",
                    (true, _) => "writeable",
                    _ => "read-only",
                })
            }
            "lv_device_open" => return Some(B(matches!(state, LvState::Active { open: 1.., .. }), "open")),
            "lv_attr" => return s(&lv_attr(v, lv)),
            _ => {}
        }
        // Segment fields in an LV row cover all its segments (as lvm2 lists devices).
        let segs: Vec<&Segment> = match r.seg {
            Some(sg) => vec![sg],
            None => lv.segments.iter().collect(),
        };
        let first = segs.first().copied();
        match id {
            "segtype" => {
                return s(match first {
                    None => lv.segtypes.first().map(String::as_str).unwrap_or(""),
                    Some(sg) if sg.stripes.len() > 1 => "striped",
                    Some(_) => "linear",
                })
            }
            "stripes" => return Some(N(first.map_or(0, |sg| sg.stripes.len() as i64))),
            "stripe_size" => return Some(Sz(first.and_then(|sg| sg.stripe_size).unwrap_or(0) as u64)),
            "seg_start" => return Some(Sz(first.map_or(0, |sg| sg.start_extent as u64 * v.ext()))),
            "seg_start_pe" => return Some(N(first.map_or(0, |sg| sg.start_extent as i64))),
            "seg_size" => {
                let n = if r.seg.is_some() { first.map_or(0, |sg| sg.extent_count) } else { lv.extent_count };
                return Some(Sz(n as u64 * v.ext()));
            }
            "seg_size_pe" => {
                let n = if r.seg.is_some() { first.map_or(0, |sg| sg.extent_count) } else { lv.extent_count };
                return Some(N(n as i64));
            }
            "seg_tags" => return Some(L(segs.iter().flat_map(|sg| sg.tags.clone()).collect())),
            "devices" => {
                return s(&segs.iter().flat_map(|sg| seg_devices(v, sg)).collect::<Vec<_>>().join(","));
            }
            "seg_pe_ranges" => {
                let ranges: Vec<String> = segs
                    .iter()
                    .flat_map(|sg| {
                        sg.stripes.iter().map(|a| {
                            format!("{}:{}-{}", v.pv_path(&a.pv), a.pe, a.pe + sg.area_len().saturating_sub(1))
                        })
                    })
                    .collect();
                return s(&ranges.join(" "));
            }
            _ => {}
        }
    }
    if let Some(p) = r.pv {
        let in_vg = p.vg;
        let ext = in_vg.map(|(v, _)| v.ext());
        if p.damaged {
            match id {
                "vg_name" => return s("[unknown]"),
                "pv_attr" => return s("u--"),
                "pv_free" => return Some(Sz(0)),
                "pv_in_use" => return Some(B(true, "used")),
                _ => {}
            }
        }
        match id {
            "pv_fmt" => return s(if p.label.is_some() { "lvm2" } else { "" }),
            "pv_uuid" => return s(&p.label.map(|l| l.pv_uuid.to_string()).unwrap_or_default()),
            "dev_size" => return Some(Sz(p.dev_size / 512)),
            "pv_name" => return s(&p.path),
            "pv_mda_size" => {
                return Some(Sz(p.label.and_then(|l| l.metadata_areas.iter().map(|m| m.size).min()).unwrap_or(0) / 512))
            }
            "pv_ext_vsn" => return Some(N(p.label.and_then(|l| l.extension.as_ref()).map_or(0, |e| e.version as i64))),
            "pe_start" => {
                let b = match in_vg {
                    Some((_, pv)) => pv.pe_start * 512,
                    None => p.label.and_then(|l| l.data_areas.first()).map_or(0, |d| d.offset),
                };
                return Some(Sz(b / 512));
            }
            "pv_size" => {
                return Some(Sz(match in_vg {
                    Some((_, pv)) => pv.pe_count as u64 * ext.unwrap(),
                    None => p.dev_size / 512,
                }))
            }
            "pv_free" => {
                return Some(Sz(match in_vg {
                    Some((v, pv)) => (pv.pe_count as u64 - v.used(pv)) * v.ext(),
                    None => p.dev_size / 512,
                }))
            }
            "pv_used" => return Some(Sz(in_vg.map_or(0, |(v, pv)| v.used(pv) * v.ext()))),
            "pv_attr" => {
                let (a, x) = match in_vg {
                    Some((_, pv)) => {
                        (pv.status.iter().any(|s| s == "ALLOCATABLE"), pv.status.iter().any(|s| s == "EXPORTED"))
                    }
                    None => (false, false),
                };
                let m = p.label.is_none();
                return s(&format!(
                    "{}{}{}",
                    if a { 'a' } else { '-' },
                    if x { 'x' } else { '-' },
                    if m { 'm' } else { '-' }
                ));
            }
            "pv_allocatable" => {
                return Some(B(
                    in_vg.is_some_and(|(_, pv)| pv.status.iter().any(|s| s == "ALLOCATABLE")),
                    "allocatable",
                ))
            }
            "pv_missing" => return Some(B(p.label.is_none(), "missing")),
            "pv_pe_count" => return Some(N(in_vg.map_or(0, |(_, pv)| pv.pe_count as i64))),
            "pv_pe_alloc_count" => return Some(N(in_vg.map_or(0, |(v, pv)| v.used(pv) as i64))),
            "pv_tags" => return Some(L(in_vg.map(|(_, pv)| pv.tags.clone()).unwrap_or_default())),
            "pv_mda_count" => return Some(N(p.label.map_or(0, |l| l.metadata_areas.len() as i64))),
            "pv_in_use" => return Some(B(in_vg.is_some(), "used")),
            _ => {}
        }
    }
    let v = r.vg?;
    let vg = v.vg;
    Some(match id {
        "vg_fmt" => S("lvm2".into()),
        "vg_uuid" => S(vg.id.to_string()),
        "vg_name" => S(vg.name.clone()),
        "vg_attr" => S(vg_attr(v)),
        "vg_permissions" => S(if is_writable(&vg.status, &vg.flags) { "writeable" } else { "read-only" }.into()),
        "vg_allocation_policy" => S(vg.allocation_policy.clone().unwrap_or_else(|| "normal".into())),
        "vg_shared" => B(vg.lock_type.is_some(), "shared"),
        "vg_size" => Sz(v.total() * v.ext()),
        "vg_free" => Sz(v.free() * v.ext()),
        "vg_systemid" => S(vg.system_id.clone().unwrap_or_default()),
        "vg_lock_type" => S(vg.lock_type.clone().unwrap_or_default()),
        "vg_lock_args" => S(vg.lock_args.clone().unwrap_or_default()),
        "vg_extent_size" => Sz(v.ext()),
        "vg_extent_count" => N(v.total() as i64),
        "vg_free_count" => N(v.free() as i64),
        "max_lv" => N(vg.max_lv as i64),
        "max_pv" => N(vg.max_pv as i64),
        "pv_count" => N(vg.pvs.len() as i64),
        "vg_missing_pv_count" => N(v.missing() as i64),
        "lv_count" => N(vg.lvs.iter().filter(|l| l.is_visible()).count() as i64),
        "snap_count" => N(0),
        "vg_seqno" => N(vg.seqno as i64),
        "vg_tags" => L(vg.tags.clone()),
        "vg_mda_count" => N(v.mda_count as i64),
        _ => return None,
    })
}

/// Renders rows of `fields` in lvm2's text or JSON layout.
pub fn render(t: ReportType, fields: &[&Field], rows: &[Row], o: &Options) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| fields.iter().map(|f| value(f.id, r).map(|v| v.text(o)).unwrap_or_default()).collect())
        .collect();
    let mut out = String::new();
    if o.json {
        out.push_str("  {\n      \"report\": [\n          {\n");
        let _ = writeln!(out, "              \"{}\": [", t.json_key());
        for (i, row) in cells.iter().enumerate() {
            let items: Vec<String> =
                fields.iter().zip(row).map(|(f, c)| format!("{}:{}", json_str(f.id), json_str(c))).collect();
            let comma = if i + 1 < cells.len() { "," } else { "" };
            let _ = writeln!(out, "                  {{{}}}{comma}", items.join(", "));
        }
        out.push_str("              ]\n          }\n      ]\n  }\n");
        return out;
    }
    if let Some(sep) = o.separator.as_ref().filter(|_| !o.aligned) {
        if o.headings && !rows.is_empty() {
            let _ = writeln!(out, "  {}", fields.iter().map(|f| f.head).collect::<Vec<_>>().join(sep));
        }
        for row in &cells {
            let _ = writeln!(out, "  {}", row.join(sep));
        }
        return out;
    }
    if rows.is_empty() {
        return out;
    }
    let widths: Vec<usize> = fields
        .iter()
        .enumerate()
        .map(|(c, f)| cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0).max(f.width).max(f.head.len()))
        .collect();
    let line = |texts: Vec<String>, heading: bool| -> String {
        let parts: Vec<String> = texts
            .iter()
            .zip(fields.iter().zip(&widths))
            .map(|(t, (f, &w))| {
                if !heading && matches!(f.kind, Kind::Num | Kind::Size) {
                    format!("{t:>w$}")
                } else {
                    format!("{t:<w$}")
                }
            })
            .collect();
        format!("  {}\n", parts.join(o.separator.as_deref().unwrap_or(" ")))
    };
    if o.headings {
        out.push_str(&line(fields.iter().map(|f| f.head.to_string()).collect(), true));
    }
    for row in cells {
        out.push_str(&line(row, false));
    }
    out
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_resolve_as_in_lvm2() {
        let ids = |o: &[&str], d, t| -> Vec<&str> {
            let o: Vec<String> = o.iter().map(|s| s.to_string()).collect();
            resolve_fields(&o, d, t).unwrap().iter().map(|f| f.id).collect()
        };
        assert_eq!(ids(&["name,size"], VGS_DEFAULT, ReportType::Vgs), ["vg_name", "vg_size"]);
        assert_eq!(ids(&["lv_lock_args,lock_args"], LVS_DEFAULT, ReportType::Lvs), ["lv_lockargs", "lv_lockargs"]);
        assert_eq!(ids(&["+vg_uuid"], VGS_DEFAULT, ReportType::Vgs).len(), 8);
        assert_eq!(ids(&["vg_name", "+vg_uuid"], VGS_DEFAULT, ReportType::Vgs), ["vg_name", "vg_uuid"]);
        assert!(resolve_fields(&["foo".into()], VGS_DEFAULT, ReportType::Vgs).is_err());
        assert!(resolve_fields(&["lv_name".into()], VGS_DEFAULT, ReportType::Vgs).is_err());
    }

    #[test]
    fn sort_keys_resolve_as_fields() {
        let keys = resolve_sort("-size,+name,, vg_name", ReportType::Lvs).unwrap();
        let got: Vec<(&str, bool)> = keys.iter().map(|k| (k.field.id, k.descending)).collect();
        assert_eq!(got, [("lv_size", true), ("lv_name", false), ("vg_name", false)]);
        assert_eq!(resolve_sort("-bogus", ReportType::Lvs).err().unwrap(), "Unrecognised field: bogus");
        assert!(resolve_sort("lv_name", ReportType::Vgs).is_err());
    }

    /// Every field `value` computes is declared in FIELDS (a value no `-o` name can reach is a
    /// field missing from the table).
    #[test]
    fn every_value_arm_is_a_declared_field() {
        let src = include_str!("report.rs");
        let body = &src[src.find("\nfn value(").unwrap()..src.find("/// Renders rows of `fields`").unwrap()];
        let mut seen = 0;
        for line in body.lines() {
            let Some((pattern, _)) = line.split_once("=>") else { continue };
            let pattern = pattern.split(" if ").next().unwrap().trim();
            if !pattern.starts_with('"') {
                continue;
            }
            for id in pattern.split('|').map(|p| p.trim().trim_matches('"')) {
                assert!(FIELDS.iter().any(|f| f.id == id), "value() has {id:?}, FIELDS does not");
                seen += 1;
            }
        }
        assert!(seen >= FIELDS.len(), "parsed only {seen} field names out of value()");
    }

    /// Every field in FIELDS has a value on a row of its object, and the value is of the kind
    /// the table declares (which decides alignment): numbers for Num, sizes for Size, a binary
    /// value for Bin, a list for List. Text appears under Num/Size/List only where lvm2 prints
    /// text there too.
    #[test]
    fn every_declared_field_has_a_value_of_its_kind() {
        let vg = Vg::from_text(include_bytes!("../../lvmmeta/tests/data/lvm2-2.03.16-vgA.txt")).unwrap();
        let info = VgInfo {
            vg: &vg,
            pv_paths: vg.pvs.iter().map(|_| Some("/dev/x".to_string())).collect(),
            mda_count: 1,
            states: vg.lvs.iter().map(|_| LvState::Inactive).collect(),
            lock_owners: vec![],
        };
        let lv = &vg.lvs[0];
        let pv_row = PvRow {
            path: "/dev/x".into(),
            label: None,
            dev_size: 1 << 30,
            vg: Some((&info, &vg.pvs[0])),
            damaged: false,
        };
        let lv_row = Row { vg: Some(&info), pv: None, lv: Some(lv), seg: Some(&lv.segments[0]) };
        let pv_row = Row { vg: Some(&info), pv: Some(&pv_row), lv: None, seg: None };
        let vg_row = Row { vg: Some(&info), pv: None, lv: None, seg: None };
        // Text where lvm2 prints text in a numeric column ("auto", empty percentages) and lists
        // lvm2 prints as one string.
        let text_ok = ["lv_read_ahead", "data_percent", "metadata_percent", "copy_percent", "devices", "seg_pe_ranges"];
        for f in FIELDS {
            let row = match f.obj {
                Obj::Lv | Obj::Seg => &lv_row,
                Obj::Pv => &pv_row,
                Obj::Vg => &vg_row,
            };
            let v = value(f.id, row).unwrap_or_else(|| panic!("{} has no value on a row of its object", f.id));
            let agrees = match (&v, f.kind) {
                (Val::N(_), Kind::Num) | (Val::Sz(_), Kind::Size) | (Val::B(..), Kind::Bin) => true,
                (Val::L(_), Kind::List) | (Val::S(_), Kind::Str) => true,
                (Val::S(_), _) => text_ok.contains(&f.id),
                _ => false,
            };
            assert!(agrees, "{}: declared {:?}, value {v:?}", f.id, f.kind);
        }
    }
}
