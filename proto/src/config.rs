//! `lvmlocal.toml`: this host's settings, read by lockd and by lvtool (one definition, here).
//!
//! Every key is top-level. Values are checked when the file is read, and an error names the file
//! and the key. Keys this version does not know are reported as warnings, not errors, so a newer
//! file still works with an older binary.

use std::fmt;
use std::path::{Path, PathBuf};

use lease::ondisk::{Name, MAX_HOST_ID, NAME_LEN};
use lease::timeouts::{Timeouts, DEFAULT_IO_TIMEOUT_SECS, DEFAULT_WATCHDOG_FIRE_SECS, MAX_IO_TIMEOUT_SECS};
use serde::Deserialize;

/// Where the config is read from when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/lvmlocal.toml";
pub const DEFAULT_RUN_DIR: &str = "/run/lockd";
/// The socket file inside `run_dir`.
pub const SOCKET_NAME: &str = "lockd.sock";

#[derive(Debug)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Default, Deserialize)]
struct Raw {
    host_id: Option<toml::Value>,
    host_name: Option<toml::Value>,
    io_timeout: Option<toml::Value>,
    watchdog_fire_timeout: Option<toml::Value>,
    use_watchdog: Option<toml::Value>,
    devices: Option<toml::Value>,
    run_dir: Option<toml::Value>,
    kill_command: Option<toml::Value>,
    wdmd_run_dir: Option<toml::Value>,
    auto_activation_volume_list: Option<toml::Value>,
    #[serde(flatten)]
    unknown: toml::Table,
}

/// The settings of this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it came from (for messages), or "(defaults)".
    pub origin: String,
    /// 1..=2000; required by the daemon, optional for lvtool (which then uses no locks).
    pub host_id: Option<u64>,
    /// Written into our delta leases; stable across reboots.
    pub host_name: String,
    pub io_timeout: u32,
    pub watchdog_fire_timeout: u32,
    pub use_watchdog: bool,
    /// Devices that may hold PVs, in scan order.
    pub devices: Vec<PathBuf>,
    /// lockd's socket and restart state.
    pub run_dir: PathBuf,
    /// Run with the VG name appended when a lockspace fails (lvmlockctl_kill_command).
    pub kill_command: Option<Vec<String>>,
    pub wdmd_run_dir: PathBuf,
    /// lvtool `vgchange -aay`: the LVs to activate at boot (`VG`, `VG/LV`, `@tag`).
    pub auto_activation_volume_list: Option<Vec<String>>,
    /// Keys that are not ours (reported, not fatal).
    pub unknown_keys: Vec<String>,
}

impl Config {
    /// Every default; host_name from /etc/machine-id.
    pub fn defaults() -> Config {
        Config {
            origin: "(defaults)".into(),
            host_id: None,
            host_name: default_host_name(),
            io_timeout: DEFAULT_IO_TIMEOUT_SECS,
            watchdog_fire_timeout: DEFAULT_WATCHDOG_FIRE_SECS,
            use_watchdog: true,
            devices: vec![],
            run_dir: PathBuf::from(DEFAULT_RUN_DIR),
            kill_command: None,
            wdmd_run_dir: PathBuf::from(crate::wdmd::protocol::DEFAULT_RUN_DIR),
            auto_activation_volume_list: None,
            unknown_keys: vec![],
        }
    }

