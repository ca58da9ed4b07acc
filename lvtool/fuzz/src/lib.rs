//! The checks behind lvtool's fuzz targets, callable from libFuzzer (fuzz_targets/) and from a
//! plain test that replays the committed corpus (tests/corpus.rs). Each function panics only on
//! a real defect: a crash in lvtool, or a broken round trip.

use std::cell::RefCell;
use std::rc::Rc;

use lvtool::commit::{commit_to, PvTarget};
use lvtool::config::{self, Item, Node, Scalar, Style, Value};
use lvtool::crc::lvm_crc;
use lvtool::device::BlockDevice;
use lvtool::label::{Label, LABEL_ID, SECTOR_SIZE};
use lvtool::mda::{MdaHeader, FMTT_MAGIC, MDA_HEADER_SIZE};
use lvtool::scan::Scan;
use lvtool::vg::{TextHeader, Vg};

/// Target `config_text`: parse; if it parses, what we write must parse back to the same tree
/// (floats compared as written, `%f` as lvm2) and writing that again gives the same text.
pub fn config_text(data: &[u8]) {
    let Ok(nodes) = config::parse(data) else { return };
    if has_infinite_float(&nodes) {
        // KNOWN, minor: see has_infinite_float.
        return;
    }
    for style in [Style::Tabs, Style::Flat] {
        let text = config::write(&nodes, style);
        let again = match config::parse(text.as_bytes()) {
            Ok(n) => n,
            Err(e) => panic!("written text does not parse ({e}):\n{text}"),
        };
        assert!(same_nodes(&nodes, &again), "tree changed by write+parse:\n{nodes:?}\n{again:?}\ntext:\n{text}");
        assert_eq!(config::write(&again, style), text, "writing is not a fixed point");
    }
}

fn same_scalar(a: &Scalar, b: &Scalar) -> bool {
    match (a, b) {
        (Scalar::Float(_), Scalar::Float(_)) => config::format_scalar(a) == config::format_scalar(b),
        _ => a == b,
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Scalar(x), Value::Scalar(y)) => same_scalar(x, y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_scalar(p, q)),
        _ => false,
    }
}

fn same_nodes(a: &[Node], b: &[Node]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.key == y.key
                && match (&x.item, &y.item) {
                    (Item::Section(p), Item::Section(q)) => same_nodes(p, q),
                    (Item::Value(p), Item::Value(q)) => same_value(p, q),
                    _ => false,
                }
        })
}

/// KNOWN, minor (reported): a float literal of 309+ digits parses as infinity and is written
/// `inf` (`%f`, as lvm2), which reads back as a bare string, or in a list (`[1, inf]`) does not
/// parse at all. No metadata field is a float, and commit_to refuses such a VG (its exported
/// text does not read back), so nothing bad is written. Such inputs skip the round trips.
fn has_infinite_float(nodes: &[Node]) -> bool {
    let inf = |s: &Scalar| matches!(s, Scalar::Float(f) if f.is_infinite());
    nodes.iter().any(|n| match &n.item {
        Item::Section(c) => has_infinite_float(c),
        Item::Value(Value::Scalar(s)) => inf(s),
        Item::Value(Value::Array(a)) => a.iter().any(inf),
    })
}

/// A fixed header, so runs are reproducible.
pub fn fixed_header() -> TextHeader {
    TextHeader {
        generator: "lvtool fuzz".into(),
        description: "fuzz".into(),
        creation_host: "fuzzhost".into(),
        uname: "Linux fuzzhost".into(),
        creation_time: 1_700_000_000,
        ctime: "Tue Nov 14 22:13:20 2023".into(),
    }
}

