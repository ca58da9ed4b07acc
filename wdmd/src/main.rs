//! `wdmd`: see the library docs and `wdmd --help`.

use std::process::ExitCode;

use sd_notify::NotifyState;
use tracing::{error, warn};
use wdmd::cli::{self, Command, DeviceChoice};
use wdmd::device::{DeviceWatchdog, FileWatchdog, Watchdog};
use wdmd::server::{self, ServerConfig};

fn status(run_dir: &std::path::Path) -> ExitCode {
    let res = proto::wdmd::client::Client::connect(run_dir).and_then(|mut c| c.status());
    let s = match res {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wdmd status: {e}");
            return ExitCode::FAILURE;
        }
    };
    let secs = |ms: u64| format!("{:.3}", ms as f64 / 1000.0);
    println!("device {}", s.device);
    println!(
        "fire_timeout {} s, test_interval {} s (current {} s)",
        s.fire_timeout_secs,
        secs(s.test_interval_ms),
        secs(s.current_interval_ms)
    );
    println!("petting {}", if s.petting { "yes" } else { "NO: closed armed, the watchdog will fire" });
    println!("now {}", secs(s.now_ms));
    println!("last_keepalive {}", s.last_keepalive_ms.map_or("never".into(), secs));
    println!("last_close_armed {}", s.last_close_armed_ms.map_or("never".into(), secs));
    for c in &s.clients {
        let exp = if c.times.expiry_ms == 0 {
            "none".to_string()
        } else {
            format!("{} (in {})", secs(c.times.expiry_ms), secs(c.times.expiry_ms.saturating_sub(s.now_ms)))
        };
        println!(
            "client {} pid {}{} renewal {} expiry {exp}",
            c.name,
            c.pid,
            if c.connected { "" } else { " DISCONNECTED" },
            secs(c.times.renewal_ms)
        );
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wdmd: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let args = match cmd {
        Command::Help => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("wdmd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Status { run_dir } => return status(&run_dir),
        Command::Daemon(a) => a,
    };
    proto::logging::init(args.debug);
    let mut test_mode = false;
    let wd: Box<dyn Watchdog> = match &args.device {
        DeviceChoice::Kernel(path) => match DeviceWatchdog::find(path.as_deref()) {
            Ok(d) => Box::new(d),
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        },
        DeviceChoice::TestFile(path) => {
            test_mode = true;
            eprintln!("##########################################################################");
            eprintln!("# wdmd --test-watchdog-file: NO WATCHDOG DEVICE. THIS HOST IS NOT FENCED. #");
            eprintln!("# For host-tier tests only; never use it where leases protect real data. #");
            eprintln!("##########################################################################");
            warn!(file = %path.display(), "TEST WATCHDOG FILE instead of a device: the host is NOT fenced");
            Box::new(FileWatchdog::new(path))
        }
    };
    let cfg = ServerConfig { run_dir: args.run_dir.clone(), fire_timeout: args.fire_timeout };
    let res = server::run(&cfg, wd, |d| {
        let t = d.timeouts();
        let msg = if test_mode {
            "TEST WATCHDOG FILE, host NOT fenced".to_string()
        } else {
            format!("petting, fire timeout {} s, test interval {} s", t.watchdog_fire, t.wdmd_test_interval().as_secs())
        };
        let _ = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&msg)]);
    });
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