    /// Parses the text of a config file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let err = |reason: String| ConfigError { path: origin.to_string(), reason };
        let raw: Raw = toml::from_str(text).map_err(|e| err(describe(&e, text)))?;
        let mut c = Config::defaults();
        c.origin = origin.to_string();
        if let Some(v) = raw.host_id {
            let n = int(&v, "host_id").map_err(err)?;
            if !(1..=MAX_HOST_ID as i64).contains(&n) {
                return Err(err(format!("key `host_id`: {n} is outside 1..={MAX_HOST_ID}")));
            }
            c.host_id = Some(n as u64);
        }
        if let Some(v) = raw.host_name {
            let s = string(&v, "host_name").map_err(err)?;
            if s.is_empty() || s.len() > NAME_LEN || Name::new(&s).is_err() {
                return Err(err(format!("key `host_name`: {s:?} must be 1..={NAME_LEN} bytes")));
            }
            c.host_name = s;
        }
        if let Some(v) = raw.io_timeout {
            let n = int(&v, "io_timeout").map_err(err)?;
            if !(1..=MAX_IO_TIMEOUT_SECS as i64).contains(&n) {
                return Err(err(format!("key `io_timeout`: {n} is outside 1..={MAX_IO_TIMEOUT_SECS} seconds")));
            }
            c.io_timeout = n as u32;
        }
        if let Some(v) = raw.watchdog_fire_timeout {
            let n = int(&v, "watchdog_fire_timeout").map_err(err)?;
            if !(1..=3600).contains(&n) {
                return Err(err(format!("key `watchdog_fire_timeout`: {n} is outside 1..=3600 seconds")));
            }
            c.watchdog_fire_timeout = n as u32;
        }
        if let Some(v) = raw.use_watchdog {
            c.use_watchdog = v.as_bool().ok_or_else(|| err(expected("use_watchdog", "true or false", &v)))?;
        }
        if let Some(v) = raw.devices {
            c.devices = paths(&v, "devices").map_err(err)?;
        }
        if let Some(v) = raw.run_dir {
            c.run_dir = abs_path(&v, "run_dir").map_err(err)?;
        }
        if let Some(v) = raw.wdmd_run_dir {
            c.wdmd_run_dir = abs_path(&v, "wdmd_run_dir").map_err(err)?;
        }
        if let Some(v) = raw.kill_command {
            let argv = strings(&v, "kill_command").map_err(err)?;
            if argv.is_empty() || argv[0].is_empty() {
                return Err(err("key `kill_command`: needs a program, e.g. [\"/usr/local/sbin/vg-kill\"]".into()));
            }
            c.kill_command = Some(argv);
        }
        if let Some(v) = raw.auto_activation_volume_list {
            let list = strings(&v, "auto_activation_volume_list").map_err(err)?;
            if let Some(bad) = list.iter().find(|e| e.is_empty() || e.starts_with('/') || e.matches('/').count() > 1) {
                return Err(err(format!("key `auto_activation_volume_list`: {bad:?} is not VG, VG/LV or @tag")));
            }
            c.auto_activation_volume_list = Some(list);
        }
        c.unknown_keys = raw.unknown.keys().cloned().collect();
        Ok(c)
    }

    /// Reads `path`. A missing file is the defaults only when it is the default path (an
    /// explicit `--config` that does not exist is a mistake worth reporting).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Config::defaults()),
            Err(e) => Err(ConfigError { path: path.display().to_string(), reason: e.to_string() }),
        }
    }

    /// One warning per key of the file that is not ours, naming the key and the file (a typo
    /// in a key name would otherwise leave a setting at its default without a word). Both
    /// lockd and lvtool print them.
    pub fn warnings(&self) -> Vec<String> {
        self.unknown_keys.iter().map(|k| format!("{}: unknown key `{k}` ignored", self.origin)).collect()
    }

    /// The daemon needs a host_id.
    pub fn require_host_id(&self) -> Result<u64, ConfigError> {
        self.host_id.ok_or_else(|| ConfigError {
            path: self.origin.clone(),
            reason: format!("key `host_id` is missing: every host needs a unique host_id in 1..={MAX_HOST_ID}"),
        })
    }

    pub fn timeouts(&self) -> Timeouts {
        Timeouts::new(self.io_timeout, self.watchdog_fire_timeout).expect("checked when parsed")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.run_dir.join(SOCKET_NAME)
    }
}

/// /etc/machine-id (stable across reboots, unique per installation); the node name if absent.
fn default_host_name() -> String {
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
        let id = id.trim();
        if !id.is_empty() && id.len() <= NAME_LEN {
            return id.to_string();
        }
    }
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname fills the struct we own.
    if unsafe { libc::uname(&mut uts) } == 0 {
        // SAFETY: nodename is NUL-terminated by uname.
        let n = unsafe { std::ffi::CStr::from_ptr(uts.nodename.as_ptr()) }.to_string_lossy().into_owned();
        if !n.is_empty() {
            return n.chars().take(NAME_LEN).collect();
        }
    }
    "localhost".into()
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

fn expected(key: &str, what: &str, v: &toml::Value) -> String {
    format!("key `{key}`: expected {what}, found {}", type_name(v))
}

fn int(v: &toml::Value, key: &str) -> Result<i64, String> {
    v.as_integer().ok_or_else(|| expected(key, "an integer", v))
}

fn string(v: &toml::Value, key: &str) -> Result<String, String> {
    v.as_str().map(String::from).ok_or_else(|| expected(key, "a string", v))
}

fn strings(v: &toml::Value, key: &str) -> Result<Vec<String>, String> {
    let arr = v.as_array().ok_or_else(|| expected(key, "a list of strings", v))?;
    arr.iter().map(|x| x.as_str().map(String::from).ok_or_else(|| expected(key, "a list of strings", v))).collect()
}

