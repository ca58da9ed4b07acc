//! The deterministic single-threaded executor: tasks are futures owned by host incarnations;
//! each step either polls one runnable task or handles one due event, chosen by the seeded
//! PRNG; time jumps to the next event when nothing is runnable. Invariants are checked after
//! every step.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use super::node;
use super::trace::{Ev, Holder, ADMIN};
use super::world::{Event, HostEvent, TaskFuture, World, WorldRef};
use super::{SimConfig, Violation};

struct Task {
    by: Holder,
    role: &'static str,
    fut: TaskFuture,
    waker: Waker,
}

struct TaskWaker {
    id: u64,
    woken: Arc<Mutex<Vec<u64>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.lock().unwrap().push(self.id);
    }
}

pub struct Sim {
    pub world: WorldRef,
    tasks: BTreeMap<u64, Task>,
    next_task: u64,
    woken: Arc<Mutex<Vec<u64>>>,
    runnable: Vec<u64>,
    pub violation: Option<Violation>,
}

const SEC: Duration = Duration::from_secs(1);

impl Sim {
    pub fn new(cfg: SimConfig) -> Sim {
        let world = Rc::new(std::cell::RefCell::new(World::new(Rc::new(cfg))));
        let mut sim = Sim {
            world,
            tasks: BTreeMap::new(),
            next_task: 0,
            woken: Arc::default(),
            runnable: Vec::new(),
            violation: None,
        };
        let admin = node::admin(&sim.world);
        sim.spawn(ADMIN, "admin", admin);
        sim
    }

    fn spawn(&mut self, by: Holder, role: &'static str, fut: TaskFuture) {
        let id = self.next_task;
        self.next_task += 1;
        let waker = Waker::from(Arc::new(TaskWaker { id, woken: self.woken.clone() }));
        self.tasks.insert(id, Task { by, role, fut, waker });
        self.runnable.push(id);
    }

    /// Removes tasks; the caller drops them once no world borrow is held.
    fn take_tasks(&mut self, pred: impl Fn(&Task) -> bool) -> Vec<Task> {
        let ids: Vec<u64> = self.tasks.iter().filter(|(_, t)| pred(t)).map(|(id, _)| *id).collect();
        ids.into_iter().filter_map(|id| self.tasks.remove(&id)).collect()
    }

    fn apply_requests(&mut self) {
        let (spawn, kill) = {
            let mut w = self.world.borrow_mut();
            (std::mem::take(&mut w.spawn), std::mem::take(&mut w.kill))
        };
        // Spawns first: a task may spawn and kill the same role within one poll.
        for (by, role, fut) in spawn {
            self.spawn(by, role, fut);
        }
        for (by, role) in kill {
            drop(self.take_tasks(|t| t.by == by && t.role == role));
        }
    }

    /// Runs until the configured duration, a violation, or nothing is left to happen.
    pub fn run(&mut self) {
        let end = self.world.borrow().cfg.duration;
        loop {
            for id in std::mem::take(&mut *self.woken.lock().unwrap()) {
                if !self.runnable.contains(&id) {
                    self.runnable.push(id);
                }
            }
            let tasks = &self.tasks;
            self.runnable.retain(|id| tasks.contains_key(id));
            let eligible: Vec<usize> = {
                let w = self.world.borrow();
                (0..self.runnable.len()).filter(|i| !w.is_stalled(self.tasks[&self.runnable[*i]].by.host)).collect()
            };
            let (now, next) = {
                let w = self.world.borrow();
                (w.now, w.next_event_at())
            };
            let due = next == Some(now);
            let choices = eligible.len() + due as usize;
            if choices == 0 {
                match next {
                    Some(t) if t <= end => {
                        self.world.borrow_mut().now = t;
                        continue;
                    }
                    _ => break,
                }
            }
            let pick = self.world.borrow_mut().rng.below(choices as u64) as usize;
            if pick < eligible.len() {
                let id = self.runnable.swap_remove(eligible[pick]);
                self.poll(id);
            } else {
                let ev = self.world.borrow_mut().pop_event().expect("due event");
                self.event(ev);
            }
            let mut w = self.world.borrow_mut();
            w.step += 1;
            if let Some(what) = w.beliefs.check() {
                w.log(Ev::Violation { what: what.clone() });
                self.violation = Some(Violation { step: w.step, at: w.now, what });
                return;
            }
        }
    }

    fn poll(&mut self, id: u64) {
        let Some(mut task) = self.tasks.remove(&id) else { return };
        let waker = task.waker.clone();
        let mut cx = Context::from_waker(&waker);
        if task.fut.as_mut().poll(&mut cx).is_pending() {
            self.tasks.insert(id, task);
        }
        self.apply_requests();
    }

    fn event(&mut self, ev: Event) {
        match ev {
            Event::Wake(w) => w.wake(),
            Event::IoService(id) => self.world.borrow_mut().io_service(id),
            Event::IoComplete(id) => self.world.borrow_mut().io_complete(id),
            Event::Host(h, e) => self.host_event(h, e),
        }
    }

