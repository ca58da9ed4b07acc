//! Crashes, restarts, corrupt leases, lost storage, and what real sanlock sees of our leases.
//! Ordering is asserted from time stamps of one clock (CLOCK_MONOTONIC, shared by every process
//! here and written by lockd into its delta lease), never from how long a test slept.

mod common;

use std::time::Duration;

use common::*;
use proto::lockd::protocol::{ErrorCode, Mode, Request, Resource, Response};

fn generation(h: &Host) -> u64 {
    match h.call(&Request::Status) {
        Ok(Response::Status(s)) => s.lockspaces[0].generation,
        other => panic!("{other:?}"),
    }
}

/// `mono_ms=` of the first log line containing `needle`.
fn log_mono(h: &Host, needle: &str) -> Option<u64> {
    h.log_text().lines().find(|l| l.contains(needle)).and_then(|l| {
        let at = l.find("mono_ms=")? + "mono_ms=".len();
        l[at..].split_whitespace().next()?.parse().ok()
    })
}

#[test]
fn killed_holder_keeps_its_lv_until_host_dead() {
    let d = SharedDisk::new("kill9", "vg1", 1);
    let mut h1 = Host::new("kill9", 1, "");
    let mut h2 = Host::new("kill9", 2, "");
    h1.start();
    h2.start();
    start_all(&[&h1, &h2], &d);
    init_lvs(&h1, "vg1", &["lvx"]);
    h1.call(&lock("vg1", lv("lvx", 0), Mode::Ex, true)).unwrap();
    h1.kill9();
    let killed = mono();
    // Host 1's last renewal was issued at or after this (its CLOCK_MONOTONIC seconds).
    let last_renewal = Duration::from_secs(d.delta_timestamp(1));
    let host_dead = timeouts().host_dead();
    let mut attempts = vec![];
    let success = loop {
        let t0 = mono();
        let r = h2.call(&lock("vg1", lv("lvx", 0), Mode::Ex, true));
        let t1 = mono();
        match r {
            Ok(_) => break (t0, t1),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
                assert!(e.holders.iter().any(|h| h.host_id == 1), "{e:?}");
                attempts.push((t0, t1));
            }
        }
        assert!(t1 < killed + host_dead + Duration::from_secs(30), "never became available");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!attempts.is_empty(), "the LV was available at once");
    assert!(
        success.1 >= last_renewal + host_dead,
        "taken over at {:?}, before host 1's last renewal {last_renewal:?} + host_dead {host_dead:?}",
        success.1
    );
    // Host 2's log agrees: the grant is after the last refusal.
    let granted = log_mono(&h2, "LV vg1/lv_lvx held ex").expect("grant logged");
    assert!(Duration::from_millis(granted) >= last_renewal + host_dead);
}

#[test]
fn restarted_lockd_keeps_generation_and_locks() {
    let d = SharedDisk::new("restart", "vg1", 2);
    let mut h1 = Host::new("restart", 1, "");
    let mut h2 = Host::new("restart", 2, "");
    h1.start();
    h2.start();
    start_all(&[&h1, &h2], &d);
    init_lvs(&h1, "vg1", &["lva", "lvb"]);
    h1.call(&lock("vg1", lv("lva", 0), Mode::Ex, true)).unwrap();
    let gen = generation(&h1);
    // A command holding the VG lock dies with the daemon.
    let mut c = h1.client();
    call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Ex, false)).unwrap();
    h1.kill9();
    drop(c);
    h1.start();
    assert_eq!(generation(&h1), gen, "the same delta lease generation goes on");
    assert!(h1.log_text().contains("resumed host_id 1 generation"), "{}", h1.log_text());
    // The LV lock is still host 1's; the dead command's VG lock is gone.
    expect_conflict(h2.call(&lock("vg1", lv("lva", 0), Mode::Ex, true)), 1);
    h2.call(&lock("vg1", Resource::Vg, Mode::Ex, false)).unwrap();
    match h1.call(&Request::Status) {
        Ok(Response::Status(s)) => {
            let l = &s.lockspaces[0];
            assert!(l.locks.iter().any(|x| x.resource == "lva" && x.persistent && x.mode == Mode::Ex), "{l:?}");
            assert!(!l.locks.iter().any(|x| x.resource == "VGLK"), "{l:?}");
        }
        other => panic!("{other:?}"),
    }
    // Renewals go on: other hosts keep seeing host 1 live across several intervals.
    let until = mono() + timeouts().renewal_fail() + Duration::from_secs(1);
    while mono() < until {
        expect_conflict(h2.call(&lock("vg1", lv("lva", 0), Mode::Sh, true)), 1);
        std::thread::sleep(Duration::from_millis(500));
    }
    h1.call(&lock("vg1", lv("lva", 0), Mode::Un, true)).unwrap();
    h2.call(&lock("vg1", lv("lva", 0), Mode::Ex, true)).unwrap();

    // Without its state, a restarted lockd of the same boot cannot know what the old one left
    // in use: it waits 8N+W before taking its host_id again, with a new generation.
    h1.kill9();
    std::fs::remove_dir_all(h1.run_dir().join("state")).unwrap();
    h1.start();
    let t0 = mono();
    match h1.call(&d.start_req()) {
        Ok(Response::Started { already: false, generation, .. }) => assert_eq!(generation, gen + 1),
        other => panic!("{other:?}"),
    }
    assert!(mono() - t0 >= timeouts().host_dead(), "rejoined without waiting for the old incarnation");
    assert!(h1.log_text().contains("waited 8N+W"));
}

