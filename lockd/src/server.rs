//! The socket: `run_dir/lockd.sock`, mode 0600 in a 0700 run_dir, root (or lockd's own user)
//! only, checked with SO_PEERCRED. One thread per connection: a request may block for seconds
//! (a lock start takes 2N), and other commands must not wait behind it. A malformed request
//! gets an error reply and the connection goes on; an oversized one gets an error and the
//! connection closes.
//!
//! What a client may cost:
//! - At most [`MAX_CONNS`] connections (fewer when the open-file limit is low: connections get
//!   half of the descriptors, lockspaces keep the rest for their PVs and their wdmd
//!   connection), so at most that many connection threads. When all are taken, a new
//!   connection displaces one that has sent nothing but `hello`/`status` and has been idle for
//!   [`EVICT_MIN_IDLE`]; if there is none it gets a `busy` error reply naming the limit, and
//!   is closed.
//! - "Idle" is about frames, not about time between requests. A command holds its GL/VG locks
//!   on its connection while it works on the disks between two requests, for as long as that
//!   takes, and closing the connection would release them under it. So a connection that has
//!   sent any request that may take a lock is never closed for being quiet. What is bounded:
//!   the first request must start within [`FIRST_REQUEST_TIMEOUT`] of connecting (lvtool
//!   connects when it sends), a frame once started must arrive whole within [`FRAME_TIMEOUT`]
//!   (a stalled partial frame is a broken or hostile client, never a working command), and a
//!   reply must be taken within [`REPLY_TIMEOUT`].
//! - A failed `accept` (EMFILE...) is logged once per burst, frees a descriptor by closing a
//!   displaceable connection if there is one, and pauses accepting for a growing interval
//!   ([`proto::limits::Backoff`]); connections already open are served by their own threads.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proto::limits::{self, Backoff, RateLimit};
use tracing::{debug, error, info, warn};

use crate::daemon::Daemon;
use crate::guarded::Guarded;
use crate::locks::ConnId;
use crate::util::mono;
use proto::config::SOCKET_NAME;
use proto::lockd::protocol::{write_frame, ErrorCode, Request, Response, MAX_FRAME};

