//! The real `wdmd` binary under hostile or broken clients: connection floods past every cap,
//! descriptors exhausted (RLIMIT_NOFILE lowered on the daemon), clients that never read their
//! replies, malformed and oversized frames, absurd expiries. Each test asserts that a
//! well-behaved client still registers, sets its expiry and gets a status (the fencing path),
//! that the daemon did not spin (its CPU time over an interval, from /proc/PID/stat, with a
//! generous bound) and that its log stayed small. Waits are for conditions, with a deadline.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lease::clock::clock_monotonic;
use proto::wdmd::client::{Client, ClientError};
use proto::wdmd::protocol::{self, ErrorKind, Request, Response};
use sanlvm_tests::daemon_abuse::{cpu_time, flood_junk, limit_open_files, tail, wait_closed, wait_hangup};

const W: u32 = 3;
const WAIT: Duration = Duration::from_secs(30);
/// CPU the daemon may use while a test's abuse goes on for [`CPU_WINDOW`]: an idle wdmd uses
/// next to nothing, a spinning one all of the window.
const CPU_BUDGET: Duration = Duration::from_millis(400);
const CPU_WINDOW: Duration = Duration::from_secs(2);
/// Log bytes a whole test may cause (a flood wrote gigabytes).
const LOG_BUDGET: u64 = 64 * 1024;

struct Wdmd {
    child: Child,
    run_dir: PathBuf,
    log: PathBuf,
}

