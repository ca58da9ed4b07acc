//! lockd as a process under hostile or broken clients: connection floods up to and past its
//! cap, descriptors exhausted (RLIMIT_NOFILE lowered on the daemon), partial frames that stall,
//! silent connections, clients that never read their replies, malformed and oversized frames.
//! Each test asserts that a well-behaved client still gets answers, that a command holding
//! locks is never cut off for being quiet, that the daemon did not spin (its CPU time over an
//! interval, from /proc/PID/stat, with a generous bound), that its threads stay bounded and
//! its log small. Waits are for conditions, with a deadline.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use lockd::server::{FIRST_REQUEST_TIMEOUT, FRAME_TIMEOUT, MAX_CONNS};
use proto::lockd::client::{Client, ClientError};
use proto::lockd::protocol::{encode, read_frame, ErrorCode, Mode, Request, Resource, Response, MAX_FRAME};
use sanlvm_tests::daemon_abuse::{cpu_time, flood_junk, limit_open_files, tail, wait_closed, wait_hangup};

const WAIT: Duration = Duration::from_secs(40);
/// CPU the daemon may use while a test's abuse goes on for [`CPU_WINDOW`]: an idle lockd uses
/// next to nothing, a spinning one all of the window.
const CPU_BUDGET: Duration = Duration::from_millis(400);
const CPU_WINDOW: Duration = Duration::from_secs(2);
/// Log bytes a whole test may cause (a flood wrote 2.5 GB in 10 s).
const LOG_BUDGET: u64 = 64 * 1024;
/// Threads of lockd besides its connection threads (main, signals, renewals, I/O).
const OTHER_THREADS: usize = 16;

/// A lockd process of this file: no debug log (a debug line per request is not a flood), and
/// optionally a lowered open-file limit.
struct Lockd {
    host: Host,
    child: Child,
}

fn spawn(tag: &str, nofile: Option<u64>) -> Lockd {
    let host = Host::new(tag, 1, "");
    spawn_host(host, nofile)
}

fn spawn_host(host: Host, nofile: Option<u64>) -> Lockd {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&host.log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockd"));
    cmd.args(["daemon", "--config"]).arg(&host.config).stdout(Stdio::null()).stderr(log);
    if let Some(n) = nofile {
        limit_open_files(&mut cmd, n);
    }
    let mut l = Lockd { child: cmd.spawn().unwrap(), host };
    let end = Instant::now() + WAIT;
    loop {
        if let Ok(mut c) = Client::connect(&l.host.run_dir()) {
            if c.call(&Request::Hello { version: proto::lockd::protocol::PROTOCOL_VERSION }).is_ok() {
                return l;
            }
        }
        assert!(l.child.try_wait().unwrap().is_none(), "lockd exited: {}", l.host.log_text());
        assert!(Instant::now() < end, "lockd did not come up: {}", l.host.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Lockd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A flooding daemon's log is kept for a failed test, but not gigabytes of it.
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.host.log) {
            if f.metadata().is_ok_and(|m| m.len() > 4 * LOG_BUDGET) {
                let _ = f.set_len(4 * LOG_BUDGET);
            }
        }
    }
}

/// A connection that never blocks the test: None when lockd's backlog is full (a daemon
/// that does not accept).
fn connect_nonblocking(path: &Path) -> Option<UnixStream> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    assert!(bytes.len() < addr.sun_path.len());
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: a new socket, owned by the UnixStream below (or closed on failure); `addr` is a
    // valid sockaddr_un of the given size.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let rc = libc::connect(
            fd,
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        );
        if rc != 0 {
            libc::close(fd);
            return None;
        }
        Some(UnixStream::from_raw_fd(fd))
    }
}

/// `f` on a helper thread, failing the test if it has not returned by the deadline (a daemon
/// that never accepts leaves a blocking connect hanging).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WAIT).unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

