//! Extent allocation for linear LVs, lvm2's "normal" policy in spirit: an extension continues
//! right after the LV's last extent when that space is free; otherwise one free range large
//! enough for the whole request is used (the first in PV order, so LVs stay contiguous);
//! only when none is large enough are several ranges used, largest first. Free space comes
//! from [`Vg::free_ranges`], which accounts every LV (unsupported ones included), so an
//! allocation never overlaps anything.

use crate::error::{Error, Result};
use crate::vg::{Area, Segment, Vg};

/// A run of extents to add to an LV: `len` extents of PV section `pv` from `pe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub pv: String,
    pub pe: u32,
    pub len: u32,
}

/// The PVs allocation may use: `only` (PV section names) if given, else every PV; either way
/// only ALLOCATABLE ones.
fn candidate_pvs(vg: &Vg, only: Option<&[String]>) -> Vec<String> {
    vg.pvs
        .iter()
        .filter(|p| p.status.iter().any(|s| s == "ALLOCATABLE"))
        .filter(|p| only.is_none_or(|o| o.contains(&p.name)))
        .map(|p| p.name.clone())
        .collect()
}

/// Free extents on the candidate PVs.
pub fn free_extents(vg: &Vg, only: Option<&[String]>) -> u64 {
    candidate_pvs(vg, only).iter().flat_map(|p| vg.free_ranges(p)).map(|r| r.1 as u64).sum()
}

/// Chooses `extents` free extents. `after` is where the LV currently ends (PV, next PE), to
/// continue it in place.
pub fn choose(vg: &Vg, extents: u32, only: Option<&[String]>, after: Option<(&str, u32)>) -> Result<Vec<Chunk>> {
    let pvs = candidate_pvs(vg, only);
    let mut free: Vec<(String, u32, u32)> = vec![];
    for p in &pvs {
        free.extend(vg.free_ranges(p).into_iter().map(|(pe, len)| (p.clone(), pe, len)));
    }
    let total: u64 = free.iter().map(|f| f.2 as u64).sum();
    if total < extents as u64 {
        return Err(Error::InsufficientSpace { vg: vg.name.clone(), needed: extents as u64, free: total });
    }
    let mut out = vec![];
    let mut need = extents;
    let take = |free: &mut Vec<(String, u32, u32)>, i: usize, n: u32, out: &mut Vec<Chunk>| {
        let f = &mut free[i];
        out.push(Chunk { pv: f.0.clone(), pe: f.1, len: n });
        f.1 += n;
        f.2 -= n;
    };
    if let Some((pv, pe)) = after {
        if let Some(i) = free.iter().position(|f| f.0 == pv && f.1 == pe && pvs.iter().any(|p| p == pv)) {
            let n = need.min(free[i].2);
            take(&mut free, i, n, &mut out);
            need -= n;
        }
    }
    if need == 0 {
        return Ok(out);
    }
    if let Some(i) = free.iter().position(|f| f.2 >= need) {
        take(&mut free, i, need, &mut out);
        return Ok(out);
    }
    let mut order: Vec<usize> = (0..free.len()).collect();
    // Largest first; ties keep PV and extent order (the sort is stable).
    order.sort_by_key(|&i| std::cmp::Reverse(free[i].2));
    for i in order {
        if need == 0 {
            break;
        }
        let n = need.min(free[i].2);
        if n > 0 {
            take(&mut free, i, n, &mut out);
            need -= n;
        }
    }
    Ok(out)
}

/// Appends `chunks` to the LV `lv` as linear segments, merging the first one into the LV's
/// last segment when it continues it on the same PV.
pub fn append(vg: &mut Vg, lv: &str, chunks: &[Chunk]) -> Result<()> {
    let lvm = vg.lv_mut(lv)?;
    for c in chunks {
        let start = lvm.extent_count;
        let merged = match lvm.segments.last_mut() {
            Some(s) if s.stripes.len() == 1 && s.stripes[0].pv == c.pv && s.stripes[0].pe + s.extent_count == c.pe => {
                s.extent_count += c.len;
                true
            }
            _ => false,
        };
        if !merged {
            lvm.segments.push(Segment::linear(start, c.len, &c.pv, c.pe));
            lvm.segtypes.push("striped".into());
        }
        lvm.extent_count += c.len;
    }
    Ok(())
}

