//! Finding PVs and VGs on a given set of devices: read each label, each metadata area's header
//! and committed text; then, for one VG, pick the copy with the highest seqno across all PVs and
//! mdas, match the VG's PVs to devices by UUID, and report every copy that disagrees.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::commit::{commit_to, PvTarget};
use crate::device::{BlockDevice, FileDevice};
use crate::error::{Error, Result};
use crate::label::{DiskLocn, Label};
use crate::mda::{self, MdaHeader, RawLocn};
use crate::uuid::Uuid;
use crate::vg::{TextHeader, Vg};

/// The committed copy found in one mda.
#[derive(Clone, Debug)]
pub struct MdaCopy {
    pub header: MdaHeader,
    pub locn: RawLocn,
    /// Text including the trailing NUL.
    pub text: Vec<u8>,
    pub vg_name: String,
    pub vg_id: Uuid,
    pub seqno: u32,
    /// The text parsed (shared by identical copies; `read_vg` uses it instead of parsing again:
    /// parsing a 500-LV VG is most of a command's CPU time).
    pub vg: Arc<Vg>,
}

/// What one metadata area holds.
#[derive(Debug)]
pub enum MdaState {
    /// A VG's committed metadata.
    Copy(Box<MdaCopy>),
    /// A valid header without committed text (an orphan PV).
    Empty(MdaHeader),
    /// Marked ignored (`--metadataignore`): neither read nor written, as in lvm2.
    Ignored(MdaHeader),
    /// Header or text unreadable or invalid.
    Bad(Error),
}

#[derive(Debug)]
pub struct ScannedPv {
    pub path: PathBuf,
    pub size: u64,
    pub label: Label,
    /// One entry per metadata area of the label, in label order.
    pub mdas: Vec<(DiskLocn, MdaState)>,
}

/// The result of scanning devices.
#[derive(Debug, Default)]
pub struct Scan {
    pub pvs: Vec<ScannedPv>,
    /// Devices that are not PVs (no label) — not errors, just not ours.
    pub not_pvs: Vec<PathBuf>,
    /// Devices that could not be read or carry a damaged label.
    pub errors: Vec<(PathBuf, Error)>,
}