/// Most connections (and connection threads) at once. lvtool uses one per command plus a few
/// for parallel LV locks; hundreds of concurrent commands on one host is already a runaway.
pub const MAX_CONNS: usize = 256;
/// A new connection must start its first request within this.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame, once its first byte arrived, must be complete within this.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// A reply must be taken by the client within this.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that holds no lock (it sent nothing, or only `hello`/`status`) may be
/// displaced by a new one when all places are taken, once it has been idle this long.
pub const EVICT_MIN_IDLE: Duration = Duration::from_secs(1);
/// The open-file limit lockd asks for: its connections, plus per started lockspace its PVs,
/// its wdmd connection and its I/O rings. `LimitNOFILE` in lockd.service matches it.
pub const NOFILE_WANTED: u64 = 4096;
/// Of the descriptors left when serving starts, connections may take at most half: the other
/// half is for lockspaces (PVs, the wdmd connection that is the fencing path, I/O rings).
const CONN_SHARE_DIVISOR: u64 = 2;
/// At most one log line per this interval for each kind of client trouble.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Binds the socket, refusing when another lockd answers on it. The run directory is made
/// private (0700), or tightened if it is ours and looser (see `proto::limits::private_dir`).
pub fn bind(run_dir: &Path) -> io::Result<UnixListener> {
    limits::private_dir(run_dir)?;
    let path = run_dir.join(SOCKET_NAME);
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another lockd is running on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    // No window in which others could connect before the mode is set.
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(&path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let l = l?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// The peer's uid (SO_PEERCRED).
pub fn peer_uid(s: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// What the accept thread knows of each open connection.
struct Slot {
    /// The connection's socket, to shut it down when it is displaced. Valid while the slot
    /// exists: the connection thread removes its slot before it closes the socket.
    fd: RawFd,
    last_active: Duration,
    /// Inside a frame or a request.
    busy: bool,
    /// Has sent a request other than `hello`/`status`: it may hold GL/VG locks.
    may_hold_locks: bool,
}

struct Slots {
    map: Guarded<HashMap<ConnId, Slot>>,
}

impl Slots {
    fn update(&self, conn: ConnId, f: impl FnOnce(&mut Slot)) {
        if let Some(s) = self.map.lock().get_mut(&conn) {
            f(s);
        }
    }

    /// Shuts down the idle lock-free connection quiet longest (at least `min_idle`); its
    /// thread then finds EOF and ends. False if there is none.
    fn displace_one(&self, min_idle: Duration) -> bool {
        let mut map = self.map.lock();
        let now = mono();
        let victim = map
            .iter()
            .filter(|(_, s)| !s.busy && !s.may_hold_locks && now >= s.last_active + min_idle)
            .min_by_key(|(_, s)| s.last_active)
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        let s = map.remove(&id).expect("found above");
        // SAFETY: the fd is open: its thread closes it only after removing its slot, which
        // needs the lock held here. Shutting down a socket affects no memory.
        unsafe { libc::shutdown(s.fd, libc::SHUT_RDWR) };
        true
    }
}

/// Rate limits of the log lines a client can cause.
struct Logs {
    accept: Guarded<RateLimit>,
    refused: Guarded<RateLimit>,
    bad_request: Guarded<RateLimit>,
    timed_out: Guarded<RateLimit>,
}

fn allow(r: &Guarded<RateLimit>) -> Option<u64> {
    r.lock().allow(mono())
}

struct Shared {
    daemon: Arc<Daemon>,
    /// Connections allowed: [`MAX_CONNS`], fewer if the open-file limit is low.
    cap: usize,
    slots: Slots,
    logs: Logs,
}

/// Accepts connections forever.
pub fn serve(daemon: Arc<Daemon>, listener: UnixListener) {
    let nofile = match limits::raise_nofile(NOFILE_WANTED) {
        Ok(n) => n,
        Err(e) => {
            warn!("RLIMIT_NOFILE: {e}");
            NOFILE_WANTED
        }
    };
    let cap = ((nofile.saturating_sub(limits::open_fds()) / CONN_SHARE_DIVISOR) as usize).clamp(1, MAX_CONNS);
    if cap < MAX_CONNS {
        warn!(
            "open-file limit {nofile} is below the {NOFILE_WANTED} lockd asks for: at most {cap} connections, not \
             {MAX_CONNS}"
        );
    }
    let limit = || Guarded::new("log rate limit", RateLimit::new(LOG_INTERVAL));
    let shared = Arc::new(Shared {
        daemon,
        cap,
        slots: Slots { map: Guarded::new("connection table", HashMap::new()) },
        logs: Logs { accept: limit(), refused: limit(), bad_request: limit(), timed_out: limit() },
    });
    let mut backoff = Backoff::default();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                backoff.reset();
                admit(&shared, stream);
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO)) => {}
            Err(e) => {
                // Out of descriptors: a connection that holds nothing gives its one up.
                let freed = limits::is_exhaustion(&e) && shared.slots.displace_one(Duration::ZERO);
                let pause = backoff.next_pause();
                if let Some(left_out) = allow(&shared.logs.accept) {
                    error!(
                        "accept: {e}; pausing new connections for {} ms{} ({left_out} such errors not logged)",
                        pause.as_millis(),
                        if freed { ", closed an idle connection" } else { "" }
                    );
                }
                std::thread::sleep(pause);
            }
        }
    }
}

/// Best effort: the reply of a connection refused before it has a thread.
fn refuse(mut stream: UnixStream, code: ErrorCode, message: String) {
    let _ = stream.set_nonblocking(true);
    let _ = stream.write_all(&proto::lockd::protocol::encode(&Response::error(code, message)));
}

fn admit(shared: &Arc<Shared>, stream: UnixStream) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match peer_uid(&stream) {
        Ok(uid) if uid == 0 || uid == me => {}
        Ok(uid) => {
            if let Some(left_out) = allow(&shared.logs.refused) {
                warn!("refused a connection from uid {uid} ({left_out} refusals not logged)");
            }
            let msg = format!("permission denied: lockd serves root only, and uid {uid} is not root");
            return refuse(stream, ErrorCode::PermissionDenied, msg);
        }
        Err(e) => {
            warn!("SO_PEERCRED: {e}");
            return;
        }
    }
    let conn = shared.daemon.new_conn();
    {
        let mut map = shared.slots.map.lock();
        if map.len() >= shared.cap {
            drop(map);
            if !shared.slots.displace_one(EVICT_MIN_IDLE) {
                let cap = shared.cap;
                if let Some(left_out) = allow(&shared.logs.refused) {
                    warn!("{cap} connections open, the limit: refused one ({left_out} refusals not logged)");
                }
                let msg = format!(
                    "lockd is busy: {cap} connections are open, its limit, and none can be closed; try again later"
                );
                return refuse(stream, ErrorCode::Busy, msg);
            }
            map = shared.slots.map.lock();
        }
        let slot = Slot { fd: stream.as_raw_fd(), last_active: mono(), busy: false, may_hold_locks: false };
        map.insert(conn, slot);
    }
    let s = shared.clone();
    let spawned = std::thread::Builder::new().name("conn".into()).spawn(move || connection(&s, conn, stream));
    if let Err(e) = spawned {
        // The stream went down with the closure; its slot goes too.
        shared.slots.map.lock().remove(&conn);
        error!("cannot start a connection thread: {e}");
    }
}

