//! What a client may cost a daemon, shared by wdmd and lockd: rate-limited log lines, the
//! back-off after a failed `accept`, the open-file limit, and private run directories.
//!
//! A daemon that logs every failed `accept` and retries at once turns one exhausted resource
//! (EMFILE: its file descriptors) into a busy loop and gigabytes of log. Both daemons instead
//! log the first failure of a burst, count the rest, and stop accepting for a growing pause
//! while they go on serving the connections they have.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// Mode of a daemon's run directory: its socket, pid file and restart records are no one
/// else's business.
pub const RUN_DIR_MODE: u32 = 0o700;
/// Mode of the records a daemon keeps in its run directory.
pub const STATE_FILE_MODE: u32 = 0o600;

/// At most one line per `interval` for one kind of event; the lines left out are counted and
/// reported with the next one.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    last: Option<Duration>,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(interval: Duration) -> RateLimit {
        RateLimit { interval, last: None, suppressed: 0 }
    }

    /// `Some(n)`: log now, mentioning the `n` events left out since the last line.
    pub fn allow(&mut self, now: Duration) -> Option<u64> {
        match self.last {
            Some(t) if now < t + self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The `accept` errors that mean a resource is exhausted: retrying at once fails the same way.
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS))
}

/// Accept pauses after failures: doubling from `FIRST` to `MAX`, reset by a success.
#[derive(Debug, Default)]
pub struct Backoff {
    current: Option<Duration>,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(10);
    /// Short enough that a freed descriptor is used soon, long enough to cost nothing.
    pub const MAX: Duration = Duration::from_millis(500);

    /// The pause after one more failure.
    pub fn next_pause(&mut self) -> Duration {
        let p = self.current.map_or(Self::FIRST, |c| (c * 2).min(Self::MAX));
        self.current = Some(p);
        p
    }

    pub fn reset(&mut self) {
        self.current = None;
    }
}

/// The soft RLIMIT_NOFILE, raised to the hard limit if it is below `want` (the daemon's
/// connection caps plus its own files). Returns the soft limit in force.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // rlim_t is u64 on Linux.
    if rl.rlim_cur >= want {
        return Ok(rl.rlim_cur);
    }
    let raised = libc::rlimit { rlim_cur: want.min(rl.rlim_max), rlim_max: rl.rlim_max };
    // SAFETY: setrlimit reads one rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(raised.rlim_cur)
}

/// Descriptors open in this process now.
pub fn open_fds() -> u64 {
    // The directory's own descriptor is one of the entries.
    fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64).saturating_sub(1)
}

/// Creates `dir` with [`RUN_DIR_MODE`], or checks an existing one. One owned by this user with
/// a looser mode (an older version, a hand-made directory) is tightened: its owner is us, so
/// nothing in it can have been planted by someone else, and only reading was possible. One owned
/// by another user, or not a directory (a symlink), is refused: its contents are not ours to
/// trust.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(RUN_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Parents are created as usual (0755 less the umask); only the last part is ours.
            fs::DirBuilder::new().recursive(true).create(dir.parent().unwrap_or(dir))?;
            fs::DirBuilder::new().mode(RUN_DIR_MODE).create(dir)?;
        }
        Err(e) => return Err(e),
    }
    let md = fs::symlink_metadata(dir)?;
    if !md.is_dir() {
        return Err(io::Error::other(format!("{} is not a directory", dir.display())));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if md.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} belongs to uid {}, not to this daemon's uid {me}; refusing to use it", dir.display(), md.uid()),
        ));
    }
    if md.mode() & 0o7777 != RUN_DIR_MODE {
        tracing::warn!("{} had mode {:o}; set to {RUN_DIR_MODE:o}", dir.display(), md.mode() & 0o7777);
        fs::set_permissions(dir, fs::Permissions::from_mode(RUN_DIR_MODE))?;
    }
    Ok(())
}

/// Replaces `path` with `body` atomically (a temporary file, then rename), mode
/// [`STATE_FILE_MODE`] whatever the umask or an earlier file's mode was. No fsync: see the
/// callers.
pub fn replace_private(path: &Path, body: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = open_private(&tmp, true)?;
    f.write_all(body)?;
    drop(f);
    fs::rename(&tmp, path)
}

/// Opens (creating) a file with [`STATE_FILE_MODE`]; an existing file gets that mode too.
pub fn open_private(path: &Path, truncate: bool) -> io::Result<File> {
    let f = OpenOptions::new().create(true).write(true).truncate(truncate).mode(STATE_FILE_MODE).open(path)?;
    if f.metadata()?.mode() & 0o7777 != STATE_FILE_MODE {
        f.set_permissions(fs::Permissions::from_mode(STATE_FILE_MODE))?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_counts_what_it_leaves_out() {
        let mut r = RateLimit::new(Duration::from_secs(10));
        let s = Duration::from_secs;
        assert_eq!(r.allow(s(100)), Some(0));
        assert_eq!(r.allow(s(101)), None);
        assert_eq!(r.allow(s(109)), None);
        assert_eq!(r.allow(s(110)), Some(2));
        assert_eq!(r.allow(s(200)), Some(0));
    }

    #[test]
    fn backoff_doubles_to_its_max() {
        let mut b = Backoff::default();
        let p: Vec<Duration> = (0..8).map(|_| b.next_pause()).collect();
        assert_eq!(p[0], Backoff::FIRST);
        assert_eq!(p[1], Backoff::FIRST * 2);
        assert_eq!(*p.last().unwrap(), Backoff::MAX);
        b.reset();
        assert_eq!(b.next_pause(), Backoff::FIRST);
    }

    #[test]
    fn exhaustion_errors() {
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_exhaustion(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!is_exhaustion(&io::Error::from_raw_os_error(libc::ECONNABORTED)));
    }

    #[test]
    fn private_dir_and_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/run");
        private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, RUN_DIR_MODE);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, RUN_DIR_MODE, "tightened");
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(private_dir(&link).is_err(), "a symlink is not our directory");

        let f = d.join("x.json");
        fs::write(&f, b"old").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        replace_private(&f, b"new").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"new");
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, STATE_FILE_MODE);
    }
}
