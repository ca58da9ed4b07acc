//! lockd as processes: three hosts on one shared file, talking the socket protocol.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use common::*;
use proto::lockd::protocol::{ErrorCode, Mode, Request, Resource, Response};

#[test]
fn three_hosts_start_lock_and_conflict() {
    let d = SharedDisk::new("three", "vg1", 4);
    let mut hosts: Vec<Host> = (1..=3).map(|i| Host::new("three", i, "")).collect();
    for h in &mut hosts {
        h.start();
    }
    let [h1, h2, h3] = [&hosts[0], &hosts[1], &hosts[2]];
    start_all(&[h1, h2, h3], &d);
    // A second start of a started VG succeeds and says so.
    match h1.call(&d.start_req()) {
        Ok(Response::Started { already: true, host_id: 1, generation }) => assert!(generation >= 1),
        other => panic!("{other:?}"),
    }

    init_lvs(h3, "vg1", &["lv-a", "lv-b"]);
    // -aey on host 1: persistent, outlives the connection.
    assert!(h1.call(&lock("vg1", lv("lv-a", 0), Mode::Ex, true)).is_ok());
    let e = expect_conflict(h2.call(&lock("vg1", lv("lv-a", 0), Mode::Ex, true)), 1);
    assert!(e.message.starts_with("LV vg1/lv_lv-a is locked by host 1 (node1, "), "{}", e.message);
    expect_conflict(h3.call(&lock("vg1", lv("lv-a", 0), Mode::Sh, true)), 1);
    // Idempotent on the holder.
    assert!(h1.call(&lock("vg1", lv("lv-a", 0), Mode::Ex, true)).is_ok());

    // -asy on two hosts; -aey refused on a third and on a sharer.
    assert!(h2.call(&lock("vg1", lv("lv-b", 1), Mode::Sh, true)).is_ok());
    assert!(h3.call(&lock("vg1", lv("lv-b", 1), Mode::Sh, true)).is_ok());
    let e = expect_conflict(h1.call(&lock("vg1", lv("lv-b", 1), Mode::Ex, true)), 2);
    assert!(e.holders.iter().all(|h| h.shared) && e.holders.len() == 2, "{e:?}");
    expect_conflict(h2.call(&lock("vg1", lv("lv-b", 1), Mode::Ex, true)), 3);
    // After both deactivate, ex works.
    assert!(h2.call(&lock("vg1", lv("lv-b", 1), Mode::Un, true)).is_ok());
    assert!(h3.call(&lock("vg1", lv("lv-b", 1), Mode::Un, true)).is_ok());
    assert!(h1.call(&lock("vg1", lv("lv-b", 1), Mode::Ex, true)).is_ok());
    // Ex -> sh conversion lets others share.
    assert!(h1.call(&lock("vg1", lv("lv-b", 1), Mode::Sh, true)).is_ok());
    assert!(h2.call(&lock("vg1", lv("lv-b", 1), Mode::Sh, true)).is_ok());

    // VG locks belong to the connection: ex on one host keeps others out until it closes.
    let mut c1 = h1.client();
    assert!(call_on(&mut c1, &lock("vg1", Resource::Vg, Mode::Ex, false)).is_ok());
    expect_conflict(h2.call(&lock("vg1", Resource::Vg, Mode::Sh, false)), 1);
    // The value block carries the version announced by the holder.
    assert!(call_on(&mut c1, &Request::VgUpdate { vg: "vg1".into(), version: 42 }).is_ok());
    drop(c1);
    match h2.call(&lock("vg1", Resource::Vg, Mode::Sh, false)) {
        Ok(Response::Locked { vg_version }) => assert_eq!(vg_version, Some(42)),
        other => panic!("{other:?}"),
    }
    // VG update needs the VG lock in ex.
    let e = h3.call(&Request::VgUpdate { vg: "vg1".into(), version: 43 }).unwrap_err();
    assert_eq!(e.code, ErrorCode::Refused, "{e:?}");
    // GL by any VG name (it lives in vg1): sh on two hosts.
    let mut g2 = h2.client();
    let mut g3 = h3.client();
    assert!(call_on(&mut g2, &lock("", Resource::Gl, Mode::Sh, false)).is_ok());
    assert!(call_on(&mut g3, &lock("other", Resource::Gl, Mode::Sh, false)).is_ok());
    expect_conflict(h1.call(&lock("", Resource::Gl, Mode::Ex, false)), 2);

    // Status: our generation, every host live, our locks.
    match h1.call(&Request::Status) {
        Ok(Response::Status(s)) => {
            assert_eq!(s.host_id, 1);
            let ls = &s.lockspaces[0];
            assert_eq!((ls.vg.as_str(), ls.state.as_str(), ls.gl_enabled), ("vg1", "running", true));
            assert_eq!(ls.hosts.len(), 3, "{ls:?}");
            assert!(ls.locks.iter().any(|l| l.resource == "lv-a" && l.mode == Mode::Ex && l.persistent), "{ls:?}");
            let text = proto::lockd::status::render(&s);
            assert!(text.contains("lockspace lvm_vg1 (VG vg1) running, global lock"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockd"))
        .args(["status", "--config"])
        .arg(&h1.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("host_id 1 name node1") && text.contains("ex lv-a"), "{text}");

    // Lock stop refuses while LV locks are held, then works when forced.
    let e = h1.call(&Request::LockStop { vg: "vg1".into(), force: false }).unwrap_err();
    assert_eq!(e.code, ErrorCode::Refused);
    assert!(e.message.contains("lv_lv-a"), "{}", e.message);
    match h1.call(&Request::LockStop { vg: "vg1".into(), force: true }) {
        Ok(Response::Stopped { released_lv_locks: 2 }) => {}
        other => panic!("{other:?}"),
    }
    // Host 1's leases are free at once: its delta lease is released too.
    assert!(h2.call(&lock("vg1", lv("lv-a", 0), Mode::Ex, true)).is_ok());
    let e = h1.call(&lock("vg1", lv("lv-a", 0), Mode::Ex, true)).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoLockspace);
}

#[test]
fn init_and_free_lv_leases_under_the_vg_lock() {
    let d = SharedDisk::new("initlv", "vg2", 2);
    let mut h = Host::new("initlv", 1, "");
    h.start();
    start_all(&[&h], &d);
    let init = |uuid: &str| Request::InitLv { vg: "vg2".into(), lv_uuid: uuid.into(), area: None };
    let mut c = h.client();
    assert_eq!(call_on(&mut c, &init("u1")).unwrap_err().code, ErrorCode::Refused, "needs VG ex");
    assert!(call_on(&mut c, &lock("vg2", Resource::Vg, Mode::Ex, false)).is_ok());
    assert_eq!(call_on(&mut c, &init("u1")).unwrap(), Response::LvLease { offset: SharedDisk::slot(0) });
    assert_eq!(call_on(&mut c, &init("u2")).unwrap(), Response::LvLease { offset: SharedDisk::slot(1) });
    assert_eq!(call_on(&mut c, &init("u3")).unwrap_err().code, ErrorCode::NoSpace);
    // A map in a request that the metadata does not have is refused, and changes nothing.
    let mut bigger = d.area.clone();
    bigger.pieces[0].len += MIB;
    let r = call_on(&mut c, &Request::InitLv { vg: "vg2".into(), lv_uuid: "u3".into(), area: Some(bigger.clone()) });
    assert_eq!(r.unwrap_err().code, ErrorCode::BadRequest);
    // The lease LV grown in the committed metadata (one more slot, formatted first): lockd
    // reads it when it finds no free slot, and the same hint now agrees.
    d.format_slot(2, "#unused");
    d.commit(2, 67 + 3, &[]);
    let r = call_on(&mut c, &Request::InitLv { vg: "vg2".into(), lv_uuid: "u3".into(), area: Some(bigger) });
    assert_eq!(r.unwrap(), Response::LvLease { offset: SharedDisk::slot(2) });
    // An LV active here cannot lose its lease; a free makes the slot reusable.
    assert!(call_on(&mut c, &lock("vg2", lv("u1", 0), Mode::Ex, true)).is_ok());
    let free = |uuid: &str, k| Request::FreeLv {
        vg: "vg2".into(),
        lv_uuid: uuid.into(),
        offset: SharedDisk::slot(k),
        area: None,
    };
    assert_eq!(call_on(&mut c, &free("u1", 0)).unwrap_err().code, ErrorCode::Refused);
    assert_eq!(call_on(&mut c, &free("u2", 0)).unwrap_err().code, ErrorCode::Refused, "slot holds u1");
    // lvremove: the command's own ex LV lock, then free.
    assert!(call_on(&mut c, &lock("vg2", lv("u2", 1), Mode::Ex, false)).is_ok());
    assert!(call_on(&mut c, &free("u2", 1)).is_ok());
    assert_eq!(call_on(&mut c, &init("u4")).unwrap(), Response::LvLease { offset: SharedDisk::slot(1) });
}

/// Raw frames on the socket.
fn raw(h: &Host) -> UnixStream {
    UnixStream::connect(h.run_dir().join("lockd.sock")).unwrap()
}

fn read_reply(s: &mut UnixStream) -> Response {
    proto::lockd::protocol::read_frame(s).unwrap()
}

#[test]
fn malformed_and_oversized_requests_get_errors() {
    let mut h = Host::new("malformed", 1, "");
    h.start();
    let mut s = raw(&h);
    for body in [&b"not json"[..], b"{\"op\":\"frobnicate\"}", b"{\"op\":\"lock\",\"vg\":1}", b""] {
        s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        s.write_all(body).unwrap();
        match read_reply(&mut s) {
            Response::Error(e) => assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}"),
            other => panic!("{other:?}"),
        }
    }
    // Same connection still works.
    proto::lockd::protocol::write_frame(&mut s, &Request::Status).unwrap();
    assert!(matches!(read_reply(&mut s), Response::Status(_)));
    // An oversized frame: error, then the connection is closed.
    s.write_all(&(64u32 << 20).to_be_bytes()).unwrap();
    match read_reply(&mut s) {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::TooLarge),
        other => panic!("{other:?}"),
    }
    let mut rest = vec![];
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
    // A truncated frame and a vanished client do not hurt either.
    let mut t = raw(&h);
    t.write_all(&100u32.to_be_bytes()).unwrap();
    t.write_all(b"{\"op\"").unwrap();
    drop(t);
    // Requests about unknown VGs, bad offsets and bad areas are errors, not crashes.
    let e = h.call(&lock("nope", Resource::Vg, Mode::Ex, false)).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoLockspace);
    let e = h.call(&Request::Hello { version: 99 }).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    let mut area = SharedDisk::new("malformed", "vg3", 1).area;
    area.align_bytes = 3;
    let e = h.call(&Request::LockStart { vg: "vg3".into(), vg_uuid: "u".into(), area }).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(h.alive());
    assert!(matches!(h.call(&Request::Status), Ok(Response::Status(_))));
}