fn paths(v: &toml::Value, key: &str) -> Result<Vec<PathBuf>, String> {
    let s = strings(v, key)?;
    if s.iter().any(|d| d.is_empty()) {
        return Err(format!("key `{key}`: empty device path"));
    }
    Ok(s.into_iter().map(PathBuf::from).collect())
}

fn abs_path(v: &toml::Value, key: &str) -> Result<PathBuf, String> {
    let s = string(v, key)?;
    if !s.starts_with('/') {
        return Err(format!("key `{key}`: {s:?} must be an absolute path"));
    }
    Ok(PathBuf::from(s))
}

/// toml's message with the line it is about, on one line.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(s) => {
            let start = s.start.min(text.len());
            let n = text[..start].matches('\n').count();
            let line = text.lines().nth(n).or_else(|| text.lines().last()).unwrap_or("").trim();
            format!("{msg} (line {}: `{line}`)", n + 1)
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key() {
        let c = Config::parse(
            r#"
host_id = 7
host_name = "node7"
io_timeout = 1
watchdog_fire_timeout = 5
use_watchdog = false
devices = ["/dev/loop0", "/tmp/pv.img"]
run_dir = "/tmp/l7"
kill_command = ["/bin/kill-vg", "--now"]
wdmd_run_dir = "/tmp/w7"
auto_activation_volume_list = ["vg1", "vg2/lv1", "@boot"]
future_key = 1
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.host_id, Some(7));
        assert_eq!(c.host_name, "node7");
        assert_eq!((c.io_timeout, c.watchdog_fire_timeout, c.use_watchdog), (1, 5, false));
        assert_eq!(c.devices, vec![PathBuf::from("/dev/loop0"), PathBuf::from("/tmp/pv.img")]);
        assert_eq!(c.run_dir, PathBuf::from("/tmp/l7"));
        assert_eq!(c.kill_command, Some(vec!["/bin/kill-vg".to_string(), "--now".into()]));
        assert_eq!(c.wdmd_run_dir, PathBuf::from("/tmp/w7"));
        assert_eq!(c.auto_activation_volume_list.as_ref().unwrap().len(), 3);
        assert_eq!(c.unknown_keys, vec!["future_key".to_string()]);
        assert_eq!(c.timeouts().host_dead().as_secs(), 13);
    }

    #[test]
    fn defaults() {
        let c = Config::parse("", "t").unwrap();
        assert_eq!(c.host_id, None);
        assert!(!c.host_name.is_empty());
        assert_eq!((c.io_timeout, c.watchdog_fire_timeout, c.use_watchdog), (10, 60, true));
        assert_eq!(c.run_dir, PathBuf::from("/run/lockd"));
        assert_eq!(c.socket_path(), PathBuf::from("/run/lockd/lockd.sock"));
        assert!(c.require_host_id().unwrap_err().to_string().contains("host_id"));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("host_id = 0", "host_id"),
            ("host_id = 2001", "host_id"),
            ("host_id = \"1\"", "host_id"),
            ("host_name = \"\"", "host_name"),
            ("host_name = \"0123456789012345678901234567890123456789012345678\"", "host_name"),
            ("io_timeout = 0", "io_timeout"),
            ("io_timeout = 256", "io_timeout"),
            ("watchdog_fire_timeout = 0", "watchdog_fire_timeout"),
            ("use_watchdog = 1", "use_watchdog"),
            ("devices = \"/dev/sda\"", "devices"),
            ("devices = [1, 2]", "devices"),
            ("devices = [\"\"]", "devices"),
            ("run_dir = \"relative\"", "run_dir"),
            ("kill_command = []", "kill_command"),
            ("kill_command = \"/bin/x\"", "kill_command"),
            ("wdmd_run_dir = 3", "wdmd_run_dir"),
            ("auto_activation_volume_list = [\"a/b/c\"]", "auto_activation_volume_list"),
        ] {
            let e = Config::parse(text, "/etc/x.toml").unwrap_err().to_string();
            assert!(e.starts_with("/etc/x.toml: "), "{text}: {e}");
            assert!(e.contains(key), "{text}: {e}");
        }
        assert!(Config::parse("devices = [", "t").is_err());
    }

    #[test]
    fn missing_default_is_fine_missing_explicit_is_not() {
        assert!(Config::load(Some(Path::new("/nonexistent/lvmlocal.toml"))).is_err());
    }

    #[test]
    fn shipped_example_parses_with_every_key() {
        let text = include_str!("../../lvmlocal.toml.example");
        // Every key is shown commented; uncommenting them all gives a valid config.
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ")))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::parse(&uncommented, "example").unwrap();
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        assert!(c.host_id.is_some() && c.kill_command.is_some());
        assert_eq!(Config::parse(text, "example").unwrap().host_id, None);
    }
}