/// How one copy of the metadata differs from the one chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disagreement {
    /// This mda holds an older seqno (an interrupted commit, or a PV that missed one).
    OlderSeqno(u32),
    /// Same seqno, different text: two writers, or corruption.
    DifferentText,
    /// No committed metadata in this mda.
    NoMetadata,
    /// The header or text could not be read or validated (message).
    Unreadable(String),
    /// The mda belongs to another VG (name).
    OtherVg(String),
    /// The device claims this VG but the chosen metadata no longer lists it (at that seqno).
    OutdatedPv(u32),
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disagreement::OlderSeqno(n) => write!(f, "older version (seqno {n})"),
            Disagreement::DifferentText => f.write_str("same seqno, different text"),
            Disagreement::NoMetadata => f.write_str("no metadata"),
            Disagreement::Unreadable(e) => write!(f, "damaged: {e}"),
            Disagreement::OtherVg(v) => write!(f, "belongs to VG {v}"),
            Disagreement::OutdatedPv(n) => write!(f, "outdated PV (seqno {n})"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdaReport {
    pub device: PathBuf,
    /// Absolute offset of the mda.
    pub mda_start: u64,
    pub problem: Disagreement,
}

/// Where a commit must write on one PV: each mda with the committed location read from it.
#[derive(Clone, Debug)]
pub struct TargetSpec {
    pub path: PathBuf,
    pub mdas: Vec<(DiskLocn, Option<RawLocn>)>,
}

/// A VG as read from the scanned devices.
#[derive(Debug)]
pub struct VgRead {
    pub vg: Vg,
    /// The chosen text (with its NUL).
    pub text: Vec<u8>,
    /// For each `vg.pvs[i]`, the index in `Scan::pvs` of its device.
    pub devices: Vec<Option<usize>>,
    /// UUIDs of VG PVs not found on any scanned device.
    pub missing: Vec<Uuid>,
    pub disagreements: Vec<MdaReport>,
}

/// Texts parsed so far and their VGs, so identical copies (on other PVs) are parsed once.
type ParsedCopies = Vec<(Vec<u8>, Arc<Vg>)>;

fn scan_mda(dev: &dyn BlockDevice, area: DiskLocn, cache: &mut ParsedCopies) -> MdaState {
    let header = match mda::read_header(dev, area) {
        Ok(h) => h,
        Err(e) => return MdaState::Bad(e),
    };
    if header.is_ignored() {
        return MdaState::Ignored(header);
    }
    let Some(locn) = header.committed_copy() else { return MdaState::Empty(header) };
    let text = match mda::read_text(dev, &header, locn) {
        Ok(t) => t,
        Err(e) => return MdaState::Bad(e),
    };
    let vg = match cache.iter().find(|(t, _)| *t == text) {
        Some((_, vg)) => vg.clone(),
        None => match Vg::from_text(&text) {
            Ok(vg) => {
                let vg = Arc::new(vg);
                cache.push((text.clone(), vg.clone()));
                vg
            }
            Err(e) => return MdaState::Bad(e),
        },
    };
    MdaState::Copy(Box::new(MdaCopy {
        header,
        locn,
        text,
        vg_name: vg.name.clone(),
        vg_id: vg.id,
        seqno: vg.seqno,
        vg,
    }))
}

impl Scan {
    /// Scans exactly these devices (block devices, loop devices or plain files).
    pub fn devices<P: AsRef<Path>>(paths: &[P]) -> Scan {
        let mut scan = Scan::default();
        let mut cache = ParsedCopies::new();
        for p in paths {
            let path = p.as_ref().to_path_buf();
            let dev = match FileDevice::open(&path, false) {
                Ok(d) => d,
                Err(e) => {
                    scan.errors.push((path, e));
                    continue;
                }
            };
            scan.add(&path, &dev, &mut cache);
        }
        scan
    }

    /// Scans in-memory or otherwise opened devices (tests, tools).
    pub fn opened(devs: &[&dyn BlockDevice]) -> Scan {
        let mut scan = Scan::default();
        let mut cache = ParsedCopies::new();
        for dev in devs {
            scan.add(Path::new(dev.name()), *dev, &mut cache);
        }
        scan
    }

    fn add(&mut self, path: &Path, dev: &dyn BlockDevice, cache: &mut ParsedCopies) {
        let path = path.to_path_buf();
        match Label::read(dev) {
            Ok(label) => {
                let mdas = label.metadata_areas.iter().map(|&a| (a, scan_mda(dev, a, cache))).collect();
                self.pvs.push(ScannedPv { path, size: dev.size(), label, mdas });
            }
            Err(Error::NoLabel { .. }) => self.not_pvs.push(path),
            Err(e) => self.errors.push((path, e)),
        }
    }

    /// What could not be read, one line each naming the device, the offset and why: damaged
    /// labels, unreadable devices, damaged metadata areas. A VG whose every copy is damaged is
    /// in here and nowhere else.
    pub fn damage(&self) -> Vec<String> {
        let mut out: Vec<String> = self.errors.iter().map(|(p, e)| format!("{}: {e}", p.display())).collect();
        for pv in &self.pvs {
            for (a, m) in &pv.mdas {
                if let MdaState::Bad(e) = m {
                    out.push(format!("{} (metadata area at byte {}) is damaged: {e}", pv.path.display(), a.offset));
                }
            }
        }
        out
    }

    /// Names of the VGs found, sorted.
    pub fn vg_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.copies().map(|(_, _, c)| c.vg_name.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    fn copies(&self) -> impl Iterator<Item = (usize, DiskLocn, &MdaCopy)> {
        self.pvs.iter().enumerate().flat_map(|(i, pv)| {
            pv.mdas.iter().filter_map(move |(a, s)| match s {
                MdaState::Copy(c) => Some((i, *a, &**c)),
                _ => None,
            })
        })
    }

    /// Reads one VG: the committed copy with the highest seqno wins; every other copy that
    /// differs is reported, as are PVs of the VG that were not found.
    pub fn read_vg(&self, name: &str) -> Result<VgRead> {
        let mut best: Option<(usize, DiskLocn, &MdaCopy)> = None;
        for (i, a, c) in self.copies().filter(|(_, _, c)| c.vg_name == name) {
            if best.is_none_or(|b| c.seqno > b.2.seqno) {
                best = Some((i, a, c));
            }
        }
        let Some((_, _, chosen)) = best else { return Err(Error::VgNotFound { vg: name.to_string() }) };
        if let Some((_, _, other)) = self.copies().find(|(_, _, c)| c.vg_name == name && c.vg_id != chosen.vg_id) {
            return Err(Error::metadata(
                name,
                format!("two VGs with this name (ids {} and {})", chosen.vg_id, other.vg_id),
            ));
        }
        let vg = (*chosen.vg).clone();
        let mut devices = vec![];
        let mut missing = vec![];
        for pv in &vg.pvs {
            let found: Vec<usize> = (0..self.pvs.len()).filter(|&i| self.pvs[i].label.pv_uuid == pv.id).collect();
            if found.len() > 1 {
                return Err(Error::DuplicatePvUuid {
                    uuid: pv.id.to_string(),
                    devices: found.iter().map(|&i| self.pvs[i].path.display().to_string()).collect(),
                });
            }
            if found.is_empty() {
                missing.push(pv.id);
            }
            devices.push(found.first().copied());
        }
        let mut disagreements = vec![];
        let report =
            |pv: &ScannedPv, a: DiskLocn, problem| MdaReport { device: pv.path.clone(), mda_start: a.offset, problem };
        for &i in devices.iter().flatten() {
            let pv = &self.pvs[i];
            for (a, state) in &pv.mdas {
                let problem = match state {
                    MdaState::Copy(c) if c.vg_name != name || c.vg_id != chosen.vg_id => {
                        Disagreement::OtherVg(c.vg_name.clone())
                    }
                    MdaState::Copy(c) if c.seqno < chosen.seqno => Disagreement::OlderSeqno(c.seqno),
                    MdaState::Copy(c) if c.text != chosen.text => Disagreement::DifferentText,
                    MdaState::Copy(_) | MdaState::Ignored(_) => continue,
                    MdaState::Empty(_) => Disagreement::NoMetadata,
                    MdaState::Bad(e) => Disagreement::Unreadable(e.to_string()),
                };
                disagreements.push(report(pv, *a, problem));
            }
        }
        for (i, a, c) in self.copies() {
            if c.vg_id == chosen.vg_id && !devices.contains(&Some(i)) {
                disagreements.push(report(&self.pvs[i], a, Disagreement::OutdatedPv(c.seqno)));
            }
        }
        Ok(VgRead { vg, text: chosen.text.clone(), devices, missing, disagreements })
    }
}

impl VgRead {
    /// Refuses to write over anything damaged or incomplete: a missing PV, an unreadable mda,
    /// copies at the same seqno with different text, or a VG this tool must not change.
    pub fn check_writable(&self) -> Result<()> {
        self.vg.check_writable()?;
        if let (Some(uuid), Some(pv)) =
            (self.missing.first(), self.vg.pvs.iter().find(|p| Some(&p.id) == self.missing.first()))
        {
            return Err(Error::MissingPv { vg: self.vg.name.clone(), uuid: uuid.to_string(), hint: pv.device.clone() });
        }
        for d in &self.disagreements {
            match &d.problem {
                Disagreement::OlderSeqno(_) | Disagreement::OutdatedPv(_) | Disagreement::NoMetadata => {}
                p => {
                    return Err(Error::ReadOnlyVg {
                        vg: self.vg.name.clone(),
                        reason: format!("{} metadata area at byte {}: {p}", d.device.display(), d.mda_start),
                    })
                }
            }
        }
        Ok(())
    }

    /// The write targets for a commit of this VG: every non-ignored mda of every PV, with the
    /// committed location we read (a different one on disk means someone else wrote).
    pub fn targets(&self, scan: &Scan) -> Vec<TargetSpec> {
        self.devices
            .iter()
            .flatten()
            .map(|&i| {
                let pv = &scan.pvs[i];
                let mdas = pv
                    .mdas
                    .iter()
                    .filter_map(|(a, s)| match s {
                        MdaState::Copy(c) => Some((*a, Some(c.locn))),
                        MdaState::Empty(_) => Some((*a, None)),
                        MdaState::Ignored(_) | MdaState::Bad(_) => None,
                    })
                    .collect();
                TargetSpec { path: pv.path.clone(), mdas }
            })
            .collect()
    }

    /// Writes `new` (whose seqno must be one more than the one read) to every mda of the VG:
    /// texts first, then precommit, then commit. Nothing is written if any check fails.
    pub fn commit(&self, scan: &Scan, new: &Vg, header: &TextHeader) -> Result<()> {
        self.check_writable()?;
        if new.seqno != self.vg.seqno.wrapping_add(1) {
            return Err(Error::Invalid(format!("new seqno {} must follow {}", new.seqno, self.vg.seqno)));
        }
        if new.id != self.vg.id {
            return Err(Error::Invalid("VG id changed".into()));
        }
        let mut targets = vec![];
        for t in self.targets(scan) {
            let dev = FileDevice::open(&t.path, true)?;
            targets.push(PvTarget { dev: Box::new(dev), mdas: t.mdas });
        }
        commit_to(&mut targets, new, header)
    }
}
