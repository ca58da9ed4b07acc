//! The simulated shared disk: one byte array, I/Os with random latency, reordering, and faults.
//!
//! Each I/O is planned when issued. A read copies the medium at its *service* instant, a write
//! lands at its service instant; both lie between issue and completion. A timed-out write may
//! land up to `late_write_max` after its timeout, or never; a timed-out multi-sector write may
//! land torn. Writes in flight when their host is reset keep their landing time (or are lost).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::trace::{Ev, Holder, Plan, RecSum, ADMIN};
use super::world::{Event, World, WorldRef};
use super::SimConfig;
use crate::diskio::{AlignedBuf, Disk, IoError};

const US: Duration = Duration::from_micros(1);

/// One sector's decoded summary, or the leader's for a read of a whole resource area.
fn summary(s: usize, area_bytes: u64, offset: u64, data: &[u8]) -> Option<RecSum> {
    if data.len() == s || (offset >= area_bytes && offset.is_multiple_of(area_bytes) && data.len() >= s) {
        Some(RecSum::of(offset, &data[..s], s, area_bytes))
    } else {
        None
    }
}

struct Io {
    by: Holder,
    write: bool,
    offset: u64,
    len: usize,
    /// Write: the data. Read: the snapshot, once serviced.
    data: Option<AlignedBuf>,
    /// Torn write: which sectors land.
    land: Option<Vec<bool>>,
    service_pending: bool,
    completed: bool,
    err: Option<IoError>,
    /// Landing after this instant is a late landing of a timed-out write.
    deadline: Duration,
}

/// A write of one lockd process that may still change the medium until `settle_at`.
struct Unsettled {
    by: Holder,
    offset: u64,
    len: usize,
    settle_at: Duration,
}

/// The device's contents.
pub struct Medium {
    pub bytes: Vec<u8>,
    sector: usize,
    area: usize,
    /// Per area, its layout since the last landing in its runs (`None`: to be found again).
    runs: Vec<Option<Runs>>,
}

/// An area as a changing head and, up to its end, runs of identical sectors: the records init
/// wrote for host slots nobody uses, and unused space. A read of a whole area copies the head
/// and repeats one sector per run: the same bytes as copying the whole 1 MiB area for every
/// renewal, in a fraction of the time. A landing past the head forgets the layout.
struct Runs {
    /// Bytes from the area's start that are copied as they are.
    head: usize,
    /// (from, to) relative to the area: every sector there equals the one at `from`.
    runs: Vec<(usize, usize)>,
}

/// Shorter runs of identical sectors are part of the head.
const RUN_MIN_SECTORS: usize = 8;

pub struct DiskState {
    pub medium: Medium,
    /// The device's atomic unit: a one-sector write never tears.
    pub sector: usize,
    pub area_bytes: u64,
    ios: BTreeMap<u64, Io>,
    done: BTreeMap<u64, Result<Option<AlignedBuf>, IoError>>,
    wakers: BTreeMap<u64, Waker>,
    next_id: u64,
    /// Timed-out writes not yet settled (landed, or known lost), for `ordered_writes`.
    unsettled: Vec<Unsettled>,
}

/// Reads at least this long use the runs of their area (smaller ones just copy).
const RUN_READ_MIN: usize = 64 << 10;

impl DiskState {
    pub fn new(cfg: &SimConfig) -> DiskState {
        let area_bytes = super::AREA_BYTES;
        DiskState {
            medium: Medium {
                bytes: vec![0; area_bytes as usize * (1 + cfg.resources)],
                sector: cfg.sector.bytes(),
                area: area_bytes as usize,
                runs: (0..=cfg.resources).map(|_| None).collect(),
            },
            sector: cfg.sector.bytes(),
            area_bytes,
            ios: BTreeMap::new(),
            done: BTreeMap::new(),
            wakers: BTreeMap::new(),
            next_id: 0,
            unsettled: Vec::new(),
        }
    }