#[test]
fn corrupt_lease_is_an_error_not_a_takeover() {
    let d = SharedDisk::new("corrupt", "vg1", 2);
    let mut h1 = Host::new("corrupt", 1, "");
    let mut h2 = Host::new("corrupt", 2, "");
    h1.start();
    h2.start();
    start_all(&[&h1, &h2], &d);
    init_lvs(&h1, "vg1", &["lva", "lvb"]);
    h1.call(&lock("vg1", lv("lva", 0), Mode::Ex, true)).unwrap();
    // Flip a bit inside the leader's checksummed bytes of both LV leases.
    for k in 0..2 {
        let at = SharedDisk::at(SharedDisk::slot(k)) + 153; // inside the timestamp
        let b = d.file.bytes(at, 1)[0];
        d.file.poke(at, &[b ^ 0x40]);
    }
    for k in 0..2 {
        let name = if k == 0 { "lva" } else { "lvb" };
        let e = h2.call(&lock("vg1", lv(name, k), Mode::Ex, true)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Corrupt, "{e:?}");
        assert!(e.message.contains("checksum"), "{}", e.message);
    }
    assert!(h1.alive() && h2.alive());
}

#[test]
fn lost_storage_fails_the_lockspace_and_runs_the_kill_path() {
    let d = SharedDisk::new("lost", "vg1", 1);
    let marker = std::env::temp_dir().join(format!("lockd-lost-marker-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let extra = format!("kill_command = [\"sh\", \"-c\", \"echo killed $0 > {}\"]", marker.display());
    let mut h1 = Host::new("lost", 1, &extra);
    h1.start();
    start_all(&[&h1], &d);
    init_lvs(&h1, "vg1", &["lvx"]);
    h1.call(&lock("vg1", lv("lvx", 0), Mode::Ex, true)).unwrap();
    let last_seen = Duration::from_secs(d.delta_timestamp(1));
    // The disk disappears under the lease area: every renewal read fails from now on.
    std::fs::OpenOptions::new().write(true).open(&d.file.path).unwrap().set_len(PV_START).unwrap();
    let deadline = mono() + timeouts().host_dead() + Duration::from_secs(20);
    while log_mono(&h1, "clean after failure").is_none() {
        assert!(mono() < deadline, "no failure handling: {}", h1.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let failed = Duration::from_millis(log_mono(&h1, "FAILED").unwrap());
    assert!(failed >= last_seen + timeouts().renewal_fail(), "failed at {failed:?}, before 8N");
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "killed vg1");
    let log = h1.log_text();
    let order: Vec<usize> = ["FAILED", "fenced", "kill command succeeded", "clean after failure"]
        .iter()
        .map(|n| log.find(n).unwrap_or_else(|| panic!("{n} not logged: {log}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log}");
    let e = h1.call(&lock("vg1", lv("lvx", 0), Mode::Ex, true)).unwrap_err();
    assert_eq!(e.code, ErrorCode::LockspaceFailed, "{e:?}");
    let e = h1.call(&d.start_req()).unwrap_err();
    assert_eq!(e.code, ErrorCode::LockspaceFailed, "{e:?}");
    h1.call(&Request::LockStop { vg: "vg1".into(), force: false }).unwrap();
    let _ = std::fs::remove_file(&marker);
}

#[test]
fn sanlock_sees_our_hosts_and_owners() {
    if !sanlvm_tests::require_sanlock("sanlock_sees_our_hosts_and_owners") {
        return;
    }
    let d = SharedDisk::new("interop", "vg1", 2);
    let mut h1 = Host::new("interop", 1, "");
    let mut h2 = Host::new("interop", 2, "");
    h1.start();
    h2.start();
    start_all(&[&h1, &h2], &d);
    init_lvs(&h1, "vg1", &["lva", "lvb"]);
    h1.call(&lock("vg1", lv("lva", 0), Mode::Ex, true)).unwrap();
    h2.call(&lock("vg1", lv("lvb", 1), Mode::Sh, true)).unwrap();
    let p = d.file.p();
    let dump = sanlvm_tests::sanlock_direct(&["dump", &format!("{p}:{PV_START}:{}", 70 * MIB)]);
    assert!(dump.ok(), "{dump:?}");
    let line = |needle: &str| dump.stdout.lines().find(|l| l.contains(needle)).map(str::to_string);
    for n in ["node1", "node2"] {
        assert!(line(&format!(" {n} ")).is_some(), "{n} not in {}", dump.stdout);
    }
    let a = line(" lva ").unwrap_or_else(|| panic!("lva not in {}", dump.stdout));
    let f: Vec<&str> = a.split_whitespace().collect();
    // offset lockspace resource timestamp own gen lver
    assert_eq!((f[1], f[2], f[4]), ("lvm_vg1", "lva", "0001"), "{a}");
    assert_ne!(f[3], "0000000000", "held: {a}");
    // sanlock cannot take an LV lease we hold.
    let res = format!("lvm_vg1:lva:{p}:{}", SharedDisk::at(SharedDisk::slot(0)));
    let r = sanlvm_tests::sanlock_direct(&["acquire", "-r", &res, "-i", "3", "-g", "1"]);
    // sanlock 3.8.5 prints the (negative) result and exits 1: the owner (host 1) is not dead.
    assert!(!r.ok() && r.stdout.contains("acquire done -"), "{r:?}");
    // And the lease is still ours.
    expect_conflict(h2.call(&lock("vg1", lv("lva", 0), Mode::Ex, true)), 1);
}

#[test]
fn restart_finding_its_delta_lease_changed_fails_the_lockspace() {
    let d = SharedDisk::new("lostrec", "vg1", 1);
    let mut h1 = Host::new("lostrec", 1, "");
    h1.start();
    start_all(&[&h1], &d);
    init_lvs(&h1, "vg1", &["lvx"]);
    h1.call(&lock("vg1", lv("lvx", 0), Mode::Ex, true)).unwrap();
    h1.kill9();
    // Someone else's incarnation now owns host_id 1 (a newer generation).
    let at = PV_START;
    let mut rec = lease::ondisk::LeaderRecord::decode(&d.file.bytes(at, 512)).unwrap();
    rec.owner_generation += 1;
    let mut sector = vec![0u8; 512];
    rec.encode(&mut sector[..lease::ondisk::LEADER_RECORD_LEN]);
    d.file.poke(at, &sector);
    h1.start();
    match h1.call(&Request::Status) {
        Ok(Response::Status(s)) => {
            let st = &s.lockspaces[0].state;
            assert!(st.starts_with("failed: not resumable") && st.contains("changed on disk"), "{st}");
        }
        other => panic!("{other:?}"),
    }
    assert!(h1.log_text().contains("lvm_vg1: 1 active LV(s) of VG vg1 fenced"), "{}", h1.log_text());
    let e = h1.call(&lock("vg1", lv("lvx", 0), Mode::Un, true));
    assert!(e.is_ok(), "an unlock in a failed lockspace only forgets: {e:?}");
    let e = h1.call(&lock("vg1", lv("lvx", 0), Mode::Ex, true)).unwrap_err();
    assert_eq!(e.code, ErrorCode::LockspaceFailed);
    h1.call(&Request::LockStop { vg: "vg1".into(), force: false }).unwrap();
}
