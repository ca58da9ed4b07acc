//! The watchdog device: the kernel's `/dev/watchdog*`, or a file that records what a device
//! would have seen (host-tier tests only, where the kernel has no watchdog).
//!
//! Kernel semantics the daemon relies on: opening arms the device and counts as a pet; every
//! WDIOC_KEEPALIVE pets it; closing without writing 'V' leaves it armed (most drivers treat the
//! close as a last pet), so it fires at most the fire timeout after the last pet; writing 'V'
//! and then closing disarms it (the "magic close").

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lease::clock::clock_monotonic;

use proto::wdmd::protocol::to_ms;

/// Where to look when no device is configured, in sanlock's order.
pub const DEFAULT_DEVICES: [&str; 3] = ["/dev/watchdog0", "/dev/watchdog1", "/dev/watchdog"];

pub trait Watchdog: Send {
    /// For logs and status.
    fn describe(&self) -> String;
    fn is_open(&self) -> bool;
    /// Opens the device and programs `fire_timeout` seconds, checked by reading it back.
    /// Opening arms it and counts as a pet. On an error after the open succeeded the device
    /// stays open: only the caller knows whether it may be disarmed.
    fn open(&mut self, fire_timeout: u32) -> io::Result<()>;
    fn keepalive(&mut self) -> io::Result<()>;
    /// Closes without 'V': the device stays armed and fires unless reopened in time.
    fn close_armed(&mut self);
    /// Writes 'V' and closes: disarmed. Only when no client has an expiry.
    fn close_disarmed(&mut self) -> io::Result<()>;
}

mod ioctls {
    // The kernel declares KEEPALIVE and GETTIMEOUT as _IOR although KEEPALIVE reads nothing,
    // and SETTIMEOUT as _IOWR (the driver writes back the value it chose).
    nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);
    nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);
    nix::ioctl_read!(wdioc_gettimeout, b'W', 7, libc::c_int);
}

/// The kernel watchdog device.
#[derive(Debug)]
pub struct DeviceWatchdog {
    path: PathBuf,
    itco: bool,
    file: Option<File>,
}

impl DeviceWatchdog {
    /// `configured`, or the first of [`DEFAULT_DEVICES`] that exists. A configured path is used
    /// as is: falling back from a path the admin chose would hide a mistake.
    pub fn find(configured: Option<&Path>) -> io::Result<DeviceWatchdog> {
        let path = match configured {
            Some(p) => {
                let meta = std::fs::metadata(p).map_err(|e| with_path(e, p))?;
                if !meta.file_type().is_char_device() {
                    return Err(io::Error::other(format!("{} is not a character device", p.display())));
                }
                p.to_path_buf()
            }
            None => DEFAULT_DEVICES
                .iter()
                .map(PathBuf::from)
                .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device()))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "no watchdog device ({}); load a driver, e.g. modprobe softdog",
                            DEFAULT_DEVICES.join(", ")
                        ),
                    )
                })?,
        };
        let itco = driver_identity(&path).is_some_and(|id| id == "iTCO_wdt");
        Ok(DeviceWatchdog { path, itco, file: None })
    }
}

/// The driver's identity from sysfs (`/dev/watchdogN` → `/sys/class/watchdog/watchdogN/identity`;
/// the legacy `/dev/watchdog` is watchdog0).
fn driver_identity(dev: &Path) -> Option<String> {
    let name = dev.file_name()?.to_str()?;
    let name = if name == "watchdog" { "watchdog0" } else { name };
    let id = std::fs::read_to_string(Path::new("/sys/class/watchdog").join(name).join("identity")).ok()?;
    Some(id.trim().to_string())
}

/// The timeout to program for a fire timeout of `w` seconds. iTCO_wdt fires only after its
/// timeout has elapsed twice, so it gets half (sanlock 3.9 does the same); firing early is safe.
pub fn programmed_timeout(w: u32, itco: bool) -> u32 {
    if itco {
        (w / 2).max(1)
    } else {
        w
    }
}

fn with_path(e: io::Error, p: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}

