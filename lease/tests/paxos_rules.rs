//! Every paxos-lease rule, each with a test that fails if the rule is broken.

mod common;

use std::time::Duration;

use common::*;
use lease::clock::Clock;
use lease::delta_lease::{self, DeltaLease, ProtocolFaults};
use lease::diskio::block_on;
use lease::host_status::HostStatusTable;
use lease::ondisk::{LeaderRecord, ModeBlock, PaxosDblock, DBLOCK_LEN, LEADER_RECORD_LEN, REQ_FORCE};
use lease::paxos_lease::{self, AcquireOptions, HeldResource, Mode, PaxosCtx, ResourceArea};
use lease::testkit::MemDisk;
use lease::LeaseError;

struct World {
    disk: MemDisk,
    clock: HookClock,
    leases: Vec<DeltaLease>,
}

fn world(hosts: u64) -> World {
    let disk = MemDisk::new(8 * MIB as usize);
    let clock = HookClock::new();
    block_on(delta_lease::init(&disk, &lockspace(), timeouts())).unwrap();
    for i in 0..4 {
        block_on(paxos_lease::init(&disk, &resource(i), 0, false, timeouts())).unwrap();
    }
    let leases = (1..=hosts)
        .map(|id| {
            let me = host(id, &format!("host{id}"), id as u8);
            block_on(delta_lease::acquire(&disk, &clock, &lockspace(), &me, timeouts(), ProtocolFaults::default()))
                .unwrap()
                .0
        })
        .collect();
    World { disk, clock, leases }
}

impl World {
    fn ctx<'a>(&'a self, id: u64, hosts: Option<&'a HostStatusTable>) -> PaxosCtx<'a, MemDisk, HookClock> {
        PaxosCtx {
            disk: &self.disk,
            clock: &self.clock,
            timeouts: timeouts(),
            lockspace: lockspace(),
            host_id: id,
            generation: self.leases[id as usize - 1].generation,
            hosts,
            faults: ProtocolFaults::default(),
        }
    }
    fn acquire(&self, id: u64, r: &ResourceArea, mode: Mode, wait: bool) -> Result<HeldResource, LeaseError> {
        block_on(paxos_lease::acquire(&self.ctx(id, None), r, AcquireOptions { mode, wait_for_owner: wait }))
    }
    fn leader(&self, r: &ResourceArea) -> LeaderRecord {
        LeaderRecord::decode(&self.disk.snapshot(r.offset, 512)).unwrap()
    }
    fn dblock_sector(&self, r: &ResourceArea, id: u64) -> Vec<u8> {
        self.disk.snapshot(r.offset + (1 + id) * 512, 512)
    }
    /// A host table that has watched every record for `watched`.
    fn table_after(&self, watched: Duration) -> HostStatusTable {
        let mut t = HostStatusTable::new(timeouts());
        let area = self.disk.snapshot(0, MIB as usize);
        t.update_from_area(&lockspace(), &area, self.clock.inner.now());
        t.update_from_area(&lockspace(), &area, self.clock.inner.now() + watched);
        self.clock.inner.advance(watched);
        t
    }
}

#[test]
fn free_acquire_is_three_reads_three_writes() {
    let w = world(1);
    let r = resource(0);
    let (r0, w0) = (w.disk.reads.get(), w.disk.writes.get());
    let held = w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    // area read, phase 1 write+read, phase 2 write+read, commit write: the protocol minimum.
    assert_eq!((w.disk.reads.get() - r0, w.disk.writes.get() - w0), (3, 3));
    let l = w.leader(&r);
    assert_eq!((l.owner_id, l.owner_generation, l.lver), (1, 1, 1));
    assert_ne!(l.timestamp, 0);
    assert_eq!(held.lver, 1);
}

#[test]
fn mbal_is_congruent_to_host_id_and_above_all_seen() {
    let w = world(3);
    let r = resource(0);
    let h = w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    block_on(paxos_lease::release(&w.ctx(1, None), &h)).unwrap();
    w.acquire(3, &r, Mode::Exclusive, true).unwrap();
    let d3 = PaxosDblock::decode(&w.dblock_sector(&r, 3)).unwrap();
    assert_eq!(d3.mbal % 2000, 3);
    assert!(d3.mbal > PaxosDblock::decode(&w.dblock_sector(&r, 1)).unwrap().mbal);
}

