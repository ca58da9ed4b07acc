//! A hostile (or stale, or buggy) root client: well-formed requests that are wrong about where
//! leases are, which slot is free, or which global lock is enabled. Every test checks the
//! outcome on the disk itself: no lease changed that should not have, and no two hosts hold
//! one resource exclusively.

mod common;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::*;
use lease::ondisk::LeaderRecord;
use proto::lockd::protocol::{AreaPiece, ErrorCode, Mode, RepairReport, Request, Resource, Response};

/// The leader of the lease at LV offset `o` of `d`, read from the file.
fn leader(d: &SharedDisk, o: u64) -> LeaderRecord {
    LeaderRecord::decode(&d.file.bytes(SharedDisk::at(o), 512)).unwrap()
}

fn name_at(d: &SharedDisk, o: u64) -> String {
    leader(d, o).resource_name.as_str_lossy()
}

/// Host `id` whose lvmlocal.toml names the shared file as its only device.
fn host(tag: &str, id: u64, d: &[&SharedDisk]) -> Host {
    let devs: Vec<String> = d.iter().map(|d| format!("{:?}", d.file.path.display().to_string())).collect();
    let mut h = Host::new(tag, id, &format!("devices = [{}]", devs.join(", ")));
    h.start();
    h
}

fn lv_at(uuid: &str, offset: u64) -> Resource {
    Resource::Lv { uuid: uuid.into(), offset, name: "x".into() }
}

/// A disk with LV `lv1` (UUID `u`) committed at slot 0, its lease named, held by host 1 in
/// ex; host 2 started too.
fn one_lv_held(tag: &str, slots: u64) -> (SharedDisk, String, Host, Host) {
    let d = SharedDisk::new(tag, "vg1", slots);
    let u = lvm_uuid(&format!("lv1-{tag}"));
    d.format_slot(0, &u);
    d.commit(2, 67 + slots, &[MetaLv { name: "lv1", uuid: &u, offset: SharedDisk::slot(0) }]);
    let h1 = host(tag, 1, &[&d]);
    let h2 = host(tag, 2, &[&d]);
    start_all(&[&h1, &h2], &d);
    h1.call(&lock("vg1", lv_at(&u, SharedDisk::slot(0)), Mode::Ex, true)).unwrap();
    assert_eq!(leader(&d, SharedDisk::slot(0)).owner_id, 1);
    (d, u, h1, h2)
}

/// Item 4: a map pointing the LV leases at another file must not let host 2 take a lease
/// host 1 holds (on the real disk) exclusively.
#[test]
fn moved_maps_are_refused() {
    let (d, u, _h1, h2) = one_lv_held("moved", 2);
    // A decoy with the same lease layout, its slot 0 named after the LV, unowned.
    let decoy = SharedDisk::new("moved-decoy", "vg1", 2);
    decoy.format_slot(0, &u);
    let mut moved = d.area.clone();
    let keep = moved.pieces[0].clone();
    moved.pieces = vec![
        AreaPiece { lv_start: 0, len: MIB, ..keep.clone() },
        AreaPiece {
            lv_start: MIB,
            len: keep.len - MIB,
            pv_path: decoy.area.pieces[0].pv_path.clone(),
            pv_start: PV_START + MIB,
        },
    ];
    let mut grown = d.area.clone();
    grown.pieces[0].len += 100 * MIB;
    let mut shifted = d.area.clone();
    shifted.pieces[0].pv_start += MIB;
    for (what, area) in [("moved", moved), ("grown", grown), ("shifted", shifted)] {
        let r = h2.call(&Request::Lock {
            vg: "vg1".into(),
            resource: lv_at(&u, SharedDisk::slot(0)),
            mode: Mode::Ex,
            persistent: true,
            area: Some(area),
        });
        let e = r.expect_err(what);
        assert_eq!(e.code, ErrorCode::BadRequest, "{what}: {e:?}");
    }
    // On disk: host 1 still the owner, the decoy untouched, host 2 holds nothing anywhere.
    assert_eq!(leader(&d, SharedDisk::slot(0)).owner_id, 1);
    assert_eq!(leader(&decoy, SharedDisk::slot(0)).timestamp, 0);
    // And the honest request still conflicts with host 1, on the real disk.
    expect_conflict(h2.call(&lock("vg1", lv_at(&u, SharedDisk::slot(0)), Mode::Ex, true)), 1);
}

