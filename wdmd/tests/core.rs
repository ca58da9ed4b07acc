//! The daemon's decisions on a virtual clock: the loop is driven exactly as the server drives it
//! (a test at every `next_tick()`), and the file-backed watchdog records each event with the
//! virtual time, so every assertion is about recorded events, not about sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lease::timeouts::Timeouts;
use proto::wdmd::protocol::{ErrorKind, Request, Response, Times};
use wdmd::daemon::{ConnId, Daemon};
use wdmd::device::{would_fire_at, Event, EventKind, FileWatchdog};
use wdmd::state::StateFile;

/// W = 30: test interval 5 s, distinct from the 1 s recovery interval.
const W: u32 = 30;
/// lockd's io_timeout in these tests: renew every 4 s, expiry 16 s after a renewal.
const N: u32 = 2;

fn s(x: f64) -> Duration {
    Duration::from_secs_f64(x)
}

struct Sim {
    clock: Arc<AtomicU64>,
    d: Daemon,
    dir: tempfile::TempDir,
}

impl Sim {
    fn new() -> Sim {
        let dir = tempfile::tempdir().unwrap();
        Sim::in_dir(dir, s(1000.0))
    }

    fn in_dir(dir: tempfile::TempDir, start: Duration) -> Sim {
        let clock = Arc::new(AtomicU64::new(start.as_millis() as u64));
        let c = clock.clone();
        let wd = FileWatchdog::with_clock(
            &dir.path().join("watchdog"),
            Box::new(move || Duration::from_millis(c.load(Ordering::SeqCst))),
        );
        let d = Daemon::start(Box::new(wd), W, Some(StateFile::new(dir.path())), start).unwrap();
        Sim { clock, d, dir }
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.clock.load(Ordering::SeqCst))
    }

    fn set_now(&self, t: Duration) {
        assert!(t >= self.now(), "time goes forward");
        self.clock.store(t.as_millis() as u64, Ordering::SeqCst);
    }

    /// Runs the loop up to `t`: a test at each moment the daemon asks for one.
    fn run_until(&mut self, t: Duration) {
        loop {
            let next = self.d.next_tick();
            if next > t {
                break;
            }
            self.set_now(next.max(self.now()));
            self.d.tick(self.now());
        }
        self.set_now(t);
    }

    fn t(&self) -> Timeouts {
        self.d.timeouts()
    }

    fn lockd(&self) -> Timeouts {
        Timeouts::new(N, W).unwrap()
    }

    fn req(&mut self, conn: ConnId, r: Request) -> Response {
        let now = self.now();
        self.d.request(conn, r, now)
    }

    fn register(&mut self, name: &str) -> ConnId {
        let c = self.d.connect(4242);
        assert_eq!(
            self.req(c, Request::Register { name: name.into(), takeover: false, fire_timeout_secs: W }),
            Response::Registered { adopted: None }
        );
        c
    }

    /// A renewal now: expiry = now + 8N.
    fn renew(&mut self, conn: ConnId) -> Duration {
        let r = self.now();
        let e = self.lockd().wdmd_expiry(r);
        let req = Request::SetExpiry { renewal_ms: r.as_millis() as u64, expiry_ms: e.as_millis() as u64 };
        assert_eq!(self.req(conn, req), Response::Ok);
        e
    }

    fn clear(&mut self, conn: ConnId) {
        assert_eq!(self.req(conn, Request::SetExpiry { renewal_ms: 0, expiry_ms: 0 }), Response::Ok);
    }

    fn events(&self) -> Vec<Event> {
        FileWatchdog::read_events(&self.dir.path().join("watchdog")).unwrap()
    }

    fn pets(&self) -> Vec<Duration> {
        self.events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Keepalive | EventKind::Open { .. }))
            .map(|e| e.at)
            .collect()
    }

    fn count(&self, k: EventKind) -> usize {
        self.events().iter().filter(|e| e.kind == k).count()
    }
}