#[test]
fn held_by_live_owner_fails_at_once_and_is_never_taken() {
    let w = world(2);
    let r = resource(0);
    w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    assert!(matches!(w.acquire(2, &r, Mode::Exclusive, false), Err(LeaseError::OwnedRetry { owner_id: 1, .. })));
    // Waiting: the owner renews while we watch, so it is alive.
    let mut renewals = 0;
    let d = w.disk.clone();
    let c = w.clock.clone();
    let mut lease1 = w.leases[0].clone();
    w.clock.on_sleep(move |_| {
        renewals += 1;
        if renewals % 2 == 0 {
            lease1.last_success = c.inner.now();
            block_on(delta_lease::renew(&d, &c, &mut lease1, &Default::default(), timeouts())).unwrap();
        }
    });
    assert!(matches!(w.acquire(2, &r, Mode::Exclusive, true), Err(LeaseError::IdLive { owner_id: 1, .. })));
    assert_eq!(w.leader(&r).owner_id, 1);
}

#[test]
fn silent_owner_is_taken_only_after_its_host_dead() {
    let w = world(2);
    let r = resource(0);
    w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    let before = w.clock.slept();
    let h = w.acquire(2, &r, Mode::Exclusive, true).unwrap();
    assert!(w.clock.slept() - before >= Duration::from_secs(18), "waited 8N+W of the owner's silence");
    assert_eq!(h.leader.owner_id, 2);
    assert_eq!(h.lver, 2);
}

#[test]
fn owner_seen_silent_by_the_renewal_loop_is_taken_at_once() {
    let w = world(2);
    let r = resource(0);
    w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    let early = w.table_after(Duration::from_secs(10));
    assert!(matches!(
        block_on(paxos_lease::acquire(
            &w.ctx(2, Some(&early)),
            &r,
            AcquireOptions { mode: Mode::Exclusive, wait_for_owner: false }
        )),
        Err(LeaseError::OwnedRetry { .. })
    ));
    let table = w.table_after(Duration::from_secs(18));
    let h = block_on(paxos_lease::acquire(
        &w.ctx(2, Some(&table)),
        &r,
        AcquireOptions { mode: Mode::Exclusive, wait_for_owner: false },
    ))
    .unwrap();
    assert_eq!(h.leader.owner_id, 2);
}

#[test]
fn owner_whose_host_id_was_released_or_reacquired_is_gone() {
    let mut w = world(2);
    let r = resource(0);
    w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    // Host 1 rejoins (new generation): its old paxos leases are void at once.
    let me = host(1, "host1", 9);
    w.leases[0] =
        block_on(delta_lease::acquire(&w.disk, &w.clock, &lockspace(), &me, timeouts(), ProtocolFaults::default()))
            .unwrap()
            .0;
    let before = w.clock.slept();
    w.acquire(2, &r, Mode::Exclusive, false).unwrap();
    assert_eq!(w.clock.slept(), before);
    // Released host_id.
    let r1 = resource(1);
    w.acquire(1, &r1, Mode::Exclusive, true).unwrap();
    block_on(delta_lease::release(&w.disk, &w.leases[0], timeouts())).unwrap();
    w.acquire(2, &r1, Mode::Exclusive, false).unwrap();
}

#[test]
fn our_own_older_generation_is_ours_to_take() {
    let mut w = world(1);
    let r = resource(0);
    w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    let me = host(1, "host1", 9);
    w.leases[0] =
        block_on(delta_lease::acquire(&w.disk, &w.clock, &lockspace(), &me, timeouts(), ProtocolFaults::default()))
            .unwrap()
            .0;
    let before = w.clock.slept();
    let h = w.acquire(1, &r, Mode::Exclusive, false).unwrap();
    assert_eq!((h.leader.owner_generation, w.clock.slept()), (2, before));
}

