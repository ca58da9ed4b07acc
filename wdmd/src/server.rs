//! The daemon's process: run directory, lock file, the root-only socket and one poll loop that
//! serves clients and calls [`Daemon::tick`] on time. One thread, no blocking I/O on client
//! sockets, so a misbehaving client can delay a test by a poll round at most.
//!
//! What a client may cost (the fencing path, lockd's registration, must always get through):
//! - Registered clients: at most [`protocol::MAX_CLIENTS`], never timed out (they are idle for
//!   2N between renewals).
//! - Unregistered connections (`wdmd status`, a client about to register) share
//!   [`MAX_UNREGISTERED`] places, fewer if the open-file limit is low. A new connection always
//!   gets in: when the places are full, the unregistered connection idle longest is closed
//!   (after an error reply saying why). A new connection is read at once, so a client that
//!   connects and registers is registered before the next connection can displace it. An
//!   unregistered connection that sends nothing for [`UNREGISTERED_IDLE`] is closed.
//! - Replies a client does not read: past [`OUT_HIGH_WATER`] its requests are no longer read
//!   (and its socket no longer polled for input), and if none of its replies can be written
//!   for [`WRITE_STALL`] it is closed.
//! - A failed `accept` (EMFILE...) is logged once per burst; the listener is left out of the
//!   poll for a growing pause ([`limits::Backoff`]) while existing clients are served.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lease::clock::clock_monotonic;
use nix::fcntl::{Flock, FlockArg};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{umask, Mode};
use tracing::{debug, error, info, warn};

use crate::daemon::{ConnId, Daemon};
use crate::device::Watchdog;
use crate::state::StateFile;
use proto::frame::FrameDecoder;
use proto::limits::{self, Backoff, RateLimit};
use proto::wdmd::protocol::{self, ErrorKind, FrameError, Request, Response};

/// Places for connections that are not registered clients.
pub const MAX_UNREGISTERED: usize = 64;
/// An unregistered connection silent this long is closed (`wdmd status` and a registering
/// client send their request as soon as they connect).
pub const UNREGISTERED_IDLE: Duration = Duration::from_secs(10);
/// A connection none of whose pending replies could be written for this long is closed.
pub const WRITE_STALL: Duration = Duration::from_secs(10);
/// Reply bytes a client may leave unread before its requests are no longer read.
pub const OUT_HIGH_WATER: usize = 64 * 1024;
/// Connections accepted per poll round, so a connection flood cannot starve the tests.
const MAX_ACCEPTS_PER_ROUND: usize = 64;
/// Descriptors kept free beyond the connections: the state file's rewrite, reopening the
/// device, a connection being refused.
const FD_HEADROOM: u64 = 8;
/// The open-file limit wdmd asks for: every client and unregistered place, plus its own files
/// (stdio, listener, signalfd, pid file, device). `LimitNOFILE` in wdmd.service is above it.
pub const NOFILE_WANTED: u64 = (protocol::MAX_CLIENTS + MAX_UNREGISTERED) as u64 + 32;
/// At most one log line per this interval for each kind of connection trouble.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Longest poll wait while some connection has a deadline or accepting is paused.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

pub struct ServerConfig {
    pub run_dir: PathBuf,
    pub fire_timeout: u32,
}

struct Conn {
    stream: UnixStream,
    decoder: FrameDecoder,
    out: Vec<u8>,
    /// Close once `out` is flushed (after a fatal error reply).
    closing: bool,
    registered: bool,
    /// Last time a byte was read from it (or it connected).
    last_read: Duration,
    /// Since when `out` has been waiting without a byte written.
    out_stalled_since: Option<Duration>,
}

/// Rate limits of the log lines a client can cause.
struct Logs {
    accept: RateLimit,
    evicted: RateLimit,
    refused: RateLimit,
    bad_request: RateLimit,
    timed_out: RateLimit,
}

impl Logs {
    fn new() -> Logs {
        Logs {
            accept: RateLimit::new(LOG_INTERVAL),
            evicted: RateLimit::new(LOG_INTERVAL),
            refused: RateLimit::new(LOG_INTERVAL),
            bad_request: RateLimit::new(LOG_INTERVAL),
            timed_out: RateLimit::new(LOG_INTERVAL),
        }
    }
}

struct Server {
    conns: HashMap<ConnId, Conn>,
    /// Connections the open-file limit allows, [`FD_HEADROOM`] left over.
    conn_budget: usize,
    /// Places for unregistered connections that registered clients cannot take: a quarter of
    /// the budget, at most [`MAX_UNREGISTERED`]. Places registered clients leave free may be
    /// used too, up to [`MAX_UNREGISTERED`].
    unregistered_cap: usize,
    backoff: Backoff,
    accept_paused_until: Option<Duration>,
    logs: Logs,
}