fn max_gap(times: &[Duration]) -> Duration {
    times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

#[test]
fn timings_come_from_lease_timeouts() {
    let sim = Sim::new();
    assert_eq!(sim.t().wdmd_test_interval(), s(5.0));
    assert_eq!(sim.t().wdmd_recover_test_interval(), s(1.0));
    let ev = sim.events();
    assert_eq!(ev[0].kind, EventKind::Open { timeout: W }, "opened with the fire timeout");
    assert_eq!(ev[1].kind, EventKind::Keepalive);
}

/// (1) A client that keeps renewing keeps the device petted, every test interval.
#[test]
fn renewing_client_keeps_the_device_petted() {
    let mut sim = Sim::new();
    let a = sim.register("lockd_lvm_vg1:1");
    let start = sim.now();
    for k in 1..=50 {
        sim.renew(a);
        sim.run_until(start + sim.lockd().renewal_interval() * k);
    }
    assert_eq!(sim.count(EventKind::CloseArmed), 0);
    let pets = sim.pets();
    assert!(pets.len() >= 40, "{} pets", pets.len());
    assert!(max_gap(&pets) <= sim.t().wdmd_test_interval(), "gap {:?}", max_gap(&pets));
    assert!(sim.d.petting());
}

/// (2) An expiry that is not extended: the device is closed armed exactly one test interval
/// before it, not earlier, and never petted again; the fire lands by expiry + W.
#[test]
fn approaching_expiry_closes_armed_one_interval_before() {
    let mut sim = Sim::new();
    let a = sim.register("lockd_lvm_vg1:1");
    sim.set_now(s(1001.3)); // off the test grid on purpose
    let e = sim.renew(a);
    let i = sim.t().wdmd_test_interval();
    sim.run_until(e + s(100.0));

    let ev = sim.events();
    let close = ev.iter().find(|x| x.kind == EventKind::CloseArmed).expect("closed armed");
    assert_eq!(close.at, sim.t().wdmd_last_pet(e), "closed exactly at expiry - test interval");
    assert_eq!(close.at, e - i);
    let last_pet = *sim.pets().last().unwrap();
    assert!(last_pet < e - i, "last keepalive {last_pet:?} before expiry - interval {:?}", e - i);
    assert!(ev.iter().all(|x| x.at <= close.at), "nothing after the close: {ev:?}");
    assert_eq!(sim.count(EventKind::CloseDisarmed), 0, "never the magic close");
    let fire = would_fire_at(&ev, Duration::from_secs(W as u64)).expect("armed");
    assert!(fire <= e + Duration::from_secs(W as u64), "fires by expiry + W");
    // The renewal time + host_dead bound of the safety chain.
    assert!(fire <= s(1001.3) + sim.lockd().host_dead());
    assert!(!sim.d.petting());
    let st = sim.d.status(sim.now());
    assert_eq!(st.current_interval_ms, 1000, "1 s tests while failing");
    assert_eq!(st.last_close_armed_ms, Some(close.at.as_millis() as u64));
}

/// (3) Clearing the expiry while failing resumes petting at once; so does a later expiry.
#[test]
fn clearing_or_extending_resumes_petting() {
    for extend in [false, true] {
        let mut sim = Sim::new();
        let a = sim.register("lockd_lvm_vg1:1");
        let e = sim.renew(a);
        sim.run_until(e - s(2.0));
        assert!(!sim.d.petting());
        let closed_at = sim.events().last().unwrap().at;
        if extend {
            sim.renew(a);
        } else {
            sim.clear(a);
        }
        let resumed = sim.now();
        sim.run_until(resumed + s(60.0));
        let after: Vec<_> = sim.events().into_iter().filter(|x| x.at > closed_at).collect();
        assert_eq!(after[0], Event { at: resumed, kind: EventKind::Open { timeout: W } }, "reopened at once");
        assert_eq!(after[1], Event { at: resumed, kind: EventKind::Keepalive });
        if !extend {
            assert!(after.iter().all(|x| x.kind != EventKind::CloseArmed));
            let pets = sim.pets();
            assert!(max_gap(&pets[pets.len() - 10..]) <= sim.t().wdmd_test_interval());
            assert!(sim.d.petting());
            assert_eq!(sim.d.status(sim.now()).current_interval_ms, 5000, "back to the standard interval");
        } else {
            // The extended expiry is enforced in turn.
            let e2 = sim.lockd().wdmd_expiry(resumed);
            let closes: Vec<_> = after.iter().filter(|x| x.kind == EventKind::CloseArmed).collect();
            assert_eq!(closes.len(), 1);
            assert_eq!(closes[0].at, e2 - sim.t().wdmd_test_interval());
        }
    }
}

/// (4) A client that disconnects with its expiry set stays: the device is left armed at its
/// expiry, and only a takeover by its owner can clear it.
#[test]
fn disconnect_with_expiry_leaves_the_device_armed() {
    let mut sim = Sim::new();
    let a = sim.register("lockd_lvm_vg1:1");
    let e = sim.renew(a);
    sim.run_until(sim.now() + s(3.0));
    sim.d.disconnect(a);
    let st = sim.d.status(sim.now());
    assert_eq!(st.clients.len(), 1);
    assert!(!st.clients[0].connected);
    // Petting goes on while the expiry is far, then stops for good.
    sim.run_until(e + s(60.0));
    let close = sim.events().into_iter().find(|x| x.kind == EventKind::CloseArmed).unwrap();
    assert_eq!(close.at, e - sim.t().wdmd_test_interval());
    assert!(sim.pets().iter().all(|&p| p < close.at));
    assert!(sim.d.shutdown().is_err(), "no magic close while an orphan has an expiry");
    assert_eq!(sim.count(EventKind::CloseDisarmed), 0);

    // A stranger cannot take the name; the owner can, and then clear it.
    let b = sim.d.connect(7);
    assert!(matches!(
        sim.req(b, Request::Register { name: "lockd_lvm_vg1:1".into(), takeover: false, fire_timeout_secs: W }),
        Response::Error { kind: ErrorKind::NameOrphaned, .. }
    ));
    let r = sim.req(b, Request::Register { name: "lockd_lvm_vg1:1".into(), takeover: true, fire_timeout_secs: W });
    assert_eq!(
        r,
        Response::Registered {
            adopted: Some(Times { renewal_ms: (e - s(16.0)).as_millis() as u64, expiry_ms: e.as_millis() as u64 })
        }
    );
    sim.clear(b);
    sim.run_until(sim.now() + s(1.0));
    assert!(sim.d.petting());
}

/// A client without an expiry that disconnects is simply dropped.
#[test]
fn disconnect_without_expiry_drops_the_client() {
    let mut sim = Sim::new();
    let a = sim.register("x");
    sim.renew(a);
    sim.clear(a);
    sim.d.disconnect(a);
    assert!(sim.d.status(sim.now()).clients.is_empty());
    sim.register("x");
}

/// (5) Shutdown: the magic close only once no client has an expiry.
#[test]
fn magic_close_only_without_expiries() {
    let mut sim = Sim::new();
    let a = sim.register("a");
    sim.renew(a);
    sim.run_until(sim.now() + s(7.0));
    assert_eq!(sim.d.shutdown(), Err(vec!["a".to_string()]));
    assert_eq!(sim.count(EventKind::CloseDisarmed), 0);
    sim.clear(a);
    assert_eq!(sim.d.shutdown(), Ok(()));
    assert_eq!(sim.events().last().unwrap().kind, EventKind::CloseDisarmed);
    assert_eq!(would_fire_at(&sim.events(), Duration::from_secs(W as u64)), None);
}

/// A device closed armed by a failure that was then cleared is disarmed on shutdown too.
#[test]
fn shutdown_after_a_failure_disarms() {
    let mut sim = Sim::new();
    let a = sim.register("a");
    let e = sim.renew(a);
    sim.run_until(e);
    sim.clear(a);
    assert_eq!(sim.d.shutdown(), Ok(()));
    assert_eq!(would_fire_at(&sim.events(), Duration::from_secs(W as u64)), None);
}

/// (7) Two clients, one stops renewing: no pets at all, whatever the healthy one does.
#[test]
fn one_failing_client_stops_all_pets() {
    let mut sim = Sim::new();
    let a = sim.register("lockd_lvm_vg1:1");
    let b = sim.register("lockd_lvm_vg2:1");
    let eb = sim.renew(b);
    let start = sim.now();
    for k in 1..=20 {
        sim.renew(a);
        sim.run_until(start + sim.lockd().renewal_interval() * k);
    }
    let close = sim.events().into_iter().find(|x| x.kind == EventKind::CloseArmed).unwrap();
    assert_eq!(close.at, eb - sim.t().wdmd_test_interval());
    assert!(sim.pets().iter().all(|&p| p < close.at), "a's renewals did not bring pets back");
    assert!(!sim.d.petting());
    sim.clear(b);
    sim.run_until(sim.now() + s(1.0));
    assert!(sim.d.petting(), "b clean, a fresh: petting again");
}

/// (6, core part) Requests in the wrong state get errors and change nothing.
#[test]
fn request_errors() {
    let mut sim = Sim::new();
    let c = sim.d.connect(1);
    let kind = |r: Response| match r {
        Response::Error { kind, .. } => kind,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(kind(sim.req(c, Request::SetExpiry { renewal_ms: 1, expiry_ms: 2 })), ErrorKind::NotRegistered);
    assert_eq!(kind(sim.req(c, Request::Unregister)), ErrorKind::NotRegistered);
    assert_eq!(
        kind(sim.req(c, Request::Register { name: "a b".into(), takeover: false, fire_timeout_secs: W })),
        ErrorKind::BadRequest
    );
    assert_eq!(
        kind(sim.req(c, Request::Register { name: "a".into(), takeover: false, fire_timeout_secs: 60 })),
        ErrorKind::FireTimeoutMismatch,
        "a client whose timings assume another W is refused"
    );
    assert!(matches!(sim.req(c, Request::Status), Response::Status(_)), "status needs no registration");
    assert!(matches!(
        sim.req(c, Request::Register { name: "a".into(), takeover: false, fire_timeout_secs: W }),
        Response::Registered { .. }
    ));
    assert_eq!(
        kind(sim.req(c, Request::Register { name: "b".into(), takeover: false, fire_timeout_secs: W })),
        ErrorKind::AlreadyRegistered
    );
    let other = sim.d.connect(2);
    assert_eq!(
        kind(sim.req(other, Request::Register { name: "a".into(), takeover: true, fire_timeout_secs: W })),
        ErrorKind::NameInUse
    );
    sim.renew(c);
    assert_eq!(kind(sim.req(c, Request::Unregister)), ErrorKind::ExpirySet);
    sim.clear(c);
    assert_eq!(sim.req(c, Request::Unregister), Response::Ok);
    assert!(sim.d.status(sim.now()).clients.is_empty());
    assert!(sim.d.petting());
}

/// A wdmd restarted in the same boot keeps enforcing the saved expiries.
#[test]
fn restart_restores_saved_expiries() {
    let mut sim = Sim::new();
    let a = sim.register("lockd_lvm_vg1:1");
    let e = sim.renew(a);
    sim.run_until(sim.now() + s(2.0));
    let now = sim.now();
    let dir = sim.dir;
    drop(sim.d); // a crash: no magic close

    let mut sim = Sim::in_dir(dir, now + s(1.0));
    let st = sim.d.status(sim.now());
    assert_eq!(st.clients.len(), 1);
    assert!(!st.clients[0].connected);
    assert_eq!(st.clients[0].times.expiry_ms, e.as_millis() as u64);
    sim.run_until(e + s(30.0));
    let close = sim.events().into_iter().find(|x| x.kind == EventKind::CloseArmed).unwrap();
    assert_eq!(close.at, e - sim.t().wdmd_test_interval());

    // Restarted after the last pet was due: the device is not even opened (that would pet it).
    let now = sim.now();
    let dir = sim.dir;
    drop(sim.d);
    let opens_before = FileWatchdog::read_events(&dir.path().join("watchdog")).unwrap().len();
    let sim = Sim::in_dir(dir, now);
    assert_eq!(sim.events().len(), opens_before, "no open, no pet");
    assert!(!sim.d.petting());
}

/// Random renewal schedules with late renewals, clears and extra clients: no pet ever happens
/// at or after `expiry − test_interval` of the expiry in effect, and while every expiry is
/// far, pets are never more than a test interval apart.
#[test]
fn random_schedules_keep_the_chain() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..12 {
        let mut sim = Sim::new();
        let conns: Vec<ConnId> = (0..3).map(|i| sim.register(&format!("c{i}"))).collect();
        // (time, client, expiry in effect from then on; None: cleared)
        let mut history: Vec<(Duration, usize, Option<Duration>)> = Vec::new();
        for _ in 0..60 {
            sim.run_until(sim.now() + Duration::from_millis(rnd(9000)));
            // Requests land strictly after the tests run at the same instant.
            sim.set_now(sim.now() + Duration::from_millis(1));
            let i = rnd(3) as usize;
            if rnd(5) == 0 {
                sim.clear(conns[i]);
                history.push((sim.now(), i, None));
            } else {
                // Sometimes a stale renewal: an expiry close to now or already past.
                let back = Duration::from_millis(rnd(20_000));
                let r = sim.now().saturating_sub(back);
                let e = sim.lockd().wdmd_expiry(r);
                let req = Request::SetExpiry { renewal_ms: r.as_millis() as u64, expiry_ms: e.as_millis() as u64 };
                assert_eq!(sim.req(conns[i], req), Response::Ok);
                history.push((sim.now(), i, Some(e)));
            }
        }
        let i_std = sim.t().wdmd_test_interval();
        let in_effect = |at: Duration| -> Vec<Duration> {
            let mut cur = [None; 3];
            for &(t, i, e) in &history {
                if t <= at {
                    cur[i] = e;
                }
            }
            cur.into_iter().flatten().collect()
        };
        let pets = sim.pets();
        for &p in &pets {
            for e in in_effect(p) {
                assert!(p < e.saturating_sub(i_std), "pet at {p:?} with expiry {e:?} in effect");
            }
        }
        // Liveness: a gap of more than one interval between pets needs a reason within its
        // first interval: an expiry in effect that fails the test, or a change to the expiries.
        for w in pets.windows(2) {
            let t = w[0] + i_std;
            if w[1] > t {
                let fails = in_effect(t).iter().any(|&e| t >= e.saturating_sub(i_std));
                let changed = history.iter().any(|&(h, _, _)| h > w[0] && h <= t);
                assert!(fails || changed, "no pet in {:?}..{:?} without a reason", w[0], w[1]);
            }
        }
    }
}