#[test]
fn corrupt_leader_or_dblock_is_an_error_not_free() {
    let w = world(2);
    let r = resource(0);
    let mut s = w.disk.snapshot(r.offset, 512);
    s[20] ^= 1;
    w.disk.poke(r.offset, &s);
    let wr = w.disk.writes.get();
    assert!(matches!(w.acquire(2, &r, Mode::Exclusive, true), Err(LeaseError::Record(_))));
    assert_eq!(w.disk.writes.get(), wr);

    let r1 = resource(1);
    let mut d = PaxosDblock { mbal: 1, bal: 1, inp: 1, inp2: 1, inp3: 1, lver: 1, ..Default::default() };
    let mut sec = vec![0u8; 512];
    d.encode(&mut sec[..DBLOCK_LEN]);
    sec[3] ^= 1;
    w.disk.poke(r1.offset + 2 * 512, &sec);
    assert!(matches!(w.acquire(2, &r1, Mode::Exclusive, true), Err(LeaseError::Record(_))));

    // Zero but for its checksum: corrupt too, even in the last host's sector.
    let r2 = resource(2);
    let mut sec = vec![0u8; 512];
    sec[48] = 1;
    w.disk.poke(r2.offset + (2 + 1999) * 512, &sec);
    assert!(matches!(w.acquire(2, &r2, Mode::Exclusive, true), Err(LeaseError::Record(_))));
}

#[test]
fn accepted_value_survives_our_retry() {
    // We accepted host 2's value in lver 1 (phase 2 of an earlier ballot) and may have made it
    // chosen. A new ballot for lver 1 must carry it, not replace it with our own.
    let w = world(2);
    let r = resource(0);
    let mut d =
        PaxosDblock { mbal: 1, bal: 1, inp: 2, inp2: w.leases[1].generation, inp3: 77, lver: 1, ..Default::default() };
    let mut sec = vec![0u8; 512];
    d.encode(&mut sec[..DBLOCK_LEN]);
    w.disk.poke(r.offset + 2 * 512, &sec);
    assert_eq!(w.acquire(1, &r, Mode::Exclusive, true).unwrap_err(), LeaseError::Other { owner_id: 2 });
    assert_eq!(w.leader(&r).owner_id, 2);
}

/// Before every ballot read, host 2 announces a ballot just above ours for the same lver.
struct Outbid {
    disk: MemDisk,
    res: ResourceArea,
}

impl lease::diskio::Disk for Outbid {
    fn logical_sector_size(&self) -> Option<u32> {
        None
    }
    fn read(
        &self,
        o: u64,
        l: usize,
        t: Duration,
    ) -> impl std::future::Future<Output = Result<lease::diskio::AlignedBuf, lease::diskio::IoError>> {
        if o == self.res.offset && l > 512 {
            let ours = PaxosDblock::decode(&self.disk.snapshot(self.res.offset + 2 * 512, 512)).unwrap();
            if ours.mbal != 0 {
                let mut x = PaxosDblock { mbal: ours.mbal + 1, lver: 1, ..Default::default() };
                let mut sec = vec![0u8; 512];
                x.encode(&mut sec[..DBLOCK_LEN]);
                self.disk.poke(self.res.offset + 3 * 512, &sec);
            }
        }
        self.disk.read(o, l, t)
    }
    fn write(
        &self,
        o: u64,
        d: lease::diskio::AlignedBuf,
        t: Duration,
    ) -> impl std::future::Future<Output = Result<(), lease::diskio::IoError>> {
        self.disk.write(o, d, t)
    }
}

#[test]
fn higher_mbal_seen_loses_the_ballot() {
    let w = world(2);
    let r = resource(0);
    let outbid = Outbid { disk: w.disk.clone(), res: r };
    let base = w.ctx(1, None);
    let ctx = PaxosCtx {
        disk: &outbid,
        clock: base.clock,
        timeouts: base.timeouts,
        lockspace: base.lockspace,
        host_id: 1,
        generation: base.generation,
        hosts: None,
        faults: base.faults,
    };
    let e = block_on(paxos_lease::acquire(&ctx, &r, AcquireOptions { mode: Mode::Exclusive, wait_for_owner: true }));
    assert!(e.is_err(), "never wins against a higher ballot");
    assert_eq!(w.leader(&r).timestamp, 0, "nothing committed");
    let ours = PaxosDblock::decode(&w.dblock_sector(&r, 1)).unwrap();
    assert_eq!(ours.mbal % 2000, 1);
    assert!(ours.mbal > 2000 * paxos_lease::MAX_BALLOT_RETRIES as u64, "each retry raised the ballot");
}

