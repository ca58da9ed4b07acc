//! The `lease` crate against the real sanlock 3.8.5 (`sanlock direct`, no daemon), on plain
//! files: records written by either side must be read, verified and re-encoded byte for byte by
//! the other, and the two must never both win a lease.
//!
//! Facts about `sanlock direct` these tests rely on (sanlock 3.8.5 source, src/direct.c):
//! - `direct acquire` has no lockspace, so for a lease held by another host_id it fails with
//!   -241 (SANLK_ACQUIRE_LOCKSPACE) instead of checking the owner's liveness.
//! - `direct release` passes host_id 0 and never writes, so sanlock gives a paxos lease up by
//!   releasing its host_id (`release_id`): an owner whose delta lease is free holds nothing.
//! - The delta acquire waits 2N with N taken from the record, so areas here are made with
//!   io_timeout 1; a record held under another name costs 8N+W (W = 60 in sanlock 3.8.5).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lease::clock::SystemClock;
use lease::delta_lease::{self, DeltaLease, HostIdentity, LockspaceArea, ProtocolFaults};
use lease::diskio::{block_on, DeviceDisk, Disk};
use lease::ondisk::{
    Align, Geometry, HostBitmap, LeaderRecord, LeaseKind, ModeBlock, Name, PaxosDblock, RequestRecord, SectorSize,
    LEADER_RECORD_LEN, REQUEST_RECORD_LEN,
};
use lease::paxos_lease::{self, AcquireOptions, HeldResource, Mode, PaxosCtx, ResourceArea};
use lease::timeouts::Timeouts;
use lease::LeaseError;
use sanlvm_tests::{number_after, require_sanlock, sanlock_direct, Scratch};

const G512: Geometry = Geometry { sector: SectorSize::B512, align: Align::M1 };
const G4K: Geometry = Geometry { sector: SectorSize::B4096, align: Align::M8 };

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// sanlock's -Z/-A arguments for a geometry.
fn size_args(g: Geometry) -> Vec<String> {
    vec!["-Z".into(), g.sector_bytes().to_string(), "-A".into(), format!("{}M", g.area_bytes() >> 20)]
}

fn sanlock_ok(args: &[&str]) -> String {
    let r = sanlock_direct(args);
    assert!(r.ok(), "sanlock direct {args:?} failed: {r:?}");
    r.stdout
}

fn sanlock_init(g: Geometry, what: &str, spec: &str, extra: &[&str]) {
    let mut args = vec!["init", what, spec];
    args.extend_from_slice(extra);
    let sizes = size_args(g);
    args.extend(sizes.iter().map(String::as_str));
    sanlock_ok(&args);
}

fn open(f: &Scratch) -> DeviceDisk {
    DeviceDisk::open(&f.path).unwrap()
}

fn t1() -> Timeouts {
    Timeouts::new(1, 60).unwrap()
}

/// Verifies a sector with our decoder and checks that re-encoding reproduces it exactly: the
/// record, and zeros in the rest of the sector as sanlock's write_sector leaves them.
fn reencode_leader(sector: &[u8], kind: LeaseKind, ls: &Name, res: Option<&Name>) -> LeaderRecord {
    let l = LeaderRecord::verify(sector, kind, Some(sector.len() as u32), ls, res)
        .unwrap_or_else(|e| panic!("our verify rejects sanlock's {kind:?} record: {e}"));
    let mut again = vec![0u8; sector.len()];
    l.clone().encode(&mut again[..LEADER_RECORD_LEN]);
    if kind == LeaseKind::Delta {
        HostBitmap::decode(sector).unwrap().encode(&mut again);
    }
    assert_eq!(again, sector, "{kind:?} sector does not re-encode to the same bytes");
    l
}

fn reencode_dblock_sector(sector: &[u8], host_id: u64) -> PaxosDblock {
    let mut d = PaxosDblock::verify(sector, host_id).unwrap();
    let mut again = vec![0u8; sector.len()];
    if d != PaxosDblock::default() {
        d.encode(&mut again);
    }
    let mb = ModeBlock::decode(sector).unwrap();
    if mb != ModeBlock::default() {
        mb.encode(&mut again);
    }
    assert_eq!(again, sector, "dblock sector of host {host_id} does not re-encode");
    d
}

