//! A model of lockd driving the real protocol code: per incarnation a main task (join the
//! lockspace, watch for renewal failure, clean leave), a renewal task and a worker task that
//! acquires, converts and releases resource leases. Beliefs are reported to the checker at the
//! exact points lockd would act on them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use super::disk::SimDisk;
use super::time::SimClock;
use super::trace::{Ev, Holder, ADMIN};
use super::world::{Event, HostEvent, TaskFuture, WorldRef};
use crate::clock::Clock;
use crate::delta_lease::{self, AcquirePath, DeltaLease, HostIdentity, LockspaceArea, ProtocolFaults};
use crate::host_status::HostStatusTable;
use crate::ondisk::HostBitmap;
use crate::paxos_lease::{self, AcquireOptions, HeldResource, Mode, PaxosCtx, ResourceArea};
use crate::timeouts::Timeouts;

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

pub struct Node {
    world: WorldRef,
    by: Holder,
    disk: SimDisk,
    clock: SimClock,
    me: HostIdentity,
    t: Timeouts,
    faults: ProtocolFaults,
    area: LockspaceArea,
    resources: Vec<ResourceArea>,
    /// Host_ids in use are 1..=host_slots.
    host_slots: usize,
    st: RefCell<NodeState>,
}

#[derive(Default)]
struct NodeState {
    /// The lease as of the last successful renewal (published by the renewal task).
    lease: Option<DeltaLease>,
    table: Option<HostStatusTable>,
    stop_worker: bool,
    worker_done: bool,
}

/// The main task of a new lockd incarnation `by` on its host.
pub fn lockd(world: &WorldRef, by: Holder) -> TaskFuture {
    let w = world.borrow();
    let slot = &w.hosts[by.host];
    let (area, resources) = super::layout(&w.cfg);
    let node = Rc::new(Node {
        world: world.clone(),
        by,
        disk: SimDisk { world: world.clone(), by },
        clock: SimClock { world: world.clone(), offset: slot.clock_offset },
        me: HostIdentity { host_id: slot.host_id, host_name: slot.name, boot: Some(slot.boot) },
        t: slot.timeouts,
        faults: w.cfg.protocol,
        area,
        resources,
        host_slots: w.hosts.len(),
        st: RefCell::new(NodeState::default()),
    });
    Box::pin(main(node))
}

fn path_name(p: AcquirePath) -> &'static str {
    match p {
        AcquirePath::Free => "free",
        AcquirePath::Rejoin => "rejoin",
        AcquirePath::WaitedForOwner => "waited-8N+W",
    }
}

impl Node {
    fn log(&self, ev: Ev) {
        self.world.borrow_mut().log(ev);
    }
    fn between(&self, lo: Duration, hi: Duration) -> Duration {
        self.world.borrow_mut().rng.between(lo, hi)
    }
    fn chance(&self, p: f64) -> bool {
        self.world.borrow_mut().rng.chance(p)
    }
    fn below(&self, n: usize) -> usize {
        self.world.borrow_mut().rng.below(n as u64) as usize
    }
    fn spawn(&self, role: &'static str, fut: TaskFuture) {
        self.world.borrow_mut().spawn.push((self.by, role, fut));
    }
    fn kill(&self, role: &'static str) {
        self.world.borrow_mut().kill.push((self.by, role));
    }
    fn deadline(&self) -> Duration {
        let st = self.st.borrow();
        st.lease.as_ref().expect("joined").last_success + self.t.renewal_fail()
    }
    /// How long the worker waits before its next step (and so how long it holds things).
    fn think_time(&self) -> Duration {
        let n = self.t.io();
        let r = self.world.borrow_mut().rng.unit();
        if r < 0.6 {
            self.between(Duration::ZERO, 2 * n)
        } else if r < 0.9 {
            self.between(2 * n, 8 * n)
        } else {
            self.between(8 * n, 3 * self.t.host_dead())
        }
    }
}

enum Exit {
    Failed,
    Leave,
}