#[test]
fn shared_holders_coexist_and_block_exclusive_until_dead() {
    let w = world(3);
    let r = resource(0);
    let s1 = w.acquire(1, &r, Mode::Shared, true).unwrap();
    let s2 = w.acquire(2, &r, Mode::Shared, true).unwrap();
    assert_eq!(w.leader(&r).timestamp, 0, "shared holds leave the leader free");
    assert!(ModeBlock::decode(&w.dblock_sector(&r, 1)).unwrap().shared());
    match w.acquire(3, &r, Mode::Exclusive, true) {
        Err(LeaseError::SharedHeld { holders }) => assert_eq!(holders, vec![1, 2]),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.leader(&r).timestamp, 0, "the failed exclusive gives the leader back");
    // Host 1 releases; host 2 is seen dead by host 3's renewal loop.
    block_on(paxos_lease::release(&w.ctx(1, None), &s1)).unwrap();
    let table = w.table_after(Duration::from_secs(18));
    let h = block_on(paxos_lease::acquire(
        &w.ctx(3, Some(&table)),
        &r,
        AcquireOptions { mode: Mode::Exclusive, wait_for_owner: false },
    ))
    .unwrap();
    assert_eq!(h.mode, Mode::Exclusive);
    assert_eq!(w.dblock_sector(&r, 2), vec![0u8; 512], "dead holder's sector cleared");
    let _ = s2;
    // A shared acquirer now meets a live exclusive owner.
    assert!(matches!(w.acquire(1, &r, Mode::Shared, false), Err(LeaseError::OwnedRetry { owner_id: 3, .. })));
}

#[test]
fn convert_between_modes() {
    let w = world(2);
    let r = resource(0);
    let mut h = w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    block_on(paxos_lease::convert(&w.ctx(1, None), &mut h, Mode::Shared)).unwrap();
    assert_eq!(w.leader(&r).timestamp, 0);
    let s2 = w.acquire(2, &r, Mode::Shared, true).unwrap();
    // Up-convert blocked by host 2's live shared hold; we stay shared.
    assert!(matches!(
        block_on(paxos_lease::convert(&w.ctx(1, None), &mut h, Mode::Exclusive)),
        Err(LeaseError::SharedHeld { .. })
    ));
    assert!(ModeBlock::decode(&w.dblock_sector(&r, 1)).unwrap().shared(), "still shared after a failed convert");
    block_on(paxos_lease::release(&w.ctx(2, None), &s2)).unwrap();
    block_on(paxos_lease::convert(&w.ctx(1, None), &mut h, Mode::Exclusive)).unwrap();
    assert_eq!(h.mode, Mode::Exclusive);
    assert!(!ModeBlock::decode(&w.dblock_sector(&r, 1)).unwrap().shared());
    assert_eq!(w.leader(&r).owner_id, 1);
}

#[test]
fn release_frees_leader_only_if_we_wrote_it() {
    let w = world(2);
    let r = resource(0);
    let h = w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    block_on(paxos_lease::release(&w.ctx(1, None), &h)).unwrap();
    let l = w.leader(&r);
    assert_eq!((l.timestamp, l.owner_id), (0, 1));
    assert!(PaxosDblock::decode(&w.dblock_sector(&r, 1)).unwrap().released());

    // Host 2 committed host 1 as owner: host 1's release must leave the leader alone.
    let h = w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    let mut l = w.leader(&r);
    l.write_id = 2;
    let mut s = vec![0u8; 512];
    l.encode(&mut s[..LEADER_RECORD_LEN]);
    w.disk.poke(r.offset, &s);
    block_on(paxos_lease::release(&w.ctx(1, None), &h)).unwrap();
    assert_ne!(w.leader(&r).timestamp, 0);
    // Host 2 then sees host 1's RELEASED dblock and takes it without waiting host_dead.
    let before = w.clock.slept();
    let hold = w.acquire(2, &r, Mode::Exclusive, true);
    assert!(hold.is_ok(), "{hold:?}");
    assert!(w.clock.slept() - before < Duration::from_secs(18));
}