/// The socket path inside `run_dir`.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(protocol::SOCKET_NAME)
}

/// Holds `run_dir/wdmd.pid` locked: one wdmd per run directory.
fn lock_pid_file(run_dir: &Path) -> io::Result<Flock<File>> {
    let path = run_dir.join("wdmd.pid");
    let f = limits::open_private(&path, false)?;
    let mut f = Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|(f, e)| {
        drop(f);
        let pid = std::fs::read_to_string(&path).unwrap_or_default();
        io::Error::other(format!("another wdmd runs with {} (pid {}): {e}", run_dir.display(), pid.trim()))
    })?;
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Created 0600 from the start, so there is no moment at which others may connect.
    let old = umask(Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    umask(old);
    let l = l?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Runs the daemon until SIGTERM/SIGINT and no client has an expiry. `ready` is called once
/// the socket accepts connections (sd-notify in the binary).
pub fn run(cfg: &ServerConfig, wd: Box<dyn Watchdog>, ready: impl FnOnce(&Daemon)) -> io::Result<()> {
    // Signals arrive on a fd so they are handled in the loop, between tests, never mid-change.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().map_err(io::Error::from)?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;

    limits::private_dir(&cfg.run_dir)?;
    let _pid_lock = lock_pid_file(&cfg.run_dir)?;
    // The socket first: failing after the device is open would leave it armed.
    let sock = socket_path(&cfg.run_dir);
    let listener = bind_socket(&sock).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", sock.display())))?;
    let state = StateFile::new(&cfg.run_dir);
    let mut daemon = match Daemon::start(wd, cfg.fire_timeout, Some(state), clock_monotonic()) {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&sock);
            return Err(e);
        }
    };
    let mut server = Server::new(&mut daemon);
    info!(socket = %sock.display(), connections = server.conn_budget, "listening");
    ready(&daemon);
    let res = server.serve(&mut daemon, &listener, &sigfd);
    if res.is_err() {
        // Disarms only if no client has an expiry; otherwise the device stays armed, as it must.
        let _ = daemon.shutdown();
    }
    drop(listener);
    let _ = std::fs::remove_file(&sock);
    res
}

impl Server {
    /// Sizes the places to the open-file limit, with its own files already open: registered
    /// clients may take all but a quarter (at most [`MAX_UNREGISTERED`]) of them, which stays
    /// for `wdmd status` and clients about to register. [`FD_HEADROOM`] stays free, so saving
    /// the expiries never fails for want of a descriptor.
    fn new(daemon: &mut Daemon) -> Server {
        let nofile = match limits::raise_nofile(NOFILE_WANTED) {
            Ok(n) => n,
            Err(e) => {
                warn!("RLIMIT_NOFILE: {e}");
                NOFILE_WANTED
            }
        };
        let conn_budget = (nofile.saturating_sub(limits::open_fds() + FD_HEADROOM) as usize).max(2);
        let unregistered_cap = (conn_budget / 4).clamp(1, MAX_UNREGISTERED);
        let max_clients = (conn_budget - unregistered_cap).min(protocol::MAX_CLIENTS);
        daemon.limit_clients(max_clients);
        if nofile < NOFILE_WANTED {
            warn!(
                nofile,
                wanted = NOFILE_WANTED,
                clients = max_clients,
                unregistered_places = unregistered_cap,
                "open-file limit below what wdmd's connection limits need: fewer places"
            );
        }
        Server {
            conns: HashMap::new(),
            conn_budget,
            unregistered_cap,
            backoff: Backoff::default(),
            accept_paused_until: None,
            logs: Logs::new(),
        }
    }

    fn serve(&mut self, daemon: &mut Daemon, listener: &UnixListener, sigfd: &SignalFd) -> io::Result<()> {
        let mut quitting = false;
        loop {
            let now = clock_monotonic();
            if now >= daemon.next_tick() {
                daemon.tick(now);
            }
            // With expiries set, shutdown refuses (reported when the signal came): keep protecting.
            if quitting && daemon.shutdown().is_ok() {
                return Ok(());
            }
            self.expire(daemon, now);
            let accepting = self.accept_paused_until.is_none_or(|t| now >= t);
            if accepting {
                self.accept_paused_until = None;
            }
            let mut wait = daemon.next_tick().saturating_sub(clock_monotonic());
            if !accepting || self.conns.values().any(|c| !c.registered || c.out_stalled_since.is_some()) {
                wait = wait.min(HOUSEKEEPING);
            }
            // Round up: waking early only costs a loop round.
            let ms = wait.as_micros().div_ceil(1000).min(60_000) as u16;

            let ids: Vec<ConnId> = self.conns.keys().copied().collect();
            let listen_ev = if accepting { PollFlags::POLLIN } else { PollFlags::empty() };
            let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN), PollFd::new(listener.as_fd(), listen_ev)];
            for id in &ids {
                let c = &self.conns[id];
                let mut ev = PollFlags::empty();
                // A client that does not read its replies is not read either: level-triggered
                // input we would not consume must not be polled, or poll returns at once.
                if !c.closing && c.out.len() < OUT_HIGH_WATER {
                    ev |= PollFlags::POLLIN;
                }
                if !c.out.is_empty() {
                    ev |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(c.stream.as_fd(), ev));
            }
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
            drop(fds);

