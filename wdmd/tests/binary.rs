//! The real `wdmd` binary with the file-backed watchdog (`--test-watchdog-file`), W = 3 s (test
//! interval 1 s), on the real CLOCK_MONOTONIC, which the recorded events also use. Waits are
//! for events with a timeout; the assertions are on the recorded events.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use lease::clock::clock_monotonic;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use proto::wdmd::client::{Client, ClientError};
use proto::wdmd::protocol::{self, ErrorKind, Request, Response};
use wdmd::device::{would_fire_at, Event, EventKind, FileWatchdog};

const W: u32 = 3;
const I: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(20);

struct Wdmd {
    child: Child,
    run_dir: PathBuf,
    wd_file: PathBuf,
    log: PathBuf,
}

fn spawn(dir: &Path) -> Wdmd {
    let run_dir = dir.join("run");
    let wd_file = dir.join("watchdog");
    let log = dir.join(format!("wdmd-{}.log", clock_monotonic().as_nanos()));
    let child = Command::new(env!("CARGO_BIN_EXE_wdmd"))
        .args(["--run-dir".as_ref(), run_dir.as_os_str()])
        .args(["--test-watchdog-file".as_ref(), wd_file.as_os_str()])
        .args(["--fire-timeout", &W.to_string(), "--debug"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut w = Wdmd { child, run_dir, wd_file, log };
    let end = clock_monotonic() + WAIT;
    while !wdmd::server::wait_for_socket(&w.run_dir, Duration::from_millis(100)) {
        assert!(w.child.try_wait().unwrap().is_none(), "wdmd exited:\n{}", w.log_text());
        assert!(clock_monotonic() < end, "no socket:\n{}", w.log_text());
    }
    w
}

impl Wdmd {
    fn client(&self) -> Client {
        Client::connect(&self.run_dir).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn events(&self) -> Vec<Event> {
        FileWatchdog::read_events(&self.wd_file).unwrap()
    }

    /// Waits for the first event after `after` matching `kind`.
    fn wait_event(&self, kind: fn(&EventKind) -> bool, after: Duration) -> Event {
        let end = clock_monotonic() + WAIT;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| e.at > after && kind(&e.kind)) {
                return e;
            }
            assert!(clock_monotonic() < end, "event not seen; events {:?}\n{}", self.events(), self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_log(&self, needle: &str) {
        let end = clock_monotonic() + WAIT;
        while !self.log_text().contains(needle) {
            assert!(clock_monotonic() < end, "log line {needle:?} not seen:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), s).unwrap();
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let end = clock_monotonic() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(clock_monotonic() < end, "wdmd did not exit:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Wdmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_close_armed(k: &EventKind) -> bool {
    *k == EventKind::CloseArmed
}
fn is_open(k: &EventKind) -> bool {
    matches!(k, EventKind::Open { .. })
}

/// (2), (3), (5) end to end: an expiry that is not renewed closes the device armed one test
/// interval before it, clearing reopens and pets, SIGTERM with no expiry is the magic close.
#[test]
fn expiry_close_clear_and_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = spawn(dir.path());
    let ev = d.events();
    assert_eq!(ev[0].kind, EventKind::Open { timeout: W });
    assert!(d.log_text().contains("NOT fenced"), "the test device is announced loudly");

    let mut c = d.client();
    c.register("lockd_lvm_vg1:1", W).unwrap();
    let r = clock_monotonic();
    let e = r + Duration::from_millis(2500);
    c.set_expiry(r, e).unwrap();
    // What wdmd knows: milliseconds, rounded down (earlier, never later).
    let e = protocol::from_ms(protocol::to_ms(e));
    let close = d.wait_event(is_close_armed, Duration::ZERO);
    assert!(close.at >= e - I, "closed at {close:?}, before it was needed ({:?})", e - I);
    let pets_before: Vec<_> =
        d.events().into_iter().filter(|x| x.kind == EventKind::Keepalive && x.at < close.at).map(|x| x.at).collect();
    assert!(pets_before.iter().all(|&p| p < e - I), "pet after expiry - interval: {pets_before:?}");

    c.clear().unwrap();
    let reopen = d.wait_event(is_open, close.at);
    let ev = d.events();
    assert!(ev.iter().all(|x| !(x.at > close.at && x.at < reopen.at)), "nothing between close and reopen: {ev:?}");
    d.wait_event(|k| *k == EventKind::Keepalive, reopen.at - Duration::from_millis(1));
    let st = c.status().unwrap();
    assert!(st.petting);
    assert_eq!(st.fire_timeout_secs, W);
    assert_eq!(st.test_interval_ms, 1000);
    assert_eq!(st.clients.len(), 1);
    assert_eq!(st.clients[0].times.expiry_ms, 0);
    c.unregister().unwrap();

    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success(), "{}", d.log_text());
    assert_eq!(d.events().last().unwrap().kind, EventKind::CloseDisarmed);
    assert_eq!(would_fire_at(&d.events(), Duration::from_secs(W as u64)), None);
    assert!(!d.run_dir.join(protocol::SOCKET_NAME).exists());
}

/// (4) end to end: the client goes away with its expiry set; the device is left armed, SIGTERM
/// does not disarm it; only the owner's takeover and clear end it.
#[test]
fn disconnect_with_expiry_keeps_the_device_armed() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = spawn(dir.path());
    let mut c = d.client();
    c.register("lockd_lvm_vg1:2", W).unwrap();
    let r = clock_monotonic();
    let e = r + Duration::from_millis(2500);
    c.set_expiry(r, e).unwrap();
    // What wdmd knows: milliseconds, rounded down (earlier, never later).
    let e = protocol::from_ms(protocol::to_ms(e));
    drop(c);
    let close = d.wait_event(is_close_armed, Duration::ZERO);
    assert!(close.at >= e - I);

    d.signal(Signal::SIGTERM);
    d.wait_log("asked to stop, but these clients have expiries");
    let mut s = d.client();
    let st = s.status().unwrap();
    assert!(!st.petting);
    assert_eq!(st.clients.len(), 1);
    assert!(!st.clients[0].connected);
    assert!(d.events().iter().all(|x| x.at <= close.at), "no pet, no magic close after the close");

    match s.register("lockd_lvm_vg1:2", W) {
        Err(ClientError::Daemon { kind: ErrorKind::NameOrphaned, .. }) => {}
        other => panic!("{other:?}"),
    }
    let adopted = s.register_takeover("lockd_lvm_vg1:2", W).unwrap().unwrap();
    assert_eq!(adopted.expiry_ms, protocol::to_ms(e));
    s.clear().unwrap();
    // The pending stop completes now that nothing needs the watchdog.
    assert!(d.wait_exit().success(), "{}", d.log_text());
    let ev = d.events();
    assert!(ev.iter().any(|x| x.at > close.at && is_open(&x.kind)), "reopened before disarming: {ev:?}");
    assert_eq!(ev.last().unwrap().kind, EventKind::CloseDisarmed);
}

fn raw_request(s: &mut UnixStream, body: &[u8]) -> Response {
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
    protocol::read_frame(s).unwrap()
}

/// (6) end to end: malformed and oversized frames, half frames, a non-root peer: each gets an
/// error or a disconnect, and the daemon goes on petting.
#[test]
fn bad_frames_and_peers_do_not_kill_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = spawn(dir.path());
    let sock = d.run_dir.join(protocol::SOCKET_NAME);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    for body in [&b"not json"[..], br#"{"op":"frobnicate"}"#, br#"{"op":"register"}"#, b""] {
        match raw_request(&mut s, body) {
            Response::Error { kind: ErrorKind::BadRequest, .. } => {}
            other => panic!("{body:?}: {other:?}"),
        }
    }
    assert!(matches!(raw_request(&mut s, br#"{"op":"status"}"#), Response::Status(_)), "connection still usable");

    let mut big = UnixStream::connect(&sock).unwrap();
    big.set_read_timeout(Some(WAIT)).unwrap();
    big.write_all(&u32::MAX.to_be_bytes()).unwrap();
    match protocol::read_frame::<Response>(&mut big).unwrap() {
        Response::Error { kind: ErrorKind::FrameTooLarge, .. } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(big.read(&mut [0u8; 16]).unwrap(), 0, "closed after an oversized frame");

    let mut half = UnixStream::connect(&sock).unwrap();
    half.write_all(&100u32.to_be_bytes()).unwrap();
    half.write_all(b"{\"op\":").unwrap();
    drop(half);

    // A non-root peer, if we can make one: past the file permissions, SO_PEERCRED refuses it.
    if nix::unistd::geteuid().is_root() {
        for p in [dir.path(), d.run_dir.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wdmd"))
            .args(["status".as_ref(), "--run-dir".as_ref(), d.run_dir.as_os_str()])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(!out.status.success(), "nobody got a status: {}", String::from_utf8_lossy(&out.stdout));
        d.wait_log("refused a connection from a non-root peer");
    } else {
        eprintln!("not root: the SO_PEERCRED refusal is not exercised");
    }

    let since = clock_monotonic();
    d.wait_event(|k| *k == EventKind::Keepalive, since);
    let st = d.client().status().unwrap();
    assert!(st.petting && st.clients.is_empty());
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success(), "{}", d.log_text());
}

/// A wdmd killed with a client's expiry set, and started again: the expiry is still enforced
/// and its owner can take it over. A second wdmd on the same run directory refuses to start.
#[test]
fn restart_keeps_saved_expiries() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = spawn(dir.path());
    let mut c = a.client();
    c.register("lockd_lvm_vg1:3", W).unwrap();
    let r = clock_monotonic();
    let e = r + Duration::from_secs(60);
    c.set_expiry(r, e).unwrap();

    let second = Command::new(env!("CARGO_BIN_EXE_wdmd"))
        .args(["--run-dir".as_ref(), a.run_dir.as_os_str()])
        .args(["--test-watchdog-file".as_ref(), dir.path().join("other").as_os_str()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another wdmd"), "{second:?}");

    a.signal(Signal::SIGKILL);
    a.wait_exit();
    drop(c);
    let killed_at = clock_monotonic();
    assert!(a.events().iter().all(|x| x.kind != EventKind::CloseDisarmed));

    let mut b = spawn(dir.path());
    b.wait_log("restored a client with an expiry");
    let mut s = b.client();
    let st = s.status().unwrap();
    assert_eq!(st.clients.len(), 1);
    assert!(!st.clients[0].connected);
    assert_eq!(st.clients[0].times.expiry_ms, protocol::to_ms(e));
    assert!(st.petting, "the expiry is far: the new wdmd pets");
    assert_eq!(s.register_takeover("lockd_lvm_vg1:3", W).unwrap().map(|t| t.expiry_ms), Some(protocol::to_ms(e)));
    s.clear().unwrap();
    s.unregister().unwrap();
    b.signal(Signal::SIGTERM);
    assert!(b.wait_exit().success(), "{}", b.log_text());
    let ev = b.events();
    assert!(ev.iter().any(|x| x.at > killed_at && is_open(&x.kind)));
    assert_eq!(ev.last().unwrap().kind, EventKind::CloseDisarmed);
    assert!(!b.run_dir.join(wdmd::state::STATE_NAME).exists(), "nothing left to restore");
}

/// Requests the client library refuses to send.
#[test]
fn client_refuses_a_zero_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = spawn(dir.path());
    let mut c = d.client();
    c.register("x", W).unwrap();
    assert!(matches!(c.set_expiry(Duration::ZERO, Duration::ZERO), Err(ClientError::Protocol(_))));
    assert!(matches!(c.request(&Request::Status).unwrap(), Response::Status(_)));
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit().success());
}
