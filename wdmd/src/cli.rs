//! Command line of the `wdmd` binary.

use std::path::PathBuf;

use lease::timeouts::DEFAULT_WATCHDOG_FIRE_SECS;

use proto::wdmd::protocol::DEFAULT_RUN_DIR;

pub const USAGE: &str = "\
usage: wdmd [OPTIONS]              run the watchdog daemon in the foreground (systemd Type=notify)
       wdmd status [--run-dir DIR] print the daemon's state

options:
  --run-dir DIR               socket, pid file and saved expiries (default /run/wdmd)
  --device PATH               watchdog device (default: the first of /dev/watchdog0,
                              /dev/watchdog1, /dev/watchdog)
  --fire-timeout SECS         watchdog fire timeout W (default 60); the same on every host
  --test-watchdog-file PATH   TESTS ONLY: record pets to a file instead of a device; the host
                              is NOT fenced
  --debug                     log every test and keepalive
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    /// A kernel device: this path, or the default search.
    Kernel(Option<PathBuf>),
    /// The file-backed stand-in (host-tier tests).
    TestFile(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonArgs {
    pub run_dir: PathBuf,
    pub device: DeviceChoice,
    pub fire_timeout: u32,
    pub debug: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Daemon(DaemonArgs),
    Status { run_dir: PathBuf },
    Help,
    Version,
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    let status = args.peek().is_some_and(|a| a == "status");
    if status {
        args.next();
    }
    let mut run_dir = PathBuf::from(DEFAULT_RUN_DIR);
    let mut device = None;
    let mut test_file = None;
    let mut fire_timeout = DEFAULT_WATCHDOG_FIRE_SECS;
    let mut debug = false;
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--version" => return Ok(Command::Version),
            "--run-dir" => run_dir = PathBuf::from(value()?),
            "--device" if !status => device = Some(PathBuf::from(value()?)),
            "--test-watchdog-file" if !status => test_file = Some(PathBuf::from(value()?)),
            "--fire-timeout" if !status => {
                let v = value()?;
                fire_timeout = v
                    .parse()
                    .ok()
                    .filter(|&w| w >= 1)
                    .ok_or_else(|| format!("--fire-timeout {v:?}: need whole seconds >= 1"))?;
            }
            "--debug" if !status => debug = true,
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    if status {
        return Ok(Command::Status { run_dir });
    }
    let device = match (device, test_file) {
        (Some(_), Some(_)) => return Err("--device and --test-watchdog-file exclude each other".into()),
        (d, None) => DeviceChoice::Kernel(d),
        (None, Some(f)) => DeviceChoice::TestFile(f),
    };
    Ok(Command::Daemon(DaemonArgs { run_dir, device, fire_timeout, debug }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Command, String> {
        parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        assert_eq!(
            p(&[]).unwrap(),
            Command::Daemon(DaemonArgs {
                run_dir: "/run/wdmd".into(),
                device: DeviceChoice::Kernel(None),
                fire_timeout: 60,
                debug: false
            })
        );
        assert_eq!(
            p(&["--run-dir", "/x", "--device=/dev/watchdog1", "--fire-timeout", "30", "--debug"]).unwrap(),
            Command::Daemon(DaemonArgs {
                run_dir: "/x".into(),
                device: DeviceChoice::Kernel(Some("/dev/watchdog1".into())),
                fire_timeout: 30,
                debug: true
            })
        );
        assert!(matches!(
            p(&["--test-watchdog-file", "/tmp/wd"]).unwrap(),
            Command::Daemon(DaemonArgs { device: DeviceChoice::TestFile(_), .. })
        ));
        assert_eq!(p(&["status", "--run-dir", "/y"]).unwrap(), Command::Status { run_dir: "/y".into() });
    }

    #[test]
    fn errors() {
        assert!(p(&["--device", "/a", "--test-watchdog-file", "/b"]).is_err());
        assert!(p(&["--fire-timeout", "0"]).is_err());
        assert!(p(&["--fire-timeout"]).is_err());
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["status", "--device", "/a"]).is_err());
    }
}