/// Why a connection stopped reading requests.
enum ReadEnd {
    /// EOF, a reset, or a shutdown by the accept thread.
    Closed,
    /// Nothing started within the first-request timeout, or a frame not finished in time.
    TimedOut(&'static str),
    TooLarge(usize),
}

/// Reads `buf` whole by `deadline`.
fn read_by(stream: &mut UnixStream, buf: &mut [u8], deadline: Duration) -> Result<(), ReadEnd> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_sub(mono());
        if left.is_zero() {
            return Err(ReadEnd::TimedOut("a frame was not completed in time"));
        }
        stream.set_read_timeout(Some(left)).map_err(|_| ReadEnd::Closed)?;
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(ReadEnd::Closed),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return Err(ReadEnd::Closed),
        }
    }
    Ok(())
}

/// One request frame's body. Waits for its first byte up to `first` (None: for ever), then
/// gives the rest [`FRAME_TIMEOUT`].
fn read_request(
    shared: &Shared,
    conn: ConnId,
    stream: &mut UnixStream,
    first: Option<Duration>,
) -> Result<Vec<u8>, ReadEnd> {
    let mut prefix = [0u8; 4];
    stream.set_read_timeout(first).map_err(|_| ReadEnd::Closed)?;
    let n = loop {
        match stream.read(&mut prefix) {
            Ok(0) => return Err(ReadEnd::Closed),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(ReadEnd::TimedOut("no request after connecting"))
            }
            Err(_) => return Err(ReadEnd::Closed),
        }
    };
    shared.slots.update(conn, |s| s.busy = true);
    let deadline = mono() + FRAME_TIMEOUT;
    read_by(stream, &mut prefix[n..], deadline)?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(ReadEnd::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    read_by(stream, &mut body, deadline)?;
    Ok(body)
}

fn connection(shared: &Shared, conn: ConnId, mut stream: UnixStream) {
    let daemon = &shared.daemon;
    let _ = stream.set_write_timeout(Some(REPLY_TIMEOUT));
    let mut first = true;
    loop {
        let timeout = first.then_some(FIRST_REQUEST_TIMEOUT);
        let body = match read_request(shared, conn, &mut stream, timeout) {
            Ok(b) => b,
            Err(ReadEnd::TooLarge(len)) => {
                if let Some(left_out) = allow(&shared.logs.bad_request) {
                    warn!("connection {conn}: frame of {len} bytes refused ({left_out} bad requests not logged)");
                }
                let msg = format!("request of {len} bytes exceeds the limit of {MAX_FRAME}");
                let _ = write_frame(&mut stream, &Response::error(ErrorCode::TooLarge, msg));
                break;
            }
            Err(ReadEnd::TimedOut(why)) => {
                if let Some(left_out) = allow(&shared.logs.timed_out) {
                    info!("connection {conn} closed: {why} ({left_out} such closes not logged)");
                }
                break;
            }
            Err(ReadEnd::Closed) => break,
        };
        first = false;
        let resp = match serde_json::from_slice::<Request>(&body) {
            Ok(req) => {
                debug!("connection {conn}: {req:?}");
                if !matches!(req, Request::Hello { .. } | Request::Status) {
                    shared.slots.update(conn, |s| s.may_hold_locks = true);
                }
                let d = daemon.clone();
                // A bug in one request fails that request only: the lockspace state it may have
                // held stays usable (`guarded`), and renewals go on in their own thread.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.handle(conn, req))) {
                    Ok(r) => r,
                    Err(panic) => {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        error!("connection {conn}: request failed with an internal error: {what}");
                        Response::error(ErrorCode::Internal, "internal error (see lockd's log)")
                    }
                }
            }
            Err(e) => {
                if let Some(left_out) = allow(&shared.logs.bad_request) {
                    warn!("connection {conn}: malformed request: {e} ({left_out} bad requests not logged)");
                }
                Response::error(ErrorCode::BadRequest, format!("malformed request: {e}"))
            }
        };
        if write_frame(&mut stream, &resp).is_err() {
            break;
        }
        shared.slots.update(conn, |s| {
            s.busy = false;
            s.last_active = mono();
        });
    }
    // The slot goes before the socket closes (see Slot::fd).
    shared.slots.map.lock().remove(&conn);
    drop(stream);
    daemon.conn_closed(conn);
}
