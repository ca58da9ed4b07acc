//! A deterministic simulator that runs this crate's protocol code — the same `delta_lease`,
//! `paxos_lease` and `host_status` functions lockd calls — with many hosts on one simulated
//! shared disk, and checks the safety invariants after every step.
//!
//! - [`executor`]: single-threaded executor over virtual time; seeded choice among runnable
//!   tasks and due events.
//! - [`disk`]: the shared disk: latency, reordering, EIO, timeouts, late, lost and torn writes.
//! - [`world`]: hosts, their clocks (global time + a per-boot offset) and watchdogs.
//! - [`node`]: the lockd model (join, renew, kill path, clean leave, worker).
//! - [`checker`]: beliefs and invariants; [`trace`]: the event trace and its hash.
//!
//! Same seed and config, same trace: nothing here reads wall time or iterates a hash map.
//!
//! Disk assumption: one process's writes to a sector land in issue order, even when an
//! earlier one timed out ([`DiskFaults::ordered_writes`]); the backends must provide it.
//! Not modelled: a stall between reading the clock and submitting an I/O within one poll,
//! and reads that see a multi-sector area at more than one instant.

pub mod checker;
pub mod disk;
pub mod executor;
pub mod node;
pub mod rng;
pub mod time;
pub mod trace;
pub mod world;

use std::time::Duration;

use crate::delta_lease::{LockspaceArea, ProtocolFaults};
use crate::ondisk::{Align, Geometry, Name, SectorSize};
use crate::paxos_lease::ResourceArea;

pub use world::Stats;

/// Every lease area is 1 MiB: the lockspace at 0, resource k at (k+1) MiB.
pub const AREA_BYTES: u64 = 1 << 20;

#[derive(Clone, Debug)]
pub struct DiskFaults {
    /// Probability that an I/O fails with EIO (nothing written).
    pub eio: f64,
    /// Probability that an I/O times out (a write may still land).
    pub timeout: f64,
    /// Probability that a successful I/O takes anywhere up to its timeout.
    pub slow: f64,
    /// Latency of ordinary I/Os: 20 µs up to this.
    pub fast_max: Duration,
    /// How long after its timeout a timed-out write may still land (`None`: one more of its
    /// own timeouts, i.e. N for protocol I/O).
    pub late_write_max: Option<Duration>,
    /// Probability that an init's multi-sector write times out (and maybe tears), so the
    /// setup must repair a partly written area.
    pub init_timeout: f64,
    /// Fraction of timed-out writes that never land.
    pub lost_write: f64,
    /// Fraction of timed-out multi-sector writes of which only some sectors land.
    pub tear: f64,
    /// Fraction of a reset host's in-flight writes that never land.
    pub drop_on_reset: f64,
    /// One lockd process's writes to overlapping ranges land in issue order: a write waits
    /// for the process's earlier timed-out writes there to land or be reported lost (and
    /// times out unsubmitted if that takes too long). The protocol needs this: with `false`
    /// a stale timed-out write can land over a newer one, e.g. erase a shared mode block.
    pub ordered_writes: bool,
}