/// Target `vg_text`: `Vg::from_text` never panics; a VG it accepts exports text that reads back
/// as the same VG (what `commit_to` checks before every write) and exports identically again.
pub fn vg_text(data: &[u8]) {
    let Ok(vg) = Vg::from_text(data) else { return };
    let infinite = config::parse(data).is_ok_and(|n| has_infinite_float(&n));
    for pv in &vg.pvs {
        let _ = vg.free_ranges(&pv.name);
    }
    let _ = vg.check_writable();
    let _ = vg.validate();
    let text = vg.to_text(&fixed_header());
    if infinite {
        return;
    }
    let again = match Vg::from_text(text.as_bytes()) {
        Ok(v) => v,
        Err(e) => panic!("exported text does not read back ({e}):\n{text}"),
    };
    assert_eq!(again.section_text(), vg.section_text(), "VG section changed by export+read");
    assert_eq!(again.to_text(&fixed_header()), text, "export is not a fixed point");
}

/// An in-memory device whose bytes stay reachable after it is boxed into a commit target.
#[derive(Clone)]
pub struct SharedDev {
    pub name: String,
    pub data: Rc<RefCell<Vec<u8>>>,
}

impl BlockDevice for SharedDev {
    fn name(&self) -> &str {
        &self.name
    }
    fn size(&self) -> u64 {
        self.data.borrow().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> lvtool::Result<()> {
        let d = self.data.borrow();
        let o = usize::try_from(offset).ok().filter(|o| o.checked_add(buf.len()).is_some_and(|e| e <= d.len()));
        let o = o.ok_or_else(|| eof(&self.name))?;
        buf.copy_from_slice(&d[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> lvtool::Result<()> {
        let mut d = self.data.borrow_mut();
        let o = usize::try_from(offset).ok().filter(|o| o.checked_add(data.len()).is_some_and(|e| e <= d.len()));
        let o = o.ok_or_else(|| eof(&self.name))?;
        d[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> lvtool::Result<()> {
        Ok(())
    }
}

fn eof(name: &str) -> lvtool::Error {
    let source = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "beyond end of device");
    lvtool::Error::Io { device: name.to_string(), op: "access", source }
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Input flags of `pv_image` (first byte).
pub const FIX_LABEL_CRC: u8 = 1;
pub const FIX_MDA_CRCS: u8 = 2;
pub const TWO_DEVICES: u8 = 4;
pub const COMMIT: u8 = 8;

/// Recomputes the CRC of every LABELONE sector in the first four.
fn fix_label_crcs(img: &mut [u8]) {
    for s in 0..4 {
        let o = s * SECTOR_SIZE;
        if img.len() >= o + SECTOR_SIZE && &img[o..o + 8] == LABEL_ID {
            let crc = lvm_crc(&img[o + 20..o + SECTOR_SIZE]);
            img[o + 16..o + 20].copy_from_slice(&crc.to_le_bytes());
        }
    }
}

/// Recomputes, for each mda the label lists, the committed text checksum and the header CRC,
/// so mutations get past the checksums and reach the layout and text checks.
fn fix_mda_crcs(img: &mut [u8]) {
    let Ok(label) = Label::find(&img[..img.len().min(4 * SECTOR_SIZE)], "fix") else { return };
    for a in &label.metadata_areas {
        let Ok(start) = usize::try_from(a.offset) else { continue };
        let Some(h) = start.checked_add(MDA_HEADER_SIZE as usize).filter(|&e| e <= img.len()) else { continue };
        let hdr = &img[start..h];
        if &hdr[4..20] != FMTT_MAGIC {
            continue;
        }
        let (size, off, len) = (u64_at(hdr, 32), u64_at(hdr, 40), u64_at(hdr, 48));
        if off >= MDA_HEADER_SIZE && off < size && len <= size - MDA_HEADER_SIZE {
            let first = len.min(size - off);
            let wrap = len - first;
            let part = |o: u64, n: u64| -> Option<std::ops::Range<usize>> {
                let b = (a.offset).checked_add(o)?;
                let e = b.checked_add(n)?;
                (e <= img.len() as u64).then_some(b as usize..e as usize)
            };
            if let (Some(r1), Some(r2)) = (part(off, first), part(MDA_HEADER_SIZE, wrap)) {
                let mut text = img[r1].to_vec();
                text.extend_from_slice(&img[r2]);
                let crc = lvm_crc(&text);
                img[start + 56..start + 60].copy_from_slice(&crc.to_le_bytes());
            }
        }
        let crc = lvm_crc(&img[start + 4..h]);
        img[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Target `pv_image`: input = flags byte, then one device image (or, with TWO_DEVICES, a u32
/// length and two). Label and mda decoding, scanning and VG reading never panic; decoded
/// labels and mda headers encode back to what decodes the same; with COMMIT, a writable VG is
/// committed at seqno+1 to the in-memory devices and must read back at that seqno.
pub fn pv_image(data: &[u8]) {
    pv_image_stats(data);
}

/// What one `pv_image` input reached: VGs read, VGs committed and read back.
#[derive(Debug, Default)]
pub struct Reached {
    pub vgs_read: usize,
    pub committed: usize,
}

pub fn pv_image_stats(data: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let Some((&flags, rest)) = data.split_first() else { return reached };
    let mut images: Vec<Vec<u8>> = if flags & TWO_DEVICES != 0 && rest.len() >= 4 {
        let n = (u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize).min(rest.len() - 4);
        vec![rest[4..4 + n].to_vec(), rest[4 + n..].to_vec()]
    } else {
        vec![rest.to_vec()]
    };
    for img in &mut images {
        if flags & FIX_LABEL_CRC != 0 {
            fix_label_crcs(img);
        }
        if flags & FIX_MDA_CRCS != 0 {
            fix_mda_crcs(img);
        }
        round_trip_headers(img);
    }
    let devs: Vec<SharedDev> = images
        .into_iter()
        .enumerate()
        .map(|(i, d)| SharedDev { name: format!("fuzz{i}"), data: Rc::new(RefCell::new(d)) })
        .collect();
    let refs: Vec<&dyn BlockDevice> = devs.iter().map(|d| d as &dyn BlockDevice).collect();
    let scan = Scan::opened(&refs);
    for name in scan.vg_names() {
        let Ok(r) = scan.read_vg(&name) else { continue };
        reached.vgs_read += 1;
        let writable = r.check_writable().is_ok();
        let targets = r.targets(&scan);
        if flags & COMMIT == 0 || !writable || r.vg.seqno == u32::MAX {
            continue;
        }
        let mut new = r.vg.clone();
        new.seqno += 1;
        let mut pts: Vec<PvTarget> = targets
            .iter()
            .map(|t| {
                let dev = devs.iter().find(|d| std::path::Path::new(&d.name) == t.path).expect("target is a scanned device");
                PvTarget { dev: Box::new(dev.clone()), mdas: t.mdas.clone() }
            })
            .collect();
        if commit_to(&mut pts, &new, &fixed_header()).is_err() {
            continue;
        }
        let scan2 = Scan::opened(&refs);
        let r2 = match scan2.read_vg(&name) {
            Ok(r) => r,
            Err(e) => panic!("VG {name} committed at seqno {} does not read back: {e}", new.seqno),
        };
        assert_eq!(r2.vg.seqno, new.seqno, "committed seqno not the one read back");
        assert_eq!(r2.vg.section_text(), new.section_text(), "committed VG reads back differently");
        reached.committed += 1;
        break;
    }
    reached
}

/// A label or mda header that decodes must encode to bytes that decode to the same value.
fn round_trip_headers(img: &[u8]) {
    let head = &img[..img.len().min(4 * SECTOR_SIZE)];
    let Ok(label) = Label::find(head, "rt") else { return };
    if let Ok(enc) = label.encode() {
        let back = Label::decode(&enc, label.sector, "rt").expect("encoded label decodes");
        assert_eq!(back, label, "label changed by encode+decode");
    }
    for a in &label.metadata_areas {
        let Some(b) = usize::try_from(a.offset).ok().and_then(|o| img.get(o..o.checked_add(512)?)) else { continue };
        let Ok(h) = MdaHeader::decode(b, a.offset, "rt") else { continue };
        let back = MdaHeader::decode(&h.encode(), a.offset, "rt").expect("encoded mda header decodes");
        assert_eq!(back, h, "mda header changed by encode+decode");
    }
}
