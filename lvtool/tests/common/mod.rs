//! Real lvm2 as the test oracle: a private LVM_SYSTEM_DIR, loop devices over scratch files (this
//! kernel has no device-mapper, so every command runs with `--driverloaded n`), and guards that
//! detach loop devices and delete files even when a test fails.
#![allow(dead_code)]

pub mod hosts;
pub mod lvmlockd_t;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lvtool-test-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    /// A zero-filled file of `size` bytes.
    pub fn file(&self, name: &str, size: u64) -> PathBuf {
        let p = self.dir.join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(size).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loop device over a file, detached on drop.
pub struct LoopDev {
    pub path: PathBuf,
}

impl LoopDev {
    pub fn attach(file: &Path) -> LoopDev {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(file).output().expect("run losetup");
        assert!(out.status.success(), "losetup -f --show {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        LoopDev { path: PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()) }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// Why lvm2 tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if Command::new("lvm").arg("version").output().map(|o| o.status.success()).unwrap_or(false) {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not root (loop devices need root)".into());
        }
        if !Command::new("losetup").arg("--version").output().map(|o| o.status.success()).unwrap_or(false) {
            return Some("losetup not found".into());
        }
        return None;
    }
    Some("lvm2 not installed (apt-get install lvm2)".into())
}

/// Whether lvtool can run here: it needs root, as lvm2 does. Otherwise the test prints that it
/// skipped (under CI it fails instead, as the lvm2 tests do).
pub fn as_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: lvtool needs root (as lvm2)");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: not root (lvtool needs root, as lvm2)");
    false
}

/// The lvm2 oracle, or None when it cannot run here and CI is unset (the test then prints that
/// it skipped). Under CI a missing lvm2 fails the test.
pub fn lvm2(test: &str) -> Option<Lvm> {
    if let Some(why) = unavailable() {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: lvm2 is required under CI but {why}");
        }
        // Straight to fd 2: the test harness would swallow eprintln! of a passing test.
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
        return None;
    }
    Some(Lvm::new(test))
}

pub struct Lvm {
    pub scratch: Scratch,
    /// Devices every command is restricted to.
    pub devices: Vec<PathBuf>,
}

impl Lvm {
    fn new(tag: &str) -> Lvm {
        let scratch = Scratch::new(tag);
        let etc = scratch.dir.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("lvm.conf"),
            "devices {\n use_devicesfile = 0\n obtain_device_list_from_udev = 0\n scan_lvs = 0\n}\n\
             global {\n event_activation = 0\n}\n\
             activation {\n udev_sync = 0\n udev_rules = 0\n monitoring = 0\n}\n\
             backup {\n backup = 0\n archive = 0\n}\n",
        )
        .unwrap();
        Lvm { scratch, devices: vec![] }
    }

    /// Runs an lvm command (`lvm <cmd> --driverloaded n --devices ... args`).
    pub fn run(&self, cmd: &str, args: &[&str]) -> Output {
        let mut c = Command::new("lvm");
        c.arg(cmd).arg("--driverloaded").arg("n");
        for d in &self.devices {
            c.arg("--devices").arg(d);
        }
        c.args(args)
            .env("LVM_SYSTEM_DIR", self.scratch.dir.join("etc"))
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .expect("run lvm")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, cmd: &str, args: &[&str]) -> String {
        let out = self.run(cmd, args);
        assert!(
            out.status.success(),
            "lvm {cmd} {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A report as rows of fields (`--noheadings --separator |`).
    pub fn report(&self, cmd: &str, args: &[&str]) -> Vec<Vec<String>> {
        let mut a = vec!["--noheadings", "--separator", "|"];
        a.extend_from_slice(args);
        self.ok(cmd, &a)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().split('|').map(|f| f.trim().to_string()).collect())
            .collect()
    }
}

/// A two-PV VG made by real lvm2 on two 64 MiB files (1 MiB extents): several LVs, a
/// two-segment LV, a striped LV over both PVs, tags on the VG and on LVs. Returns the loop
/// devices (attached) and the files.
pub struct Fixture {
    pub lvm: Lvm,
    pub files: Vec<PathBuf>,
    pub loops: Vec<LoopDev>,
    pub vg: String,
}

impl Fixture {
    pub fn new(lvm: Lvm, vg: &str) -> Fixture {
        let mut lvm = lvm;
        let files: Vec<PathBuf> = (0..2).map(|i| lvm.scratch.file(&format!("pv{i}.img"), 64 << 20)).collect();
        let loops: Vec<LoopDev> = files.iter().map(|f| LoopDev::attach(f)).collect();
        lvm.devices = loops.iter().map(|l| l.path.clone()).collect();
        let d: Vec<&str> = loops.iter().map(|l| l.path.to_str().unwrap()).collect();
        lvm.ok("pvcreate", &d);
        let mut a = vec!["-s", "1M", "--addtag", "vgtag", "--addtag", "other_tag", vg];
        a.extend(&d);
        lvm.ok("vgcreate", &a);
        lvm.ok("lvcreate", &["-n", "lv1", "-L", "8M", vg, d[0]]);
        lvm.ok("lvcreate", &["-n", "lv2", "-L", "4M", "--addtag", "foo", vg, d[0]]);
        lvm.ok("lvextend", &["-L", "+4M", &format!("{vg}/lv1"), d[0]]);
        lvm.ok("lvcreate", &["-n", "lv3", "-L", "6M", vg, d[1]]);
        lvm.ok("lvcreate", &["-n", "striped", "-i", "2", "-I", "64k", "-L", "8M", vg]);
        Fixture { lvm, files, loops, vg: vg.to_string() }
    }

    /// Detaches the loop devices so tests can work on the files (and attach them again).
    pub fn detach(&mut self) {
        self.loops.clear();
        self.lvm.devices.clear();
    }

    pub fn attach(&mut self) {
        self.loops = self.files.iter().map(|f| LoopDev::attach(f)).collect();
        self.lvm.devices = self.loops.iter().map(|l| l.path.clone()).collect();
    }

    pub fn device_paths(&self) -> Vec<PathBuf> {
        self.loops.iter().map(|l| l.path.clone()).collect()
    }
}

/// lvtool restricted to some devices, with `--driverloaded n`.
pub struct Tool {
    pub devices: Vec<PathBuf>,
}

impl Tool {
    pub fn run(&self, args: &[&str]) -> Output {
        let (cmd, rest) = args.split_first().unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_lvtool"));
        c.arg(cmd).arg("--driverloaded").arg("n");
        for d in &self.devices {
            c.arg("--devices").arg(d);
        }
        c.args(rest).env("LC_ALL", "C").env("TZ", "UTC").stdin(std::process::Stdio::null());
        c.output().expect("run lvtool")
    }

    /// Runs, expects `code`, returns stdout.
    pub fn code(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "lvtool {args:?}:\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.code(0, args)
    }

    /// Expects failure with `code` and a message containing `msg` on stderr.
    pub fn fails(&self, code: i32, msg: &str, args: &[&str]) {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "lvtool {args:?}: {err}");
        assert!(err.contains(msg), "lvtool {args:?}: expected {msg:?} in:\n{err}");
    }

    pub fn rows(&self, args: &[&str]) -> Vec<Vec<String>> {
        let mut a = vec![args[0], "--noheadings", "--separator", "|"];
        a.extend(&args[1..]);
        self.ok(&a).lines().map(|l| l.trim().split('|').map(String::from).collect()).collect()
    }
}
