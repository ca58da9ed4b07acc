//! The VG model and its text form. Reading accepts what lvm2 2.03 writes (and requires what it
//! requires); writing emits, field by field, what lvm2's raw exporter emits, so a VG read from
//! lvm2 and written back unchanged gives the same VG section byte for byte.
//!
//! Things this tool does not understand survive a read-modify-write: unknown keys stay in
//! `extra` lists, and an LV with a segment type other than `striped` (thin, raid, cache, ...) is
//! kept as its raw config subtree, flagged [`Support::Unsupported`] and refused by every mutating
//! call, together with the hidden LVs it is built from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::config::{self, Item, Lookup, Node, Scalar, Style, Value};
use crate::error::{Error, Result};
use crate::uuid::Uuid;

pub const CONTENTS_VALUE: &str = "Text Format Volume Group";
pub const FORMAT_VERSION: i64 = 1;
/// Longest VG/LV name lvm2 accepts (NAME_LEN - 1).
pub const MAX_NAME_LEN: usize = 127;

/// Status flags lvm2 knows, in the order it prints them. An unknown one makes lvm2 refuse the VG.
const VG_STATUS: &[&str] = &["EXPORTED", "RESIZEABLE", "PVMOVE", "READ", "WRITE", "CLUSTERED", "SHARED"];
const PV_STATUS: &[&str] = &["ALLOCATABLE", "EXPORTED", "MISSING"];
const LV_STATUS: &[&str] = &[
    "READ",
    "WRITE",
    "FIXED_MINOR",
    "VISIBLE",
    "PVMOVE",
    "LOCKED",
    "NOTSYNCED",
    "REBUILD",
    "RESHAPE",
    "RESHAPE_DATA_OFFSET",
    "RESHAPE_DELTA_DISKS_PLUS",
    "RESHAPE_DELTA_DISKS_MINUS",
    "REMOVE_AFTER_RESHAPE",
    "WRITEMOSTLY",
    "METADATA_FORMAT",
    "CROP_METADATA",
    "CACHE_USES_CACHEVOL",
];
/// LV status/flags entries under which a striped LV is still a plain LV we may manage.
const LV_PLAIN_STATUS: &[&str] = &["READ", "WRITE", "VISIBLE", "FIXED_MINOR"];
const LV_PLAIN_FLAGS: &[&str] = &["WRITE_LOCKED", "NOAUTOACTIVATE", "ACTIVATION_SKIP"];

/// Why an LV may or may not be managed by this tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Support {
    Supported,
    /// Never modified or activated; kept byte-for-byte as read.
    Unsupported(String),
}

/// One PV of the VG (a `pvN { }` section).
#[derive(Clone, Debug, PartialEq)]
pub struct Pv {
    /// Section name (`pv0`, ...), referenced by segments.
    pub name: String,
    pub id: Uuid,
    /// Device path when last written (a hint only).
    pub device: Option<String>,
    pub device_id_type: Option<String>,
    pub device_id: Option<String>,
    pub status: Vec<String>,
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    /// Device size in sectors.
    pub dev_size: Option<u64>,
    /// First data sector.
    pub pe_start: u64,
    pub pe_count: u32,
    pub ba_start: Option<u64>,
    pub ba_size: Option<u64>,
    pub extra: Vec<Node>,
}

/// A stripe: `pe_count` consecutive extents of a PV starting at `pe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Area {
    /// PV section name.
    pub pv: String,
    pub pe: u32,
}

/// A segment of a supported (striped) LV.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub start_extent: u32,
    pub extent_count: u32,
    /// Sectors; required with more than one stripe.
    pub stripe_size: Option<u32>,
    pub stripes: Vec<Area>,
    pub tags: Vec<String>,
    pub extra: Vec<Node>,
}

impl Segment {
    /// A one-stripe (linear) segment: LV extents [start_extent, +extent_count) on `pv` from `pe`.
    pub fn linear(start_extent: u32, extent_count: u32, pv: &str, pe: u32) -> Segment {
        Segment {
            start_extent,
            extent_count,
            stripe_size: None,
            stripes: vec![Area { pv: pv.to_string(), pe }],
            tags: vec![],
            extra: vec![],
        }
    }