#[test]
fn sanlock_init_records_decode_and_reencode() {
    if !require_sanlock("sanlock_init_records_decode_and_reencode") {
        return;
    }
    for g in [G512, G4K] {
        let a = g.area_bytes();
        let n = g.sector_bytes();
        let theirs = Scratch::new("golden", 2 * a);
        sanlock_init(g, "-s", &format!("LS:0:{}:0", theirs.p()), &[]);
        sanlock_init(g, "-r", &format!("LS:RES:{}:{a}", theirs.p()), &[]);
        let bytes = theirs.all();

        // Lockspace: every host record verifies and re-encodes; the rest of the area is zero.
        let ls = name("LS");
        for h in 0..g.max_hosts() as usize {
            let l = reencode_leader(&bytes[h * n..(h + 1) * n], LeaseKind::Delta, &ls, None);
            assert_eq!((l.timestamp, l.max_hosts, l.io_timeout), (0, 1, 10));
            assert_eq!(l.flags, g.align.flag());
        }
        assert!(bytes[g.max_hosts() as usize * n..a as usize].iter().all(|&b| b == 0));

        // Resource: leader, request record, empty dblocks.
        let r = &bytes[a as usize..2 * a as usize];
        let l = reencode_leader(&r[..n], LeaseKind::Paxos, &ls, Some(&name("RES")));
        assert_eq!((l.num_hosts, l.max_hosts), (g.max_hosts(), g.max_hosts()));
        let req = RequestRecord::verify(&r[n..2 * n]).unwrap();
        let mut again = vec![0u8; n];
        req.encode(&mut again[..REQUEST_RECORD_LEN]);
        assert_eq!(again, &r[n..2 * n]);
        assert!(r[2 * n..].iter().all(|&b| b == 0));

        // Our init writes the very same bytes.
        let ours = Scratch::new("golden-ours", 2 * a);
        let disk = open(&ours);
        let t = Timeouts::default();
        block_on(delta_lease::init(&disk, &LockspaceArea { name: ls, offset: 0, geometry: g }, t)).unwrap();
        let area = ResourceArea { lockspace: ls, name: name("RES"), offset: a, geometry: g };
        block_on(paxos_lease::init(&disk, &area, 0, false, t)).unwrap();
        assert!(ours.all() == bytes, "{g:?}: our init differs from sanlock's");

        // Records sanlock writes while acquiring decode and re-encode too. (io_timeout 1 in
        // the records keeps acquire_id's 2N wait short.)
        sanlock_init(g, "-s", &format!("LS:0:{}:0", theirs.p()), &["-o", "1"]);
        sanlock_ok(&["acquire_id", "-s", &format!("LS:5:{}:0", theirs.p()), "-o", "1", "-e", "golden-host"]);
        let bytes = theirs.all();
        let l = reencode_leader(&bytes[4 * n..5 * n], LeaseKind::Delta, &ls, None);
        assert_eq!((l.owner_id, l.owner_generation, l.resource_name), (5, 1, name("golden-host")));
        sanlock_ok(&["acquire", "-r", &format!("LS:RES:{}:{a}", theirs.p()), "-i", "5", "-g", "1"]);
        let r = theirs.bytes(a, a as usize);
        let l = reencode_leader(&r[..n], LeaseKind::Paxos, &ls, Some(&name("RES")));
        assert_eq!((l.owner_id, l.owner_generation, l.lver, l.write_id), (5, 1, 1, 5));
        let d = reencode_dblock_sector(&r[(2 + 4) * n..(2 + 5) * n], 5);
        assert_eq!((d.mbal, d.bal, d.inp, d.inp2, d.lver), (5, 5, 5, 1, 1));
        assert_eq!(d.inp3, l.timestamp);
    }
}

/// Acquires a delta lease with our code (free path: 2N with N = 1).
fn ours_acquire_id(disk: &DeviceDisk, area: &LockspaceArea, host_id: u64, host_name: &str) -> DeltaLease {
    let me = HostIdentity { host_id, host_name: name(host_name), boot: None };
    let clock = SystemClock::default();
    block_on(delta_lease::acquire(disk, &clock, area, &me, t1(), ProtocolFaults::default())).unwrap().0
}

fn paxos_ctx<'a>(
    disk: &'a DeviceDisk,
    clock: &'a SystemClock,
    ls: LockspaceArea,
    host_id: u64,
    generation: u64,
) -> PaxosCtx<'a, DeviceDisk, SystemClock> {
    PaxosCtx {
        disk,
        clock,
        timeouts: t1(),
        lockspace: ls,
        host_id,
        generation,
        hosts: None,
        faults: ProtocolFaults::default(),
    }
}

const EX_NOWAIT: AcquireOptions = AcquireOptions { mode: Mode::Exclusive, wait_for_owner: false };

