//! lockd's side of wdmd: one client per lockspace, told the expiry (last renewal + 8N) after
//! every successful renewal. The client name carries the delta lease generation, so a new
//! incarnation of a lockspace never touches (and never clears) an expiry an earlier one left
//! behind; a restarted lockd resuming the same generation adopts its entry.

use std::path::PathBuf;
use std::time::Duration;

use tracing::warn;

/// A registered watchdog client.
pub trait Watchdog: Send {
    /// After a renewal started at `renewal`: the host must be reset if nothing newer arrives by
    /// `expiry` (CLOCK_MONOTONIC).
    fn set_expiry(&mut self, renewal: Duration, expiry: Duration) -> Result<(), String>;
    /// The lockspace no longer needs the host reset (released, or its users are stopped).
    fn clear(&mut self) -> Result<(), String>;
    /// Unregisters (after `clear`).
    fn close(&mut self);
}

pub trait WatchdogFactory: Send + Sync {
    /// Registers `name`; `takeover` adopts an entry left by an earlier connection of the same
    /// name (only when resuming that very lease).
    fn register(&self, name: &str, takeover: bool) -> Result<Box<dyn Watchdog>, String>;
    /// Whether a real watchdog protects the leases.
    fn enabled(&self) -> bool;
}

/// The client name of a lockspace incarnation.
pub fn client_name(lockspace: &str, host_id: u64, generation: u64) -> String {
    format!("lockd_{lockspace}:{host_id}:{generation}")
}

/// `use_watchdog = false`: nothing resets this host if it stops renewing. Tests only.
pub struct NoWatchdog;

impl Watchdog for NoWatchdog {
    fn set_expiry(&mut self, _: Duration, _: Duration) -> Result<(), String> {
        Ok(())
    }
    fn clear(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn close(&mut self) {}
}

impl WatchdogFactory for NoWatchdog {
    fn register(&self, _: &str, _: bool) -> Result<Box<dyn Watchdog>, String> {
        Ok(Box::new(NoWatchdog))
    }
    fn enabled(&self) -> bool {
        false
    }
}

/// wdmd at `run_dir`; `fire_timeout` is our W, which wdmd must use too.
pub struct Wdmd {
    pub run_dir: PathBuf,
    pub fire_timeout: u32,
}

struct WdmdClient {
    run_dir: PathBuf,
    fire_timeout: u32,
    name: String,
    client: Option<proto::wdmd::client::Client>,
}

impl WdmdClient {
    fn connect(&mut self, takeover: bool) -> Result<&mut proto::wdmd::client::Client, String> {
        if self.client.is_none() {
            let mut c = proto::wdmd::client::Client::connect(&self.run_dir).map_err(|e| e.to_string())?;
            if takeover {
                c.register_takeover(&self.name, self.fire_timeout).map_err(|e| e.to_string())?;
            } else {
                c.register(&self.name, self.fire_timeout).map_err(|e| e.to_string())?;
            }
            self.client = Some(c);
        }
        Ok(self.client.as_mut().expect("set above"))
    }

    /// One retry over a new connection: wdmd may have restarted; our entry is adopted.
    fn call(
        &mut self,
        f: impl Fn(&mut proto::wdmd::client::Client) -> Result<(), proto::wdmd::client::ClientError>,
    ) -> Result<(), String> {
        let first = f(self.connect(true)?);
        match first {
            Ok(()) => Ok(()),
            Err(proto::wdmd::client::ClientError::Io(e)) => {
                warn!("wdmd connection of {} broke ({e}); reconnecting", self.name);
                self.client = None;
                f(self.connect(true)?).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Watchdog for WdmdClient {
    fn set_expiry(&mut self, renewal: Duration, expiry: Duration) -> Result<(), String> {
        self.call(|c| c.set_expiry(renewal, expiry))
    }
    fn clear(&mut self) -> Result<(), String> {
        self.call(|c| c.clear())
    }
    fn close(&mut self) {
        if let Some(mut c) = self.client.take() {
            if let Err(e) = c.unregister() {
                warn!("wdmd: unregister {}: {e}", self.name);
            }
        }
    }
}

impl WatchdogFactory for Wdmd {
    fn register(&self, name: &str, takeover: bool) -> Result<Box<dyn Watchdog>, String> {
        let mut c = WdmdClient {
            run_dir: self.run_dir.clone(),
            fire_timeout: self.fire_timeout,
            name: name.to_string(),
            client: None,
        };
        c.connect(takeover)?;
        Ok(Box::new(c))
    }
    fn enabled(&self) -> bool {
        true
    }
}
