//! Runs the deterministic simulator over a range of seeds.
//!
//! cargo run --release -p lease --example simulate -- --seed-start S --seeds K [--hosts H]
//!     [--fault NAME] [--duration SECS] [--trace] [--quiet]
//! cargo run --release -p lease --example simulate -- --seed N      (one seed, trace printed)
//! cargo run --release -p lease --example simulate -- --soak HOST_SECONDS [--hosts-range A..B]
//!     [--threads T] [--seed-start S] [--fault NAME[,NAME...]] [--duration SECS]
//!
//! Ends with `simulated: seeds=K host_seconds=X violations=V`. A failing seed prints its trace
//! and the command that reproduces it.
//!
//! `--soak` walks seeds from S, seed S+k with host count A + k mod (B-A+1) and, when several
//! faults are named, the next fault after each sweep of host counts, until the
//! simulated host-seconds (hosts × time simulated, summed) reach HOST_SECONDS. The seed list
//! depends only on the arguments, and each seed runs alone on one of T threads, so a soak is
//! the same soak however its threads interleave.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lease::sim::{self, SimConfig};

struct Args {
    seed_start: u64,
    seeds: u64,
    hosts: Option<usize>,
    fault: String,
    duration: Option<u64>,
    trace: bool,
    echo: bool,
    quiet: bool,
    /// `--soak`: the simulated host-seconds to reach.
    soak: Option<u64>,
    hosts_range: (usize, usize),
    threads: usize,
}

