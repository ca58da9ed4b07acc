//! The shared state of one simulation: virtual time, the event queue, the disk, the hosts and
//! their watchdogs, the beliefs and the trace. Futures reach it through `WorldRef`.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use super::checker::Beliefs;
use super::disk::DiskState;
use super::rng::Rng;
use super::trace::{Ev, Holder, Trace};
use super::SimConfig;
use crate::ondisk::{BootStamp, Name};
use crate::timeouts::Timeouts;

pub type WorldRef = Rc<RefCell<World>>;
/// A simulated task: one host activity.
pub type TaskFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

pub enum Event {
    Wake(Waker),
    IoService(u64),
    IoComplete(u64),
    Host(usize, HostEvent),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// Time for the next random host fault.
    Chaos,
    Boot,
    DaemonStart,
    StallEnd(u64),
    WatchdogFire(u64),
}

struct Scheduled {
    at: Duration,
    /// Random: events due at the same instant run in a seeded random order.
    key: u64,
    seq: u64,
    ev: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap pops the earliest.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.key, o.seq).cmp(&(self.at, self.key, self.seq))
    }
}

/// The hardware watchdog and wdmd of one host: one expiry per registered lockd incarnation.
#[derive(Default)]
pub struct Watchdog {
    /// Holder incarnation → expiry in global time.
    pub clients: std::collections::BTreeMap<u32, Duration>,
    /// The last pet of the current plan (wdmd stops petting then unless told otherwise).
    pub last_pet: Option<Duration>,
    pub fire_at: Option<Duration>,
    pub token: u64,
}

pub struct HostSlot {
    pub name: Name,
    pub host_id: u64,
    /// This host's N (and the global W).
    pub timeouts: Timeouts,
    /// Booted (false while rebooting after a crash or reset).
    pub up: bool,
    /// Current lockd incarnation.
    pub inc: u32,
    pub boot: BootStamp,
    /// This boot's CLOCK_MONOTONIC minus global time.
    pub clock_offset: Duration,
    pub stalled_until: Option<Duration>,
    pub stall_token: u64,
    pub leave_requested: bool,
    pub wd: Watchdog,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub ios: u64,
    pub io_errors: u64,
    pub io_timeouts: u64,
    pub late_writes: u64,
    pub torn_writes: u64,
    pub delta_acquires: u64,
    pub delta_acquire_failures: u64,
    pub renewals: u64,
    pub renewal_failures: u64,
    pub lockspace_failures: u64,
    pub acquires: u64,
    pub acquire_failures: u64,
    pub releases: u64,
    pub converts: u64,
    pub reboots: u64,
    pub daemon_crashes: u64,
    pub stalls: u64,
    pub watchdog_resets: u64,
    pub leaves: u64,
}