impl Default for DiskFaults {
    fn default() -> Self {
        DiskFaults {
            eio: 0.002,
            timeout: 0.004,
            slow: 0.03,
            fast_max: Duration::from_millis(5),
            late_write_max: None,
            init_timeout: 0.3,
            lost_write: 0.25,
            tear: 0.5,
            drop_on_reset: 0.25,
            ordered_writes: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct HostFaults {
    /// Mean time between random events on one host.
    pub mean_interval: Duration,
    /// Relative weights of the events.
    pub reboot: u32,
    pub daemon_crash: u32,
    /// Stalls of 0.1 s..4N.
    pub stall: u32,
    /// Stalls of 4N..2·host_dead (often past the watchdog).
    pub long_stall: u32,
    pub leave: u32,
    /// Probability that a host stalls long (as `long_stall`) just as one of its writes
    /// completes.
    pub stall_after_write: f64,
    /// A crashed or reset host boots again 1 s..this later.
    pub reboot_delay_max: Duration,
    /// lockd's kill path takes 0..this before it tells wdmd the lockspace is clean.
    pub kill_path_max: Duration,
}

impl Default for HostFaults {
    fn default() -> Self {
        HostFaults {
            mean_interval: Duration::from_secs(90),
            reboot: 2,
            daemon_crash: 2,
            stall: 3,
            long_stall: 1,
            leave: 1,
            stall_after_write: 0.0,
            reboot_delay_max: Duration::from_secs(60),
            kill_path_max: Duration::from_secs(15),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub hosts: usize,
    pub resources: usize,
    /// num_hosts of the resource leases (dblocks read and verified); 0: the whole area.
    pub resource_num_hosts: u64,
    /// Simulated time to run.
    pub duration: Duration,
    /// N, seconds (the largest, with `mixed_io_timeouts`).
    pub io_timeout: u32,
    /// Each host gets its own N in 1..=io_timeout; peers must use each other's.
    pub mixed_io_timeouts: bool,
    /// W, seconds.
    pub watchdog_fire: u32,
    /// Sector size of the device and of the lease areas (1 MiB align either way).
    pub sector: SectorSize,
    /// Misconfiguration: host 1 uses host 0's host_id (with its own name).
    pub same_host_id: bool,
    /// With `same_host_id`: both boot at the same instant, so their first acquires race.
    pub twins_boot_together: bool,
    pub protocol: ProtocolFaults,
    pub disk: DiskFaults,
    pub host: HostFaults,
    /// Events kept for the report on a violation.
    pub trace_cap: usize,
    /// Print every event as it happens.
    pub echo: bool,
}

/// The breakages the simulator knows how to provoke: five protocol switches, and a disk whose
/// timed-out writes may overtake later writes of the same process.
pub const FAULT_NAMES: [&str; 6] = [
    "skip_owner_liveness",
    "skip_delta_short_delay",
    "skip_delta_large_delay",
    "ignore_boot_id",
    "ignore_confirm_limit",
    "overtaking_writes",
];

/// `stalls` and `ignore_confirm_limit`: the share of writes after which the host stalls.
const STALL_AFTER_WRITE: f64 = 0.02;

impl SimConfig {
    /// The default scenario for `seed`: timings, sector size and misconfiguration vary with it.
    pub fn for_seed(seed: u64) -> SimConfig {
        let mut r = rng::Rng::new(seed ^ 0x5eed_c0f1_9000_0000);
        let mixed_io_timeouts = r.chance(0.25);
        let io_timeout = if mixed_io_timeouts { 3 } else { 1 + r.below(2) as u32 };
        let same_host_id = r.chance(0.25);
        let twins_boot_together = same_host_id && r.chance(0.5);
        SimConfig {
            seed,
            hosts: 4,
            resources: 3,
            resource_num_hosts: if r.chance(0.25) { 0 } else { 16 },
            duration: Duration::from_secs(900),
            io_timeout,
            mixed_io_timeouts,
            watchdog_fire: 2 * io_timeout + 2 + r.below(14) as u32,
            sector: if r.chance(0.7) { SectorSize::B512 } else { SectorSize::B4096 },
            same_host_id,
            twins_boot_together,
            protocol: ProtocolFaults::default(),
            disk: DiskFaults::default(),
            host: HostFaults::default(),
            trace_cap: 200,
            echo: false,
        }
    }

    /// A scenario tuned to expose the named protocol fault (see [`FAULT_NAMES`]).
    pub fn with_fault(seed: u64, fault: &str) -> Result<SimConfig, String> {
        let mut c = SimConfig::for_seed(seed);
        match fault {
            "none" => {}
            "stress" => {
                // The correct protocol under heavy disk faults and frequent host events.
                c.disk.eio = 0.02;
                c.disk.timeout = 0.04;
                c.disk.slow = 0.2;
                c.host.mean_interval = Duration::from_secs(30);
            }
            "skip_owner_liveness" => c.protocol.skip_owner_liveness = true,
            "skip_delta_short_delay" => {
                c.protocol.skip_delta_short_delay = true;
                c.same_host_id = true;
                c.twins_boot_together = true;
            }
            "skip_delta_large_delay" => {
                c.protocol.skip_delta_large_delay = true;
                c.same_host_id = true;
            }
            "stalls" => {
                // The correct protocol with hosts that stall just after their writes.
                c.host.stall_after_write = STALL_AFTER_WRITE;
            }
            "ignore_confirm_limit" => {
                // Acquirers that stall between their write and its re-read, beside a twin
                // that may watch the record for 8N+W meanwhile.
                c.protocol.ignore_confirm_limit = true;
                c.same_host_id = true;
                c.host.stall_after_write = STALL_AFTER_WRITE;
            }
            "overtaking_writes" => {
                // Many timed-out writes that land late: the window where one overtakes the next.
                c.disk.ordered_writes = false;
                c.disk.timeout = 0.08;
                c.disk.lost_write = 0.0;
                c.disk.late_write_max = Some(Duration::from_secs(4 * c.io_timeout as u64));
                c.resources = 1;
            }
            "ignore_boot_id" => {
                c.protocol.ignore_boot_id = true;
                c.same_host_id = false;
                c.host.daemon_crash = 10;
            }
            other => {
                return Err(format!("unknown fault {other:?}; known: none, stress, stalls, {}", FAULT_NAMES.join(", ")))
            }
        }
        Ok(c)
    }

    pub fn geometry(&self) -> Geometry {
        Geometry::new(self.sector, Align::M1).expect("1 MiB align exists for both sector sizes")
    }
}

/// The lockspace and resource areas of a simulation.
pub fn layout(cfg: &SimConfig) -> (LockspaceArea, Vec<ResourceArea>) {
    let g = cfg.geometry();
    let ls = Name::new("lvm_sim").unwrap();
    let area = LockspaceArea { name: ls, offset: 0, geometry: g };
    let res = (0..cfg.resources)
        .map(|k| ResourceArea {
            lockspace: ls,
            name: Name::new(&format!("res{k}")).unwrap(),
            offset: (k as u64 + 1) * AREA_BYTES,
            geometry: g,
        })
        .collect();
    (area, res)
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub step: u64,
    pub at: Duration,
    pub what: String,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    pub steps: u64,
    /// Simulated time reached.
    pub sim_time: Duration,
    /// Simulated seconds summed over hosts.
    pub host_seconds: u64,
    pub violation: Option<Violation>,
    /// Hash of every traced event: equal for equal seeds and configs.
    pub trace_hash: u64,
    pub events: u64,
    pub stats: Stats,
    /// The last `trace_cap` events, formatted.
    pub trace: Vec<String>,
}

/// Runs one simulation to its end or its first violation.
pub fn run(cfg: SimConfig) -> Outcome {
    let seed = cfg.seed;
    let hosts = cfg.hosts as u64;
    let mut sim = executor::Sim::new(cfg);
    sim.run();
    let w = sim.world.borrow();
    let sim_time = w.now;
    Outcome {
        seed,
        steps: w.step,
        sim_time,
        host_seconds: hosts * sim_time.as_secs(),
        violation: sim.violation.clone(),
        trace_hash: w.trace.hash(),
        events: w.trace.count,
        stats: w.stats.clone(),
        trace: w.trace.entries().map(|e| e.to_string()).collect(),
    }
}