/// Offsets that are not an LV slot of this LV: GL, VG, lockspace, misaligned, beyond the
/// area, u64::MAX, another LV's slot; names that are not LV UUIDs; enormous strings.
#[test]
fn foreign_offsets_and_names_are_refused() {
    let (d, u, h1, h2) = one_lv_held("foreign", 2);
    let a = MIB;
    let before: Vec<Vec<u8>> = (0..70).map(|k| d.file.bytes(SharedDisk::at(k * a), 512)).collect();
    let bad = [0, 65 * a, 66 * a, 67 * a + 512, 69 * a, 1 << 40, u64::MAX, u64::MAX - a + 1];
    for o in bad {
        let e = h2.call(&lock("vg1", lv_at("some-uuid", o), Mode::Ex, true)).expect_err("bad offset");
        assert_eq!(e.code, ErrorCode::BadRequest, "offset {o}: {e:?}");
    }
    // Slot 1 is free on disk, but LV u's lease is at slot 0: a lock at slot 1 is refused.
    let e = h2.call(&lock("vg1", lv_at(&u, SharedDisk::slot(1)), Mode::Ex, true)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Refused, "{e:?}");
    // Another UUID at u's slot: the slot belongs to u.
    let e = h2.call(&lock("vg1", lv_at("intruder", SharedDisk::slot(0)), Mode::Ex, true)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Refused, "{e:?}");
    for n in ["GLLK", "VGLK", "#unused", "_GLLK_disabled", ""] {
        let e = h2.call(&lock("vg1", lv_at(n, SharedDisk::slot(1)), Mode::Ex, true)).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{n:?}: {e:?}");
    }
    let huge = "x".repeat(100_000);
    let e = h2.call(&lock("vg1", lv_at(&huge, SharedDisk::slot(1)), Mode::Ex, true)).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    let e = h2.call(&lock(&huge, Resource::Vg, Mode::Ex, false)).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoLockspace);
    let mut c = h2.client();
    call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Ex, false)).unwrap();
    for o in [0, 65 * a, 66 * a, u64::MAX, 67 * a + 1] {
        let e = call_on(&mut c, &Request::FreeLv { vg: "vg1".into(), lv_uuid: "gone".into(), offset: o, area: None });
        assert!(e.is_err(), "free at {o}");
    }
    drop(c);
    let after: Vec<Vec<u8>> = (0..70).map(|k| d.file.bytes(SharedDisk::at(k * a), 512)).collect();
    for k in 0..70 {
        if k == 0 || k == 66 {
            continue; // delta leases renew; the VG lock was taken and released
        }
        assert!(before[k as usize] == after[k as usize], "area {k} changed");
    }
    assert!(h1.alive_ref() && h2.alive_ref());
}

trait AliveRef {
    fn alive_ref(&self) -> bool;
}
impl AliveRef for Host {
    fn alive_ref(&self) -> bool {
        self.call(&Request::Status).is_ok()
    }
}

/// Item 3: free_lv never writes `#unused` over a lease a live host holds.
#[test]
fn free_lv_never_frees_a_held_lease() {
    let (d, u, _h1, h2) = one_lv_held("free", 2);
    let mut c = h2.client();
    call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Ex, false)).unwrap();
    let free = Request::FreeLv { vg: "vg1".into(), lv_uuid: u.clone(), offset: SharedDisk::slot(0), area: None };
    // Still in the committed metadata: refused.
    let e = call_on(&mut c, &free).unwrap_err();
    assert_eq!(e.code, ErrorCode::Refused, "{e:?}");
    assert_eq!(name_at(&d, SharedDisk::slot(0)), u);
    // Removed from the metadata (an lvremove elsewhere) while host 1 still holds it: the
    // live holder wins.
    d.commit(3, 69, &[]);
    let e = call_on(&mut c, &free).unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
    assert!(e.holders.iter().any(|h| h.host_id == 1), "{e:?}");
    let l = leader(&d, SharedDisk::slot(0));
    assert_eq!((l.resource_name.as_str_lossy(), l.owner_id), (u.clone(), 1));
}