    /// I/Os of `by` whose write may still land or whose completion is pending.
    pub fn in_flight(&self, by: Holder) -> usize {
        self.ios.values().filter(|io| io.by == by).count()
    }

    fn summary(&self, offset: u64, data: &[u8]) -> Option<RecSum> {
        summary(self.sector, self.area_bytes, offset, data)
    }
}

impl Medium {
    /// Puts `data` on the medium at `at`.
    fn land(&mut self, at: usize, data: &[u8]) {
        let area = self.area;
        let end = at + data.len();
        self.bytes[at..end].copy_from_slice(data);
        for a in at / area..=(end - 1) / area {
            if self.runs[a].as_ref().is_some_and(|r| a * area + r.head < end) {
                self.runs[a] = None;
            }
        }
    }

    /// Splits area `a` into its changing head and runs of identical sectors up to its end.
    fn find_runs(&self, a: usize) -> Runs {
        let (s, base) = (self.sector, a * self.area);
        let sector = |i: usize| &self.bytes[base + i - s..base + i];
        let mut runs = Vec::new();
        let mut head = self.area;
        while head >= s {
            let mut from = head - s;
            while from >= s && sector(from) == sector(head) {
                from -= s;
            }
            if head - from < RUN_MIN_SECTORS * s {
                break;
            }
            runs.push((from, head));
            head = from;
        }
        runs.reverse();
        Runs { head, runs }
    }

    /// The medium's bytes `at..at + len`, as one read sees them.
    fn snapshot(&mut self, at: usize, len: usize) -> AlignedBuf {
        let area = self.area;
        let a = at / area;
        let s = self.sector;
        if len < RUN_READ_MIN || (at + len - 1) / area != a || !at.is_multiple_of(s) || !len.is_multiple_of(s) {
            return AlignedBuf::from_slice(&self.bytes[at..at + len]);
        }
        if self.runs[a].is_none() {
            self.runs[a] = Some(self.find_runs(a));
        }
        let r = self.runs[a].as_ref().expect("just found");
        let base = a * area;
        let end = at + len;
        let mut buf = AlignedBuf::for_read(len);
        let dst = buf.as_mut_ptr();
        let copied = (base + r.head).clamp(at, end) - at;
        // SAFETY: `buf` is valid for `len` bytes and does not overlap the medium. The head
        // copy and the runs clipped to `at..end` cover `0..len` exactly once (runs are
        // contiguous from the head to the area's end, and sector aligned like `at` and `len`),
        // so every byte is initialised; each run is filled by doubling what it already holds.
        unsafe {
            std::ptr::copy_nonoverlapping(self.bytes.as_ptr().add(at), dst, copied);
            for &(from, to) in &r.runs {
                let (lo, hi) = ((base + from).max(at), (base + to).min(end));
                if lo >= hi {
                    continue;
                }
                let out = dst.add(lo - at);
                std::ptr::copy_nonoverlapping(self.bytes.as_ptr().add(base + from), out, s);
                let mut done = s;
                while done < hi - lo {
                    let n = done.min(hi - lo - done);
                    std::ptr::copy_nonoverlapping(out, out.add(done), n);
                    done += n;
                }
            }
        }
        debug_assert!(buf[..] == self.bytes[at..at + len]);
        buf
    }
}

impl World {
    fn io_latency(&mut self, timeout: Duration) -> Duration {
        let f = &self.cfg.disk;
        let max = timeout.saturating_sub(US).max(US);
        if self.rng.chance(f.slow) {
            self.rng.between(US, max)
        } else {
            let fast = f.fast_max.min(max);
            self.rng.between((20 * US).min(fast), fast)
        }
    }

    /// With `ordered_writes`: the moment every earlier unsettled write of `by` overlapping
    /// this range has settled (landed or been reported lost by the device).
    fn write_barrier(&mut self, by: Holder, offset: u64, len: usize) -> Option<Duration> {
        let now = self.now;
        self.disk.unsettled.retain(|u| u.settle_at > now);
        self.disk
            .unsettled
            .iter()
            .filter(|u| u.by == by && u.offset < offset + len as u64 && offset < u.offset + u.len as u64)
            .map(|u| u.settle_at)
            .max()
    }