/// Where an LV ends on disk: the PV and the extent after its last one (linear last segment).
pub fn lv_end(vg: &Vg, lv: &str) -> Option<(String, u32)> {
    let s = vg.lv(lv)?.segments.last()?;
    match s.stripes.as_slice() {
        [Area { pv, pe }] => Some((pv.clone(), pe + s.extent_count)),
        _ => None,
    }
}

/// Grows `lv` by `extents`, on the PVs in `only` if given. Validates the result.
pub fn extend(vg: &mut Vg, lv: &str, extents: u32, only: Option<&[String]>) -> Result<()> {
    let end = lv_end(vg, lv);
    let chunks = choose(vg, extents, only, end.as_ref().map(|(p, e)| (p.as_str(), *e)))?;
    let mut next = vg.clone();
    append(&mut next, lv, &chunks)?;
    next.validate()?;
    *vg = next;
    Ok(())
}

/// Shrinks `lv` to `new_extents` (at least 1), dropping extents from its end.
pub fn reduce(vg: &mut Vg, lv: &str, new_extents: u32) -> Result<()> {
    let mut next = vg.clone();
    let l = next.lv_mut(lv)?;
    if new_extents == 0 || new_extents >= l.extent_count {
        return Err(Error::Invalid(format!("cannot reduce {lv} from {} to {new_extents} extents", l.extent_count)));
    }
    while let Some(s) = l.segments.last_mut() {
        if s.start_extent >= new_extents {
            l.segments.pop();
            l.segtypes.pop();
            continue;
        }
        let keep = new_extents - s.start_extent;
        if !keep.is_multiple_of(s.stripes.len() as u32) {
            return Err(Error::Invalid(format!(
                "cannot reduce {lv} to {new_extents} extents: not a multiple of the {} stripes of its last segment",
                s.stripes.len()
            )));
        }
        s.extent_count = keep;
        break;
    }
    l.extent_count = new_extents;
    next.validate()?;
    *vg = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uuid::Uuid;
    use crate::vg::{Lv, Pv};
    use proptest::prelude::*;

    fn vg_with(pe_counts: &[u32]) -> Vg {
        let text = "v {\nid = \"aaaaaa-bbbb-cccc-dddd-eeee-ffff-gggggg\"\nseqno = 1\nstatus = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nextent_size = 8192\nmax_lv = 0\nmax_pv = 0\nphysical_volumes {\n}\n}\ncontents = \"Text Format Volume Group\"\nversion = 1\n";
        let mut vg = Vg::from_text(text.as_bytes()).unwrap();
        for (i, &n) in pe_counts.iter().enumerate() {
            vg.pvs.push(Pv {
                name: format!("pv{i}"),
                id: Uuid::generate().unwrap(),
                device: None,
                device_id_type: None,
                device_id: None,
                status: vec!["ALLOCATABLE".into()],
                flags: vec![],
                tags: vec![],
                dev_size: Some(n as u64 * 8192 + 2048),
                pe_start: 2048,
                pe_count: n,
                ba_start: None,
                ba_size: None,
                extra: vec![],
            });
        }
        vg
    }

    fn create(vg: &mut Vg, name: &str, extents: u32) -> Result<()> {
        let chunks = choose(vg, extents, None, None)?;
        let mut lv = Lv::new(name, Uuid::generate().unwrap(), vec![], "t", 1);
        lv.segtypes.clear();
        let mut next = vg.clone();
        next.lvs.push(lv);
        append(&mut next, name, &chunks)?;
        next.validate()?;
        *vg = next;
        Ok(())
    }

    #[test]
    fn extension_continues_in_place_then_spills() {
        let mut vg = vg_with(&[10, 10]);
        create(&mut vg, "a", 3).unwrap();
        create(&mut vg, "b", 2).unwrap();
        extend(&mut vg, "b", 2, None).unwrap();
        assert_eq!(vg.lv("b").unwrap().segments.len(), 1, "continued in place");
        extend(&mut vg, "a", 2, None).unwrap();
        // a cannot continue (b follows it): a new segment in the first range that fits.
        let a = vg.lv("a").unwrap();
        assert_eq!(a.segments.len(), 2);
        assert_eq!(a.segments[1].stripes[0], Area { pv: "pv0".into(), pe: 7 });
        // 11 extents fit in no single range (1 left on pv0, 10 on pv1): largest first.
        create(&mut vg, "c", 11).unwrap();
        let c = vg.lv("c").unwrap();
        assert_eq!(c.segments.len(), 2);
        assert_eq!(c.segments[0].stripes[0].pv, "pv1");
        assert!(matches!(create(&mut vg, "d", 2), Err(Error::InsufficientSpace { needed: 2, free: 0, .. })));
        reduce(&mut vg, "c", 5).unwrap();
        assert_eq!(vg.lv("c").unwrap().segments.len(), 1);
        assert_eq!(vg.lv("c").unwrap().extent_count, 5);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create(u32),
        Extend(usize, u32),
        Reduce(usize, u32),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1u32..40).prop_map(Op::Create),
            3 => (0usize..8, 1u32..30).prop_map(|(i, n)| Op::Extend(i, n)),
            2 => (0usize..8, 1u32..30).prop_map(|(i, n)| Op::Reduce(i, n)),
            1 => (0usize..8).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Whatever sequence of creates, extends, reduces and removes: no extent is used twice,
        /// every LV has exactly the extents asked for, nothing lies past a PV's end, a request
        /// fails only when free space is short, and a new LV is one segment whenever a single
        /// free range could hold it.
        #[test]
        fn allocation_never_overlaps(pvs in prop::collection::vec(1u32..60, 1..4), ops in prop::collection::vec(op(), 1..40)) {
            let mut vg = vg_with(&pvs);
            let mut sizes: Vec<(String, u32)> = vec![];
            let mut n = 0;
            for o in ops {
                let free = free_extents(&vg, None);
                match o {
                    Op::Create(e) => {
                        n += 1;
                        let name = format!("lv{n}");
                        let fits_one = vg.pvs.iter().any(|p| vg.free_ranges(&p.name).iter().any(|r| r.1 >= e));
                        match create(&mut vg, &name, e) {
                            Ok(()) => {
                                prop_assert!(e as u64 <= free);
                                if fits_one {
                                    prop_assert_eq!(vg.lv(&name).unwrap().segments.len(), 1);
                                }
                                sizes.push((name, e));
                            }
                            Err(Error::InsufficientSpace { .. }) => prop_assert!(e as u64 > free),
                            Err(e) => prop_assert!(false, "{}", e),
                        }
                    }
                    Op::Extend(i, e) if !sizes.is_empty() => {
                        let i = i % sizes.len();
                        match extend(&mut vg, &sizes[i].0.clone(), e, None) {
                            Ok(()) => sizes[i].1 += e,
                            Err(Error::InsufficientSpace { .. }) => prop_assert!(e as u64 > free),
                            Err(e) => prop_assert!(false, "{}", e),
                        }
                    }
                    Op::Reduce(i, e) if !sizes.is_empty() => {
                        let i = i % sizes.len();
                        if e < sizes[i].1 {
                            reduce(&mut vg, &sizes[i].0.clone(), sizes[i].1 - e).unwrap();
                            sizes[i].1 -= e;
                        }
                    }
                    Op::Remove(i) if !sizes.is_empty() => {
                        let (name, _) = sizes.remove(i % sizes.len());
                        vg.lvs.retain(|l| l.name != name);
                    }
                    _ => {}
                }
                prop_assert!(vg.validate().is_ok(), "{:?}", vg.validate());
                for (name, e) in &sizes {
                    let lv = vg.lv(name).unwrap();
                    prop_assert_eq!(lv.extent_count, *e);
                    prop_assert_eq!(lv.segments.iter().map(|s| s.extent_count).sum::<u32>(), *e);
                }
                let used: u64 = sizes.iter().map(|s| s.1 as u64).sum();
                prop_assert_eq!(used + free_extents(&vg, None), pvs.iter().map(|&p| p as u64).sum::<u64>());
            }
        }
    }
}
