//! What the daemons' adversarial-client tests (lockd's and wdmd's `tests/abuse.rs`) measure and
//! wait for: a daemon's CPU time, the end of its log, a connection the daemon closed.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The last 4000 bytes of a log, for assertion messages.
pub fn tail(s: &str) -> &str {
    let mut at = s.len().saturating_sub(4000);
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// utime + stime of `pid` (/proc/PID/stat fields 14 and 15): a resource measure, so a test can
/// tell a daemon that spins from one that waits, whatever else the machine is doing.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may contain spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Waits up to `wait` until the daemon has closed `s`, without reading from it (reading would
/// let a daemon blocked on a full socket go on).
pub fn wait_hangup(s: &UnixStream, wait: Duration) {
    use std::os::fd::AsRawFd;
    let end = Instant::now() + wait;
    loop {
        let mut p = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, 100) };
        if n > 0 && p.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0 {
            return;
        }
        assert!(Instant::now() < end, "connection not closed");
    }
}

/// Waits up to `wait` until the daemon has closed `s` (EOF or a reset), skipping its replies.
/// `s` must have a read timeout.
pub fn wait_closed(s: &mut UnixStream, wait: Duration) {
    let end = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("connection not closed")
            }
            Err(_) => return,
            Ok(_) => assert!(Instant::now() < end, "connection not closed"),
        }
    }
}

/// Writes `n` well-framed requests of bad JSON (`junk`) to `s` from a thread, so the caller can
/// read the daemon's error replies meanwhile (neither side may block on a full socket).
pub fn flood_junk(s: &UnixStream, n: usize) -> std::thread::JoinHandle<()> {
    let mut frames = Vec::new();
    for _ in 0..n {
        frames.extend_from_slice(&4u32.to_be_bytes());
        frames.extend_from_slice(b"junk");
    }
    let mut s = s.try_clone().unwrap();
    std::thread::spawn(move || {
        use std::io::Write;
        s.write_all(&frames).unwrap()
    })
}

/// Starts `cmd` with RLIMIT_NOFILE lowered to `n` (soft and hard), so a modest flood of
/// connections reaches the descriptor limit.
pub fn limit_open_files(cmd: &mut std::process::Command, n: u64) {
    use std::os::unix::process::CommandExt;
    let rl = libc::rlimit { rlim_cur: n, rlim_max: n };
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