    pub fn io_issue(
        &mut self,
        by: Holder,
        write: bool,
        offset: u64,
        len: usize,
        data: Option<AlignedBuf>,
        timeout: Duration,
    ) -> u64 {
        self.stats.ios += 1;
        let id = self.disk.next_id;
        self.disk.next_id += 1;
        let now = self.now;
        let deadline = now + timeout;
        let size = self.disk.medium.bytes.len() as u64;
        let f = self.cfg.disk.clone();
        // By default a timed-out write lands at most one more of its own timeouts late.
        let late_max = f.late_write_max.unwrap_or(timeout);
        let mut io = Io {
            by,
            write,
            offset,
            len,
            data,
            land: None,
            service_pending: false,
            completed: false,
            err: None,
            deadline,
        };
        let valid = offset.is_multiple_of(512) && len.is_multiple_of(512) && len > 0 && offset + len as u64 <= size;
        // The backend submits a write only after the same process's earlier overlapping writes
        // have settled, so one process's writes to a sector land in issue order.
        let start = match (valid && write && f.ordered_writes).then(|| self.write_barrier(by, offset, len)).flatten() {
            Some(b) => b.max(now),
            None => now,
        };
        let budget = deadline.saturating_sub(start);
        let mut settle_at = None;
        let (plan, complete_at, service_at) = if !offset.is_multiple_of(512) || !len.is_multiple_of(512) || len == 0 {
            io.err = Some(IoError::Unaligned { offset, len, sector: 512 });
            (Plan::Invalid, now + US, None)
        } else if offset + len as u64 > size {
            io.err = Some(IoError::Short { expected: len, got: size.saturating_sub(offset) as usize });
            (Plan::Invalid, now + US, None)
        } else if budget < 2 * US {
            // Still queued behind an unsettled write when the caller gives up: never submitted.
            io.err = Some(IoError::TimedOut);
            (Plan::HeldBack, deadline, None)
        } else {
            let r = self.rng.unit();
            let p_timeout = if by == ADMIN && len > self.disk.sector { f.init_timeout } else { f.timeout };
            if r < f.eio {
                io.err = Some(IoError::Os(libc::EIO));
                let l = self.io_latency(budget);
                (Plan::Eio, start + l, None)
            } else if r < f.eio + p_timeout {
                io.err = Some(IoError::TimedOut);
                if !write {
                    (Plan::TimedOut, deadline, None)
                } else if self.rng.chance(f.lost_write) {
                    settle_at = Some(self.rng.between(deadline, deadline + late_max));
                    (Plan::Lost, deadline, None)
                } else {
                    // Often after the timeout: the case a caller must not mistake for "not written".
                    let land = if self.rng.chance(0.5) {
                        self.rng.between(start, deadline)
                    } else {
                        self.rng.between(deadline, deadline + late_max)
                    };
                    settle_at = Some(land);
                    let sectors = len / self.disk.sector;
                    if sectors > 1 && self.rng.chance(f.tear) {
                        io.land = Some((0..sectors).map(|_| self.rng.chance(0.5)).collect());
                        (Plan::Torn, deadline, Some(land))
                    } else {
                        (Plan::TimedOut, deadline, Some(land))
                    }
                }
            } else {
                let l = self.io_latency(budget);
                let service = self.rng.between(start, start + l - Duration::from_nanos(1));
                (Plan::Ok, start + l, Some(service))
            }
        };
        if plan != Plan::Ok && plan != Plan::Invalid {
            self.stats.io_errors += 1;
        }
        if let (true, Some(settle_at)) = (write, settle_at) {
            self.disk.unsettled.push(Unsettled { by, offset, len, settle_at });
        }
        let rec = if write { io.data.as_ref().and_then(|d| self.disk.summary(offset, d)) } else { None };
        self.log(Ev::IoIssue { io: id, by, write, offset, len, plan, rec });
        io.service_pending = service_at.is_some();
        self.disk.ios.insert(id, io);
        if let Some(s) = service_at {
            self.schedule(s, Event::IoService(id));
        }
        self.schedule(complete_at, Event::IoComplete(id));
        id
    }