/// Item 5: a zeroed slot is never free; a slot another LV's `lock_args` names is never
/// handed out, even when its sector says `#unused`.
#[test]
fn init_lv_never_reuses_zeroed_or_named_slots() {
    let d = SharedDisk::new("zero", "vg1", 3);
    let a = lvm_uuid("zero-a");
    let b = lvm_uuid("zero-b");
    d.format_slot(0, &a);
    // b's slot says #unused (freed by mistake); a's slot gets zeroed below.
    d.commit(
        2,
        70,
        &[
            MetaLv { name: "a", uuid: &a, offset: SharedDisk::slot(0) },
            MetaLv { name: "b", uuid: &b, offset: SharedDisk::slot(1) },
        ],
    );
    let f = std::fs::OpenOptions::new().write(true).open(&d.file.path).unwrap();
    f.write_all_at(&[0u8; 512], SharedDisk::at(SharedDisk::slot(0))).unwrap();
    let h = host("zero", 1, &[&d]);
    start_all(&[&h], &d);
    let mut c = h.client();
    call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Ex, false)).unwrap();
    let init = |u: &str| Request::InitLv { vg: "vg1".into(), lv_uuid: u.into(), area: None };
    let r = call_on(&mut c, &init("new1")).unwrap();
    assert_eq!(r, Response::LvLease { offset: SharedDisk::slot(2) }, "only slot 2 is free");
    let e = call_on(&mut c, &init("new2")).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSpace, "{e:?}");
    assert!(d.file.bytes(SharedDisk::at(SharedDisk::slot(0)), 512).iter().all(|&x| x == 0));
    assert_eq!(name_at(&d, SharedDisk::slot(1)), "#unused");
    // A zeroed slot no LV names is an error naming its offset, not a free slot.
    d.commit(3, 70, &[MetaLv { name: "b", uuid: &b, offset: SharedDisk::slot(1) }]);
    let e = call_on(&mut c, &init("new3")).unwrap_err();
    assert_eq!(e.code, ErrorCode::Corrupt, "{e:?}");
    assert!(e.message.contains(&SharedDisk::slot(0).to_string()), "{e:?}");
    assert!(d.file.bytes(SharedDisk::at(SharedDisk::slot(0)), 512).iter().all(|&x| x == 0));
}

/// Writes the GL slot of `d` as `name`.
fn set_gl(d: &SharedDisk, name: &str) {
    d.format_at(65 * MIB, name);
}

fn gl_names(ds: &[&SharedDisk]) -> Vec<String> {
    ds.iter().map(|d| name_at(d, 65 * MIB)).collect()
}