fn leader_of(disk: &DeviceDisk, area: &ResourceArea) -> LeaderRecord {
    block_on(paxos_lease::read_resource(disk, area, t1())).unwrap().leader
}

#[test]
fn our_records_accepted_by_sanlock() {
    if !require_sanlock("our_records_accepted_by_sanlock") {
        return;
    }
    for g in [G512, G4K] {
        let a = g.area_bytes();
        let f = Scratch::new("ours", 2 * a);
        let disk = open(&f);
        let ls = LockspaceArea { name: name("LS"), offset: 0, geometry: g };
        let area = ResourceArea { lockspace: name("LS"), name: name("RES"), offset: a, geometry: g };
        block_on(delta_lease::init(&disk, &ls, t1())).unwrap();
        block_on(paxos_lease::init(&disk, &area, 0, false, t1())).unwrap();
        let ls_spec = |h: u64| format!("LS:{h}:{}:0", f.p());
        let res_spec = format!("LS:RES:{}:{a}", f.p());

        let dump = sanlock_ok(&["dump", f.p()]);
        assert!(dump.lines().any(|l| l.starts_with(&format!("{a:08}")) && l.contains(" RES ")), "{dump}");
        let rl = sanlock_ok(&["read_leader", "-s", &ls_spec(1)]);
        assert!(rl.contains("read_leader done 0") && rl.contains("io_timeout 1"), "{rl}");
        let rl = sanlock_ok(&["read_leader", "-r", &res_spec]);
        assert!(rl.contains(&format!("num_hosts {}", g.max_hosts())), "{rl}");

        // sanlock joins our lockspace and takes our resource.
        sanlock_ok(&["acquire_id", "-s", &ls_spec(2), "-o", "1", "-e", "sanlock-2"]);
        sanlock_ok(&["acquire", "-r", &res_spec, "-i", "2", "-g", "1"]);
        let l = leader_of(&disk, &area);
        assert_eq!((l.owner_id, l.owner_generation, l.lver), (2, 1, 1));

        // Records our acquires wrote are accepted by sanlock's reads and acquires.
        let ours = ours_acquire_id(&disk, &ls, 1, "ours-1");
        let rl = sanlock_ok(&["read_leader", "-s", &ls_spec(1)]);
        assert!(rl.contains("resource_name ours-1") && rl.contains(&format!("owner_generation {}", ours.generation)));
        sanlock_ok(&["release_id", "-s", &ls_spec(2)]);
        let clock = SystemClock::default();
        let ctx = paxos_ctx(&disk, &clock, ls, 1, ours.generation);
        let held = block_on(paxos_lease::acquire(&ctx, &area, EX_NOWAIT)).unwrap();
        assert_eq!(held.lver, 2);
        let rl = sanlock_ok(&["read_leader", "-r", &res_spec]);
        assert!(rl.contains("owner_id 1\n") && rl.contains("lver 2\n"), "{rl}");
        // sanlock, as the same owner (host 1, our generation), re-acquires what we hold.
        sanlock_ok(&["acquire", "-r", &res_spec, "-i", "1", "-g", &ours.generation.to_string()]);
        let l = leader_of(&disk, &area);
        assert_eq!((l.owner_id, l.owner_generation, l.lver, l.write_id), (1, ours.generation, 3, 1));
    }
}

/// sanlock's host 2 joins the lockspace; returns its generation.
fn sanlock_join(ls_spec: &str) -> u64 {
    let before = sanlock_direct(&["read_leader", "-s", ls_spec]);
    let out = sanlock_ok(&["acquire_id", "-s", ls_spec, "-o", "1", "-e", "sanlock-host"]);
    assert!(out.contains("acquire_id done 0"), "{out}");
    let after = sanlock_ok(&["read_leader", "-s", ls_spec]);
    let gen = number_after(&after, "owner_generation").unwrap();
    assert_eq!(number_after(&before.stdout, "owner_generation").unwrap() + 1, gen);
    gen
}

