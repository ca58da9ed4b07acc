//! lockd with wdmd (its file-backed test watchdog: it records pets, it fences nothing). The
//! wdmd process is this test binary re-run as wdmd (see `wdmd_entry`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use proto::lockd::protocol::Mode;
use wdmd::device::FileWatchdog;

const WDMD_ENV: &str = "SANLVM_TEST_WDMD_DIR";

/// Not a test: the entry point of the wdmd processes the tests start.
#[test]
fn wdmd_entry() {
    let Some(dir) = std::env::var_os(WDMD_ENV) else { return };
    let dir = PathBuf::from(dir);
    let cfg = wdmd::server::ServerConfig { run_dir: dir.join("run"), fire_timeout: W };
    let wd = Box::new(FileWatchdog::new(&dir.join("watchdog")));
    wdmd::server::run(&cfg, wd, |_| {}).unwrap();
}

struct Wdmd {
    dir: PathBuf,
    child: Child,
}

impl Wdmd {
    fn start(tag: &str) -> Wdmd {
        let dir = std::env::temp_dir().join(format!("lockd-wdmd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["wdmd_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env(WDMD_ENV, &dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("wdmd.log")).unwrap())
            .spawn()
            .unwrap();
        assert!(wdmd::server::wait_for_socket(&dir.join("run"), Duration::from_secs(20)), "wdmd did not start");
        Wdmd { dir, child }
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    fn events(&self) -> Vec<wdmd::device::Event> {
        FileWatchdog::read_events(&self.dir.join("watchdog")).unwrap_or_default()
    }

    fn clients(&self) -> Vec<proto::wdmd::protocol::ClientStatus> {
        proto::wdmd::client::Client::connect(&self.run_dir()).unwrap().status().unwrap().clients
    }
}

impl Drop for Wdmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn watchdog_config(w: &Wdmd) -> String {
    format!("use_watchdog = true\nwdmd_run_dir = \"{}\"", w.run_dir().display())
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A frozen lockd stops renewing; its wdmd stops petting, and the watchdog would reset its host
/// before the other host takes over its LV.
#[test]
fn frozen_lockd_is_reset_before_takeover() {
    let wd = Wdmd::start("sigstop");
    let d = SharedDisk::new("sigstop", "vg1", 1);
    let mut h1 = Host::new("sigstop", 1, &watchdog_config(&wd));
    let mut h2 = Host::new("sigstop", 2, "");
    h1.start();
    h2.start();
    start_all(&[&h1, &h2], &d);
    init_lvs(&h1, "vg1", &["lvx"]);
    h1.call(&lock("vg1", lv("lvx", 0), Mode::Ex, true)).unwrap();
    // Registered with its generation, and an expiry 8N after a renewal.
    let c = wd.clients();
    assert!(c.iter().any(|c| c.name.starts_with("lockd_lvm_vg1:1:") && c.connected && c.times.expiry_ms > 0), "{c:?}");
    wait_until("wdmd petting", Duration::from_secs(10), || {
        wd.events().iter().any(|e| e.kind == wdmd::device::EventKind::Keepalive)
    });

    h1.signal(libc::SIGSTOP);
    let takeover = loop {
        let r = h2.call(&lock("vg1", lv("lvx", 0), Mode::Ex, true));
        if r.is_ok() {
            break mono();
        }
        expect_conflict(r, 1);
        std::thread::sleep(Duration::from_millis(200));
    };
    let fire =
        wdmd::device::would_fire_at(&wd.events(), Duration::from_secs(W as u64)).expect("the watchdog was left armed");
    assert!(fire <= takeover, "watchdog fires at {fire:?}, after host 2 took the LV at {takeover:?}");
    h1.signal(libc::SIGCONT);
}

/// kill -9 and restart: the new lockd adopts the wdmd entry of the same generation and goes on
/// renewing before it expires, so the watchdog never stops being petted.
#[test]
fn restarted_lockd_adopts_its_watchdog_entry() {
    let wd = Wdmd::start("adopt");
    let d = SharedDisk::new("adopt", "vg1", 1);
    let mut h1 = Host::new("adopt", 1, &watchdog_config(&wd));
    h1.start();
    start_all(&[&h1], &d);
    init_lvs(&h1, "vg1", &["lvx"]);
    h1.call(&lock("vg1", lv("lvx", 0), Mode::Ex, true)).unwrap();
    let name = wd.clients()[0].name.clone();
    h1.kill9();
    wait_until("wdmd to see the client gone", Duration::from_secs(10), || {
        wd.clients().iter().any(|c| c.name == name && !c.connected)
    });
    h1.start();
    wait_until("the entry adopted", Duration::from_secs(10), || {
        wd.clients().iter().any(|c| c.name == name && c.connected)
    });
    // Several renewal intervals later the watchdog is still petted.
    let until = mono() + common::timeouts().renewal_fail();
    while mono() < until {
        std::thread::sleep(Duration::from_millis(500));
    }
    let ev = wd.events();
    assert!(wdmd::device::would_fire_at(&ev, Duration::from_secs(W as u64)).is_none_or(|f| f > mono()), "{ev:?}");
    assert!(!ev.iter().any(|e| e.kind == wdmd::device::EventKind::CloseArmed), "{ev:?}");
    // A clean lock stop clears and drops the entry.
    h1.call(&lock("vg1", lv("lvx", 0), Mode::Un, true)).unwrap();
    h1.call(&proto::lockd::protocol::Request::LockStop { vg: "vg1".into(), force: false }).unwrap();
    wait_until("the entry gone", Duration::from_secs(10), || wd.clients().is_empty());
    let _ = Path::new("");
}