/// The soak's default host counts: from the smallest lockspace to a crowded one.
const SOAK_HOSTS: (usize, usize) = (2, 16);
/// A long soak reports progress (on stderr) every this many seeds.
const SOAK_PROGRESS_SEEDS: usize = 1000;
/// One thread per core of a small build machine.
const SOAK_THREADS: usize = 2;

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seed_start: 0,
        seeds: 1,
        hosts: None,
        fault: "none".into(),
        duration: None,
        trace: false,
        echo: false,
        quiet: false,
        soak: None,
        hosts_range: SOAK_HOSTS,
        threads: SOAK_THREADS,
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, name: &str| -> Result<u64, String> {
        v.ok_or(format!("{name} needs a value"))?.parse().map_err(|e| format!("{name}: {e}"))
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--seed-start" => a.seed_start = num(it.next(), "--seed-start")?,
            "--seeds" => a.seeds = num(it.next(), "--seeds")?,
            "--seed" => {
                a.seed_start = num(it.next(), "--seed")?;
                a.seeds = 1;
                a.trace = true;
            }
            "--hosts" => a.hosts = Some(num(it.next(), "--hosts")? as usize),
            "--fault" => a.fault = it.next().ok_or("--fault needs a value")?,
            "--duration" => a.duration = Some(num(it.next(), "--duration")?),
            "--trace" => a.trace = true,
            "--echo" => a.echo = true,
            "--quiet" => a.quiet = true,
            "--soak" => a.soak = Some(num(it.next(), "--soak")?),
            "--threads" => a.threads = (num(it.next(), "--threads")? as usize).max(1),
            "--hosts-range" => {
                let v = it.next().ok_or("--hosts-range needs a value like 2..16")?;
                let (lo, hi) = v.split_once("..").ok_or("--hosts-range: expected A..B")?;
                let lo: usize = lo.parse().map_err(|e| format!("--hosts-range: {e}"))?;
                let hi: usize = hi.trim_start_matches('=').parse().map_err(|e| format!("--hosts-range: {e}"))?;
                if lo < 2 || hi < lo {
                    return Err("--hosts-range: need 2 <= A <= B".into());
                }
                a.hosts_range = (lo, hi);
            }
            "-h" | "--help" => {
                return Err(format!(
                    "usage: simulate [--seed-start S --seeds K | --seed N] [--hosts H] [--fault NAME] \
                     [--duration SECS] [--trace] [--echo] [--quiet]\n       simulate --soak HOST_SECONDS \
                     [--hosts-range A..B] [--threads T] [--seed-start S] [--fault NAME[,NAME...]] [--duration SECS]\n\
                     faults: none, stress, stalls, {}",
                    sim::FAULT_NAMES.join(", ")
                ))
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(budget) = args.soak {
        return soak(&args, budget);
    }
    let started = Instant::now();
    let (mut host_seconds, mut violations) = (0u64, 0u64);
    for seed in args.seed_start..args.seed_start + args.seeds {
        let mut cfg = match config(&args, seed, args.hosts, &args.fault) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        cfg.echo = args.echo;
        let t0 = Instant::now();
        let out = sim::run(cfg.clone());
        host_seconds += out.host_seconds;
        if args.trace || out.violation.is_some() {
            for line in &out.trace {
                println!("{line}");
            }
        }
        match &out.violation {
            Some(v) => {
                violations += 1;
                println!(
                    "seed {seed}: VIOLATION at step {} t={:.6}s: {}\n  config: hosts={} {} faults={:?} ordered_writes={}\n  \
                     reproduce: {}",
                    v.step,
                    v.at.as_secs_f64(),
                    v.what,
                    cfg.hosts,
                    timing_summary(&cfg),
                    cfg.protocol,
                    cfg.disk.ordered_writes,
                    reproduce(&args, seed, cfg.hosts, &args.fault)
                );
            }
            None if !args.quiet => {
                let s = &out.stats;
                println!(
                    "seed {seed}: ok {:.0}s sim in {:.2}s wall, steps={} hash={:016x} | {} | \
                     ios={} delta={} renew={}/{} lsfail={} acq={}/{} conv={} rel={} reboot={} crash={} stall={} wdreset={} \
                     leave={} late={} torn={}",
                    out.sim_time.as_secs_f64(),
                    t0.elapsed().as_secs_f64(),
                    out.steps,
                    out.trace_hash,
                    timing_summary(&cfg),
                    s.ios,
                    s.delta_acquires,
                    s.renewals,
                    s.renewal_failures,
                    s.lockspace_failures,
                    s.acquires,
                    s.acquire_failures,
                    s.converts,
                    s.releases,
                    s.reboots,
                    s.daemon_crashes,
                    s.stalls,
                    s.watchdog_resets,
                    s.leaves,
                    s.late_writes,
                    s.torn_writes
                );
            }
            None => {}
        }
    }
    let wall = started.elapsed().as_secs_f64();
    if !args.quiet {
        eprintln!("wall {wall:.2}s, {:.0} host-seconds per wall second", host_seconds as f64 / wall.max(1e-9));
    }
    println!("simulated: seeds={} host_seconds={host_seconds} violations={violations}", args.seeds);
    if violations > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One seed's configuration, as both modes build it.
fn config(args: &Args, seed: u64, hosts: Option<usize>, fault: &str) -> Result<SimConfig, String> {
    let mut cfg = SimConfig::with_fault(seed, fault)?;
    if let Some(h) = hosts {
        cfg.hosts = h.max(2);
    }
    if let Some(d) = args.duration {
        cfg.duration = Duration::from_secs(d);
    }
    Ok(cfg)
}

/// The command line that runs one seed alone, with its trace.
fn reproduce(args: &Args, seed: u64, hosts: usize, fault: &str) -> String {
    let mut c = format!("cargo run --release -p lease --example simulate -- --seed {seed} --hosts {hosts}");
    if fault != "none" {
        c += &format!(" --fault {fault}");
    }
    if let Some(d) = args.duration {
        c += &format!(" --duration {d}");
    }
    c
}

/// Runs seeds across host counts until `budget` simulated host-seconds are planned.
fn soak(args: &Args, budget: u64) -> ExitCode {
    let (lo, hi) = args.hosts_range;
    let span = (hi - lo + 1) as u64;
    let faults: Vec<&str> = args.fault.split(',').collect();
    // The seed list: (seed, hosts, fault) for k = 0, 1, ... Planned in rounds, each enough
    // for what the budget still lacks by plan; a run that ends early (at its last event, or a
    // violation) leaves the rest to the next round. Each round is a function of the ones
    // before it, so the whole list depends only on the arguments.
    let mut plan: Vec<(u64, usize, &str)> = Vec::new();
    let started = Instant::now();
    let host_seconds = AtomicU64::new(0);
    let failures: Mutex<Vec<(u64, usize, &str, String)>> = Mutex::new(Vec::new());
    let out = Mutex::new(());
    while host_seconds.load(Ordering::Relaxed) < budget && failures.lock().map(|f| f.is_empty()).unwrap_or(false) {
        let round_start = plan.len();
        let mut planned = host_seconds.load(Ordering::Relaxed);
        while planned < budget {
            let k = plan.len() as u64;
            let (seed, hosts) = (args.seed_start + k, lo + (k % span) as usize);
            let fault = faults[(k / span) as usize % faults.len()];
            let cfg = match config(args, seed, Some(hosts), fault) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            planned += hosts as u64 * cfg.duration.as_secs().max(1);
            plan.push((seed, hosts, fault));
        }
        let next = AtomicUsize::new(round_start);
        std::thread::scope(|s| {
            for _ in 0..args.threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(seed, hosts, fault)) = plan.get(i) else { return };
                    let cfg = config(args, seed, Some(hosts), fault).expect("checked while planning");
                    let o = sim::run(cfg.clone());
                    let total = host_seconds.fetch_add(o.host_seconds, Ordering::Relaxed) + o.host_seconds;
                    if (i + 1).is_multiple_of(SOAK_PROGRESS_SEEDS) && !args.quiet {
                        eprintln!(
                            "soak: {} of {} seeds, {total} host-seconds, {:.0}s",
                            i + 1,
                            plan.len(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                    if let Some(v) = &o.violation {
                        let _guard = out.lock().unwrap_or_else(|e| e.into_inner());
                        for line in &o.trace {
                            println!("{line}");
                        }
                        println!(
                            "seed {seed}: VIOLATION at step {} t={:.6}s: {}\n  config: hosts={hosts} {}\n  reproduce: {}",
                            v.step,
                            v.at.as_secs_f64(),
                            v.what,
                            timing_summary(&cfg),
                            reproduce(args, seed, hosts, fault)
                        );
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push((seed, hosts, fault, v.what.clone()));
                    }
                });
            }
        });
    }
    let wall = started.elapsed().as_secs_f64();
    let host_seconds = host_seconds.into_inner();
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort();
    for (seed, hosts, fault, what) in &failures {
        println!("FAILED seed {seed} hosts {hosts}: {what}\n  reproduce: {}", reproduce(args, *seed, *hosts, fault));
    }
    println!(
        "soak: seeds {}..={} hosts {lo}..={hi} fault={} threads={} wall {wall:.1}s, {:.0} host-seconds per wall second",
        args.seed_start,
        args.seed_start + plan.len() as u64 - 1,
        args.fault,
        args.threads,
        host_seconds as f64 / wall.max(1e-9)
    );
    println!("simulated: seeds={} host_seconds={host_seconds} violations={}", plan.len(), failures.len());
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The settings a seed's line names: N (io_timeout), W, sector size, shared host_id.
fn timing_summary(cfg: &SimConfig) -> String {
    format!(
        "N={}{} W={} sector={} same_host_id={}",
        cfg.io_timeout,
        if cfg.mixed_io_timeouts { "(mixed)" } else { "" },
        cfg.watchdog_fire,
        cfg.sector.bytes(),
        cfg.same_host_id
    )
}