    pub fn io_service(&mut self, id: u64) {
        let now = self.now;
        let Some(io) = self.disk.ios.get_mut(&id) else { return };
        if !io.service_pending {
            return;
        }
        io.service_pending = false;
        let (by, offset, len, write) = (io.by, io.offset, io.len, io.write);
        let at = offset as usize;
        let ev = if write {
            let data = io.data.as_ref().expect("write data");
            let s = self.disk.sector;
            match &io.land {
                None => self.disk.medium.land(at, data),
                Some(mask) => {
                    for (i, lands) in mask.iter().enumerate() {
                        if *lands {
                            self.disk.medium.land(at + i * s, &data[i * s..(i + 1) * s]);
                        }
                    }
                }
            }
            let late = now > io.deadline;
            let torn = io.land.is_some();
            Ev::IoLand { io: id, by, offset, len, torn, late }
        } else {
            let snap = self.disk.medium.snapshot(at, len);
            let rec = summary(self.disk.sector, self.disk.area_bytes, offset, &snap);
            io.data = Some(snap);
            Ev::IoRead { io: id, by, offset, len, rec }
        };
        if let Ev::IoLand { late, torn, .. } = ev {
            self.stats.late_writes += late as u64;
            self.stats.torn_writes += torn as u64;
        }
        if self.disk.ios[&id].completed {
            self.disk.ios.remove(&id);
        }
        self.log(ev);
    }

    pub fn io_complete(&mut self, id: u64) {
        let Some(io) = self.disk.ios.get_mut(&id) else { return };
        io.completed = true;
        let result = match io.err.clone() {
            Some(e) => Err(e),
            None if io.write => Ok(None),
            None => Ok(Some(io.data.take().expect("a read is serviced before it completes"))),
        };
        let (by, write) = (io.by, io.write);
        if !io.service_pending {
            self.disk.ios.remove(&id);
        }
        if result == Err(IoError::TimedOut) {
            self.stats.io_timeouts += 1;
        }
        self.log(Ev::IoDone { io: id, by, write, err: result.as_ref().err().map(|e| e.to_string()) });
        // The host stalls just as its write completes: between an acquire's write and its
        // re-read, or a renewal's write and the expiry it reports. (No draw when off, so
        // other scenarios keep their runs.)
        let p = self.cfg.host.stall_after_write;
        if write && by.host < self.hosts.len() && p > 0.0 && self.rng.chance(p) {
            let d = self.long_stall_for(by.host);
            self.stall(by.host, d);
        }
        self.disk.done.insert(id, result);
        if let Some(w) = self.disk.wakers.remove(&id) {
            w.wake();
        }
    }

    /// The host was reset: of its writes still in flight some are lost, multi-sector ones may
    /// tear; the rest land as planned.
    pub fn io_host_reset(&mut self, host: usize) {
        let drop_p = self.cfg.disk.drop_on_reset;
        let s = self.disk.sector;
        let ids: Vec<u64> = self
            .disk
            .ios
            .iter()
            .filter(|(_, io)| io.by.host == host && io.write && io.service_pending)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let lose = self.rng.chance(drop_p);
            let n = self.disk.ios[&id].len / s;
            let mask: Option<Vec<bool>> =
                if n > 1 && self.rng.chance(0.5) { Some((0..n).map(|_| self.rng.chance(0.5)).collect()) } else { None };
            let io = self.disk.ios.get_mut(&id).unwrap();
            if lose {
                io.service_pending = false;
            } else if io.land.is_none() {
                io.land = mask;
            }
        }
    }
}