#[test]
fn paxos_alternation_with_sanlock() {
    if !require_sanlock("paxos_alternation_with_sanlock") {
        return;
    }
    let g = G512;
    let a = g.area_bytes();
    let f = Scratch::new("paxos-alt", 2 * a);
    let disk = open(&f);
    let ls = LockspaceArea { name: name("LS"), offset: 0, geometry: g };
    let area = ResourceArea { lockspace: name("LS"), name: name("RES"), offset: a, geometry: g };
    block_on(delta_lease::init(&disk, &ls, t1())).unwrap();
    block_on(paxos_lease::init(&disk, &area, 0, false, t1())).unwrap();
    let sl_ls = format!("LS:2:{}:0", f.p());
    let res_spec = format!("LS:RES:{}:{a}", f.p());
    let ours = ours_acquire_id(&disk, &ls, 1, "ours-1");
    let clock = SystemClock::default();
    let ctx = paxos_ctx(&disk, &clock, ls, 1, ours.generation);

    let mut lver = 0;
    for round in 0..20 {
        // Ours wins (free, or sanlock's owner released its host_id).
        let held = block_on(paxos_lease::acquire(&ctx, &area, EX_NOWAIT))
            .unwrap_or_else(|e| panic!("round {round}: ours could not acquire: {e}"));
        lver += 1;
        assert_eq!(held.lver, lver);
        let sl_gen = sanlock_join(&sl_ls);
        let r = sanlock_direct(&["acquire", "-r", &res_spec, "-i", "2", "-g", &sl_gen.to_string()]);
        assert!(!r.ok() && r.stdout.contains("acquire done -241"), "round {round}: sanlock won while ours held: {r:?}");
        let l = leader_of(&disk, &area);
        assert_eq!((l.owner_id, l.owner_generation, l.lver), (1, ours.generation, lver), "round {round}");

        // Ours releases, sanlock wins.
        block_on(paxos_lease::release(&ctx, &held)).unwrap();
        assert_eq!(leader_of(&disk, &area).timestamp, 0);
        sanlock_ok(&["acquire", "-r", &res_spec, "-i", "2", "-g", &sl_gen.to_string()]);
        lver += 1;
        let l = leader_of(&disk, &area);
        assert_eq!((l.owner_id, l.owner_generation, l.lver), (2, sl_gen, lver), "round {round}");

        // Ours must not take it from a live owner.
        match block_on(paxos_lease::acquire(&ctx, &area, EX_NOWAIT)) {
            Err(LeaseError::OwnedRetry { owner_id: 2, owner_generation }) => assert_eq!(owner_generation, sl_gen),
            other => panic!("round {round}: ours acquired a lease sanlock holds: {other:?}"),
        }
        assert_eq!(leader_of(&disk, &area).owner_id, 2);

        // sanlock gives it up by leaving the lockspace.
        sanlock_ok(&["release_id", "-s", &sl_ls]);
    }
}

#[test]
fn delta_alternation_with_sanlock() {
    if !require_sanlock("delta_alternation_with_sanlock") {
        return;
    }
    let g = G512;
    let f = Scratch::new("delta-alt", g.area_bytes());
    let disk = open(&f);
    let ls = LockspaceArea { name: name("LS"), offset: 0, geometry: g };
    block_on(delta_lease::init(&disk, &ls, t1())).unwrap();
    let spec = format!("LS:1:{}:0", f.p());
    let record = || {
        let s = block_on(disk.read(0, 512, t1().io())).unwrap();
        delta_lease::verify_sector(&ls, &s).unwrap()
    };
    let mut gen = 0;
    for round in 0..10 {
        let ours = ours_acquire_id(&disk, &ls, 1, "ours-node");
        gen += 1;
        assert_eq!(ours.generation, gen, "round {round}");
        let rl = sanlock_ok(&["read_leader", "-s", &spec]);
        assert!(rl.contains("resource_name ours-node\n"), "round {round}: {rl}");
        block_on(delta_lease::release(&disk, &ours, t1())).unwrap();
        assert_eq!(record().timestamp, 0);

        sanlock_ok(&["acquire_id", "-s", &spec, "-o", "1", "-e", "sanlock-node"]);
        gen += 1;
        let l = record();
        assert_eq!((l.resource_name, l.owner_generation, l.owner_id), (name("sanlock-node"), gen, 1), "round {round}");
        assert_ne!(l.timestamp, 0);
        sanlock_ok(&["release_id", "-s", &spec]);
        assert_eq!(record().timestamp, 0);
    }
}

