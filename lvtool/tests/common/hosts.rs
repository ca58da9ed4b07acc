//! Hosts on one machine: each a lockd process with its own host_id, config and run_dir, and
//! lvtool with `--driverloaded n` pointed at one host's config, all on shared files. The lockd
//! processes are the test binary re-run as a daemon (see [`lockd_daemon_entry`]), so that they
//! are real processes built from the current lockd code.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Scratch;

const DAEMON_ENV: &str = "SANLVM_TEST_LOCKD_CONFIG";

/// The lockd processes the tests start are the test binary itself, re-run with this test name:
/// each binary that uses [`Host`] has a `#[test] fn lockd_daemon_entry()` calling this, which
/// does nothing unless [`DAEMON_ENV`] is set.
pub fn lockd_daemon_entry() {
    let Some(cfg) = std::env::var_os(DAEMON_ENV) else { return };
    lockd::init_logging();
    let cfg = proto::config::Config::load(Some(Path::new(&cfg))).unwrap();
    lockd::run_daemon(cfg, Arc::new(lockd::fence::NoDmFencer)).unwrap();
}

pub struct Host {
    pub id: u64,
    pub config: PathBuf,
    pub run_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Host {
    pub fn new(s: &Scratch, id: u64, devices: &[&Path]) -> Host {
        let dir = s.dir.join(format!("host{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("lvmlocal.toml");
        let run_dir = dir.join("run");
        let devs: Vec<String> = devices.iter().map(|d| format!("{:?}", d.display().to_string())).collect();
        std::fs::write(
            &config,
            format!(
                "host_id = {id}\nhost_name = \"node{id}\"\nio_timeout = 1\nwatchdog_fire_timeout = 3\n\
                 use_watchdog = false\nrun_dir = \"{}\"\ndevices = [{}]\n",
                run_dir.display(),
                devs.join(", ")
            ),
        )
        .unwrap();
        Host { id, config, run_dir, log: dir.join("lockd.log"), child: None }
    }

    pub fn start(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["lockd_daemon_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env(DAEMON_ENV, &self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = Instant::now();
        while proto::lockd::client::Client::connect(&self.run_dir).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "lockd {} did not start", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn lvtool(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lvtool"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--driverloaded")
            .arg("n")
            .output()
            .unwrap()
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.lvtool(args);
        assert!(
            o.status.success(),
            "host {}: lvtool {args:?}: {}\n{}{}",
            self.id,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs and asserts failure (exit 5) with `needle` in stderr; returns stderr.
    pub fn fails(&self, needle: &str, args: &[&str]) -> String {
        let o = self.lvtool(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(5), "host {}: lvtool {args:?} should fail: {err}", self.id);
        assert!(err.contains(needle), "host {}: lvtool {args:?}: {needle:?} not in {err}", self.id);
        err
    }

    pub fn rows(&self, args: &[&str]) -> Vec<Vec<String>> {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--noheadings", "--separator", "|"]);
        self.ok(&a).lines().map(|l| l.trim().split('|').map(String::from).collect()).collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("host {} lockd log:\n{}", self.id, std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// Runs `f` on every host at once.
pub fn parallel<T: Send>(hosts: &[Host], f: impl Fn(&Host) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let hs: Vec<_> = hosts.iter().map(|h| s.spawn(|| f(h))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// `lockd status` of a host, as the daemon reports it.
pub fn lockd_status_raw(h: &Host) -> proto::lockd::protocol::DaemonStatus {
    let mut c = proto::lockd::client::Client::connect(&h.run_dir).unwrap();
    match c.call(&proto::lockd::protocol::Request::Status).unwrap() {
        proto::lockd::protocol::Response::Status(s) => s,
        other => panic!("{other:?}"),
    }
}

/// `lockd status` of a host, rendered as the command prints it.
pub fn lockd_status(h: &Host) -> String {
    proto::lockd::status::render(&lockd_status_raw(h))
}