    /// Extents each stripe covers on its PV.
    pub fn area_len(&self) -> u32 {
        self.extent_count / self.stripes.len().max(1) as u32
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Lv {
    pub name: String,
    pub id: Uuid,
    pub status: Vec<String>,
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    pub creation_time: Option<u64>,
    pub creation_host: Option<String>,
    pub lock_args: Option<String>,
    pub allocation_policy: Option<String>,
    pub profile: Option<String>,
    /// Sectors; -1 = none; absent = auto.
    pub read_ahead: Option<i64>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    /// Segments of a supported LV (empty for an unsupported one).
    pub segments: Vec<Segment>,
    pub extra: Vec<Node>,
    /// Total size in extents (also known for unsupported LVs).
    pub extent_count: u32,
    /// Segment types, in order (for reports).
    pub segtypes: Vec<String>,
    pub support: Support,
    /// The section as read; written back as is while the LV is unsupported.
    pub raw: Option<Node>,
}

impl Lv {
    /// A new visible, writable LV made of `segments` (in LV order, from extent 0), created now
    /// by `creation_host`, as lvcreate records it.
    pub fn new(name: &str, id: Uuid, segments: Vec<Segment>, creation_host: &str, creation_time: u64) -> Lv {
        Lv {
            name: name.to_string(),
            id,
            status: vec!["READ".into(), "WRITE".into(), "VISIBLE".into()],
            flags: vec![],
            tags: vec![],
            creation_time: Some(creation_time),
            creation_host: Some(creation_host.to_string()),
            lock_args: None,
            allocation_policy: None,
            profile: None,
            read_ahead: None,
            major: None,
            minor: None,
            extent_count: segments.iter().map(|s| s.extent_count).sum(),
            segtypes: vec!["striped".into(); segments.len()],
            segments,
            extra: vec![],
            support: Support::Supported,
            raw: None,
        }
    }

    pub fn is_visible(&self) -> bool {
        self.status.iter().any(|s| s == "VISIBLE")
    }
    pub fn is_supported(&self) -> bool {
        self.support == Support::Supported
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Vg {
    pub name: String,
    pub id: Uuid,
    pub seqno: u32,
    pub format: Option<String>,
    pub status: Vec<String>,
    pub flags: Vec<String>,
    pub tags: Vec<String>,
    pub system_id: Option<String>,
    pub lock_type: Option<String>,
    pub lock_args: Option<String>,
    /// Extent size in sectors.
    pub extent_size: u32,
    pub max_lv: u32,
    pub max_pv: u32,
    pub allocation_policy: Option<String>,
    pub profile: Option<String>,
    pub metadata_copies: Option<u32>,
    pub pvs: Vec<Pv>,
    pub lvs: Vec<Lv>,
    /// `historical_logical_volumes { }`, kept raw.
    pub historical_lvs: Option<Node>,
    pub extra: Vec<Node>,
    /// Top-level keys of the text other than the standard header ones.
    pub top_extra: Vec<Node>,
    /// `description` of the copy that was read.
    pub description: Option<String>,
    /// `creation_time` of the copy that was read (when it was written).
    pub written_at: Option<u64>,
    /// Set when something in the VG forbids writing it.
    pub read_only: Option<String>,
}

/// The header lvm2 appends to each text copy; regenerated on every write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextHeader {
    /// Who wrote it (`# Generated by ...` comment).
    pub generator: String,
    pub description: String,
    /// Node name of this host.
    pub creation_host: String,
    /// `sysname nodename release version machine`, the comment lvm2 adds.
    pub uname: String,
    pub creation_time: u64,
    /// ctime(3) of creation_time without the newline.
    pub ctime: String,
}

impl TextHeader {
    /// A header for a write now, by this host.
    pub fn now(description: &str) -> TextHeader {
        let (nodename, uname) = uname();
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        TextHeader {
            generator: format!("sanlvm lvtool {}", env!("CARGO_PKG_VERSION")),
            description: description.to_string(),
            creation_host: nodename,
            uname,
            creation_time: t,
            ctime: ctime(t),
        }
    }
}

fn cstr(field: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// (nodename, "sysname nodename release version machine")
fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return (String::new(), String::new());
    }
    let node = cstr(&u.nodename);
    let all = [cstr(&u.sysname), node.clone(), cstr(&u.release), cstr(&u.version), cstr(&u.machine)].join(" ");
    (node, all)
}

fn ctime(t: u64) -> String {
    let tt = t as libc::time_t;
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: ctime_r writes at most 26 bytes into buf.
    let p = unsafe { libc::ctime_r(&tt, buf.as_mut_ptr()) };
    if p.is_null() {
        return String::new();
    }
    cstr(&buf).trim_end().to_string()
}

// ---------------------------------------------------------------------------------------------
// Names

/// lvm2's `validate_name`: letters, digits, `. _ - +`, not starting with `-`, not `.`/`..`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| Err(Error::InvalidName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('-') {
        return bad("starts with '-'");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are reserved");
    }
    if !name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'+')) {
        return bad("only letters, digits and . _ - + are allowed");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 127 characters");
    }
    Ok(())
}

/// lvm2's `validate_tag`: non-empty, letters, digits and `. _ - + / = ! : & #`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty() && tag.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-+/=!:&#".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName { name: tag.to_string(), reason: "invalid tag (letters, digits and ._-+/=!:&# only)" })
    }
}