/// SIGTERM stops lockd only when no lockspace is started: exiting with one would leave its
/// leases to the watchdog (a host reset). The refusal is logged and the daemon goes on serving.
#[test]
fn sigterm_exits_only_without_lockspaces() {
    let d = SharedDisk::new("term", "vg1", 2);
    let mut h = Host::new("term", 1, "");
    h.start();
    assert!(h.call(&d.start_req()).is_ok());
    h.signal(libc::SIGTERM);
    let t0 = std::time::Instant::now();
    while !h.log_text().contains("SIGTERM ignored: the lockspace of VG(s) vg1 is started") {
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "no refusal logged: {}", h.log_text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(h.alive());
    assert!(matches!(h.call(&Request::Status), Ok(Response::Status(_))));
    assert!(h.call(&Request::LockStop { vg: "vg1".into(), force: false }).is_ok());
    h.signal(libc::SIGTERM);
    let st = h.wait_exit(std::time::Duration::from_secs(10)).expect("lockd still runs after SIGTERM");
    assert!(st.success(), "{st}: {}", h.log_text());
    assert!(!h.run_dir().join("lockd.sock").exists());
}

#[test]
fn second_daemon_on_the_same_run_dir_refuses() {
    let mut h = Host::new("twice", 1, "");
    h.start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockd"))
        .args(["daemon", "--config"])
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another lockd is running"));
    let bad = h.dir.join("bad.toml");
    std::fs::write(&bad, "io_timeout = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockd"))
        .args(["daemon", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("host_id"), "{out:?}");
    let sock = h.run_dir().join("lockd.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
}
