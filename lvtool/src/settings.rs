//! `lvmlocal.toml`: this host's settings shared with lockd. lvtool reads `devices`, the block
//! devices (or files) that may hold PVs; nothing else is scanned. Keys it does not know belong
//! to other readers (lockd's `host_id`, ...) and are ignored here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/lvmlocal.toml";

#[derive(Debug, Default, Deserialize)]
struct Raw {
    #[serde(default)]
    devices: Option<Vec<String>>,
}

/// What lvtool takes from the config file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Devices to scan for PVs, in order.
    pub devices: Vec<PathBuf>,
}

impl Settings {
    /// Parses the text of a config file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Settings> {
        let raw: Raw =
            toml::from_str(text).map_err(|e| Error::Config { path: origin.to_string(), reason: describe(&e) })?;
        let devices = raw.devices.unwrap_or_default();
        if devices.iter().any(|d| d.is_empty()) {
            return Err(Error::Config { path: origin.into(), reason: "key `devices`: empty device path".into() });
        }
        Ok(Settings { devices: devices.into_iter().map(PathBuf::from).collect() })
    }

    /// Reads `path`. A missing file is an empty config only when it is the default path (an
    /// explicit `--config` that does not exist is a mistake worth reporting).
    pub fn load(path: Option<&Path>) -> Result<Settings> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Settings::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Settings::default()),
            Err(e) => Err(Error::Config { path: path.display().to_string(), reason: e.to_string() }),
        }
    }
}

/// toml's message names the key and position; keep it on one line.
fn describe(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(s) if msg.contains("devices") => format!("{msg} (at byte {})", s.start),
        Some(s) => format!("{msg} (at byte {}; expected `devices = [\"/dev/...\", ...]`)", s.start),
        None => msg,
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
        assert_eq!(Settings::parse("", "t").unwrap(), Settings::default());
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