async fn main(node: Rc<Node>) {
    let n = node.t.io();
    loop {
        let lease = loop {
            match delta_lease::acquire(&node.disk, &node.clock, &node.area, &node.me, node.t, node.faults).await {
                Ok((lease, path)) => {
                    let mut w = node.world.borrow_mut();
                    w.stats.delta_acquires += 1;
                    w.beliefs.set_delta(node.by, Some((node.me.host_id, lease.generation)));
                    w.wdmd_set(node.by, node.t.wdmd_expiry(lease.last_success));
                    w.log(Ev::DeltaAcquired {
                        by: node.by,
                        host_id: node.me.host_id,
                        gen: lease.generation,
                        path: path_name(path),
                    });
                    break lease;
                }
                Err(e) => {
                    node.world.borrow_mut().stats.delta_acquire_failures += 1;
                    node.log(Ev::DeltaAcquireFailed { by: node.by, err: e.to_string() });
                    let d = node.between(SEC, 2 * n + SEC);
                    node.clock.sleep(d).await;
                }
            }
        };
        {
            let mut st = node.st.borrow_mut();
            st.lease = Some(lease.clone());
            st.table = Some(HostStatusTable::new(node.t));
            st.stop_worker = false;
            st.worker_done = false;
        }
        node.spawn("renew", Box::pin(renewal(node.clone(), lease)));
        node.spawn("worker", Box::pin(worker(node.clone())));

        let exit = loop {
            let now = node.clock.now();
            let deadline = node.deadline();
            if now >= deadline {
                break Exit::Failed;
            }
            if node.world.borrow().hosts[node.by.host].leave_requested {
                break Exit::Leave;
            }
            node.clock.sleep((deadline - now).min(SEC)).await;
        };
        let exit = match exit {
            Exit::Failed => Exit::Failed,
            Exit::Leave => leave(&node).await,
        };
        if let Exit::Failed = exit {
            // lockd's kill path: no new lease operations; the leases stay in use until every
            // user is stopped, then wdmd is told we are clean. If that takes too long the
            // watchdog resets the host first.
            {
                let mut w = node.world.borrow_mut();
                w.stats.lockspace_failures += 1;
                w.log(Ev::LockspaceFailed { by: node.by });
            }
            node.kill("renew");
            node.kill("worker");
            let max = node.world.borrow().cfg.host.kill_path_max;
            let d = node.between(Duration::ZERO, max);
            node.clock.sleep(d).await;
            let mut w = node.world.borrow_mut();
            w.beliefs.clear(node.by);
            w.wdmd_clear(node.by);
            w.log(Ev::KillPathDone { by: node.by });
        }
        let d = node.between(SEC, 4 * n);
        node.clock.sleep(d).await;
    }
}

/// Clean leave: the worker releases everything, then the delta lease is released. Returns
/// `Failed` if the lockspace fails on the way.
async fn leave(node: &Rc<Node>) -> Exit {
    {
        let mut w = node.world.borrow_mut();
        w.hosts[node.by.host].leave_requested = false;
        w.log(Ev::LeaveBegin { by: node.by });
    }
    node.st.borrow_mut().stop_worker = true;
    loop {
        if node.st.borrow().worker_done {
            break;
        }
        let now = node.clock.now();
        let deadline = node.deadline();
        if now >= deadline {
            return Exit::Failed;
        }
        node.clock.sleep((deadline - now).min(200 * MS)).await;
    }
    node.kill("renew");
    let lease = node.st.borrow().lease.clone().expect("joined");
    {
        let mut w = node.world.borrow_mut();
        w.stats.leaves += 1;
        w.beliefs.set_delta(node.by, None);
    }
    let r = delta_lease::release(&node.disk, &lease, node.t).await;
    let mut w = node.world.borrow_mut();
    w.wdmd_clear(node.by);
    w.beliefs.clear(node.by);
    w.log(Ev::LeaveDone { by: node.by, err: r.err().map(|e| e.to_string()) });
    Exit::Leave
}

async fn renewal(node: Rc<Node>, mut lease: DeltaLease) {
    let bitmap = HostBitmap::default();
    let mut next = lease.last_success + node.t.renewal_interval();
    loop {
        let now = node.clock.now();
        if next > now {
            node.clock.sleep(next - now).await;
        }
        let start = node.clock.now();
        match delta_lease::renew(&node.disk, &node.clock, &mut lease, &bitmap, node.t).await {
            Ok(buf) => {
                let now = node.clock.now();
                // Only the slots of host_ids that exist here: the rest are never-used records.
                let used = node.host_slots * node.area.geometry.sector_bytes();
                let mut st = node.st.borrow_mut();
                st.table.as_mut().expect("joined").update_from_area(&node.area, &buf[..used], now);
                st.lease = Some(lease.clone());
                drop(st);
                let mut w = node.world.borrow_mut();
                w.stats.renewals += 1;
                w.wdmd_set(node.by, node.t.wdmd_expiry(lease.last_success));
                w.log(Ev::Renewed { by: node.by, gen: lease.generation });
                next = start + node.t.renewal_interval();
            }
            Err(e) => {
                node.world.borrow_mut().stats.renewal_failures += 1;
                node.log(Ev::RenewFailed { by: node.by, err: e.to_string() });
                next = node.clock.now() + node.t.renewal_retry();
            }
        }
    }
}

async fn release_one<D: crate::diskio::Disk, C: Clock>(
    node: &Node,
    ctx: &PaxosCtx<'_, D, C>,
    res: usize,
    held: &HeldResource,
) {
    {
        let mut w = node.world.borrow_mut();
        w.stats.releases += 1;
        w.beliefs.set_resource(node.by, res, None);
        w.log(Ev::ReleaseBegin { by: node.by, res, mode: held.mode });
    }
    let r = paxos_lease::release(ctx, held).await;
    node.log(Ev::ReleaseDone { by: node.by, res, err: r.err().map(|e| e.to_string()) });
}