#[test]
fn release_of_a_lease_taken_over_fails() {
    let w = world(2);
    let r = resource(0);
    let h = w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    let mut l = w.leader(&r);
    l.lver += 1;
    l.owner_id = 2;
    let mut s = vec![0u8; 512];
    l.encode(&mut s[..LEADER_RECORD_LEN]);
    w.disk.poke(r.offset, &s);
    assert!(matches!(block_on(paxos_lease::release(&w.ctx(1, None), &h)), Err(LeaseError::ReleaseLver { .. })));
    assert_eq!(w.leader(&r).owner_id, 2);
}

#[test]
fn value_block_and_request_record() {
    let w = world(1);
    let r = resource(0);
    block_on(paxos_lease::write_lvb(&w.disk, &r, b"version=7", timeouts())).unwrap();
    assert_eq!(&block_on(paxos_lease::read_lvb(&w.disk, &r, timeouts())).unwrap()[..9], b"version=7");
    assert!(block_on(paxos_lease::write_lvb(&w.disk, &r, &[0u8; 513], timeouts())).is_err());
    w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    assert!(matches!(
        block_on(paxos_lease::write_request(&w.disk, &r, 1, REQ_FORCE, timeouts())),
        Err(LeaseError::RequestOld { .. })
    ));
    block_on(paxos_lease::write_request(&w.disk, &r, 2, REQ_FORCE, timeouts())).unwrap();
    let q = block_on(paxos_lease::read_request(&w.disk, &r, timeouts())).unwrap();
    assert_eq!((q.lver, q.force_mode), (2, REQ_FORCE));
}

#[test]
fn num_hosts_bounds_the_participants() {
    let w = world(3);
    let r = resource(3);
    block_on(paxos_lease::init(&w.disk, &r, 2, false, timeouts())).unwrap();
    assert!(matches!(w.acquire(3, &r, Mode::Exclusive, true), Err(LeaseError::Record(_))));
    assert!(w.acquire(2, &r, Mode::Exclusive, true).is_ok());
}

#[test]
fn released_dblock_of_an_older_lver_does_not_free_the_lease() {
    let w = world(2);
    let r = resource(0);
    let h = w.acquire(1, &r, Mode::Exclusive, true).unwrap();
    block_on(paxos_lease::release(&w.ctx(1, None), &h)).unwrap();
    w.acquire(1, &r, Mode::Exclusive, true).unwrap(); // lver 2, held
    let mut d = PaxosDblock::decode(&w.dblock_sector(&r, 1)).unwrap();
    d.lver = 1;
    d.flags |= lease::ondisk::DBLOCK_FL_RELEASED;
    let mut sec = vec![0u8; 512];
    d.encode(&mut sec[..DBLOCK_LEN]);
    w.disk.poke(r.offset + 2 * 512, &sec);
    assert!(matches!(w.acquire(2, &r, Mode::Exclusive, false), Err(LeaseError::OwnedRetry { owner_id: 1, .. })));
    // The same flag at the held lver does free it.
    d.lver = 2;
    d.encode(&mut sec[..DBLOCK_LEN]);
    w.disk.poke(r.offset + 2 * 512, &sec);
    assert!(w.acquire(2, &r, Mode::Exclusive, false).is_ok());
}

// Found by the simulator (seed 10001445, 13 hosts): a failed up-conversion ran a ballot that
// decided lver L; the host's later release wrote back the dblock it had acquired with (lver
// L-2), erasing that ballot; another host whose first read predated L then won L again with
// its own value and overwrote a newer leader: exclusive and shared holders at once.

fn dblock(w: &World, r: &ResourceArea, id: u64) -> PaxosDblock {
    PaxosDblock::decode(&w.dblock_sector(r, id)).unwrap()
}

