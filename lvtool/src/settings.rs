//! `lvmlocal.toml`: this host's settings, read through lockd's definition of the file (one
//! parser and one set of checks for both programs). lvtool uses `devices` (the block devices or
//! files that may hold PVs; nothing else is scanned), `host_id` (a host without one takes no
//! locks), `run_dir` (where lockd's socket is) and the timeouts (`io_timeout`, recorded in the
//! lockspace of a VG made here, as lvmlockd records its own).

use std::path::{Path, PathBuf};

use lease::timeouts::Timeouts;
use proto::config::Config;

use crate::error::{Error, Result};

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG: &str = proto::config::DEFAULT_CONFIG;

/// What lvtool takes from the config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Devices to scan for PVs, in order.
    pub devices: Vec<PathBuf>,
    /// This host's id in shared VGs' lockspaces; None: no locks are taken.
    pub host_id: Option<u64>,
    /// lockd's run directory (its socket).
    pub run_dir: PathBuf,
    /// What `vgchange -aay` activates (`auto_activation_volume_list`).
    pub auto_activation: Option<Vec<String>>,
    /// From `io_timeout` and `watchdog_fire_timeout`.
    pub timeouts: Timeouts,
    /// What the file holds that is not understood (printed as warnings).
    pub warnings: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::from(Config::defaults())
    }
}

impl From<Config> for Settings {
    fn from(c: Config) -> Settings {
        Settings {
            warnings: c.warnings(),
            timeouts: c.timeouts(),
            devices: c.devices,
            host_id: c.host_id,
            run_dir: c.run_dir,
            auto_activation: c.auto_activation_volume_list,
        }
    }
}

impl Settings {
    /// Parses the text of a config file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Settings> {
        Config::parse(text, origin).map(Settings::from).map_err(|e| Error::Config { path: e.path, reason: e.reason })
    }

    /// Warnings about the file (unknown keys), each naming the key and the file.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Reads `path`. A missing file is an empty config only when it is the default path (an
    /// explicit `--config` that does not exist is a mistake worth reporting).
    pub fn load(path: Option<&Path>) -> Result<Settings> {
        Config::load(path).map(Settings::from).map_err(|e| Error::Config { path: e.path, reason: e.reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_devices_and_ignores_other_keys() {
        let s =
            Settings::parse("host_id = 7\ndevices = [\"/dev/loop0\", \"/tmp/pv.img\"]\n[lockd]\nx = 1\n", "t").unwrap();
        assert_eq!(s.devices, vec![PathBuf::from("/dev/loop0"), PathBuf::from("/tmp/pv.img")]);
        assert_eq!(s.host_id, Some(7));
        assert_eq!(Settings::parse("", "t").unwrap(), Settings::default());
        assert_eq!(Settings::default().run_dir, PathBuf::from("/run/lockd"));
    }

    #[test]
    fn bad_config_names_the_key() {
        for bad in ["devices = \"/dev/sda\"", "devices = [1, 2]", "devices = [\"\"]", "devices = [", "devices ="] {
            let e = Settings::parse(bad, "/etc/x.toml").unwrap_err().to_string();
            assert!(e.contains("/etc/x.toml"), "{bad}: {e}");
            assert!(e.contains("devices"), "{bad}: {e}");
        }
    }

    #[test]
    fn missing_default_is_fine_missing_explicit_is_not() {
        let nowhere = Path::new("/nonexistent/lvmlocal.toml");
        assert!(Settings::load(Some(nowhere)).is_err());
    }
}