/// Item 10: no enabled GL, or two, grants none; gl-enable moves it.
#[test]
fn global_lock_needs_exactly_one_enabled() {
    let d1 = SharedDisk::new("gl1", "vga", 1);
    let d2 = SharedDisk::new("gl2", "vgb", 1);
    set_gl(&d1, "_GLLK_disabled");
    set_gl(&d2, "_GLLK_disabled");
    let h1 = host("gl", 1, &[&d1, &d2]);
    let h2 = host("gl", 2, &[&d1, &d2]);
    let gl = |m| lock("", Resource::Gl, m, false);
    // Only vga started: says vgb exists but is not started, and how to enable one.
    start_all(&[&h1, &h2], &d1);
    let e = h1.call(&gl(Mode::Ex)).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoGlobalLock, "{e:?}");
    assert!(e.message.contains("gl-enable") && e.message.contains("vgb"), "{e:?}");
    start_all(&[&h1, &h2], &d2);
    // Two enabled: a duplicate, refused on every host, naming both.
    set_gl(&d1, "GLLK");
    set_gl(&d2, "GLLK");
    let e = h2.call(&gl(Mode::Sh)).unwrap_err();
    assert_eq!(e.code, ErrorCode::DuplicateGlobalLock, "{e:?}");
    assert!(e.message.contains("vga") && e.message.contains("vgb") && e.message.contains("gl-disable"));
    // gl-enable vgb: vga disabled, vgb enabled; both hosts now agree.
    let r = h1.call(&Request::GlEnable { vg: "vgb".into() }).unwrap();
    assert_eq!(r, Response::Gl { enabled: Some("vgb".into()), disabled: vec!["vga".into()] });
    assert_eq!(gl_names(&[&d1, &d2]), ["_GLLK_disabled", "GLLK"]);
    let mut c2 = h2.client();
    call_on(&mut c2, &gl(Mode::Ex)).unwrap();
    assert_eq!(leader(&d2, 65 * MIB).owner_id, 2);
    // A move while host 2 holds the GL fails and changes nothing.
    let e = h1.call(&Request::GlEnable { vg: "vga".into() }).unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
    assert_eq!(gl_names(&[&d1, &d2]), ["_GLLK_disabled", "GLLK"]);
    expect_conflict(h1.call(&gl(Mode::Ex)), 2);
    call_on(&mut c2, &gl(Mode::Un)).unwrap();
    drop(c2);
    // gl-disable leaves none.
    h1.call(&Request::GlDisable { vg: "vgb".into() }).unwrap();
    assert_eq!(h2.call(&gl(Mode::Ex)).unwrap_err().code, ErrorCode::NoGlobalLock);
}

/// Concurrent gl-enable of different VGs on three hosts: afterwards exactly one is enabled,
/// and at no time do two hosts hold "the" GL in ex.
#[test]
fn concurrent_gl_enable_leaves_one() {
    let d1 = SharedDisk::new("cgl1", "vga", 1);
    let d2 = SharedDisk::new("cgl2", "vgb", 1);
    set_gl(&d2, "_GLLK_disabled");
    let hs: Vec<Host> = (1..=3).map(|i| host("cgl", i, &[&d1, &d2])).collect();
    let refs: Vec<&Host> = hs.iter().collect();
    start_all(&refs, &d1);
    start_all(&refs, &d2);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut total = 0;
    for round in 0..4 {
        std::thread::scope(|s| {
            let a = s.spawn(|| hs[0].call(&Request::GlEnable { vg: "vgb".into() }));
            let b = s.spawn(|| hs[1].call(&Request::GlEnable { vg: "vga".into() }));
            // Host 3 keeps taking the GL in ex meanwhile: it must only ever get one.
            let c = s.spawn(|| {
                let mut got = 0;
                for _ in 0..10 {
                    let mut c = hs[2].client();
                    if call_on(&mut c, &lock("", Resource::Gl, Mode::Ex, false)).is_ok() {
                        got += 1;
                        // While host 3 holds "the" GL, no slot named GLLK is held by another
                        // host (a mover may hold a disabled slot, never an enabled one).
                        let owners: Vec<u64> = [&d1, &d2]
                            .iter()
                            .map(|d| leader(d, 65 * MIB))
                            .filter(|l| l.timestamp != 0 && l.resource_name.as_str_lossy() == "GLLK")
                            .map(|l| l.owner_id)
                            .collect();
                        assert_eq!(owners, [3], "round {round}: holders of enabled GL slots");
                    }
                }
                got
            });
            let (_, _, got) = (a.join().unwrap(), b.join().unwrap(), c.join().unwrap());
            total += got;
        });
        let names = gl_names(&[&d1, &d2]);
        assert_eq!(names.iter().filter(|n| *n == "GLLK").count(), 1, "round {round}: {names:?}");
        assert!(Instant::now() < deadline);
    }
    assert!(total > 0, "host 3 never got the GL: the test did not exercise the overlap");
}