fn spawn(dir: &Path, nofile: Option<u64>) -> Wdmd {
    let run_dir = dir.join("run");
    let log = dir.join("wdmd.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wdmd"));
    cmd.args(["--run-dir".as_ref(), run_dir.as_os_str()])
        .args(["--test-watchdog-file".as_ref(), dir.join("watchdog").as_os_str()])
        .args(["--fire-timeout", &W.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(n) = nofile {
        limit_open_files(&mut cmd, n);
    }
    let child = cmd.spawn().unwrap();
    let mut w = Wdmd { child, run_dir, log };
    let end = clock_monotonic() + WAIT;
    while !wdmd::server::wait_for_socket(&w.run_dir, Duration::from_millis(100)) {
        assert!(w.child.try_wait().unwrap().is_none(), "wdmd exited:\n{}", w.log_text());
        assert!(clock_monotonic() < end, "no socket:\n{}", w.log_text());
    }
    w
}

impl Wdmd {
    fn sock(&self) -> PathBuf {
        self.run_dir.join(protocol::SOCKET_NAME)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_size(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    fn cpu(&self) -> Duration {
        cpu_time(self.child.id())
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// CPU used over [`CPU_WINDOW`] of wall time.
    fn cpu_over_window(&self) -> Duration {
        let before = self.cpu();
        let end = clock_monotonic() + CPU_WINDOW;
        while clock_monotonic() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.cpu() - before
    }

    /// Register, set an expiry, read it back in a status, clear, unregister: what lockd does.
    fn fencing_path_works(&self, name: &str) {
        let mut c = Client::connect(&self.run_dir).unwrap_or_else(|e| panic!("{e}\n{}", self.log_text()));
        c.register(name, W).unwrap_or_else(|e| panic!("register: {e}\n{}", self.log_text()));
        let r = clock_monotonic();
        let e = r + Duration::from_secs(60);
        c.set_expiry(r, e).unwrap_or_else(|e| panic!("set_expiry: {e}\n{}", self.log_text()));
        let st = c.status().unwrap();
        let me = st.clients.iter().find(|x| x.name == name).expect("registered client in status");
        assert_eq!(me.times.expiry_ms, protocol::to_ms(e));
        c.clear().unwrap();
        c.unregister().unwrap();
        let mut s = Client::connect(&self.run_dir).unwrap();
        assert!(s.status().unwrap().petting);
    }

    fn assert_quiet(&self, what: &str) {
        let used = self.cpu_over_window();
        assert!(used < CPU_BUDGET, "{what}: wdmd used {used:?} of CPU in {CPU_WINDOW:?} (busy loop?)");
        assert!(
            self.log_size() < LOG_BUDGET,
            "{what}: log grew to {} bytes:\n{}",
            self.log_size(),
            tail(&self.log_text())
        );
    }
}

impl Drop for Wdmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect_raw(w: &Wdmd) -> UnixStream {
    let s = UnixStream::connect(w.sock()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Far more idle connections than wdmd has places for (it once refused everything past 1,024
/// and so locked lockd's registration out): a registering client and `wdmd status` still get
/// through, the oldest idle connections are told why they are closed.
#[test]
fn idle_connection_flood_never_locks_clients_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = spawn(dir.path(), None);
    let n = 1100;
    let mut idle: Vec<UnixStream> = (0..n).map(|_| UnixStream::connect(w.sock()).unwrap()).collect();
    w.fencing_path_works("lockd_lvm_vg1:1:1");
    // The first ones were displaced, with a reason.
    match protocol::read_frame::<Response>(&mut idle[0]) {
        Ok(Response::Error { kind: ErrorKind::TooManyConnections, message }) => {
            assert!(message.contains("places"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    w.assert_quiet("idle flood");
    // A status client among the flood, many times over.
    for _ in 0..20 {
        idle.push(UnixStream::connect(w.sock()).unwrap());
        Client::connect(&w.run_dir).unwrap().status().unwrap();
    }
    assert!(w.alive());
}

/// RLIMIT_NOFILE lowered on the daemon so that a connection flood exhausts its descriptors
/// (the release build spun in accept, logging each EMFILE). The flood's connections are
/// displaced, the fencing path works, no busy loop, a small log.
#[test]
fn descriptor_exhaustion_does_not_spin_or_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let w = spawn(dir.path(), Some(40));
    let flood: Vec<UnixStream> = (0..300).map(|_| UnixStream::connect(w.sock()).unwrap()).collect();
    w.fencing_path_works("lockd_lvm_vg1:1:1");
    w.assert_quiet("descriptors exhausted");
    for k in 0..5 {
        w.fencing_path_works(&format!("lockd_lvm_vg{k}:1:1"));
    }
    drop(flood);
    w.assert_quiet("after the flood");
}

/// RLIMIT_NOFILE lowered, and registered clients until wdmd refuses one: the refusal is clear,
/// every registered client still sets its expiry (saving it needs a descriptor), `wdmd status`
/// still gets in, no busy loop, a small log.
#[test]
fn registrations_up_to_the_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let w = spawn(dir.path(), Some(40));
    let mut clients = Vec::new();
    let refusal = loop {
        let name = format!("lockd_lvm_vg{}:1:1", clients.len());
        let mut c = Client::connect(&w.run_dir).unwrap();
        match c.register(&name, W) {
            Ok(()) => clients.push(c),
            Err(ClientError::Daemon { kind: ErrorKind::TooManyClients, message }) => break message,
            Err(e) => panic!("{e}\n{}", w.log_text()),
        }
        assert!(clients.len() <= 40, "more clients than descriptors");
    };
    assert!(refusal.contains("limit"), "{refusal}");
    assert!(clients.len() >= 10, "only {} clients", clients.len());
    let r = clock_monotonic();
    for c in &mut clients {
        c.set_expiry(r, r + Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}\n{}", w.log_text()));
    }
    let st = Client::connect(&w.run_dir).unwrap().status().unwrap();
    assert_eq!(st.clients.len(), clients.len());
    w.assert_quiet("every client place taken");
    for c in &mut clients {
        c.clear().unwrap();
    }
}

/// A client that sends requests and never reads the replies, then an oversized frame and more
/// bytes: wdmd must neither spin on input it will not read nor keep the client for ever.
#[test]
fn client_that_never_reads_does_not_spin_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let w = spawn(dir.path(), None);
    let mut s = connect_raw(&w);
    s.set_nonblocking(true).unwrap();
    let status = protocol::encode(&Request::Status);
    let mut burst = Vec::new();
    for _ in 0..2000 {
        burst.extend_from_slice(&status);
    }
    burst.extend_from_slice(&u32::MAX.to_be_bytes());
    burst.extend_from_slice(&[b'x'; 4096]);
    // As much as the socket takes; the rest stays with us, unsent.
    let mut sent = 0;
    let end = clock_monotonic() + Duration::from_secs(2);
    while sent < burst.len() && clock_monotonic() < end {
        match s.write(&burst[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{e}"),
        }
    }
    w.fencing_path_works("lockd_lvm_vg1:1:1");
    w.assert_quiet("a client that never reads");
    // Its replies stalled: it is closed in the end.
    wait_hangup(&s, WAIT);
    w.fencing_path_works("lockd_lvm_vg1:1:2");
}

/// Silent connections and partial frames that stall are closed when unregistered; a flood of
/// malformed frames gets replies but not a log line each.
#[test]
fn stalled_frames_and_malformed_floods() {
    let dir = tempfile::tempdir().unwrap();
    let w = spawn(dir.path(), None);
    let mut silent = connect_raw(&w);
    let mut partial = connect_raw(&w);
    partial.write_all(&100u32.to_be_bytes()).unwrap();
    partial.write_all(b"{\"op\":").unwrap();

    let mut bad = connect_raw(&w);
    let n = 5000;
    let writer = flood_junk(&bad, n);
    for _ in 0..n {
        match protocol::read_frame::<Response>(&mut bad).unwrap() {
            Response::Error { kind: ErrorKind::BadRequest, .. } => {}
            other => panic!("{other:?}"),
        }
    }
    writer.join().unwrap();
    assert!(w.log_size() < LOG_BUDGET, "log grew to {} bytes", w.log_size());
    // Huge length prefixes: refused from the prefix alone, connection closed.
    for len in [u32::MAX, (protocol::MAX_FRAME + 1) as u32] {
        let mut big = connect_raw(&w);
        big.write_all(&len.to_be_bytes()).unwrap();
        match protocol::read_frame::<Response>(&mut big).unwrap() {
            Response::Error { kind: ErrorKind::FrameTooLarge, .. } => {}
            other => panic!("{other:?}"),
        }
        wait_closed(&mut big, WAIT);
    }
    w.fencing_path_works("lockd_lvm_vg1:1:1");
    wait_closed(&mut silent, WAIT);
    wait_closed(&mut partial, WAIT);
    assert!(w.log_size() < LOG_BUDGET);
}

/// An expiry no lease can have (u64::MAX ms, "never fence") is refused with a clear error and
/// changes nothing; the largest honest one (8N for N = 255 s) is accepted.
#[test]
fn absurd_expiries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = spawn(dir.path(), None);
    let mut c = Client::connect(&w.run_dir).unwrap();
    c.register("lockd_lvm_vg1:1:1", W).unwrap();
    let now = protocol::to_ms(clock_monotonic());
    let ahead = protocol::to_ms(protocol::max_expiry_ahead());
    assert_eq!(ahead, 8 * 255 * 1000);
    for expiry_ms in [u64::MAX, now + ahead + 60_000] {
        match c.request(&Request::SetExpiry { renewal_ms: now, expiry_ms }) {
            Ok(Response::Error { kind: ErrorKind::ExpiryOutOfRange, message }) => {
                assert!(message.contains("no lease lasts that long"), "{message}")
            }
            other => panic!("{expiry_ms}: {other:?}"),
        }
    }
    match c.request(&Request::SetExpiry { renewal_ms: u64::MAX, expiry_ms: now + 1000 }) {
        Ok(Response::Error { kind: ErrorKind::ExpiryOutOfRange, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(c.status().unwrap().clients[0].times.expiry_ms, 0, "nothing applied");
    let now = protocol::to_ms(clock_monotonic());
    assert_eq!(
        c.request(&Request::SetExpiry { renewal_ms: now, expiry_ms: now + ahead - 1000 }).unwrap(),
        Response::Ok
    );
    c.clear().unwrap();
}

/// The run directory is 0700 (an existing looser one of ours is tightened), the saved expiries
/// and the pid file 0600; a run directory of another user is refused; a non-root `wdmd status`
/// says permission denied.
#[test]
fn private_run_dir_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = spawn(dir.path(), None);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&run), 0o700);
    let mut c = Client::connect(&w.run_dir).unwrap();
    c.register("x", W).unwrap();
    let r = clock_monotonic();
    c.set_expiry(r, r + Duration::from_secs(60)).unwrap();
    assert_eq!(mode(&run.join(wdmd::state::STATE_NAME)), 0o600);
    assert_eq!(mode(&run.join("wdmd.pid")), 0o600);

    if nix::unistd::geteuid().is_root() {
        let out = Command::new(env!("CARGO_BIN_EXE_wdmd"))
            .args(["status".as_ref(), "--run-dir".as_ref(), run.as_os_str()])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("permission denied"), "{err}");
        assert!(err.contains("root"), "{err}");

        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::chown(&other, Some(65534), Some(65534)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wdmd"))
            .args(["--run-dir".as_ref(), other.as_os_str()])
            .args(["--test-watchdog-file".as_ref(), dir.path().join("wd2").as_os_str()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("belongs to uid 65534"), "{err}");
    } else {
        eprintln!("not root: the non-root client and foreign run directory are not exercised");
    }
    c.clear().unwrap();
    assert!(c.status().is_ok());
}
