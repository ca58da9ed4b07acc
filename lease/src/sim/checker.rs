//! What each lockd incarnation believes it holds, and the safety invariants over those beliefs.
//!
//! Only unfenced incarnations appear here: a reset removes every holder of its host. An
//! incarnation whose daemon crashed (same boot) stays: its leases are still in use on that host
//! until the watchdog resets it.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::trace::Holder;
use crate::paxos_lease::Mode;

#[derive(Clone, Debug, Default)]
pub struct Belief {
    /// (host_id, generation) of the delta lease it believes it owns.
    pub delta: Option<(u64, u64)>,
    pub resources: BTreeMap<usize, Mode>,
}

#[derive(Default)]
pub struct Beliefs {
    holders: BTreeMap<Holder, Belief>,
    /// Beliefs changed since the last check (only changes can break an invariant).
    dirty: bool,
}

impl Beliefs {
    fn entry(&mut self, h: Holder) -> &mut Belief {
        self.dirty = true;
        self.holders.entry(h).or_default()
    }

    pub fn set_delta(&mut self, h: Holder, d: Option<(u64, u64)>) {
        self.entry(h).delta = d;
    }

    pub fn set_resource(&mut self, h: Holder, res: usize, mode: Option<Mode>) {
        let b = self.entry(h);
        match mode {
            Some(m) => b.resources.insert(res, m),
            None => b.resources.remove(&res),
        };
    }

    /// The lockspace failed or the incarnation left: it believes nothing any more.
    pub fn clear(&mut self, h: Holder) {
        self.dirty = true;
        self.holders.remove(&h);
    }

    /// The host was reset: none of its incarnations holds anything.
    pub fn clear_host(&mut self, host: usize) {
        self.dirty = true;
        self.holders.retain(|h, _| h.host != host);
    }

    pub fn get(&self, h: Holder) -> Option<&Belief> {
        self.holders.get(&h)
    }

    pub fn held_resources(&self) -> usize {
        self.holders.values().map(|b| b.resources.len()).sum()
    }

    /// Checks, over hosts (the beliefs of all unfenced incarnations of a host count as that
    /// host's): (a) at most one host holds a resource exclusively, (b) no other host holds it
    /// shared meanwhile, (c) at most one host owns a host_id. Returns the first violation.
    pub fn check(&mut self) -> Option<String> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        // resource -> (exclusive holders, shared holders); host_id -> owners
        let mut by_res: BTreeMap<usize, (Vec<Holder>, Vec<Holder>)> = BTreeMap::new();
        let mut by_id: BTreeMap<u64, Vec<(Holder, u64)>> = BTreeMap::new();
        for (h, b) in &self.holders {
            for (r, m) in &b.resources {
                let e = by_res.entry(*r).or_default();
                match m {
                    Mode::Exclusive => e.0.push(*h),
                    Mode::Shared => e.1.push(*h),
                }
            }
            if let Some((id, gen)) = b.delta {
                by_id.entry(id).or_default().push((*h, gen));
            }
        }
        let other_host = |a: &Holder, list: &[Holder]| list.iter().find(|b| b.host != a.host).copied();
        let mut out = String::new();
        for (r, (ex, sh)) in &by_res {
            if let Some(a) = ex.first() {
                if let Some(b) = other_host(a, ex) {
                    let _ = write!(out, "(a) r{r} held exclusively by {a} and {b}; ");
                } else if let Some(b) = other_host(a, sh) {
                    let _ = write!(out, "(b) r{r} held exclusively by {a} while shared by {b}; ");
                }
            }
        }
        for (id, owners) in &by_id {
            let (a, ga) = owners[0];
            if let Some((b, gb)) = owners.iter().find(|(b, _)| b.host != a.host) {
                let _ = write!(out, "(c) host_id {id} owned by {a} (generation {ga}) and {b} (generation {gb}); ");
            }
        }
        if out.is_empty() {
            None
        } else {
            Some(out.trim_end_matches("; ").to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Holder = Holder { host: 0, inc: 1 };
    const B: Holder = Holder { host: 1, inc: 1 };

    #[test]
    fn each_invariant_fires_and_fencing_clears() {
        let mut b = Beliefs::default();
        b.set_resource(A, 0, Some(Mode::Shared));
        b.set_resource(B, 0, Some(Mode::Shared));
        assert_eq!(b.check(), None);
        b.set_resource(B, 0, Some(Mode::Exclusive));
        assert!(b.check().unwrap().starts_with("(b)"));
        b.set_resource(A, 0, Some(Mode::Exclusive));
        assert!(b.check().unwrap().starts_with("(a)"));
        b.set_resource(B, 0, None);
        assert_eq!(b.check(), None);
        b.set_resource(B, 0, Some(Mode::Exclusive));
        b.clear_host(0);
        assert_eq!(b.check(), None);
        b.set_delta(A, Some((1, 1)));
        b.set_delta(B, Some((1, 2)));
        assert!(b.check().unwrap().starts_with("(c)"));
        b.clear(B);
        assert_eq!(b.check(), None);
        // Two incarnations of one host (a crashed lockd's leases still in use, and its
        // successor) are one host: not a conflict between hosts.
        let a2 = Holder { host: 0, inc: 2 };
        b.set_delta(a2, Some((1, 2)));
        b.set_resource(A, 1, Some(Mode::Exclusive));
        b.set_resource(a2, 1, Some(Mode::Exclusive));
        assert_eq!(b.check(), None);
        b.set_resource(B, 1, Some(Mode::Shared));
        assert!(b.check().unwrap().starts_with("(b)"));
    }
}
