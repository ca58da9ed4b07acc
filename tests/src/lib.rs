//! Helpers shared by the interop tests and benches: finding the real sanlock, scratch files
//! that accept O_DIRECT, and running commands.

pub mod daemon_abuse;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether `sanlock` (the oracle) can run here.
pub fn sanlock_installed() -> bool {
    Command::new("sanlock").arg("version").output().is_ok_and(|o| o.status.success())
}

/// Tests that need sanlock call this first: it panics when sanlock is missing and `CI` is set
/// (CI must not pass silently), otherwise prints that the test is skipped and returns false.
pub fn require_sanlock(test: &str) -> bool {
    if sanlock_installed() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: sanlock is not installed, and CI is set (install the Debian package 'sanlock')");
    }
    // Straight to stderr: the test harness captures eprintln!, and a skip must be visible.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: sanlock is not installed (set CI to make this a failure)");
    false
}

/// A zero-filled scratch file in a directory that accepts O_DIRECT; removed on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str, size: u64) -> Scratch {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!("sanlvm-{tag}-{}-{}.img", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        // tmpfs refuses O_DIRECT; /var/tmp is normally disk-backed.
        let mut dirs = vec![PathBuf::from("/var/tmp")];
        if let Some(d) = std::env::var_os("SANLVM_TEST_DIR") {
            dirs.insert(0, PathBuf::from(d));
        }
        dirs.push(std::env::temp_dir());
        for dir in dirs {
            let path = dir.join(&name);
            let Ok(f) = std::fs::File::create(&path) else { continue };
            f.set_len(size).unwrap();
            drop(f);
            let s = Scratch { path };
            if OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(&s.path).is_ok() {
                return s;
            }
        }
        panic!("no directory accepts O_DIRECT for scratch files (set SANLVM_TEST_DIR)");
    }

    pub fn p(&self) -> &str {
        self.path.to_str().expect("scratch paths are UTF-8")
    }

    /// `len` bytes at `offset`.
    pub fn bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        let all = std::fs::read(&self.path).unwrap();
        all[offset as usize..offset as usize + len].to_vec()
    }

    pub fn all(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    /// Overwrites bytes through the page cache (for corruption tests; O_DIRECT readers see it
    /// once it is synced).
    pub fn poke(&self, offset: u64, data: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = OpenOptions::new().write(true).open(&self.path).unwrap();
        f.write_all_at(data, offset).unwrap();
        f.sync_all().unwrap();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A finished command: status code and both outputs as text.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<Output> for Ran {
    fn from(o: Output) -> Ran {
        Ran {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn run(program: impl AsRef<Path>, args: &[&str]) -> Ran {
    let p = program.as_ref();
    Command::new(p).args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", p.display())).into()
}

/// `sanlock direct <args>`.
pub fn sanlock_direct(args: &[&str]) -> Ran {
    let mut v = vec!["direct"];
    v.extend_from_slice(args);
    run("sanlock", &v)
}

/// The number after `word` in `text` (e.g. "generation 3").
pub fn number_after(text: &str, word: &str) -> Option<u64> {
    let mut it = text.split_whitespace();
    while let Some(w) = it.next() {
        if w == word {
            return it.next().and_then(|n| n.parse().ok());
        }
    }
    None
}
