//! Writing a new VG version to every metadata area, in lvm2's order: the text into each circular
//! buffer, then the precommit slot of each header, then the committed slot of each header. Up
//! to the first commit write every reader still sees the old version; after the last one, the
//! new one; in between, readers take the highest seqno and report the stale copies.
//!
//! Everything that can fail without I/O errors (validation, size limits, a header that changed
//! under us) is checked for every area before the first write.

use crate::device::BlockDevice;
use crate::error::{At, Error, Result};
use crate::label::DiskLocn;
use crate::mda::{self, MdaHeader, RawLocn, TextWrite};
use crate::vg::{TextHeader, Vg};

/// One PV to write: its device and its metadata areas, each with the committed location the
/// caller read from it (None: it held no metadata), checked again before writing.
pub struct PvTarget {
    pub dev: Box<dyn BlockDevice>,
    pub mdas: Vec<(DiskLocn, Option<RawLocn>)>,
}

struct Planned {
    target: usize,
    header: MdaHeader,
    write: TextWrite,
}

/// Exports `vg` with `header` and commits it to every area of `targets`.
pub fn commit_to(targets: &mut [PvTarget], vg: &Vg, header: &TextHeader) -> Result<()> {
    vg.check_writable()?;
    vg.validate()?;
    let mut text = vg.to_text(header).into_bytes();
    text.push(0);
    // What we write must read back as the same VG (lvm2 reparses its own output too).
    let check = Vg::from_text(&text)?;
    if check.section_text() != vg.section_text() {
        return Err(Error::metadata(&vg.name, "exported text does not read back identically"));
    }
    let mut plan = vec![];
    for (t, target) in targets.iter().enumerate() {
        for &(area, expected) in &target.mdas {
            let dev = &*target.dev;
            let hdr = mda::read_header(dev, area)?;
            let at = At { device: dev.name().to_string(), offset: area.offset };
            if hdr.is_ignored() || hdr.committed_copy() != expected {
                return Err(Error::ConcurrentChange { at });
            }
            let write = mda::plan_text_write(&hdr, &text, dev.name())?;
            plan.push(Planned { target: t, header: hdr, write });
        }
    }
    if plan.is_empty() {
        return Err(Error::Invalid(format!("VG {} has no metadata area to write to", vg.name)));
    }
    for p in &plan {
        for (off, data) in &p.write.writes {
            targets[p.target].dev.write_at(*off, data)?;
        }
    }
    flush_all(targets)?;
    for p in &plan {
        mda::write_header(&mut *targets[p.target].dev, &p.header.precommit(p.write.locn))?;
    }
    flush_all(targets)?;
    for p in &plan {
        mda::write_header(&mut *targets[p.target].dev, &p.header.commit(p.write.locn))?;
    }
    flush_all(targets)
}

fn flush_all(targets: &mut [PvTarget]) -> Result<()> {
    targets.iter_mut().try_for_each(|t| t.dev.flush())
}