            if !revents[0].is_empty() {
                while let Ok(Some(sig)) = sigfd.read_signal() {
                    let armed = daemon.armed_clients();
                    if armed.is_empty() {
                        info!(signal = sig.ssi_signo, "shutting down");
                    } else {
                        error!(
                            signal = sig.ssi_signo, clients = ?armed,
                            "asked to stop, but these clients have expiries: not disarming; exiting once they clear"
                        );
                    }
                    quitting = true;
                }
            }
            // Connections already here first: their requests were there before any new one.
            for (id, ev) in ids.iter().zip(&revents[2..]) {
                if !ev.is_empty() {
                    self.service(*id, *ev, daemon);
                }
            }
            if !revents[1].is_empty() {
                self.accept_some(listener, daemon);
            }
        }
    }

    fn drop_conn(&mut self, id: ConnId, daemon: &mut Daemon) {
        self.conns.remove(&id);
        daemon.disconnect(id);
    }

    /// Closes unregistered connections silent too long and connections whose replies stall.
    fn expire(&mut self, daemon: &mut Daemon, now: Duration) {
        let expired: Vec<(ConnId, &'static str)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| {
                if c.out_stalled_since.is_some_and(|t| now >= t + WRITE_STALL) {
                    Some((*id, "its replies stayed unread"))
                } else if !c.registered && now >= c.last_read + UNREGISTERED_IDLE {
                    Some((*id, "unregistered and silent"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in expired {
            if let Some(left_out) = self.logs.timed_out.allow(now) {
                info!(conn = id, left_out, "connection closed: {why}");
            }
            self.drop_conn(id, daemon);
        }
    }

    /// Makes room for one unregistered connection: the one silent longest is told why and
    /// closed. False if there is none.
    fn evict_one(&mut self, daemon: &mut Daemon, why: &str) -> bool {
        let victim =
            self.conns.iter().filter(|(_, c)| !c.registered).min_by_key(|(_, c)| c.last_read).map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        if let Some(c) = self.conns.get_mut(&id) {
            let reply =
                protocol::encode(&Response::Error { kind: ErrorKind::TooManyConnections, message: why.to_string() });
            // Best effort: it is non-blocking, and the connection goes either way.
            let _ = c.stream.write(&reply);
        }
        let now = clock_monotonic();
        if let Some(left_out) = self.logs.evicted.allow(now) {
            warn!(conn = id, left_out, "closed an idle unregistered connection: {why}");
        }
        self.drop_conn(id, daemon);
        true
    }

    fn accept_some(&mut self, listener: &UnixListener, daemon: &mut Daemon) {
        for _ in 0..MAX_ACCEPTS_PER_ROUND {
            let stream = match listener.accept() {
                Ok((s, _)) => {
                    self.backoff.reset();
                    s
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO)) => continue,
                Err(e) => {
                    let now = clock_monotonic();
                    // Out of descriptors: an idle unregistered connection gives its one up.
                    if limits::is_exhaustion(&e) && self.evict_one(daemon, &format!("wdmd is out of resources ({e})")) {
                        continue;
                    }
                    let pause = self.backoff.next_pause();
                    self.accept_paused_until = Some(now + pause);
                    if let Some(left_out) = self.logs.accept.allow(now) {
                        error!(left_out, pause_ms = pause.as_millis() as u64, "accept: {e}; pausing new connections");
                    }
                    return;
                }
            };
            self.admit(stream, daemon);
        }
    }

    fn admit(&mut self, stream: UnixStream, daemon: &mut Daemon) {
        let now = clock_monotonic();
        let cred = match getsockopt(&stream, PeerCredentials) {
            Ok(c) => c,
            Err(e) => {
                if let Some(left_out) = self.logs.refused.allow(now) {
                    warn!(left_out, "SO_PEERCRED: {e}");
                }
                return;
            }
        };
        // Root only; the daemon's own uid too, so it can be tested unprivileged.
        let euid = nix::unistd::geteuid().as_raw();
        if cred.uid() != 0 && cred.uid() != euid {
            if let Some(left_out) = self.logs.refused.allow(now) {
                warn!(pid = cred.pid(), uid = cred.uid(), left_out, "refused a connection from a non-root peer");
            }
            let reply = protocol::encode(&Response::Error {
                kind: ErrorKind::PermissionDenied,
                message: format!("permission denied: wdmd serves root only, and uid {} is not root", cred.uid()),
            });
            let _ = stream.set_nonblocking(true);
            let _ = (&stream).write(&reply);
            return;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            warn!("set_nonblocking: {e}");
            return;
        }
        let unregistered = self.conns.values().filter(|c| !c.registered).count();
        let free = self.conn_budget.saturating_sub(self.conns.len() - unregistered).min(MAX_UNREGISTERED);
        let places = free.max(self.unregistered_cap);
        if unregistered >= places {
            let why = format!(
                "wdmd has {places} places for connections that are not registered clients, and all were taken; this \
                 one was idle longest"
            );
            self.evict_one(daemon, &why);
        }
        let id = daemon.connect(cred.pid());
        debug!(conn = id, pid = cred.pid(), "connected");
        self.conns.insert(
            id,
            Conn {
                stream,
                decoder: protocol::frame_decoder(),
                out: Vec::new(),
                closing: false,
                registered: false,
                last_read: now,
                out_stalled_since: None,
            },
        );
        // Its request is usually there already: answer it before anything can displace it.
        self.service(id, PollFlags::POLLIN, daemon);
    }

    /// Reads, answers and writes for one connection, dropping it when it is done.
    fn service(&mut self, id: ConnId, ev: PollFlags, daemon: &mut Daemon) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let alive = service(id, c, ev, daemon, &mut self.logs);
        if alive {
            c.registered = daemon.is_registered(id);
        } else {
            self.drop_conn(id, daemon);
        }
    }
}

/// Reads, answers and writes for one connection; false: drop it.
fn service(id: ConnId, c: &mut Conn, ev: PollFlags, daemon: &mut Daemon, logs: &mut Logs) -> bool {
    if ev.contains(PollFlags::POLLIN) && !c.closing && c.out.len() < OUT_HIGH_WATER {
        let mut buf = [0u8; 4096];
        // Bounded, so a flooding client cannot keep the loop from its next test.
        for _ in 0..16 {
            match c.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    c.decoder.push(&buf[..n]);
                    c.last_read = clock_monotonic();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(conn = id, "read: {e}");
                    return false;
                }
            }
            // Answer as frames complete, so a flood cannot grow the buffers.
            if !answer(id, c, daemon, logs) || !flush(c) || c.out.len() >= OUT_HIGH_WATER {
                break;
            }
        }
    } else if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) && c.out.is_empty() {
        return false;
    }
    flush(c)
}