pub struct World {
    pub now: Duration,
    pub step: u64,
    pub rng: Rng,
    events: BinaryHeap<Scheduled>,
    seq: u64,
    pub cfg: Rc<SimConfig>,
    /// The largest N of any host, and W.
    pub timeouts: Timeouts,
    pub disk: DiskState,
    pub hosts: Vec<HostSlot>,
    pub beliefs: Beliefs,
    pub trace: Trace,
    pub stats: Stats,
    /// Requests from tasks to the executor, handled after each poll.
    pub spawn: Vec<(Holder, &'static str, TaskFuture)>,
    pub kill: Vec<(Holder, &'static str)>,
    pub setup_done: bool,
}

impl World {
    pub fn new(cfg: Rc<SimConfig>) -> World {
        let mut rng = Rng::new(cfg.seed);
        let timeouts = Timeouts::new(cfg.io_timeout, cfg.watchdog_fire).expect("valid simulator timeouts");
        let disk = DiskState::new(&cfg);
        let hosts = (0..cfg.hosts)
            .map(|i| HostSlot {
                name: Name::new(&format!("host{i}")).unwrap(),
                host_id: if cfg.same_host_id && i == 1 { 1 } else { i as u64 + 1 },
                timeouts: if cfg.mixed_io_timeouts {
                    Timeouts { io_timeout: 1 + rng.below(cfg.io_timeout as u64) as u32, ..timeouts }
                } else {
                    timeouts
                },
                up: false,
                inc: 0,
                boot: BootStamp { boot_id: [0; 16] },
                clock_offset: Duration::ZERO,
                stalled_until: None,
                stall_token: 0,
                leave_requested: false,
                wd: Watchdog::default(),
            })
            .collect();
        World {
            now: Duration::ZERO,
            step: 0,
            rng,
            events: BinaryHeap::new(),
            seq: 0,
            timeouts,
            disk,
            hosts,
            beliefs: Beliefs::default(),
            trace: Trace::new(cfg.trace_cap, cfg.echo),
            stats: Stats::default(),
            spawn: Vec::new(),
            kill: Vec::new(),
            setup_done: false,
            cfg,
        }
    }

    pub fn schedule(&mut self, at: Duration, ev: Event) {
        let key = self.rng.next_u64();
        self.seq += 1;
        self.events.push(Scheduled { at: at.max(self.now), key, seq: self.seq, ev });
    }

    pub fn next_event_at(&self) -> Option<Duration> {
        self.events.peek().map(|s| s.at)
    }

    pub fn pop_event(&mut self) -> Option<Event> {
        let s = self.events.pop()?;
        self.now = self.now.max(s.at);
        Some(s.ev)
    }

    pub fn log(&mut self, ev: Ev) {
        self.trace.push(self.now, self.step, ev);
    }

    pub fn is_stalled(&self, host: usize) -> bool {
        host < self.hosts.len() && self.hosts[host].stalled_until.is_some()
    }

    /// Global time of a host-clock instant.
    pub fn to_global(&self, host: usize, t: Duration) -> Duration {
        t.saturating_sub(self.hosts[host].clock_offset)
    }

    /// Stalls every task of `host` for `stall_for` (a longer stall already under way stays).
    pub fn stall(&mut self, host: usize, stall_for: Duration) {
        let until = self.now + stall_for;
        let slot = &mut self.hosts[host];
        if slot.stalled_until.is_some_and(|u| u >= until) {
            return;
        }
        slot.stalled_until = Some(until);
        slot.stall_token += 1;
        let token = slot.stall_token;
        self.stats.stalls += 1;
        self.schedule(until, Event::Host(host, HostEvent::StallEnd(token)));
        self.log(Ev::StallStart { host, until });
    }

    /// A long stall: 4N up to twice host_dead, often past the watchdog.
    pub fn long_stall_for(&mut self, host: usize) -> Duration {
        let t = self.hosts[host].timeouts;
        self.rng.between(4 * t.io(), 2 * t.host_dead())
    }

    /// wdmd: `inc` reports a new expiry (host clock) after a renewal.
    pub fn wdmd_set(&mut self, by: Holder, expiry_host_clock: Duration) {
        let e = self.to_global(by.host, expiry_host_clock);
        self.hosts[by.host].wd.clients.insert(by.inc, e);
        self.wdmd_replan(by.host);
    }

    /// wdmd: `inc` is clean (left the lockspace or finished its kill path).
    pub fn wdmd_clear(&mut self, by: Holder) {
        self.hosts[by.host].wd.clients.remove(&by.inc);
        self.wdmd_replan(by.host);
    }

    /// wdmd pets while every expiry is more than one test interval away; once it stops, the
    /// watchdog fires at some moment up to W after the last pet (often at the very end). A
    /// client that extends or clears its expiry after petting stopped is noticed at wdmd's
    /// next recovery test; if the watchdog fires first, the host resets anyway.
    fn wdmd_replan(&mut self, host: usize) {
        let t = self.hosts[host].timeouts;
        let now = self.now;
        let min_expiry = self.hosts[host].wd.clients.values().min().copied();
        let wd = &self.hosts[host].wd;
        if let (Some(fire), Some(last_pet)) = (wd.fire_at, wd.last_pet) {
            if last_pet <= now {
                let still_failing = min_expiry.is_some_and(|e| t.wdmd_last_pet(e) <= now);
                let resume = now + self.rng.between(Duration::ZERO, t.wdmd_recover_test_interval());
                if still_failing || resume >= fire {
                    return;
                }
            }
        }
        let (fire_at, last_pet) = match min_expiry {
            None => (None, None),
            Some(e) => {
                // wdmd is petting until now (or resumes now): an expiry already too close stops
                // it at once, so the last pet is no earlier than now.
                let last_pet = t.wdmd_last_pet(e).max(now);
                let reset_by = t.watchdog_reset_by(last_pet);
                let fire = if self.rng.chance(0.5) { reset_by } else { self.rng.between(last_pet, reset_by) };
                (Some(fire), Some(last_pet))
            }
        };
        let wd = &mut self.hosts[host].wd;
        wd.last_pet = last_pet;
        if wd.fire_at == fire_at {
            return;
        }
        wd.fire_at = fire_at;
        wd.token += 1;
        let token = wd.token;
        if let Some(f) = fire_at {
            self.schedule(f, Event::Host(host, HostEvent::WatchdogFire(token)));
        }
        self.log(Ev::WatchdogPlan { host, fire_at });
    }

    /// After a reset or reboot: the watchdog starts disarmed.
    pub fn wdmd_reset(&mut self, host: usize) {
        let wd = &mut self.hosts[host].wd;
        wd.clients.clear();
        wd.fire_at = None;
        wd.last_pet = None;
        wd.token += 1;
    }
}