    fn host_event(&mut self, h: usize, e: HostEvent) {
        match e {
            HostEvent::Chaos => self.chaos(h),
            HostEvent::Boot => self.boot(h),
            HostEvent::DaemonStart => self.start_lockd(h),
            HostEvent::StallEnd(token) => {
                let mut w = self.world.borrow_mut();
                if w.hosts[h].stall_token == token && w.hosts[h].stalled_until.is_some() {
                    w.hosts[h].stalled_until = None;
                    w.log(Ev::StallEnd { host: h });
                }
            }
            HostEvent::WatchdogFire(token) => {
                let fire = {
                    let w = self.world.borrow();
                    w.hosts[h].wd.token == token && w.hosts[h].up
                };
                if fire {
                    self.reset(h, true);
                }
            }
        }
    }

    fn chaos(&mut self, h: usize) {
        let (kind, stall_for) = {
            let mut w = self.world.borrow_mut();
            let mean = w.cfg.host.mean_interval;
            let next = w.now + w.rng.exp(mean);
            w.schedule(next, Event::Host(h, HostEvent::Chaos));
            if !w.hosts[h].up {
                return;
            }
            let f = w.cfg.host.clone();
            let weights = [f.reboot, f.daemon_crash, f.stall, f.long_stall, f.leave];
            let total: u32 = weights.iter().sum();
            if total == 0 {
                return;
            }
            let mut r = w.rng.below(total as u64) as u32;
            let mut kind = 0;
            while r >= weights[kind] {
                r -= weights[kind];
                kind += 1;
            }
            let n = w.hosts[h].timeouts.io();
            let stall_for = if kind == 2 { w.rng.between(SEC / 10, 4 * n) } else { w.long_stall_for(h) };
            (kind, stall_for)
        };
        match kind {
            0 => self.reset(h, false),
            1 => self.daemon_crash(h),
            2 | 3 => self.world.borrow_mut().stall(h, stall_for),
            _ => self.world.borrow_mut().hosts[h].leave_requested = true,
        }
    }

    fn boot(&mut self, h: usize) {
        {
            let mut w = self.world.borrow_mut();
            let mut boot_id = [0u8; 16];
            for b in boot_id.iter_mut() {
                *b = w.rng.below(256) as u8;
            }
            let offset = w.rng.between(SEC, Duration::from_secs(5000));
            let slot = &mut w.hosts[h];
            slot.up = true;
            slot.boot.boot_id = boot_id;
            slot.clock_offset = offset;
            slot.stalled_until = None;
            slot.leave_requested = false;
            let ev = Ev::Boot {
                by: Holder { host: h, inc: slot.inc + 1 },
                boot: u16::from_be_bytes([boot_id[0], boot_id[1]]),
                clock_offset: offset,
            };
            w.log(ev);
        }
        self.start_lockd(h);
    }

    fn start_lockd(&mut self, h: usize) {
        let by = {
            let mut w = self.world.borrow_mut();
            if !w.hosts[h].up {
                return;
            }
            w.hosts[h].inc += 1;
            let by = Holder { host: h, inc: w.hosts[h].inc };
            w.log(Ev::DaemonStart { by });
            by
        };
        let fut = node::lockd(&self.world, by);
        self.spawn(by, "main", fut);
    }

    /// Machine crash or watchdog reset: everything on the host stops; it boots again later.
    fn reset(&mut self, h: usize, watchdog: bool) {
        let dead = self.take_tasks(|t| t.by.host == h);
        {
            let mut w = self.world.borrow_mut();
            w.beliefs.clear_host(h);
            w.wdmd_reset(h);
            w.io_host_reset(h);
            let slot = &mut w.hosts[h];
            slot.up = false;
            slot.stalled_until = None;
            slot.stall_token += 1;
            slot.leave_requested = false;
            if watchdog {
                w.stats.watchdog_resets += 1;
                w.log(Ev::WatchdogReset { host: h });
            } else {
                w.stats.reboots += 1;
                w.log(Ev::Reboot { host: h });
            }
            let max = w.cfg.host.reboot_delay_max;
            let at = w.now + w.rng.between(SEC, max);
            w.schedule(at, Event::Host(h, HostEvent::Boot));
        }
        drop(dead);
    }

    /// lockd dies in the same boot: its leases stay in use and its wdmd expiry stays armed.
    fn daemon_crash(&mut self, h: usize) {
        let dead = self.take_tasks(|t| t.by.host == h);
        {
            let mut w = self.world.borrow_mut();
            let by = Holder { host: h, inc: w.hosts[h].inc };
            w.stats.daemon_crashes += 1;
            w.log(Ev::DaemonCrash { by });
            let slot = &mut w.hosts[h];
            slot.stalled_until = None;
            slot.stall_token += 1;
            slot.leave_requested = false;
            let n = w.hosts[h].timeouts.io();
            let at = w.now + w.rng.between(SEC / 10, 2 * n);
            w.schedule(at, Event::Host(h, HostEvent::DaemonStart));
        }
        drop(dead);
    }
}
