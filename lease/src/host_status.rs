//! What we know about the other hosts of a lockspace, built only from reads of the area and
//! timed only with our own monotonic clock: a host is alive while its record keeps *changing*.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::delta_lease::{verify_sector, LockspaceArea};
use crate::ondisk::{delta_sector_offset, HostBitmap, Name};
use crate::timeouts::Timeouts;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HostState {
    /// Timestamp 0: released.
    Free,
    /// Seen, but not long enough to tell whether it changes.
    Unknown,
    /// Changed within the last 8N.
    Live,
    /// Silent for 8N..8N+W: failing, its watchdog may not have fired yet.
    Fail,
    /// Silent for at least 8N+W: reset by its watchdog.
    Dead,
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostState::Free => "free",
            HostState::Unknown => "unknown",
            HostState::Live => "live",
            HostState::Fail => "fail",
            HostState::Dead => "dead",
        })
    }
}

#[derive(Clone, Debug)]
pub struct HostStatus {
    pub owner_id: u64,
    pub generation: u64,
    pub timestamp: u64,
    pub io_timeout: u16,
    pub host_name: Name,
    pub bitmap: HostBitmap,
    /// Our clock when we first read this record.
    pub first_check: Duration,
    /// Our clock when a read last completed showing it changed.
    pub last_live: Option<Duration>,
    /// Our clock when the last read completed.
    pub last_check: Duration,
    /// The record failed validation at the last read (kept, never treated as free).
    pub corrupt: bool,
}

/// The host table of one lockspace.
#[derive(Clone, Debug)]
pub struct HostStatusTable {
    timeouts: Timeouts,
    hosts: BTreeMap<u64, HostStatus>,
}

impl HostStatusTable {
    pub fn new(timeouts: Timeouts) -> HostStatusTable {
        HostStatusTable { timeouts, hosts: BTreeMap::new() }
    }

    /// Folds in a read of the whole area that completed at `now` (our clock). Completion time
    /// is the conservative choice: a change we saw landed no later than that.
    pub fn update_from_area(&mut self, area: &LockspaceArea, buf: &[u8], now: Duration) {
        let g = area.geometry;
        let sector = g.sector_bytes();
        for host_id in 1..=g.max_hosts() {
            let at = delta_sector_offset(g, host_id) as usize;
            let Some(bytes) = buf.get(at..at + sector) else { break };
            self.update_one(area, host_id, bytes, now);
        }
    }

    /// Folds in a read of one host's sector that completed at `now`.
    pub fn update_one(&mut self, area: &LockspaceArea, host_id: u64, sector: &[u8], now: Duration) {
        let leader = match verify_sector(area, sector) {
            Ok(l) => l,
            Err(_) => {
                if let Some(hs) = self.hosts.get_mut(&host_id) {
                    hs.corrupt = true;
                    hs.last_check = now;
                }
                return;
            }
        };
        let bitmap = HostBitmap::decode(sector).unwrap_or_default();
        match self.hosts.get_mut(&host_id) {
            None => {
                if leader.timestamp == 0 && leader.owner_generation == 0 {
                    return; // never used
                }
                self.hosts.insert(
                    host_id,
                    HostStatus {
                        owner_id: leader.owner_id,
                        generation: leader.owner_generation,
                        timestamp: leader.timestamp,
                        io_timeout: leader.io_timeout,
                        host_name: leader.resource_name,
                        bitmap,
                        first_check: now,
                        last_live: None,
                        last_check: now,
                        corrupt: false,
                    },
                );
            }
            Some(hs) => {
                let changed = (hs.owner_id, hs.generation, hs.timestamp)
                    != (leader.owner_id, leader.owner_generation, leader.timestamp);
                if changed {
                    hs.last_live = Some(now);
                }
                hs.owner_id = leader.owner_id;
                hs.generation = leader.owner_generation;
                hs.timestamp = leader.timestamp;
                hs.io_timeout = leader.io_timeout;
                hs.host_name = leader.resource_name;
                hs.bitmap = bitmap;
                hs.last_check = now;
                hs.corrupt = false;
            }
        }
    }