impl Lockd {
    fn sock(&self) -> PathBuf {
        self.host.run_dir().join("lockd.sock")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_size(&self) -> u64 {
        std::fs::metadata(&self.host.log).map(|m| m.len()).unwrap_or(0)
    }

    fn threads(&self) -> usize {
        let st = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        st.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
    }

    /// A status, retried while lockd answers `busy` (all places taken by connections that
    /// cannot be displaced yet), until the deadline.
    fn status_eventually(&self) -> proto::lockd::protocol::DaemonStatus {
        let run_dir = self.host.run_dir();
        let r = within("status", move || {
            let end = Instant::now() + WAIT;
            loop {
                let r = Client::connect(&run_dir).and_then(|mut c| c.call(&Request::Status));
                match r {
                    Ok(Response::Status(s)) => return Ok(s),
                    Err(ClientError::Daemon(e)) if e.code == ErrorCode::Busy && Instant::now() < end => {}
                    other => return Err(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        r.unwrap_or_else(|e| panic!("{e}\n{}", tail(&self.host.log_text())))
    }

    fn assert_quiet(&self, what: &str) {
        let before = cpu_time(self.pid());
        let end = Instant::now() + CPU_WINDOW;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let used = cpu_time(self.pid()) - before;
        assert!(used < CPU_BUDGET, "{what}: lockd used {used:?} of CPU in {CPU_WINDOW:?} (busy loop?)");
        assert!(
            self.log_size() < LOG_BUDGET,
            "{what}: log grew to {} bytes:\n{}",
            self.log_size(),
            tail(&self.host.log_text())
        );
    }

    fn raw(&self) -> UnixStream {
        let s = UnixStream::connect(self.sock()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }
}

/// RLIMIT_NOFILE lowered on the daemon, then a flood of silent connections (the release build
/// spun in accept on EMFILE and logged 2.5 GB in 10 s). lockd sizes its connection cap to the
/// limit, keeps descriptors for its lockspaces, answers a well-behaved client, starts a
/// lockspace (it opens the disk) and takes a lock while the flood goes on.
#[test]
fn descriptor_exhaustion_does_not_spin_or_flood_the_log() {
    let d = SharedDisk::new("abuse-nofile", "vg1", 2);
    let l = spawn("abuse-nofile", Some(48));
    let flood: Vec<UnixStream> = (0..300).filter_map(|_| connect_nonblocking(&l.sock())).collect();
    let s = l.status_eventually();
    assert_eq!(s.host_id, 1);
    l.assert_quiet("descriptors exhausted");
    assert!(l.threads() <= 48 + OTHER_THREADS, "{} threads", l.threads());
    // Lockspaces still get their descriptors.
    let mut c = Client::connect(&l.host.run_dir()).unwrap();
    match c.call(&d.start_req()) {
        Ok(Response::Started { .. }) => {}
        other => panic!("{other:?}\n{}", tail(&l.host.log_text())),
    }
    assert!(call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Ex, false)).is_ok());
    drop(flood);
    l.assert_quiet("after the flood");
    assert!(call_on(&mut c, &lock("vg1", Resource::Vg, Mode::Un, false)).is_ok());
    assert!(call_on(&mut c, &Request::LockStop { vg: "vg1".into(), force: false }).is_ok());
}

/// Up to and past the cap with connections that cannot be displaced (partial frames): the
/// next one gets a `busy` reply that `lockd status` prints; threads stay bounded. The stalled
/// frames time out and lockd answers again. A command that holds the VG lock on an idle
/// connection all along is never cut off.
#[test]
fn connection_cap_refuses_clearly_and_spares_lock_holders() {
    let d = SharedDisk::new("abuse-cap", "vg1", 2);
    let l = spawn("abuse-cap", None);
    let mut holder = Client::connect(&l.host.run_dir()).unwrap();
    assert!(matches!(call_on(&mut holder, &d.start_req()), Ok(Response::Started { .. })));
    assert!(call_on(&mut holder, &lock("vg1", Resource::Vg, Mode::Ex, false)).is_ok());

    let stalled: Vec<UnixStream> = (0..MAX_CONNS)
        .map(|_| {
            let mut s = l.raw();
            s.write_all(&100u32.to_be_bytes()).unwrap();
            s.write_all(b"{\"op\":").unwrap();
            s
        })
        .collect();
    // Every stalled frame has reached its thread once the cap refuses.
    let end = Instant::now() + WAIT;
    let refusal = loop {
        match Client::connect(&l.host.run_dir()).unwrap().call(&Request::Status) {
            Err(ClientError::Daemon(e)) if e.code == ErrorCode::Busy => break e,
            Ok(_) => {}
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < end, "never refused");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(refusal.message.contains(&format!("{MAX_CONNS} connections")), "{}", refusal.message);
    let out =
        Command::new(env!("CARGO_BIN_EXE_lockd")).args(["status", "--config"]).arg(&l.host.config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("lockd is busy"), "{err}");
    assert!(l.threads() <= MAX_CONNS + OTHER_THREADS, "{} threads", l.threads());
    l.assert_quiet("at the cap");

    // The stalled frames are closed after FRAME_TIMEOUT; lockd answers again.
    let mut stalled = stalled;
    for s in &mut stalled {
        wait_closed(s, WAIT);
    }
    let s = l.status_eventually();
    assert!(s.lockspaces[0].locks.iter().any(|k| k.resource == "VGLK" && k.mode == Mode::Ex), "{s:?}");
    // Long past every timeout, the quiet holder still has its lock and its connection.
    assert!(FRAME_TIMEOUT >= FIRST_REQUEST_TIMEOUT);
    let e = l.host.call(&lock("vg1", Resource::Vg, Mode::Sh, false)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
    assert!(call_on(&mut holder, &Request::VgUpdate { vg: "vg1".into(), version: 7 }).is_ok());
    drop(holder);
    match l.host.call(&lock("vg1", Resource::Vg, Mode::Sh, false)) {
        Ok(Response::Locked { vg_version }) => assert_eq!(vg_version, Some(7)),
        other => panic!("{other:?}"),
    }
    assert!(l.host.call(&Request::LockStop { vg: "vg1".into(), force: false }).is_ok());
}

/// Silent connections, partial frames and replies left unread are closed in time; floods of
/// malformed frames and huge length prefixes get replies, not a log line each.
#[test]
fn stalled_silent_and_malformed_clients() {
    let l = spawn("abuse-misc", None);
    let mut silent = l.raw();
    let mut partial = l.raw();
    partial.write_all(&100u32.to_be_bytes()).unwrap();
    partial.write_all(b"{\"op\":").unwrap();
    // Only half a length prefix: a frame started all the same.
    let mut half_prefix = l.raw();
    half_prefix.write_all(&[0, 0]).unwrap();

    let mut bad = l.raw();
    let n = 5000;
    let writer = flood_junk(&bad, n);
    for _ in 0..n {
        match read_frame::<Response>(&mut bad).unwrap() {
            Response::Error(e) => assert_eq!(e.code, ErrorCode::BadRequest),
            other => panic!("{other:?}"),
        }
    }
    writer.join().unwrap();
    assert!(l.log_size() < LOG_BUDGET, "log grew to {} bytes", l.log_size());

    for len in [u32::MAX, (MAX_FRAME + 1) as u32] {
        let mut big = l.raw();
        big.write_all(&len.to_be_bytes()).unwrap();
        match read_frame::<Response>(&mut big).unwrap() {
            Response::Error(e) => assert_eq!(e.code, ErrorCode::TooLarge),
            other => panic!("{other:?}"),
        }
        wait_closed(&mut big, WAIT);
    }

    // Requests without reading a reply: lockd's writes block, then time out.
    let mut deaf = l.raw();
    deaf.set_nonblocking(true).unwrap();
    let status = encode(&Request::Status);
    // Until both directions are full: lockd is then blocked writing a reply.
    let (mut blocked_since, end) = (None, Instant::now() + WAIT);
    while blocked_since.is_none_or(|t: Instant| t.elapsed() < Duration::from_millis(500)) {
        match deaf.write(&status) {
            Ok(_) => blocked_since = None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                blocked_since.get_or_insert_with(Instant::now);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < end, "lockd keeps reading a client that never reads");
    }

    l.assert_quiet("stalled clients");
    assert!(matches!(l.host.call(&Request::Status), Ok(Response::Status(_))));
    wait_closed(&mut silent, WAIT);
    wait_closed(&mut partial, WAIT);
    wait_closed(&mut half_prefix, WAIT);
    wait_hangup(&deaf, WAIT);
    assert!(matches!(l.host.call(&Request::Status), Ok(Response::Status(_))));
    assert!(l.log_size() < LOG_BUDGET);
}

/// The run directory is 0700 (an existing looser one is tightened), restart records 0600 in
/// 0700 directories; a non-root `lockd status` says permission denied, not "not running".
#[test]
fn private_run_dir_and_records() {
    let host = Host::new("abuse-perm", 1, "");
    let run = host.run_dir();
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = SharedDisk::new("abuse-perm", "vg1", 2);
    let l = spawn_host(host, None);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&run), 0o700);
    assert!(matches!(l.host.call(&d.start_req()), Ok(Response::Started { .. })));
    assert!(l.host.call(&lock("vg1", lv("lv-a", 0), Mode::Ex, true)).is_err(), "no such LV slot yet");
    init_lvs(&l.host, "vg1", &["lv-a"]);
    assert!(l.host.call(&lock("vg1", lv("lv-a", 0), Mode::Ex, true)).is_ok());
    let state = run.join("state");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("lvm_vg1.json")), 0o600);
    let locks = state.join("lvm_vg1.locks");
    assert_eq!(mode(&locks), 0o700);
    let records: Vec<PathBuf> = std::fs::read_dir(&locks).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(mode(r), 0o600, "{}", r.display());
    }

    // `lockd status` as uid 65534: it must fail; its stderr.
    let status_as_nobody = || {
        let out = Command::new(env!("CARGO_BIN_EXE_lockd"))
            .args(["status", "--config"])
            .arg(&l.host.config)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{err}");
        err
    };
    if nix::unistd::geteuid().is_root() {
        // The config must be readable by the caller for it to get as far as the socket.
        std::fs::set_permissions(&l.host.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = status_as_nobody();
        assert!(err.contains("permission denied") && err.contains("root"), "{err}");
        assert!(!err.contains("not running"), "{err}");
        // Past the file modes, SO_PEERCRED: the daemon's own refusal is what the client prints.
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(l.sock(), std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = status_as_nobody();
        assert!(err.contains("permission denied: lockd serves root only, and uid 65534 is not root"), "{err}");
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    } else {
        eprintln!("not root: the non-root client is not exercised");
    }
    assert!(l.host.call(&Request::LockStop { vg: "vg1".into(), force: true }).is_ok());
}