/// One I/O, issued at its first poll.
pub struct IoFuture {
    world: WorldRef,
    by: Holder,
    req: Option<(bool, u64, usize, Option<AlignedBuf>, Duration)>,
    id: Option<u64>,
    finished: bool,
}

impl Future for IoFuture {
    type Output = Result<Option<AlignedBuf>, IoError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut w = this.world.borrow_mut();
        let id = match this.id {
            Some(id) => id,
            None => {
                let (write, offset, len, data, timeout) = this.req.take().expect("polled after completion");
                let id = w.io_issue(this.by, write, offset, len, data, timeout);
                this.id = Some(id);
                id
            }
        };
        if let Some(r) = w.disk.done.remove(&id) {
            this.finished = true;
            return Poll::Ready(r);
        }
        w.disk.wakers.insert(id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for IoFuture {
    fn drop(&mut self) {
        // The I/O itself goes on (its task was killed); only our claim on the result ends.
        if let (Some(id), false) = (self.id, self.finished) {
            if let Ok(mut w) = self.world.try_borrow_mut() {
                w.disk.done.remove(&id);
                w.disk.wakers.remove(&id);
            }
        }
    }
}

/// One host incarnation's handle on the shared disk.
#[derive(Clone)]
pub struct SimDisk {
    pub world: WorldRef,
    pub by: Holder,
}

impl SimDisk {
    fn io(&self, write: bool, offset: u64, len: usize, data: Option<AlignedBuf>, timeout: Duration) -> IoFuture {
        IoFuture {
            world: self.world.clone(),
            by: self.by,
            req: Some((write, offset, len, data, timeout)),
            id: None,
            finished: false,
        }
    }
}

impl Disk for SimDisk {
    fn logical_sector_size(&self) -> Option<u32> {
        None
    }
    fn read(&self, offset: u64, len: usize, timeout: Duration) -> impl Future<Output = Result<AlignedBuf, IoError>> {
        let f = self.io(false, offset, len, None, timeout);
        async move { f.await.map(|b| b.expect("a successful read carries data")) }
    }
    fn write(&self, offset: u64, data: AlignedBuf, timeout: Duration) -> impl Future<Output = Result<(), IoError>> {
        let f = self.io(true, offset, data.len(), Some(data), timeout);
        async move { f.await.map(|_| ()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads through the runs return exactly the medium's bytes, however landings change it.
    #[test]
    fn snapshots_equal_the_medium() {
        for s in [512, 4096] {
            let area = 1 << 20;
            let mut m = Medium { bytes: vec![0; 3 * area], sector: s, area, runs: vec![None, None, None] };
            let mut rng = super::super::rng::Rng::new(s as u64);
            let record: Vec<u8> = (0..s).map(|i| (i * 7 % 251) as u8).collect();
            // Like init: one record per slot over most of area 0, the rest zero.
            let mut init = vec![0u8; area];
            for slot in init.chunks_mut(s).take(area / s - 48) {
                slot.copy_from_slice(&record);
            }
            m.land(0, &init);
            for step in 0..400 {
                let a = rng.below(3) as usize;
                let sector = if rng.chance(0.8) { rng.below(20) } else { rng.below((area / s) as u64) } as usize;
                let fill = vec![step as u8; s * (1 + rng.below(3) as usize)];
                let at = (a * area + sector * s).min((a + 1) * area - fill.len());
                m.land(at, &fill);
                let (ra, rlen) = (rng.below(3) as usize, if rng.chance(0.5) { area } else { RUN_READ_MIN + s });
                let rat = ra * area + if rlen == area { 0 } else { s * rng.below(((area - rlen) / s) as u64) as usize };
                let snap = m.snapshot(rat, rlen);
                assert!(snap[..] == m.bytes[rat..rat + rlen], "sector {s} step {step}");
            }
        }
    }
}