impl Watchdog for DeviceWatchdog {
    fn describe(&self) -> String {
        if self.itco {
            format!("{} (iTCO_wdt: timeout halved)", self.path.display())
        } else {
            self.path.display().to_string()
        }
    }

    fn is_open(&self) -> bool {
        self.file.is_some()
    }

    fn open(&mut self, fire_timeout: u32) -> io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        let file = OpenOptions::new().write(true).custom_flags(libc::O_CLOEXEC).open(&self.path)?;
        let fd = file.as_raw_fd();
        self.file = Some(file);
        let want = programmed_timeout(fire_timeout, self.itco) as libc::c_int;
        let mut cur: libc::c_int = 0;
        // SAFETY: fd is our open watchdog device; the ioctls read/write one c_int we own.
        unsafe { ioctls::wdioc_gettimeout(fd, &mut cur) }.map_err(|e| io::Error::other(format!("GETTIMEOUT: {e}")))?;
        if cur != want {
            let mut set = want;
            // SAFETY: as above.
            unsafe { ioctls::wdioc_settimeout(fd, &mut set) }
                .map_err(|e| io::Error::other(format!("SETTIMEOUT {want}: {e}")))?;
            // SAFETY: as above.
            unsafe { ioctls::wdioc_gettimeout(fd, &mut cur) }
                .map_err(|e| io::Error::other(format!("GETTIMEOUT: {e}")))?;
            if cur != want {
                return Err(io::Error::other(format!("timeout {want} s requested, the driver reports {cur} s")));
            }
        }
        Ok(())
    }

    fn keepalive(&mut self) -> io::Result<()> {
        let file = self.file.as_ref().ok_or_else(|| io::Error::other("watchdog device is closed"))?;
        let mut unused: libc::c_int = 0;
        // SAFETY: fd is our open watchdog device; KEEPALIVE ignores its argument.
        unsafe { ioctls::wdioc_keepalive(file.as_raw_fd(), &mut unused) }
            .map_err(|e| io::Error::other(format!("KEEPALIVE: {e}")))?;
        Ok(())
    }

    fn close_armed(&mut self) {
        self.file = None;
    }

    fn close_disarmed(&mut self) -> io::Result<()> {
        match self.file.take() {
            Some(mut f) => f.write_all(b"V"),
            None => Ok(()),
        }
    }
}

/// What a [`FileWatchdog`] records, one line each: `<monotonic ms> <event>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Open { timeout: u32 },
    Keepalive,
    CloseArmed,
    CloseDisarmed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub at: Duration,
    pub kind: EventKind,
}

/// FOR HOST-TIER TESTS ONLY: a stand-in for the device that appends every open, pet and close
/// to a file with its time, so a test can check when the host would have been reset. It fences
/// nothing. The daemon selects it only with `--test-watchdog-file`, and says so loudly.
pub struct FileWatchdog {
    path: PathBuf,
    open: bool,
    clock: Box<dyn Fn() -> Duration + Send>,
}

impl FileWatchdog {
    /// Records CLOCK_MONOTONIC times.
    pub fn new(path: &Path) -> FileWatchdog {
        FileWatchdog::with_clock(path, Box::new(clock_monotonic))
    }

    /// Records the times of `clock` (tests with a virtual clock).
    pub fn with_clock(path: &Path, clock: Box<dyn Fn() -> Duration + Send>) -> FileWatchdog {
        FileWatchdog { path: path.to_path_buf(), open: false, clock }
    }

    fn record(&self, ev: &str) -> io::Result<()> {
        let mut f = OpenOptions::new().create(true).append(true).open(&self.path)?;
        writeln!(f, "{} {ev}", to_ms((self.clock)()))
    }

    /// Parses a file written by a `FileWatchdog`.
    pub fn read_events(path: &Path) -> io::Result<Vec<Event>> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let bad = |l: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad watchdog event line {l:?}"));
        let mut out = Vec::new();
        for line in io::BufReader::new(f).lines() {
            let line = line?;
            let mut it = line.split_whitespace();
            let at = it.next().and_then(|t| t.parse().ok()).ok_or_else(|| bad(&line))?;
            let kind = match (it.next(), it.next()) {
                (Some("open"), Some(t)) => EventKind::Open { timeout: t.parse().map_err(|_| bad(&line))? },
                (Some("keepalive"), None) => EventKind::Keepalive,
                (Some("close_armed"), None) => EventKind::CloseArmed,
                (Some("close_disarmed"), None) => EventKind::CloseDisarmed,
                _ => return Err(bad(&line)),
            };
            out.push(Event { at: Duration::from_millis(at), kind });
        }
        Ok(out)
    }
}