/// While our holder keeps renewing, sanlock's acquire_id of the same host_id waits 8N+W
/// (68 s here) and must then fail with SANLK_HOSTID_BUSY, leaving our record alone.
#[test]
fn delta_live_holder_defeats_sanlock() {
    if !require_sanlock("delta_live_holder_defeats_sanlock") {
        return;
    }
    let g = G512;
    let f = Scratch::new("delta-live-ours", g.area_bytes());
    let ls = LockspaceArea { name: name("LS"), offset: 0, geometry: g };
    let disk = open(&f);
    block_on(delta_lease::init(&disk, &ls, t1())).unwrap();
    let mut lease = ours_acquire_id(&disk, &ls, 1, "ours-node");
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let stop = stop.clone();
        let path = f.path.clone();
        std::thread::spawn(move || {
            let disk = DeviceDisk::open(&path).unwrap();
            let clock = SystemClock::default();
            let mut renewals = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1200));
                block_on(delta_lease::renew(&disk, &clock, &mut lease, &HostBitmap::default(), t1())).unwrap();
                renewals += 1;
            }
            (lease, renewals)
        })
    };
    let r = sanlock_direct(&["acquire_id", "-s", &format!("LS:1:{}:0", f.p()), "-o", "1", "-e", "intruder"]);
    stop.store(true, Ordering::Relaxed);
    let (mut lease, renewals) = renewer.join().unwrap();
    assert!(!r.ok() && r.stdout.contains("acquire_id done -262"), "sanlock took a live host_id: {r:?}");
    assert!(renewals > 10);
    // Still ours, byte for byte what we last wrote: the next renewal succeeds.
    block_on(delta_lease::renew(&disk, &SystemClock::default(), &mut lease, &HostBitmap::default(), t1())).unwrap();
}

/// The mirror image: sanlock holds and renews (`renew_id`); our acquire waits 8N+W (W = 1 here
/// to keep it short) and must fail with HostIdBusy.
#[test]
fn delta_live_sanlock_holder_defeats_ours() {
    if !require_sanlock("delta_live_sanlock_holder_defeats_ours") {
        return;
    }
    let g = G512;
    let f = Scratch::new("delta-live-sl", g.area_bytes());
    let ls = LockspaceArea { name: name("LS"), offset: 0, geometry: g };
    let disk = open(&f);
    block_on(delta_lease::init(&disk, &ls, t1())).unwrap();
    let spec = format!("LS:1:{}:0", f.p());
    sanlock_ok(&["acquire_id", "-s", &spec, "-o", "1", "-e", "sanlock-node"]);
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (stop, spec) = (stop.clone(), spec.clone());
        std::thread::spawn(move || {
            let mut renewals = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1200));
                sanlock_ok(&["renew_id", "-s", &spec]);
                renewals += 1;
            }
            renewals
        })
    };
    let me = HostIdentity { host_id: 1, host_name: name("ours-node"), boot: None };
    let t = Timeouts::new(1, 1).unwrap();
    let r = block_on(delta_lease::acquire(&disk, &SystemClock::default(), &ls, &me, t, ProtocolFaults::default()));
    stop.store(true, Ordering::Relaxed);
    let renewals = renewer.join().unwrap();
    assert!(renewals >= 5);
    match r {
        Err(LeaseError::HostIdBusy { owner_name, owner_generation: 1 }) => assert_eq!(owner_name, "sanlock-node"),
        other => panic!("ours took a host_id sanlock keeps renewing: {other:?}"),
    }
    let rl = sanlock_ok(&["read_leader", "-s", &spec]);
    assert!(rl.contains("resource_name sanlock-node\n") && rl.contains("owner_generation 1\n"), "{rl}");
}

/// A shared hold written by us is seen by sanlock's dump as an SH line, and our release
/// clears it.
#[test]
fn shared_mode_block_visible_to_sanlock() {
    if !require_sanlock("shared_mode_block_visible_to_sanlock") {
        return;
    }
    let g = G512;
    let a = g.area_bytes();
    let f = Scratch::new("shared", 2 * a);
    let disk = open(&f);
    let ls = LockspaceArea { name: name("LS"), offset: 0, geometry: g };
    let area = ResourceArea { lockspace: name("LS"), name: name("RES"), offset: a, geometry: g };
    block_on(paxos_lease::init(&disk, &area, 0, false, t1())).unwrap();
    let clock = SystemClock::default();
    let ctx = paxos_ctx(&disk, &clock, ls, 7, 3);
    let sh = AcquireOptions { mode: Mode::Shared, wait_for_owner: false };
    let held: HeldResource = block_on(paxos_lease::acquire(&ctx, &area, sh)).unwrap();
    let dump = sanlock_ok(&["dump", &format!("{}:{a}", f.p())]);
    assert!(dump.lines().any(|l| l.trim() == "0007 0003 SH"), "{dump}");
    assert_eq!(leader_of(&disk, &area).timestamp, 0, "a shared hold leaves the leader free");
    block_on(paxos_lease::release(&ctx, &held)).unwrap();
    let dump = sanlock_ok(&["dump", &format!("{}:{a}", f.p())]);
    assert!(!dump.contains(" SH"), "{dump}");
}