    pub fn get(&self, host_id: u64) -> Option<&HostStatus> {
        self.hosts.get(&host_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&u64, &HostStatus)> {
        self.hosts.iter()
    }

    /// The state of `host_id` at `now`, using that host's own io_timeout and the global W.
    pub fn state(&self, host_id: u64, now: Duration) -> HostState {
        let Some(hs) = self.hosts.get(&host_id) else { return HostState::Free };
        if hs.timestamp == 0 && !hs.corrupt {
            return HostState::Free;
        }
        let t = self.timeouts.for_peer(hs.io_timeout);
        let since = now.saturating_sub(hs.last_live.unwrap_or(hs.first_check));
        if since >= t.host_dead() {
            HostState::Dead
        } else if hs.last_live.is_none() && since < t.renewal_fail() {
            HostState::Unknown
        } else if since < t.renewal_fail() {
            HostState::Live
        } else {
            HostState::Fail
        }
    }

    /// Whether a shared holder with `generation` may be treated as gone: its host_id is free,
    /// has a newer generation, or our reads saw it silent for host_dead. Anything else,
    /// including "unknown" and a corrupt record, counts as alive.
    ///
    /// Silence counts only up to our last read (`last_check`), never up to `now`: a table is
    /// often a snapshot (an acquire may hold one for longer than host_dead), and a host that
    /// renewed after our last read is alive however old the snapshot is.
    pub fn holder_dead(&self, host_id: u64, generation: u64, now: Duration) -> bool {
        let Some(hs) = self.hosts.get(&host_id) else { return false };
        // A generation newer than our last read: an incarnation we have never watched.
        if hs.corrupt || hs.generation < generation {
            return false;
        }
        if hs.timestamp == 0 || hs.generation > generation {
            return true;
        }
        self.state(host_id, now.min(hs.last_check)) == HostState::Dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ondisk::{Geometry, LeaderRecord, LeaseKind, LEADER_RECORD_LEN};

    fn sector(area: &LockspaceArea, ts: u64, gen: u64) -> Vec<u8> {
        let mut l = LeaderRecord::new(LeaseKind::Delta, area.geometry, area.name, Name::new("h2").unwrap());
        l.owner_id = 2;
        l.owner_generation = gen;
        l.timestamp = ts;
        l.io_timeout = 1;
        let mut s = vec![0u8; 512];
        l.encode(&mut s[..LEADER_RECORD_LEN]);
        s
    }

    #[test]
    fn states_follow_changes_on_our_clock_only() {
        let area = LockspaceArea { name: Name::new("ls").unwrap(), offset: 0, geometry: Geometry::DEFAULT_512 };
        let t = Timeouts::new(1, 10).unwrap(); // 8N = 8 s, host_dead = 18 s
        let mut hst = HostStatusTable::new(t);
        let s = |x: u64| Duration::from_secs(x);
        // The peer's timestamp (999_999) is never compared with our clock.
        hst.update_one(&area, 2, &sector(&area, 999_999, 1), s(100));
        assert_eq!(hst.state(2, s(101)), HostState::Unknown);
        hst.update_one(&area, 2, &sector(&area, 1_000_001, 1), s(102));
        assert_eq!(hst.state(2, s(103)), HostState::Live);
        assert_eq!(hst.state(2, s(110)), HostState::Fail, "silent for 8N");
        assert!(!hst.holder_dead(2, 1, s(119)));
        assert_eq!(hst.state(2, s(120)), HostState::Dead, "silent for 8N+W");
        // A stale table (last read at 102) cannot tell whether it renewed since.
        assert!(!hst.holder_dead(2, 1, s(120)), "silence is only what our reads saw");
        hst.update_one(&area, 2, &sector(&area, 1_000_001, 1), s(119));
        assert!(!hst.holder_dead(2, 1, s(125)));
        // Unchanged rereads do not make it live again.
        hst.update_one(&area, 2, &sector(&area, 1_000_001, 1), s(121));
        assert_eq!(hst.state(2, s(121)), HostState::Dead);
        assert!(hst.holder_dead(2, 1, s(121)));
        // Never seen changing: dead only after host_dead from the first check.
        let mut fresh = HostStatusTable::new(t);
        fresh.update_one(&area, 2, &sector(&area, 5, 1), s(0));
        assert_eq!(fresh.state(2, s(17)), HostState::Fail);
        assert_eq!(fresh.state(2, s(18)), HostState::Dead);
        // A newer generation or a release frees an older shared holder at once.
        fresh.update_one(&area, 2, &sector(&area, 6, 2), s(19));
        assert!(fresh.holder_dead(2, 1, s(19)));
        assert!(!fresh.holder_dead(2, 2, s(19)));
        // A holder newer than anything we read is not judged by its predecessor's silence.
        fresh.update_one(&area, 2, &sector(&area, 6, 2), s(60));
        assert!(fresh.holder_dead(2, 2, s(60)));
        assert!(!fresh.holder_dead(2, 3, s(60)), "generation 3 was never seen");
    }

    #[test]
    fn corrupt_record_is_never_free_or_dead() {
        let area = LockspaceArea { name: Name::new("ls").unwrap(), offset: 0, geometry: Geometry::DEFAULT_512 };
        let t = Timeouts::new(1, 10).unwrap();
        let mut hst = HostStatusTable::new(t);
        hst.update_one(&area, 2, &sector(&area, 0, 1), Duration::ZERO);
        let mut bad = sector(&area, 0, 1);
        bad[30] ^= 1;
        hst.update_one(&area, 2, &bad, Duration::from_secs(1));
        assert_ne!(hst.state(2, Duration::from_secs(1)), HostState::Free);
        assert!(!hst.holder_dead(2, 1, Duration::from_secs(1000)));
    }
}
