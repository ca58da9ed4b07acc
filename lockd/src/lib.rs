//! lockd: the sanlvm lock daemon, one per host (lvmlockd + sanlock's roles in one process).
//!
//! - [`server`]: the root-only unix socket (the protocol itself is `proto::lockd`).
//! - [`daemon`]: started lockspaces and request dispatch.
//! - [`lockspace`]: one per started VG: its phases, delta lease, renewal thread, failure.
//! - [`guarded`]: the one lock of a lockspace's state, usable after a request panicked.
//! - [`error`]: lockd's error kinds and the wire codes they map to.
//! - [`locks`]: GL/VG/LV locks as paxos leases, local holders, conflicts; which LV slot is free.
//! - [`leasemap`]: where a VG's leases are, from lockd's own read of the committed metadata.
//! - [`glctl`]: which started VG holds "the" global lock; gl-enable/gl-disable.
//! - [`state`]: what a restarted lockd needs to resume the same delta lease generation.
//! - [`watchdog`]: wdmd clients; [`fence`]: what happens to a failed VG's LVs.
//! - [`disk`]: the lease LV mapped onto its PVs.

pub mod daemon;
pub mod disk;
pub mod error;
pub mod fence;
pub mod glctl;
pub mod guarded;
pub mod leasemap;
pub mod locks;
pub mod lockspace;
pub mod server;
pub mod state;
#[cfg(test)]
mod testenv;
pub mod util;
pub mod watchdog;

use std::sync::Arc;

use tracing::{error, info, warn};

/// `lockd daemon`: runs in the foreground until killed. Leases stay held when it exits; a
/// lockd started again within 8N resumes them.
pub fn run_daemon(cfg: proto::config::Config, fencer: Arc<dyn fence::Fencer>) -> Result<(), String> {
    for k in &cfg.unknown_keys {
        warn!("{}: unknown key `{k}` ignored", cfg.origin);
    }
    let host_id = cfg.require_host_id().map_err(|e| e.to_string())?;
    let watchdog: Arc<dyn watchdog::WatchdogFactory> = if cfg.use_watchdog {
        Arc::new(watchdog::Wdmd { run_dir: cfg.wdmd_run_dir.clone(), fire_timeout: cfg.watchdog_fire_timeout })
    } else {
        error!(
            "use_watchdog = false in {}: NO WATCHDOG PROTECTS THE LEASES. A host that stops renewing is not \
             reset, and other hosts take its leases after 8N+W while it may still write. Tests only.",
            cfg.origin
        );
        Arc::new(watchdog::NoWatchdog)
    };
    // Before any thread exists, so that every thread inherits the mask and only the signal
    // thread below sees SIGTERM/SIGINT.
    let stop_signals = {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.thread_block().map_err(|e| format!("cannot block SIGTERM: {e}"))?;
        set
    };
    let listener = server::bind(&cfg.run_dir).map_err(|e| format!("{}: {e}", cfg.run_dir.display()))?;
    let run_dir = cfg.run_dir.clone();
    let (n, w) = (cfg.io_timeout, cfg.watchdog_fire_timeout);
    let name = cfg.host_name.clone();
    let d = Arc::new(daemon::Daemon::new(cfg, watchdog, fencer)?);
    d.resume_all();
    info!(
        "lockd ready: host_id {host_id} name {name:?} io_timeout {n} watchdog_fire_timeout {w} socket {} mono_ms={}",
        run_dir.join(proto::config::SOCKET_NAME).display(),
        util::mono_ms()
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let for_signals = d.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || stop_on_signal(&for_signals, stop_signals, &run_dir))
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    server::serve(d, listener);
    Ok(())
}

/// SIGTERM/SIGINT: exit only when no lockspace is started here (as lvmlockd). With one started,
/// exiting would leave its leases to the watchdog: wdmd keeps the expiries, and the host is reset
/// unless a new lockd resumes them in time. So the request is refused, saying how to stop.
fn stop_on_signal(d: &daemon::Daemon, set: nix::sys::signal::SigSet, run_dir: &std::path::Path) {
    loop {
        let Ok(sig) = set.wait() else { continue };
        let started = d.started();
        if started.is_empty() {
            info!("{sig}: no lockspace started; exiting");
            let _ = std::fs::remove_file(run_dir.join(proto::config::SOCKET_NAME));
            std::process::exit(0);
        }
        warn!(
            "{sig} ignored: the lockspace of VG(s) {} is started; stop it first (lvtool vgchange --lock-stop), \
             or kill -9 to leave them for a restarted lockd to resume",
            started.join(", ")
        );
    }
}

/// Log lines on stderr (journald adds its own time stamps); `LOCKD_DEBUG` adds every renewal.
pub fn init_logging() {
    proto::logging::init(std::env::var_os("LOCKD_DEBUG").is_some());
}