#[test]
fn our_dblock_never_goes_back_after_a_failed_up_conversion() {
    let w = world(2);
    let r = resource(0);
    let mut h = w.acquire(1, &r, Mode::Shared, true).unwrap();
    let _s2 = w.acquire(2, &r, Mode::Shared, true).unwrap();
    let acquired_with = dblock(&w, &r, 1);
    assert!(matches!(
        block_on(paxos_lease::convert(&w.ctx(1, None), &mut h, Mode::Exclusive)),
        Err(LeaseError::SharedHeld { .. })
    ));
    let ballot = dblock(&w, &r, 1);
    assert!(ballot.lver > acquired_with.lver, "the conversion ran a ballot for a new version");
    block_on(paxos_lease::release(&w.ctx(1, None), &h)).unwrap();
    let released = dblock(&w, &r, 1);
    assert!(released.released());
    assert!(
        (released.lver, released.mbal) >= (ballot.lver, ballot.mbal),
        "release wrote an older dblock back: {released:?} after {ballot:?}"
    );
}

/// A MemDisk that runs `hook` once, right after its first read completes.
struct AfterFirstRead {
    disk: MemDisk,
    hook: std::cell::RefCell<Option<Box<dyn FnOnce()>>>,
}

impl lease::diskio::Disk for AfterFirstRead {
    fn logical_sector_size(&self) -> Option<u32> {
        None
    }
    fn read(
        &self,
        o: u64,
        l: usize,
        t: Duration,
    ) -> impl std::future::Future<Output = Result<lease::diskio::AlignedBuf, lease::diskio::IoError>> {
        let r = block_on(self.disk.read(o, l, t));
        if let Some(hook) = self.hook.borrow_mut().take() {
            hook();
        }
        std::future::ready(r)
    }
    fn write(
        &self,
        o: u64,
        d: lease::diskio::AlignedBuf,
        t: Duration,
    ) -> impl std::future::Future<Output = Result<(), lease::diskio::IoError>> {
        self.disk.write(o, d, t)
    }
}

#[test]
fn ballot_for_a_version_the_leader_already_has_loses() {
    // Host 2 reads the area; before its ballot, host 1 acquires and releases the next
    // version, and its dblock no longer shows that ballot (as an older release would leave
    // it). The leader is the remaining proof: host 2 must not decide that version again.
    let w = world(2);
    let r = resource(0);
    let before = w.leader(&r);
    let (disk, clock) = (w.disk.clone(), w.clock.clone());
    let gen1 = w.leases[0].generation;
    let hooked = AfterFirstRead {
        disk: w.disk.clone(),
        hook: std::cell::RefCell::new(Some(Box::new(move || {
            let ctx = PaxosCtx {
                disk: &disk,
                clock: &clock,
                timeouts: timeouts(),
                lockspace: lockspace(),
                host_id: 1,
                generation: gen1,
                hosts: None,
                faults: ProtocolFaults::default(),
            };
            let opts = AcquireOptions { mode: Mode::Exclusive, wait_for_owner: false };
            let h = block_on(paxos_lease::acquire(&ctx, &resource(0), opts)).unwrap();
            block_on(paxos_lease::release(&ctx, &h)).unwrap();
            disk.poke(resource(0).offset + 2 * 512, &[0u8; 512]);
        }))),
    };
    let base = w.ctx(2, None);
    let ctx2 = PaxosCtx {
        disk: &hooked,
        clock: base.clock,
        timeouts: base.timeouts,
        lockspace: base.lockspace,
        host_id: 2,
        generation: base.generation,
        hosts: None,
        faults: base.faults,
    };
    let r2 = block_on(paxos_lease::acquire(&ctx2, &r, AcquireOptions { mode: Mode::Exclusive, wait_for_owner: false }));
    let after = w.leader(&r);
    assert!(after.lver > before.lver);
    match r2 {
        // Host 2 took the version after host 1's: fine.
        Ok(h) => assert!(h.lver > before.lver + 1, "host 2 won host 1's version {}", h.lver),
        Err(e) => {
            assert!(matches!(e, LeaseError::Owned { owner_id: 1, .. }), "{e:?}");
            assert_eq!(
                (after.lver, after.owner_id, after.timestamp),
                (before.lver + 1, 1, 0),
                "leader left as released"
            );
        }
    }
}