/// When a real watchdog would fire given these events, if it is still armed after the last
/// one: the last pet (open, keepalive or the close that left it armed) plus the fire timeout.
pub fn would_fire_at(events: &[Event], fire_timeout: Duration) -> Option<Duration> {
    let mut armed_since_ping: Option<Duration> = None;
    for e in events {
        match e.kind {
            EventKind::Open { .. } | EventKind::Keepalive | EventKind::CloseArmed => armed_since_ping = Some(e.at),
            EventKind::CloseDisarmed => armed_since_ping = None,
        }
    }
    armed_since_ping.map(|t| t + fire_timeout)
}

impl Watchdog for FileWatchdog {
    fn describe(&self) -> String {
        format!("TEST WATCHDOG FILE {} (no fencing!)", self.path.display())
    }

    fn is_open(&self) -> bool {
        self.open
    }

    fn open(&mut self, fire_timeout: u32) -> io::Result<()> {
        if !self.open {
            self.record(&format!("open {fire_timeout}"))?;
            self.open = true;
        }
        Ok(())
    }

    fn keepalive(&mut self) -> io::Result<()> {
        if !self.open {
            return Err(io::Error::other("watchdog device is closed"));
        }
        self.record("keepalive")
    }

    fn close_armed(&mut self) {
        if self.open {
            self.open = false;
            // A lost record only weakens a test, never the daemon.
            let _ = self.record("close_armed");
        }
    }

    fn close_disarmed(&mut self) -> io::Result<()> {
        if self.open {
            self.open = false;
            self.record("close_disarmed")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_watchdog_h() {
        let int = std::mem::size_of::<libc::c_int>();
        assert_eq!(nix::request_code_read!(b'W', 5, int) as u32, 0x8004_5705, "WDIOC_KEEPALIVE");
        assert_eq!(nix::request_code_readwrite!(b'W', 6, int) as u32, 0xC004_5706, "WDIOC_SETTIMEOUT");
        assert_eq!(nix::request_code_read!(b'W', 7, int) as u32, 0x8004_5707, "WDIOC_GETTIMEOUT");
    }

    #[test]
    fn itco_gets_half() {
        assert_eq!(programmed_timeout(60, false), 60);
        assert_eq!(programmed_timeout(60, true), 30);
        assert_eq!(programmed_timeout(61, true), 30, "rounds down: fires earlier, never later");
        assert_eq!(programmed_timeout(1, true), 1);
    }

    #[test]
    fn file_watchdog_records_and_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wd");
        let t = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1000));
        let tc = t.clone();
        let mut wd = FileWatchdog::with_clock(
            &path,
            Box::new(move || Duration::from_millis(tc.load(std::sync::atomic::Ordering::SeqCst))),
        );
        wd.open(3).unwrap();
        wd.keepalive().unwrap();
        t.store(2000, std::sync::atomic::Ordering::SeqCst);
        wd.close_armed();
        assert!(wd.keepalive().is_err());
        let ev = FileWatchdog::read_events(&path).unwrap();
        let kinds: Vec<_> = ev.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Open { timeout: 3 }, EventKind::Keepalive, EventKind::CloseArmed]);
        assert_eq!(would_fire_at(&ev, Duration::from_secs(3)), Some(Duration::from_millis(5000)));
        wd.open(3).unwrap();
        wd.close_disarmed().unwrap();
        assert_eq!(would_fire_at(&FileWatchdog::read_events(&path).unwrap(), Duration::from_secs(3)), None);
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let e = DeviceWatchdog::find(Some(Path::new("/nonexistent/watchdog"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/watchdog"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = DeviceWatchdog::find(Some(dir.path())).unwrap_err();
        assert!(e.to_string().contains("not a character device"), "{e}");
    }
}