/// Item 9: a corrupt delta record shows in status as "corrupt: <reason>".
#[test]
fn status_shows_corrupt_host_records() {
    let d = SharedDisk::new("corrupt-st", "vg1", 1);
    let h = host("corrupt-st", 1, &[&d]);
    start_all(&[&h], &d);
    let f = std::fs::OpenOptions::new().write(true).open(&d.file.path).unwrap();
    f.write_all_at(&[0xa5u8; 64], PV_START + 4 * 512).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let Response::Status(s) = h.call(&Request::Status).unwrap() else { panic!() };
        if let Some(x) = s.lockspaces[0].hosts.iter().find(|x| x.host_id == 5) {
            assert!(x.state.starts_with("corrupt: "), "{x:?}");
            break;
        }
        assert!(Instant::now() < deadline, "host 5 never shown: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Repair frees an orphan nobody holds, reports one a live host holds, releases our stale
/// lock of an LV that left the metadata.
#[test]
fn repair_frees_only_unheld_orphans() {
    let d = SharedDisk::new("repair", "vg1", 3);
    let live = lvm_uuid("repair-live");
    d.format_slot(0, "orphan-free");
    d.format_slot(1, &live);
    d.commit(2, 70, &[MetaLv { name: "live", uuid: &live, offset: SharedDisk::slot(1) }]);
    d.format_slot(2, "orphan-held");
    let h1 = host("repair", 1, &[&d]);
    let h2 = host("repair", 2, &[&d]);
    start_all(&[&h1, &h2], &d);
    h2.call(&lock("vg1", lv_at("orphan-held", SharedDisk::slot(2)), Mode::Ex, true)).unwrap();
    h1.call(&lock("vg1", lv_at(&live, SharedDisk::slot(1)), Mode::Sh, true)).unwrap();
    let mut c = h1.client();
    call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Ex, false)).unwrap();
    let Response::Repaired(RepairReport { freed, released, left }) =
        call_on(&mut c, &Request::Repair { vg: "vg1".into(), keep: vec![] }).unwrap()
    else {
        panic!()
    };
    assert_eq!(freed, vec![(SharedDisk::slot(0), "orphan-free".to_string())]);
    assert!(released.is_empty());
    assert!(left.iter().any(|(o, why)| *o == SharedDisk::slot(2) && why.contains("host 2")), "{left:?}");
    assert_eq!(name_at(&d, SharedDisk::slot(0)), "#unused");
    assert_eq!(leader(&d, SharedDisk::slot(2)).owner_id, 2);
    assert_eq!(name_at(&d, SharedDisk::slot(1)), live);
    // The LV leaves the metadata while host 1 has it locked: repair releases that lock.
    d.commit(3, 70, &[]);
    let Response::Repaired(r) = call_on(&mut c, &Request::Repair { vg: "vg1".into(), keep: vec![] }).unwrap() else {
        panic!()
    };
    assert_eq!(r.released, vec![live.clone()]);
}

/// The cached metadata is not trusted past a commit another command announced: after the VG
/// lock shows a newer seqno, an LV lock at the slot the old metadata gave is refused.
#[test]
fn announced_commit_refreshes_the_cached_map() {
    let d = SharedDisk::new("seqno", "vg1", 2);
    let u = lvm_uuid("seqno-u");
    d.format_slot(0, &u);
    d.commit(2, 69, &[MetaLv { name: "u", uuid: &u, offset: SharedDisk::slot(0) }]);
    let h = host("seqno", 1, &[&d]);
    start_all(&[&h], &d);
    // A (contrived) change elsewhere: u's lease now at slot 1, announced as seqno 3.
    d.format_slot(1, &u);
    d.commit(3, 69, &[MetaLv { name: "u", uuid: &u, offset: SharedDisk::slot(1) }]);
    let mut c = h.client();
    call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Ex, false)).unwrap();
    call_on(&mut c, &Request::VgUpdate { vg: "vg1".into(), version: 3 }).unwrap();
    call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Un, false)).unwrap();
    let r = call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Sh, false)).unwrap();
    assert_eq!(r, Response::Locked { vg_version: Some(3) });
    let e = h.call(&lock("vg1", lv_at(&u, SharedDisk::slot(0)), Mode::Ex, true)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Refused, "{e:?}");
    h.call(&lock("vg1", lv_at(&u, SharedDisk::slot(1)), Mode::Ex, true)).unwrap();
    assert_eq!(leader(&d, SharedDisk::slot(0)).timestamp, 0);
}
