//! Every delta-lease rule, each with a test that fails if the rule is broken.

mod common;

use std::time::Duration;

use common::*;
use lease::clock::Clock;
use lease::delta_lease::{self, AcquirePath, DeltaLease, ProtocolFaults};
use lease::diskio::{block_on, IoError};
use lease::ondisk::{BootStamp, HostBitmap, LeaderRecord, LeaseKind, Name, LEADER_RECORD_LEN};
use lease::testkit::MemDisk;
use lease::LeaseError;

fn setup() -> (MemDisk, HookClock) {
    let disk = MemDisk::new(4 * MIB as usize);
    block_on(delta_lease::init(&disk, &lockspace(), timeouts())).unwrap();
    (disk, HookClock::new())
}

fn acquire(
    disk: &MemDisk,
    clock: &HookClock,
    id: u64,
    name: &str,
    boot_n: u8,
) -> Result<(DeltaLease, AcquirePath), LeaseError> {
    block_on(delta_lease::acquire(
        disk,
        clock,
        &lockspace(),
        &host(id, name, boot_n),
        timeouts(),
        ProtocolFaults::default(),
    ))
}

fn record(disk: &MemDisk, id: u64) -> LeaderRecord {
    LeaderRecord::decode(&disk.snapshot((id - 1) * 512, 512)).unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn init_writes_first_magic_last() {
    // The area becomes valid in one step: the last write is the first sector, with its magic.
    let disk = MemDisk::new(2 * MIB as usize);
    block_on(delta_lease::init(&disk, &lockspace(), timeouts())).unwrap();
    assert_eq!(disk.writes.get(), 2);
    let ls = Name::new("ls").unwrap();
    for id in [1, 2, 2000] {
        let l =
            LeaderRecord::verify(&disk.snapshot((id - 1) * 512, 512), LeaseKind::Delta, Some(512), &ls, None).unwrap();
        assert_eq!((l.timestamp, l.io_timeout, l.max_hosts), (0, 1, 1));
    }
}

#[test]
fn free_record_is_taken_after_write_wait_2n_reread() {
    let (disk, clock) = setup();
    let (lease, path) = acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    assert_eq!(path, AcquirePath::Free);
    assert_eq!(clock.slept(), secs(2), "always wait 2N after writing");
    assert_eq!(lease.generation, 1);
    let r = record(&disk, 3);
    assert_eq!((r.owner_id, r.owner_generation, r.resource_name), (3, 1, Name::new("hostA").unwrap()));
    assert_ne!(r.timestamp, 0);
    assert_eq!(BootStamp::decode(&disk.snapshot(2 * 512, 512)), Some(boot(1)));
    // read, write, re-read
    assert_eq!((disk.reads.get(), disk.writes.get() - 2), (2, 1));
}

#[test]
fn record_changed_during_2n_wait_is_busy() {
    // A twin with the same host_id renews during our wait: we must lose, not both win.
    let (disk, clock) = setup();
    let d2 = disk.clone();
    clock.on_sleep(move |_| {
        let mut twin = LeaderRecord::decode(&d2.snapshot(2 * 512, 512)).unwrap();
        twin.resource_name = Name::new("twin").unwrap();
        twin.timestamp += 1;
        let mut s = vec![0u8; 512];
        twin.encode(&mut s[..LEADER_RECORD_LEN]);
        d2.poke(2 * 512, &s);
    });
    assert!(matches!(acquire(&disk, &clock, 3, "hostA", 1), Err(LeaseError::HostIdBusy { .. })));
}

#[test]
fn record_of_another_name_waits_host_dead_then_takes_it() {
    let (disk, clock) = setup();
    let (a, _) = acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    let before = clock.slept();
    let (b, path) = acquire(&disk, &clock, 3, "hostB", 2).unwrap();
    assert_eq!(path, AcquirePath::WaitedForOwner);
    assert_eq!(clock.slept() - before, secs(18 + 2), "8N+W unchanged, then the 2N write check");
    assert_eq!(b.generation, a.generation + 1, "a new generation voids hostA's paxos leases");
}

#[test]
fn record_of_another_name_that_renews_is_busy() {
    let (disk, clock) = setup();
    acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    let d2 = disk.clone();
    clock.on_sleep(move |_| {
        let mut r = LeaderRecord::decode(&d2.snapshot(2 * 512, 512)).unwrap();
        r.timestamp += 20;
        let mut s = vec![0u8; 512];
        r.encode(&mut s[..LEADER_RECORD_LEN]);
        d2.poke(2 * 512, &s);
    });
    let w = disk.writes.get();
    assert!(matches!(acquire(&disk, &clock, 3, "hostB", 2), Err(LeaseError::HostIdBusy { .. })));
    assert_eq!(disk.writes.get(), w, "a live owner's record is never overwritten");
}

#[test]
fn reboot_with_our_name_rejoins_in_2n() {
    let (disk, clock) = setup();
    acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    let before = clock.slept();
    let (l, path) = acquire(&disk, &clock, 3, "hostA", 2).unwrap();
    assert_eq!(path, AcquirePath::Rejoin);
    assert_eq!(clock.slept() - before, secs(2), "earlier boot: no 8N+W wait");
    assert_eq!(l.generation, 2);
}

#[test]
fn same_boot_restart_waits_host_dead() {
    // Same name, same boot: a crashed daemon of this boot may have leases still in use here.
    let (disk, clock) = setup();
    acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    let before = clock.slept();
    let (_, path) = acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    assert_eq!(path, AcquirePath::WaitedForOwner);
    assert_eq!(clock.slept() - before, secs(20));
}

#[test]
fn our_name_without_boot_stamp_waits_host_dead() {
    // A record written by sanlock (no stamp) proves nothing about which boot wrote it.
    let (disk, clock) = setup();
    acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    let mut s = disk.snapshot(2 * 512, 512);
    s[200..256].fill(0);
    disk.poke(2 * 512, &s);
    let before = clock.slept();
    let (_, path) = acquire(&disk, &clock, 3, "hostA", 2).unwrap();
    assert_eq!(path, AcquirePath::WaitedForOwner);
    assert_eq!(clock.slept() - before, secs(20));
}

#[test]
fn corrupt_record_is_an_error_and_nothing_is_written() {
    let (disk, clock) = setup();
    let mut s = disk.snapshot(2 * 512, 512);
    s[60] ^= 0x40;
    disk.poke(2 * 512, &s);
    let w = disk.writes.get();
    let e = acquire(&disk, &clock, 3, "hostA", 1).unwrap_err();
    assert!(matches!(e, LeaseError::Record(_)), "{e:?}");
    assert_eq!(disk.writes.get(), w);
}

#[test]
fn host_id_outside_geometry_is_rejected() {
    let (disk, clock) = setup();
    let w = disk.writes.get();
    assert!(matches!(acquire(&disk, &clock, 0, "h", 1), Err(LeaseError::Invalid(_))));
    assert!(matches!(acquire(&disk, &clock, 2001, "h", 1), Err(LeaseError::Invalid(_))));
    assert_eq!(disk.writes.get(), w);
}

/// A disk whose reads take `delay` of the clock's time.
struct SlowReads {
    disk: MemDisk,
    clock: HookClock,
    delay: Duration,
}

impl lease::diskio::Disk for SlowReads {
    fn logical_sector_size(&self) -> Option<u32> {
        None
    }
    fn read(
        &self,
        o: u64,
        l: usize,
        t: Duration,
    ) -> impl std::future::Future<Output = Result<lease::diskio::AlignedBuf, IoError>> {
        self.clock.inner.advance(self.delay);
        self.disk.read(o, l, t)
    }
    fn write(
        &self,
        o: u64,
        d: lease::diskio::AlignedBuf,
        t: Duration,
    ) -> impl std::future::Future<Output = Result<(), IoError>> {
        self.disk.write(o, d, t)
    }
}

#[test]
fn stale_read_is_never_written_over() {
    // A read older than N when the write would be issued may hide another host's takeover.
    let (disk, clock) = setup();
    let slow = SlowReads { disk: disk.clone(), clock: clock.clone(), delay: secs(2) };
    let w = disk.writes.get();
    let r = block_on(delta_lease::acquire(
        &slow,
        &clock,
        &lockspace(),
        &host(3, "a", 1),
        timeouts(),
        ProtocolFaults::default(),
    ));
    assert!(r.is_err());
    assert_eq!(disk.writes.get(), w);
    let fast = SlowReads { disk: disk.clone(), clock: clock.clone(), delay: Duration::from_millis(500) };
    assert!(block_on(delta_lease::acquire(
        &fast,
        &clock,
        &lockspace(),
        &host(3, "a", 1),
        timeouts(),
        ProtocolFaults::default()
    ))
    .is_ok());
}

#[test]
fn renew_checks_ownership_and_writes_bitmap() {
    let (disk, clock) = setup();
    let (mut l, _) = acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    let t0 = record(&disk, 3).timestamp;
    clock.inner.advance(secs(2));
    let mut bm = HostBitmap::default();
    bm.set(7);
    let area = block_on(delta_lease::renew(&disk, &clock, &mut l, &bm, timeouts())).unwrap();
    assert_eq!(area.len() as u64, MIB, "one read of the whole area");
    assert!(record(&disk, 3).timestamp > t0);
    assert!(HostBitmap::decode(&disk.snapshot(2 * 512, 512)).unwrap().is_set(7));

    // Someone else wrote our sector: renew must fail, not overwrite.
    let mut other = record(&disk, 3);
    other.owner_generation += 1;
    other.resource_name = Name::new("thief").unwrap();
    let mut s = vec![0u8; 512];
    other.encode(&mut s[..LEADER_RECORD_LEN]);
    disk.poke(2 * 512, &s);
    let w = disk.writes.get();
    assert_eq!(
        block_on(delta_lease::renew(&disk, &clock, &mut l, &bm, timeouts())).unwrap_err(),
        LeaseError::RenewOwner
    );
    // Same owner fields but different bytes: RenewDiff.
    let mut same = l.leader();
    same.timestamp += 1000;
    same.encode(&mut s[..LEADER_RECORD_LEN]);
    disk.poke(2 * 512, &s);
    assert_eq!(
        block_on(delta_lease::renew(&disk, &clock, &mut l, &bm, timeouts())).unwrap_err(),
        LeaseError::RenewDiff
    );
    assert_eq!(disk.writes.get(), w);
}

#[test]
fn timed_out_renewal_is_maybe_written() {
    let (disk, clock) = setup();
    let (mut l, _) = acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    clock.inner.advance(secs(2));
    // The write "times out" but lands anyway.
    struct LandsButTimesOut(MemDisk);
    impl lease::diskio::Disk for LandsButTimesOut {
        fn logical_sector_size(&self) -> Option<u32> {
            None
        }
        fn read(
            &self,
            o: u64,
            l: usize,
            t: Duration,
        ) -> impl std::future::Future<Output = Result<lease::diskio::AlignedBuf, IoError>> {
            self.0.read(o, l, t)
        }
        fn write(
            &self,
            o: u64,
            d: lease::diskio::AlignedBuf,
            _t: Duration,
        ) -> impl std::future::Future<Output = Result<(), IoError>> {
            self.0.poke(o, &d);
            std::future::ready(Err(IoError::TimedOut))
        }
    }
    let e = block_on(delta_lease::renew(
        &LandsButTimesOut(disk.clone()),
        &clock,
        &mut l,
        &HostBitmap::default(),
        timeouts(),
    ))
    .unwrap_err();
    assert!(e.maybe_written());
    clock.inner.advance(secs(2));
    // The next renewal finds our maybe-written record and accepts it as ours.
    block_on(delta_lease::renew(&disk, &clock, &mut l, &HostBitmap::default(), timeouts())).unwrap();
}

#[test]
fn release_writes_timestamp_zero_same_generation() {
    let (disk, clock) = setup();
    let (l, _) = acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    block_on(delta_lease::release(&disk, &l, timeouts())).unwrap();
    let r = record(&disk, 3);
    assert_eq!((r.timestamp, r.owner_generation, r.owner_id), (0, 1, 3));
    // Free again: the next acquire does not wait for an owner.
    let before = clock.slept();
    let (_, path) = acquire(&disk, &clock, 3, "hostB", 2).unwrap();
    assert_eq!((path, clock.slept() - before), (AcquirePath::Free, secs(2)));
}

#[test]
fn renewal_that_could_land_after_expiry_is_not_written() {
    let (disk, clock) = setup();
    let (mut l, _) = acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    clock.inner.advance(secs(7) + Duration::from_millis(1)); // 7N + ε after the last success
    let w = disk.writes.get();
    let e = block_on(delta_lease::renew(&disk, &clock, &mut l, &HostBitmap::default(), timeouts())).unwrap_err();
    assert_eq!(e, LeaseError::Expired);
    assert_eq!(disk.writes.get(), w);
}

// A delta acquire counts only if its re-read confirms it within 7N of issuing its write
// (`Timeouts::delta_confirm_limit`). Found by the simulator (seed 3965373, 8 hosts): a host
// wrote its record, stalled 46 s, re-read it unchanged and declared itself owner 8N after its
// write, while a peer that had watched the record for 8N+W took the host_id too.

/// N = 1 s here: 8N = 8 s, the confirmation limit 7 s.
const STALL_PAST_8N: u64 = 10;

#[test]
fn acquire_confirmed_after_8n_is_written_again() {
    let (disk, clock) = setup();
    let d2 = disk.clone();
    let first_write = std::rc::Rc::new(std::cell::RefCell::new(None));
    let fw = first_write.clone();
    let inner = clock.inner.clone();
    let mut sleeps = 0;
    clock.on_sleep(move |_| {
        sleeps += 1;
        if sleeps == 1 {
            // During the 2N wait: remember what we wrote, then stall past 8N.
            *fw.borrow_mut() = Some(d2.snapshot(2 * 512, 512));
            inner.advance(secs(STALL_PAST_8N));
        }
    });
    let start = clock.inner.now();
    let (lease, path) = acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    let now = clock.inner.now();
    assert_eq!(path, AcquirePath::Free);
    assert!(
        now - lease.last_success <= timeouts().delta_confirm_limit(),
        "owner declared {:?} after the write its wdmd expiry counts from",
        now - lease.last_success
    );
    assert!(lease.last_success > start + secs(STALL_PAST_8N), "the expiry counts from the second write");
    // The stale round's record was replaced: a peer that watched it for 8N+W sees a change.
    assert_ne!(first_write.borrow().as_deref(), Some(&disk.snapshot(2 * 512, 512)[..]));
    assert_eq!(lease.generation, 2);
    assert_eq!(disk.writes.get() - 2, 2, "one write per round");
    assert_eq!(clock.slept(), secs(2 + 2), "the second round waits 2N, not 8N+W");
}

#[test]
fn second_round_after_a_late_confirmation_still_detects_a_twin() {
    let (disk, clock) = setup();
    let d2 = disk.clone();
    let inner = clock.inner.clone();
    let mut sleeps = 0;
    clock.on_sleep(move |_| {
        sleeps += 1;
        if sleeps == 1 {
            inner.advance(secs(STALL_PAST_8N));
        } else {
            // A twin with the same host_id writes during the second round's 2N wait.
            let mut twin = LeaderRecord::decode(&d2.snapshot(2 * 512, 512)).unwrap();
            twin.resource_name = Name::new("twin").unwrap();
            twin.owner_generation += 1;
            let mut s = vec![0u8; 512];
            twin.encode(&mut s[..LEADER_RECORD_LEN]);
            d2.poke(2 * 512, &s);
        }
    });
    assert!(matches!(acquire(&disk, &clock, 3, "hostA", 1), Err(LeaseError::HostIdBusy { .. })));
    assert_eq!(disk.writes.get() - 2, 2, "the late round's record was written again");
}

#[test]
fn record_with_a_longer_io_timeout_is_confirmed_within_our_8n() {
    // The 2N wait follows the record's io_timeout when it is longer than ours: here 2 × 10 s,
    // longer than our whole 8N. That round cannot count; the second waits our own 2N.
    let disk = MemDisk::new(4 * MIB as usize);
    block_on(delta_lease::init(&disk, &lockspace(), lease::timeouts::Timeouts::new(10, 10).unwrap())).unwrap();
    let clock = HookClock::new();
    let (lease, path) = acquire(&disk, &clock, 3, "hostA", 1).unwrap();
    let now = clock.inner.now();
    assert_eq!(path, AcquirePath::Free);
    assert!(now - lease.last_success <= timeouts().delta_confirm_limit(), "{:?}", now - lease.last_success);
    assert_eq!(clock.slept(), secs(20 + 2));
    assert_eq!(record(&disk, 3).io_timeout, 1);
}