async fn worker(node: Rc<Node>) {
    let mut held: BTreeMap<usize, HeldResource> = BTreeMap::new();
    loop {
        let stopping = node.st.borrow().stop_worker;
        if !stopping {
            let d = node.think_time();
            node.clock.sleep(d).await;
        }
        let (generation, table) = {
            let st = node.st.borrow();
            (st.lease.as_ref().expect("joined").generation, st.table.clone().expect("joined"))
        };
        // A snapshot of the host table, as lockd would pass it with each request.
        let ctx = PaxosCtx {
            disk: &node.disk,
            clock: &node.clock,
            timeouts: node.t,
            lockspace: node.area,
            host_id: node.me.host_id,
            generation,
            hosts: Some(&table),
            faults: node.faults,
        };
        if node.st.borrow().stop_worker {
            for (res, h) in std::mem::take(&mut held) {
                release_one(&node, &ctx, res, &h).await;
            }
            node.st.borrow_mut().worker_done = true;
            return;
        }
        let free: Vec<usize> = (0..node.resources.len()).filter(|r| !held.contains_key(r)).collect();
        if held.is_empty() || (!free.is_empty() && node.chance(0.4)) {
            let res = free[node.below(free.len())];
            let mode = if node.chance(0.5) { Mode::Shared } else { Mode::Exclusive };
            let wait = node.chance(0.5);
            let opts = AcquireOptions { mode, wait_for_owner: wait };
            match paxos_lease::acquire(&ctx, &node.resources[res], opts).await {
                Ok(h) => {
                    let mut w = node.world.borrow_mut();
                    w.stats.acquires += 1;
                    w.beliefs.set_resource(node.by, res, Some(h.mode));
                    w.log(Ev::Acquired { by: node.by, res, mode: h.mode, lver: h.lver });
                    held.insert(res, h);
                }
                Err(e) => {
                    let mut w = node.world.borrow_mut();
                    w.stats.acquire_failures += 1;
                    w.log(Ev::AcquireFailed { by: node.by, res, mode, wait, err: e.to_string() });
                }
            }
            continue;
        }
        let keys: Vec<usize> = held.keys().copied().collect();
        let res = keys[node.below(keys.len())];
        if node.chance(0.3) {
            let mut h = held.remove(&res).expect("held");
            let to = if h.mode == Mode::Shared { Mode::Exclusive } else { Mode::Shared };
            if to == Mode::Shared {
                // Like a release: exclusive use ends before the downgrade starts.
                node.world.borrow_mut().beliefs.set_resource(node.by, res, Some(Mode::Shared));
            }
            let r = paxos_lease::convert(&ctx, &mut h, to).await;
            // Whatever the outcome, lockd goes by the mode `convert` leaves in the hold.
            let mut w = node.world.borrow_mut();
            w.stats.converts += 1;
            w.beliefs.set_resource(node.by, res, Some(h.mode));
            w.log(Ev::Converted { by: node.by, res, to, now: h.mode, err: r.err().map(|e| e.to_string()) });
            held.insert(res, h);
        } else {
            let h = held.remove(&res).expect("held");
            release_one(&node, &ctx, res, &h).await;
        }
    }
}

/// Initialises the lockspace and resource areas through the faulty disk, retrying until each
/// init succeeds (after its earlier attempts' writes have settled), then boots the hosts.
pub fn admin(world: &WorldRef) -> TaskFuture {
    let world = world.clone();
    Box::pin(async move {
        let disk = SimDisk { world: world.clone(), by: ADMIN };
        let clock = SimClock { world: world.clone(), offset: Duration::from_secs(1000) };
        let (t, (area, resources)) = {
            let w = world.borrow();
            (w.timeouts, super::layout(&w.cfg))
        };
        let settle = || async {
            while world.borrow().disk.in_flight(ADMIN) > 0 {
                clock.sleep(SEC).await;
            }
        };
        while delta_lease::init(&disk, &area, t).await.is_err() {
            settle().await;
        }
        world.borrow_mut().log(Ev::InitDone { what: "lockspace".into() });
        for r in &resources {
            let num_hosts = {
                let w = world.borrow();
                match w.cfg.resource_num_hosts {
                    0 => 0,
                    n => n.max(w.hosts.len() as u64),
                }
            };
            while paxos_lease::init(&disk, r, num_hosts, false, t).await.is_err() {
                settle().await;
            }
            world.borrow_mut().log(Ev::InitDone { what: format!("resource {}", r.name.as_str_lossy()) });
        }
        let mut w = world.borrow_mut();
        w.setup_done = true;
        let now = w.now;
        let mean = w.cfg.host.mean_interval;
        let mut first_boot = now;
        for h in 0..w.hosts.len() {
            let mut at = now + w.rng.between(Duration::ZERO, 4 * t.io());
            if h == 0 {
                first_boot = at;
            } else if h == 1 && w.cfg.same_host_id && w.cfg.twins_boot_together {
                at = first_boot;
            }
            w.schedule(at, Event::Host(h, HostEvent::Boot));
            let at = now + w.rng.exp(mean);
            w.schedule(at, Event::Host(h, HostEvent::Chaos));
        }
    })
}
