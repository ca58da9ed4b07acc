//! Runs the deterministic simulator over a range of seeds.
//!
//! cargo run --release -p lease --example simulate -- --seed-start S --seeds K [--hosts H]
//!     [--fault NAME] [--duration SECS] [--trace] [--quiet]
//! cargo run --release -p lease --example simulate -- --seed N      (one seed, trace printed)
//!
//! Ends with `simulated: seeds=K host_seconds=X violations=V`. A failing seed prints its trace.

use std::process::ExitCode;
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
}

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
            "-h" | "--help" => {
                return Err(format!(
                    "usage: simulate [--seed-start S --seeds K | --seed N] [--hosts H] [--fault NAME] \
                     [--duration SECS] [--trace] [--echo] [--quiet]\nfaults: none, {}",
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
    let started = Instant::now();
    let (mut host_seconds, mut violations) = (0u64, 0u64);
    for seed in args.seed_start..args.seed_start + args.seeds {
        let mut cfg = match SimConfig::with_fault(seed, &args.fault) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        if let Some(h) = args.hosts {
            cfg.hosts = h.max(2);
        }
        if let Some(d) = args.duration {
            cfg.duration = Duration::from_secs(d);
        }
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
                    "seed {seed}: VIOLATION at step {} t={:.6}s: {}\n  config: hosts={} {} faults={:?} ordered_writes={}",
                    v.step,
                    v.at.as_secs_f64(),
                    v.what,
                    cfg.hosts,
                    timing_summary(&cfg),
                    cfg.protocol,
                    cfg.disk.ordered_writes
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