/// Answers every complete frame; false once the connection must close.
fn answer(id: ConnId, c: &mut Conn, daemon: &mut Daemon, logs: &mut Logs) -> bool {
    while !c.closing && c.out.len() < OUT_HIGH_WATER {
        let reply = match c.decoder.next_frame() {
            Ok(None) => break,
            Ok(Some(body)) => match serde_json::from_slice::<Request>(&body) {
                Ok(req) => daemon.request(id, req, clock_monotonic()),
                Err(e) => {
                    if let Some(left_out) = logs.bad_request.allow(clock_monotonic()) {
                        warn!(conn = id, left_out, "malformed request: {e}");
                    }
                    Response::Error { kind: ErrorKind::BadRequest, message: format!("malformed request: {e}") }
                }
            },
            Err(e @ FrameError::TooLarge { .. }) => {
                if let Some(left_out) = logs.bad_request.allow(clock_monotonic()) {
                    warn!(conn = id, left_out, "{e}; closing the connection");
                }
                c.closing = true;
                Response::Error { kind: ErrorKind::FrameTooLarge, message: e.to_string() }
            }
            Err(e) => {
                warn!(conn = id, "{e}");
                c.closing = true;
                break;
            }
        };
        c.out.extend_from_slice(&protocol::encode(&reply));
    }
    !c.closing
}

/// Writes what it can; false: drop the connection.
fn flush(c: &mut Conn) -> bool {
    let before = c.out.len();
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(0) => return false,
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    if c.out.is_empty() {
        c.out_stalled_since = None;
    } else if c.out.len() < before || c.out_stalled_since.is_none() {
        // Progress (or the first wait) restarts the stall clock.
        c.out_stalled_since = Some(clock_monotonic());
    }
    !(c.closing && c.out.is_empty())
}

/// Waits until the daemon in `run_dir` accepts connections (tests, scripts).
pub fn wait_for_socket(run_dir: &Path, timeout: Duration) -> bool {
    let path = socket_path(run_dir);
    let end = clock_monotonic() + timeout;
    while clock_monotonic() < end {
        if UnixStream::connect(&path).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