/// The extra rules lvm2 applies to a new LV name (reserved prefixes and component suffixes).
pub fn validate_new_lv_name(name: &str) -> Result<()> {
    validate_name(name)?;
    if name.starts_with("pvmove") || name.starts_with("snapshot") {
        return Err(Error::InvalidName { name: name.into(), reason: "names starting pvmove or snapshot are reserved" });
    }
    const RESERVED: &[&str] = &[
        "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_wcorig", "_mimage", "_mlog", "_rimage", "_rmeta", "_tdata",
        "_tmeta", "_vdata", "_imeta", "_iorig", "_pmspare", "_vorigin",
    ];
    if RESERVED.iter().any(|r| name.contains(r)) {
        return Err(Error::InvalidName { name: name.into(), reason: "contains a reserved component suffix" });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading

struct Ctx<'a> {
    vg: &'a str,
}

impl Ctx<'_> {
    fn err(&self, what: String) -> Error {
        Error::metadata(self.vg, what)
    }

    fn str_opt(&self, n: &[Node], key: &str, what: &str) -> Result<Option<String>> {
        match n.scalar(key) {
            None => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.err(format!("{what}: {key} must be a string"))),
        }
    }

    fn str_req(&self, n: &[Node], key: &str, what: &str) -> Result<String> {
        self.str_opt(n, key, what)?.ok_or_else(|| self.err(format!("{what}: missing {key}")))
    }

    fn int_opt(&self, n: &[Node], key: &str, what: &str, min: i64, max: i64) -> Result<Option<i64>> {
        match n.scalar(key) {
            None => Ok(None),
            Some(Scalar::Int(i)) if (min..=max).contains(i) => Ok(Some(*i)),
            Some(Scalar::Int(i)) => Err(self.err(format!("{what}: {key} = {i} out of range"))),
            Some(_) => Err(self.err(format!("{what}: {key} must be an integer"))),
        }
    }

    fn u32_req(&self, n: &[Node], key: &str, what: &str) -> Result<u32> {
        let v = self.int_opt(n, key, what, 0, u32::MAX as i64)?;
        v.map(|v| v as u32).ok_or_else(|| self.err(format!("{what}: missing {key}")))
    }

    fn u64_opt(&self, n: &[Node], key: &str, what: &str) -> Result<Option<u64>> {
        Ok(self.int_opt(n, key, what, 0, i64::MAX)?.map(|v| v as u64))
    }

    fn str_list(&self, n: &[Node], key: &str, what: &str) -> Result<Option<Vec<String>>> {
        let Some(items) = n.list(key) else { return Ok(None) };
        items
            .into_iter()
            .map(|s| match s {
                Scalar::Str(s) => Ok(s.clone()),
                _ => Err(self.err(format!("{what}: {key} must hold strings"))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn uuid(&self, n: &[Node], what: &str) -> Result<Uuid> {
        let s = self.str_req(n, "id", what)?;
        Uuid::parse(&s).map_err(|_| self.err(format!("{what}: invalid id \"{s}\"")))
    }

    fn check_flags(&self, list: &[String], known: &[&str], what: &str) -> Result<()> {
        match list.iter().find(|f| !known.contains(&f.as_str())) {
            Some(f) => Err(self.err(format!("{what}: unknown status flag {f}"))),
            None => Ok(()),
        }
    }
}

/// Keys read into named fields, per section kind; everything else goes to `extra`.
const VG_KEYS: &[&str] = &[
    "id",
    "seqno",
    "format",
    "status",
    "flags",
    "tags",
    "system_id",
    "lock_type",
    "lock_args",
    "extent_size",
    "max_lv",
    "max_pv",
    "allocation_policy",
    "profile",
    "metadata_copies",
    "physical_volumes",
    "logical_volumes",
    "historical_logical_volumes",
];
const PV_KEYS: &[&str] = &[
    "id",
    "device",
    "device_id_type",
    "device_id",
    "status",
    "flags",
    "tags",
    "dev_size",
    "pe_start",
    "pe_count",
    "ba_start",
    "ba_size",
];
const LV_KEYS: &[&str] = &[
    "id",
    "status",
    "flags",
    "tags",
    "creation_time",
    "creation_host",
    "lock_args",
    "allocation_policy",
    "profile",
    "read_ahead",
    "major",
    "minor",
    "segment_count",
];
const SEG_KEYS: &[&str] = &["start_extent", "extent_count", "type", "tags", "stripe_count", "stripe_size", "stripes"];
const TOP_KEYS: &[&str] = &["contents", "version", "description", "creation_host", "creation_time"];

fn extras(n: &[Node], known: &[&str]) -> Vec<Node> {
    n.iter().filter(|c| !known.contains(&c.key.as_str()) && matches!(c.item, Item::Value(_))).cloned().collect()
}

impl Vg {
    /// Parses metadata text (as stored in an mda or a backup file).
    pub fn from_text(text: &[u8]) -> Result<Vg> {
        Vg::from_config(&config::parse(text)?)
    }

    pub fn from_config(top: &[Node]) -> Result<Vg> {
        let generic = |r: &str| Error::metadata("?", r.to_string());
        if top.str("contents") != Some(CONTENTS_VALUE) {
            return Err(generic("missing or unrecognised contents field"));
        }
        if top.int("version") != Some(FORMAT_VERSION) {
            return Err(generic("missing or unrecognised version number"));
        }
        // As lvm2: top-level values are skipped, the first section is the VG.
        let vgn = top.iter().find(|n| n.children().is_some()).ok_or_else(|| generic("no volume group section"))?;
        let name = vgn.key.clone();
        validate_name(&name).map_err(|e| Error::metadata(&name, e.to_string()))?;
        let vg_name = name.clone();
        let c = Ctx { vg: &vg_name };
        let n = vgn.children().unwrap();
        let what = "VG";
        let status = c.str_list(n, "status", what)?.ok_or_else(|| c.err("VG: missing status".into()))?;
        let flags = c.str_list(n, "flags", what)?.unwrap_or_default();
        let read_only = status
            .iter()
            .find(|f| !VG_STATUS.contains(&f.as_str()))
            .map(|f| format!("unknown VG status flag {f} (lvm2 refuses such a VG)"));
        let extent_size = c.u32_req(n, "extent_size", what)?;
        if extent_size == 0 {
            return Err(c.err("VG: extent_size is 0".into()));
        }
        let pvsec =
            n.section("physical_volumes").ok_or_else(|| c.err("couldn't find section physical_volumes".into()))?;
        let mut pvs = vec![];
        for pn in pvsec {
            pvs.push(read_pv(&c, pn)?);
        }
        let mut lvs = vec![];
        if let Some(lvsec) = n.section("logical_volumes") {
            for ln in lvsec {
                lvs.push(read_lv(&c, ln, &pvs)?);
            }
        }
        let mut vg = Vg {
            id: c.uuid(n, what)?,
            seqno: c.u32_req(n, "seqno", what)?,
            format: c.str_opt(n, "format", what)?,
            status,
            flags,
            tags: c.str_list(n, "tags", what)?.unwrap_or_default(),
            system_id: c.str_opt(n, "system_id", what)?,
            lock_type: c.str_opt(n, "lock_type", what)?,
            lock_args: c.str_opt(n, "lock_args", what)?,
            extent_size,
            max_lv: c.u32_req(n, "max_lv", what)?,
            max_pv: c.u32_req(n, "max_pv", what)?,
            allocation_policy: c.str_opt(n, "allocation_policy", what)?,
            profile: c.str_opt(n, "profile", what)?,
            metadata_copies: c.int_opt(n, "metadata_copies", what, 0, u32::MAX as i64)?.map(|v| v as u32),
            pvs,
            lvs,
            historical_lvs: n.find("historical_logical_volumes").filter(|h| h.children().is_some()).cloned(),
            extra: extras(n, VG_KEYS),
            top_extra: top
                .iter()
                .filter(|t| t.children().is_none() && !TOP_KEYS.contains(&t.key.as_str()))
                .cloned()
                .collect(),
            description: top.str("description").map(str::to_string),
            written_at: top.int("creation_time").map(|t| t as u64),
            read_only,
            name,
        };
        if let Some(f) = &vg.format {
            if f != "lvm2" {
                return Err(c.err(format!("unrecognised format {f}")));
            }
        }
        vg.mark_components();
        vg.validate()?;
        Ok(vg)
    }

    /// Marks LVs used by an unsupported LV (its sub-LVs: images, pool data, ...) unsupported too.
    fn mark_components(&mut self) {
        let names: BTreeSet<String> = self.lvs.iter().map(|l| l.name.clone()).collect();
        loop {
            let mut users: BTreeMap<String, String> = BTreeMap::new();
            for lv in self.lvs.iter().filter(|l| !l.is_supported()) {
                if let Some(raw) = &lv.raw {
                    for s in raw_strings(raw) {
                        if names.contains(&s) && s != lv.name {
                            users.entry(s).or_insert_with(|| lv.name.clone());
                        }
                    }
                }
            }
            let mut changed = false;
            for lv in self.lvs.iter_mut().filter(|l| l.is_supported()) {
                if let Some(user) = users.get(&lv.name) {
                    lv.support = Support::Unsupported(format!("component of unsupported LV {user}"));
                    lv.segments.clear();
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// Checks what lvm2 checks before it accepts or writes a VG: unique names and ids, LV
    /// segments contiguous from extent 0, stripes inside their PV, no extent used twice.
    pub fn validate(&self) -> Result<()> {
        let err = |r: String| Err(Error::metadata(&self.name, r));
        let mut all_tags =
            self.tags.iter().chain(self.pvs.iter().flat_map(|p| &p.tags)).chain(self.lvs.iter().flat_map(|l| &l.tags));
        if let Some(t) = all_tags.find(|t| validate_tag(t).is_err()) {
            return err(format!("invalid tag \"{t}\""));
        }
        let mut seen = BTreeSet::new();
        for pv in &self.pvs {
            if !seen.insert(pv.id) {
                return err(format!("PV {} listed twice", pv.id));
            }
        }
        let pv_names: BTreeMap<&str, &Pv> = self.pvs.iter().map(|p| (p.name.as_str(), p)).collect();
        if pv_names.len() != self.pvs.len() {
            return err("two PV sections with the same name".into());
        }
        let mut lv_names = BTreeSet::new();
        let mut lv_ids = BTreeSet::new();
        for lv in &self.lvs {
            if !lv_names.insert(lv.name.as_str()) {
                return err(format!("LV {} listed twice", lv.name));
            }
            if !lv_ids.insert(lv.id) {
                return err(format!("LV id {} used twice", lv.id));
            }
        }
        // Extents in use per PV: (start, len, lv) sorted, to find overlaps.
        let mut used: BTreeMap<&str, Vec<(u32, u32, &str)>> = BTreeMap::new();
        for lv in &self.lvs {
            if lv.is_supported() {
                let mut next = 0u32;
                for (i, s) in lv.segments.iter().enumerate() {
                    if s.start_extent != next {
                        return err(format!(
                            "LV {} segment {} starts at {} instead of {next}",
                            lv.name,
                            i + 1,
                            s.start_extent
                        ));
                    }
                    if s.extent_count == 0 || s.stripes.is_empty() {
                        return err(format!("LV {} segment {} is empty", lv.name, i + 1));
                    }
                    if s.extent_count % s.stripes.len() as u32 != 0 {
                        return err(format!("LV {} segment {} extents not divisible by stripes", lv.name, i + 1));
                    }
                    if s.stripes.len() > 1 && s.stripe_size.is_none() {
                        return err(format!("LV {} segment {} needs stripe_size", lv.name, i + 1));
                    }
                    next = s
                        .start_extent
                        .checked_add(s.extent_count)
                        .ok_or_else(|| Error::metadata(&self.name, format!("LV {} extent count overflows", lv.name)))?;
                    for a in &s.stripes {
                        used.entry(a.pv.as_str()).or_default().push((a.pe, s.area_len(), lv.name.as_str()));
                    }
                }
                if next != lv.extent_count {
                    return err(format!("LV {} extent count mismatch", lv.name));
                }
            } else if let Some(raw) = &lv.raw {
                for (pv, pe, len) in raw_pv_areas(raw, &pv_names) {
                    used.entry(pv).or_default().push((pe, len, lv.name.as_str()));
                }
            }
        }
        for (pv, areas) in used.iter_mut() {
            let Some(p) = pv_names.get(pv) else {
                return err(format!("segment refers to unknown PV {pv}"));
            };
            areas.sort();
            for a in areas.iter() {
                if a.0 as u64 + a.1 as u64 > p.pe_count as u64 {
                    return err(format!(
                        "LV {} uses extents {}..{} beyond the end of {pv} ({} extents)",
                        a.2,
                        a.0,
                        a.0 as u64 + a.1 as u64,
                        p.pe_count
                    ));
                }
            }
            for w in areas.windows(2) {
                if w[0].0 as u64 + w[0].1 as u64 > w[1].0 as u64 {
                    return err(format!("LVs {} and {} both use extent {} of {pv}", w[0].2, w[1].2, w[1].0));
                }
            }
        }
        Ok(())
    }

    pub fn pv_by_name(&self, name: &str) -> Option<&Pv> {
        self.pvs.iter().find(|p| p.name == name)
    }

    pub fn lv(&self, name: &str) -> Option<&Lv> {
        self.lvs.iter().find(|l| l.name == name)
    }

    /// An LV to modify; refuses unsupported LVs (and a read-only VG).
    pub fn lv_mut(&mut self, name: &str) -> Result<&mut Lv> {
        self.check_writable()?;
        let vg = self.name.clone();
        let lv = self
            .lvs
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| Error::Invalid(format!("LV {vg}/{name} not found")))?;
        match &lv.support {
            Support::Supported => Ok(lv),
            Support::Unsupported(r) => Err(Error::UnsupportedLv { vg, lv: name.to_string(), reason: r.clone() }),
        }
    }

    pub fn check_writable(&self) -> Result<()> {
        match &self.read_only {
            Some(r) => Err(Error::ReadOnlyVg { vg: self.name.clone(), reason: r.clone() }),
            None => Ok(()),
        }
    }

    /// Free extent ranges (start, len) of a PV, in order.
    pub fn free_ranges(&self, pv: &str) -> Vec<(u32, u32)> {
        let Some(p) = self.pv_by_name(pv) else { return vec![] };
        let pv_names: BTreeMap<&str, &Pv> = self.pvs.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut used: Vec<(u32, u32)> = vec![];
        for lv in &self.lvs {
            if lv.is_supported() {
                for s in &lv.segments {
                    used.extend(s.stripes.iter().filter(|a| a.pv == pv).map(|a| (a.pe, s.area_len())));
                }
            } else if let Some(raw) = &lv.raw {
                used.extend(raw_pv_areas(raw, &pv_names).into_iter().filter(|a| a.0 == pv).map(|a| (a.1, a.2)));
            }
        }
        used.sort();
        let mut free = vec![];
        let mut pos = 0u32;
        for (start, len) in used {
            if start > pos {
                free.push((pos, start - pos));
            }
            pos = pos.max(start + len);
        }
        if pos < p.pe_count {
            free.push((pos, p.pe_count - pos));
        }
        free
    }

    /// Adds a linear/striped LV made of `segments` (validated; nothing changes on error).
    pub fn add_lv(&mut self, lv: Lv) -> Result<()> {
        self.check_writable()?;
        validate_new_lv_name(&lv.name)?;
        if self.lv(&lv.name).is_some() {
            return Err(Error::Invalid(format!(
                "Logical Volume \"{}\" already exists in volume group \"{}\"",
                lv.name, self.name
            )));
        }
        let mut next = self.clone();
        next.lvs.push(lv);
        next.validate()?;
        *self = next;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Writing

    /// The text lvm2 would store for this VG: the VG section, then `header`. The trailing NUL
    /// that goes on disk is not included.
    pub fn to_text(&self, header: &TextHeader) -> String {
        let mut o = self.section_text();
        let _ = writeln!(o, "# Generated by {}: {}", header.generator, header.ctime);
        o.push('\n');
        let _ = writeln!(o, "contents = {}", config::quote(CONTENTS_VALUE));
        let _ = writeln!(o, "version = {FORMAT_VERSION}");
        o.push('\n');
        let _ = writeln!(o, "description = {}", config::quote(&header.description));
        o.push('\n');
        let _ = writeln!(o, "creation_host = {}\t# {}", config::quote(&header.creation_host), header.uname);
        let _ = writeln!(o, "creation_time = {}\t# {}", header.creation_time, header.ctime);
        config::write_nodes(&mut o, &self.top_extra, 0, Style::Flat);
        o.push('\n');
        o
    }

    /// Just the `name { ... }` section, exactly as lvm2's raw exporter lays it out.
    pub fn section_text(&self) -> String {
        let mut o = String::new();
        let q = config::quote;
        let _ = writeln!(o, "{} {{", self.name);
        let _ = writeln!(o, "id = {}", q(&self.id.to_string()));
        let _ = writeln!(o, "seqno = {}", self.seqno);
        if let Some(f) = &self.format {
            let _ = writeln!(o, "format = {}", q(f));
        }
        let _ = writeln!(o, "status = {}", str_list(&self.status));
        let _ = writeln!(o, "flags = {}", str_list(&self.flags));
        if !self.tags.is_empty() {
            let _ = writeln!(o, "tags = {}", str_list(&self.tags));
        }
        if let Some(s) = self.system_id.as_ref().filter(|s| !s.is_empty()) {
            let _ = writeln!(o, "system_id = {}", q(s));
        }
        if let Some(t) = &self.lock_type {
            let _ = writeln!(o, "lock_type = {}", q(t));
            if let Some(a) = &self.lock_args {
                let _ = writeln!(o, "lock_args = {}", q(a));
            }
        }
        let _ = writeln!(o, "extent_size = {}", self.extent_size);
        let _ = writeln!(o, "max_lv = {}", self.max_lv);
        let _ = writeln!(o, "max_pv = {}", self.max_pv);
        if let Some(a) = self.allocation_policy.as_ref().filter(|a| *a != "normal" && *a != "inherit") {
            let _ = writeln!(o, "\nallocation_policy = {}", q(a));
        }
        if let Some(p) = &self.profile {
            let _ = writeln!(o, "profile = {}", q(p));
        }
        if let Some(m) = self.metadata_copies {
            let _ = writeln!(o, "metadata_copies = {m}");
        }
        config::write_nodes(&mut o, &self.extra, 0, Style::Flat);
        o.push('\n');
        o.push_str("physical_volumes {\n");
        for pv in &self.pvs {
            pv.write(&mut o);
        }
        o.push_str("}\n\n");
        if !self.lvs.is_empty() {
            o.push_str("logical_volumes {\n");
            // lvm2 writes visible LVs first, then hidden ones.
            for lv in self.lvs.iter().filter(|l| l.is_visible()).chain(self.lvs.iter().filter(|l| !l.is_visible())) {
                lv.write(&mut o);
            }
            o.push_str("}\n");
        }
        o.push('\n');
        if let Some(h) = &self.historical_lvs {
            config::write_nodes(&mut o, std::slice::from_ref(h), 0, Style::Flat);
        }
        o.push_str("}\n");
        o
    }
}

fn str_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| config::quote(s)).collect();
    format!("[{}]", inner.join(", "))
}

fn read_pv(c: &Ctx, pn: &Node) -> Result<Pv> {
    let what = format!("PV section {}", pn.key);
    let n = pn.children().ok_or_else(|| c.err(format!("{what} is not a section")))?;
    if n.is_empty() {
        return Err(c.err(format!("{what} is empty")));
    }
    let status = c.str_list(n, "status", &what)?.ok_or_else(|| c.err(format!("{what}: missing status")))?;
    c.check_flags(&status, PV_STATUS, &what)?;
    let flags = c.str_list(n, "flags", &what)?.unwrap_or_default();
    let ba_start = c.u64_opt(n, "ba_start", &what)?;
    let ba_size = c.u64_opt(n, "ba_size", &what)?;
    if ba_start.unwrap_or(0) == 0 && ba_size.unwrap_or(0) != 0
        || ba_start.unwrap_or(0) != 0 && ba_size.unwrap_or(0) == 0
    {
        return Err(c.err(format!("{what}: incomplete bootloader area")));
    }
    Ok(Pv {
        name: pn.key.clone(),
        id: c.uuid(n, &what)?,
        device: c.str_opt(n, "device", &what)?,
        device_id_type: c.str_opt(n, "device_id_type", &what)?,
        device_id: c.str_opt(n, "device_id", &what)?,
        status,
        flags,
        tags: c.str_list(n, "tags", &what)?.unwrap_or_default(),
        dev_size: c.u64_opt(n, "dev_size", &what)?,
        pe_start: c.u64_opt(n, "pe_start", &what)?.ok_or_else(|| c.err(format!("{what}: missing pe_start")))?,
        pe_count: c.u32_req(n, "pe_count", &what)?,
        ba_start,
        ba_size,
        extra: extras(n, PV_KEYS),
    })
}

fn read_lv(c: &Ctx, ln: &Node, pvs: &[Pv]) -> Result<Lv> {
    let what = format!("LV {}", ln.key);
    let n = ln.children().ok_or_else(|| c.err(format!("{what} is not a section")))?;
    if n.is_empty() {
        return Err(c.err(format!("{what}: empty section")));
    }
    let status = c.str_list(n, "status", &what)?.ok_or_else(|| c.err(format!("{what}: missing status")))?;
    c.check_flags(&status, LV_STATUS, &what)?;
    let flags = c.str_list(n, "flags", &what)?.unwrap_or_default();
    let creation_time = c.u64_opt(n, "creation_time", &what)?;
    let creation_host = c.str_opt(n, "creation_host", &what)?;
    if creation_time.is_some() != creation_host.is_some() {
        return Err(c.err(format!("{what}: creation_time and creation_host go together")));
    }
    let segment_count = c.u32_req(n, "segment_count", &what)?;
    let seg_nodes: Vec<&Node> = n.iter().filter(|s| s.children().is_some()).collect();
    if seg_nodes.len() != segment_count as usize {
        return Err(c.err(format!("{what}: segment_count and actual number of segments disagree")));
    }
    let mut unsupported: Option<String> = None;
    if let Some(f) = status.iter().find(|f| !LV_PLAIN_STATUS.contains(&f.as_str())) {
        unsupported = Some(format!("status flag {f}"));
    }
    if let Some(f) = flags.iter().find(|f| !LV_PLAIN_FLAGS.contains(&f.as_str())) {
        unsupported.get_or_insert(format!("flag {f}"));
    }
    let mut segments = vec![];
    let mut segtypes = vec![];
    let mut extent_count = 0u32;
    for sn in &seg_nodes {
        let sw = format!("{what} {}", sn.key);
        let s = sn.children().unwrap();
        let start = c.u32_req(s, "start_extent", &sw)?;
        let count = c.u32_req(s, "extent_count", &sw)?;
        let segtype = c.str_req(s, "type", &sw)?;
        extent_count = extent_count.saturating_add(count);
        segtypes.push(segtype.clone());
        if segtype != "striped" {
            unsupported.get_or_insert(format!("segment type {segtype}"));
            continue;
        }
        match read_striped(c, s, &sw, pvs, start, count) {
            Ok(seg) => segments.push(seg),
            // A stripe on an LV (pvmove, old mirrors) is legal lvm2 but not ours to manage.
            Err(StripedErr::NotOnPv(name)) => {
                unsupported.get_or_insert(format!("stripe on {name}, not on a PV"));
            }
            Err(StripedErr::Bad(e)) => return Err(e),
        }
    }
    segments.sort_by_key(|s| s.start_extent);
    let support = match unsupported {
        None => Support::Supported,
        Some(r) => {
            segments.clear();
            Support::Unsupported(r)
        }
    };
    Ok(Lv {
        name: ln.key.clone(),
        id: c.uuid(n, &what)?,
        status,
        flags,
        tags: c.str_list(n, "tags", &what)?.unwrap_or_default(),
        creation_time,
        creation_host,
        lock_args: c.str_opt(n, "lock_args", &what)?,
        allocation_policy: c.str_opt(n, "allocation_policy", &what)?,
        profile: c.str_opt(n, "profile", &what)?,
        read_ahead: c.int_opt(n, "read_ahead", &what, -1, u32::MAX as i64)?,
        major: c.int_opt(n, "major", &what, i64::MIN, i64::MAX)?,
        minor: c.int_opt(n, "minor", &what, i64::MIN, i64::MAX)?,
        segments,
        extra: extras(n, LV_KEYS),
        extent_count,
        segtypes,
        raw: (support != Support::Supported).then(|| ln.clone()),
        support,
    })
}

enum StripedErr {
    NotOnPv(String),
    Bad(Error),
}

impl From<Error> for StripedErr {
    fn from(e: Error) -> Self {
        StripedErr::Bad(e)
    }
}

fn read_striped(
    c: &Ctx,
    s: &[Node],
    sw: &str,
    pvs: &[Pv],
    start: u32,
    count: u32,
) -> std::result::Result<Segment, StripedErr> {
    let stripe_count = c.u32_req(s, "stripe_count", sw)?;
    if stripe_count == 0 {
        return Err(c.err(format!("{sw}: zero areas not allowed")).into());
    }
    let stripe_size = c.int_opt(s, "stripe_size", sw, 0, u32::MAX as i64)?.map(|v| v as u32);
    if stripe_count > 1 && stripe_size.is_none() {
        return Err(c.err(format!("{sw}: couldn't read stripe_size")).into());
    }
    let list = s.list("stripes").ok_or_else(|| c.err(format!("{sw}: couldn't find stripes array")))?;
    if list.len() != 2 * stripe_count as usize {
        return Err(c.err(format!("{sw}: incorrect number of areas in area array")).into());
    }
    let mut stripes = vec![];
    for pair in list.chunks(2) {
        let (Scalar::Str(name), Scalar::Int(pe)) = (pair[0], pair[1]) else {
            return Err(c.err(format!("{sw}: bad entry in stripes array")).into());
        };
        if !pvs.iter().any(|p| &p.name == name) {
            return Err(StripedErr::NotOnPv(name.clone()));
        }
        let pe = u32::try_from(*pe).map_err(|_| c.err(format!("{sw}: bad offset in stripes array")))?;
        stripes.push(Area { pv: name.clone(), pe });
    }
    Ok(Segment {
        start_extent: start,
        extent_count: count,
        stripe_size,
        stripes,
        tags: c.str_list(s, "tags", sw)?.unwrap_or_default(),
        extra: extras(s, SEG_KEYS),
    })
}

/// Every string value anywhere in a subtree (to find the LVs an unsupported LV refers to).
fn raw_strings(n: &Node) -> Vec<String> {
    let mut out = vec![];
    match &n.item {
        Item::Section(c) => c.iter().for_each(|c| out.extend(raw_strings(c))),
        Item::Value(Value::Scalar(Scalar::Str(s))) => out.push(s.clone()),
        Item::Value(Value::Array(a)) => out.extend(a.iter().filter_map(|s| match s {
            Scalar::Str(s) => Some(s.clone()),
            _ => None,
        })),
        Item::Value(_) => {}
    }
    out
}

/// PV extents an unsupported LV's segments occupy: lists of ("pvN", pe) pairs, as lvm2 writes
/// `stripes`/`mirrors` areas. Each area covers extent_count/stripe_count extents for striped
/// segments and extent_count otherwise.
fn raw_pv_areas<'a>(lv: &Node, pvs: &BTreeMap<&'a str, &Pv>) -> Vec<(&'a str, u32, u32)> {
    let mut out = vec![];
    for seg in lv.children().unwrap_or(&[]).iter().filter_map(|s| s.children()) {
        let count = seg.int("extent_count").unwrap_or(0).clamp(0, u32::MAX as i64) as u32;
        let stripes = seg.int("stripe_count").filter(|&s| s > 0 && seg.str("type") == Some("striped"));
        let len = count / stripes.unwrap_or(1).clamp(1, u32::MAX as i64) as u32;
        for n in seg {
            if let Item::Value(Value::Array(items)) = &n.item {
                for pair in items.chunks(2) {
                    if let [Scalar::Str(name), Scalar::Int(pe)] = pair {
                        if let (Some((k, _)), Ok(pe)) = (pvs.get_key_value(name.as_str()), u32::try_from(*pe)) {
                            out.push((*k, pe, len));
                        }
                    }
                }
            }
        }
    }
    out
}

impl Pv {
    fn write(&self, o: &mut String) {
        let q = config::quote;
        let _ = writeln!(o, "\n{} {{", self.name);
        let _ = writeln!(o, "id = {}", q(&self.id.to_string()));
        if let Some(d) = &self.device {
            let _ = writeln!(o, "device = {}", q(d));
        }
        o.push('\n');
        if let (Some(t), Some(i)) = (&self.device_id_type, &self.device_id) {
            let _ = writeln!(o, "device_id_type = {}", q(t));
            let _ = writeln!(o, "device_id = {}", q(i));
        }
        let _ = writeln!(o, "status = {}", str_list(&self.status));
        let _ = writeln!(o, "flags = {}", str_list(&self.flags));
        if !self.tags.is_empty() {
            let _ = writeln!(o, "tags = {}", str_list(&self.tags));
        }
        if let Some(s) = self.dev_size {
            let _ = writeln!(o, "dev_size = {s}");
        }
        let _ = writeln!(o, "pe_start = {}", self.pe_start);
        let _ = writeln!(o, "pe_count = {}", self.pe_count);
        if let (Some(s), Some(z)) = (self.ba_start.filter(|&s| s != 0), self.ba_size.filter(|&z| z != 0)) {
            let _ = writeln!(o, "ba_start = {s}");
            let _ = writeln!(o, "ba_size = {z}");
        }
        config::write_nodes(o, &self.extra, 0, Style::Flat);
        o.push_str("}\n");
    }
}

impl Lv {
    fn write(&self, o: &mut String) {
        o.push('\n');
        if let (Support::Unsupported(_), Some(raw)) = (&self.support, &self.raw) {
            config::write_nodes(o, std::slice::from_ref(raw), 0, Style::Flat);
            return;
        }
        let q = config::quote;
        let _ = writeln!(o, "{} {{", self.name);
        let _ = writeln!(o, "id = {}", q(&self.id.to_string()));
        let _ = writeln!(o, "status = {}", str_list(&self.status));
        let _ = writeln!(o, "flags = {}", str_list(&self.flags));
        if !self.tags.is_empty() {
            let _ = writeln!(o, "tags = {}", str_list(&self.tags));
        }
        if let (Some(t), Some(h)) = (self.creation_time.filter(|&t| t != 0), &self.creation_host) {
            let _ = writeln!(o, "creation_time = {t}");
            let _ = writeln!(o, "creation_host = {}", q(h));
        }
        if let Some(a) = &self.lock_args {
            let _ = writeln!(o, "lock_args = {}", q(a));
        }
        if let Some(a) = self.allocation_policy.as_ref().filter(|a| *a != "inherit") {
            let _ = writeln!(o, "allocation_policy = {}", q(a));
        }
        if let Some(p) = &self.profile {
            let _ = writeln!(o, "profile = {}", q(p));
        }
        match self.read_ahead {
            Some(-1) | Some(0xFFFF_FFFF) => o.push_str("read_ahead = -1\n"),
            Some(0) | None => {}
            Some(r) => {
                let _ = writeln!(o, "read_ahead = {r}");
            }
        }
        if let Some(m) = self.major.filter(|&m| m >= 0) {
            let _ = writeln!(o, "major = {m}");
        }
        if let Some(m) = self.minor.filter(|&m| m >= 0) {
            let _ = writeln!(o, "minor = {m}");
        }
        config::write_nodes(o, &self.extra, 0, Style::Flat);
        let _ = writeln!(o, "segment_count = {}", self.segments.len());
        o.push('\n');
        for (i, s) in self.segments.iter().enumerate() {
            let _ = writeln!(o, "segment{} {{", i + 1);
            let _ = writeln!(o, "start_extent = {}", s.start_extent);
            let _ = writeln!(o, "extent_count = {}", s.extent_count);
            o.push('\n');
            o.push_str("type = \"striped\"\n");
            if !s.tags.is_empty() {
                let _ = writeln!(o, "tags = {}", str_list(&s.tags));
            }
            let _ = writeln!(o, "stripe_count = {}", s.stripes.len());
            if s.stripes.len() > 1 {
                let _ = writeln!(o, "stripe_size = {}", s.stripe_size.unwrap_or(0));
            }
            o.push_str("\nstripes = [\n");
            for (j, a) in s.stripes.iter().enumerate() {
                let comma = if j + 1 == s.stripes.len() { "" } else { "," };
                let _ = writeln!(o, "{}, {}{comma}", q(&a.pv), a.pe);
            }
            o.push_str("]\n");
            config::write_nodes(o, &s.extra, 0, Style::Flat);
            o.push_str("}\n");
        }
        o.push_str("}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LVM2_TEXT: &[u8] = include_bytes!("../tests/data/lvm2-2.03.16-vgA.txt");

    #[test]
    fn reads_lvm2_text() {
        let vg = Vg::from_text(LVM2_TEXT).unwrap();
        assert_eq!(vg.name, "vgA");
        assert_eq!(vg.seqno, 4);
        assert_eq!(vg.extent_size, 2048);
        assert_eq!(vg.tags, ["t1"]);
        assert_eq!(vg.pvs.len(), 2);
        assert_eq!(vg.pvs[0].pe_count, 63);
        let lv1 = vg.lv("lv1").unwrap();
        assert_eq!(lv1.segments.len(), 2);
        assert_eq!(lv1.extent_count, 12);
        assert_eq!(lv1.segments[1].stripes, vec![Area { pv: "pv0".into(), pe: 12 }]);
        assert_eq!(vg.lv("lv2").unwrap().tags, ["foo"]);
        assert_eq!(vg.free_ranges("pv0"), vec![(16, 47)]);
        assert!(vg.lvs.iter().all(Lv::is_supported));
    }

    #[test]
    fn vg_section_is_byte_identical() {
        let vg = Vg::from_text(LVM2_TEXT).unwrap();
        let text = std::str::from_utf8(LVM2_TEXT).unwrap();
        let end = text.find("\n# Generated by").unwrap() + 1;
        assert_eq!(vg.section_text(), &text[..end]);
    }

    #[test]
    fn unsupported_lv_survives_and_is_refused() {
        let text = std::str::from_utf8(LVM2_TEXT).unwrap().replace(
            "logical_volumes {\n",
            "logical_volumes {\n\nthin1 {\nid = \"aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg\"\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\nsegment_count = 1\n\nsegment1 {\nstart_extent = 0\nextent_count = 10\n\ntype = \"thin\"\nthin_pool = \"lv2\"\ntransaction_id = 3\ndevice_id = 1\n}\n}\n",
        );
        let text = text.replace("seqno = 4", "seqno = 4\nrusttool_marker = 42");
        let mut vg = Vg::from_text(text.as_bytes()).unwrap();
        assert!(!vg.lv("thin1").unwrap().is_supported());
        // lv2 is named by thin1 (as its pool here), so it becomes a component.
        assert!(!vg.lv("lv2").unwrap().is_supported());
        assert!(matches!(vg.lv_mut("thin1"), Err(Error::UnsupportedLv { .. })));
        assert!(vg.lv_mut("lv1").is_ok());
        let out = vg.to_text(&TextHeader::now("t"));
        let again = Vg::from_text(out.as_bytes()).unwrap();
        assert_eq!(again.lv("thin1").unwrap().raw, vg.lv("thin1").unwrap().raw);
        assert_eq!(again.extra, vec![Node::int("rusttool_marker", 42)]);
    }

    #[test]
    fn rejects_what_lvm2_rejects() {
        let text = std::str::from_utf8(LVM2_TEXT).unwrap();
        let cases = [
            text.replace("\"pv0\", 12", "\"pv0\", 62"),
            text.replace("segment_count = 2", "segment_count = 3"),
            text.replace("\"pv0\", 8", "\"pv0\", 4"),
            text.replace("contents = ", "kontents = "),
            text.replace("extent_size = 2048\n", ""),
            text.replace("status = [\"ALLOCATABLE\"]", "status = [\"ALLOCATABLE\", \"BOGUS\"]"),
        ];
        for (i, t) in cases.iter().enumerate() {
            assert!(matches!(Vg::from_text(t.as_bytes()), Err(Error::Metadata { .. })), "case {i}");
        }
        let ro = text.replace("\"RESIZEABLE\", \"READ\"", "\"RESIZEABLE\", \"NEWFLAG\", \"READ\"");
        let vg = Vg::from_text(ro.as_bytes()).unwrap();
        assert!(matches!(vg.check_writable(), Err(Error::ReadOnlyVg { .. })));
    }

    /// The shape lvmlockd gives a shared VG (spec 1.5): WRITE replaced by WRITE_LOCKED, lock
    /// fields, LV lock_args, the hidden lvmlock LV with read_ahead -1 written last.
    #[test]
    fn shared_vg_shape_round_trips() {
        let text = std::str::from_utf8(LVM2_TEXT).unwrap();
        let text = text
            .replace(
                "status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []\ntags = [\"t1\"]\n",
                "status = [\"RESIZEABLE\", \"READ\"]\nflags = [\"WRITE_LOCKED\"]\ntags = [\"t1\"]\nlock_type = \"sanlock\"\nlock_args = \"1.0.0:lvmlock\"\n",
            )
            .replace(
                "status = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\ntags = [\"foo\"]\ncreation_time = 1795316111\ncreation_host = \"vm\"\n",
                "status = [\"READ\", \"VISIBLE\"]\nflags = [\"WRITE_LOCKED\"]\ntags = [\"foo\"]\ncreation_time = 1795316111\ncreation_host = \"vm\"\nlock_args = \"1.0.0:70254592\"\n",
            )
            .replace(
                "}\n}\n}\n\n}\n# Generated",
                "}\n}\n\nlvmlock {\nid = \"aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg\"\nstatus = [\"READ\"]\nflags = [\"WRITE_LOCKED\"]\ncreation_time = 1795316111\ncreation_host = \"vm\"\nread_ahead = -1\nsegment_count = 1\n\nsegment1 {\nstart_extent = 0\nextent_count = 4\n\ntype = \"striped\"\nstripe_count = 1\n\nstripes = [\n\"pv1\", 0\n]\n}\n}\n}\n\n}\n# Generated",
            );
        let vg = Vg::from_text(text.as_bytes()).unwrap();
        assert_eq!(vg.lock_type.as_deref(), Some("sanlock"));
        assert_eq!(vg.lock_args.as_deref(), Some("1.0.0:lvmlock"));
        assert_eq!(vg.lv("lv2").unwrap().lock_args.as_deref(), Some("1.0.0:70254592"));
        let lock = vg.lv("lvmlock").unwrap();
        assert!(lock.is_supported() && !lock.is_visible());
        assert_eq!(lock.read_ahead, Some(-1));
        assert_eq!(vg.section_text(), &text[..text.find("\n# Generated by").unwrap() + 1]);
    }

    #[test]
    fn names() {
        assert!(validate_name("vg-1_a.b+c").is_ok());
        for bad in ["", "-a", ".", "..", "a b", "a/b", &"x".repeat(128)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_new_lv_name("snapshot1").is_err());
        assert!(validate_new_lv_name("a_rimage_0").is_err());
        assert!(validate_new_lv_name("data").is_ok());
    }
}
