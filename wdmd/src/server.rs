//! The daemon's process: run directory, lock file, the root-only socket and one poll loop that
//! serves clients and calls [`Daemon::tick`] on time. One thread, no blocking I/O on client
//! sockets, so a misbehaving client can delay a test by a poll round at most.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
use crate::frame::FrameDecoder;
use crate::protocol::{self, ErrorKind, FrameError, Request, Response};
use crate::state::StateFile;

/// More connections than this are refused (lockd uses one per lockspace, plus status calls).
const MAX_CONNS: usize = 1024;
/// Replies a client leaves unread beyond this get it disconnected.
const MAX_PENDING_OUT: usize = 1024 * 1024;

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
}

/// The socket path inside `run_dir`.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join(protocol::SOCKET_NAME)
}

/// Holds `run_dir/wdmd.pid` locked: one wdmd per run directory.
fn lock_pid_file(run_dir: &Path) -> io::Result<Flock<File>> {
    let path = run_dir.join("wdmd.pid");
    let f = OpenOptions::new().create(true).truncate(false).write(true).mode(0o644).open(&path)?;
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

    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&cfg.run_dir)?;
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
    info!(socket = %sock.display(), "listening");
    ready(&daemon);
    let res = serve(&mut daemon, &listener, &sigfd);
    if res.is_err() {
        // Disarms only if no client has an expiry; otherwise the device stays armed, as it must.
        let _ = daemon.shutdown();
    }
    drop(listener);
    let _ = std::fs::remove_file(&sock);
    res
}

fn serve(daemon: &mut Daemon, listener: &UnixListener, sigfd: &SignalFd) -> io::Result<()> {
    let mut conns: HashMap<ConnId, Conn> = HashMap::new();
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
        let wait = daemon.next_tick().saturating_sub(clock_monotonic());
        // Round up: waking early only costs a loop round.
        let ms = wait.as_micros().div_ceil(1000).min(60_000) as u16;

        let ids: Vec<ConnId> = conns.keys().copied().collect();
        let mut fds =
            vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN), PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        for id in &ids {
            let c = &conns[id];
            let mut ev = PollFlags::POLLIN;
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
        if !revents[1].is_empty() {
            accept_all(listener, daemon, &mut conns);
        }
        for (id, ev) in ids.iter().zip(&revents[2..]) {
            if ev.is_empty() {
                continue;
            }
            let alive = match conns.get_mut(id) {
                Some(c) => service(*id, c, *ev, daemon),
                None => continue,
            };
            if !alive {
                conns.remove(id);
                daemon.disconnect(*id);
            }
        }
    }
}

fn accept_all(listener: &UnixListener, daemon: &mut Daemon, conns: &mut HashMap<ConnId, Conn>) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                warn!("accept: {e}");
                return;
            }
        };
        let cred = match getsockopt(&stream, PeerCredentials) {
            Ok(c) => c,
            Err(e) => {
                warn!("SO_PEERCRED: {e}");
                continue;
            }
        };
        // Root only; the daemon's own uid too, so it can be tested unprivileged.
        let euid = nix::unistd::geteuid().as_raw();
        if cred.uid() != 0 && cred.uid() != euid {
            warn!(pid = cred.pid(), uid = cred.uid(), "refused a connection from a non-root peer");
            let reply = protocol::encode(&Response::Error {
                kind: ErrorKind::PermissionDenied,
                message: format!("uid {} may not use wdmd", cred.uid()),
            });
            let _ = stream.set_nonblocking(true);
            let _ = (&stream).write(&reply);
            continue;
        }
        if conns.len() >= MAX_CONNS {
            warn!(pid = cred.pid(), "too many connections, refused");
            continue;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            warn!("set_nonblocking: {e}");
            continue;
        }
        let id = daemon.connect(cred.pid());
        debug!(conn = id, pid = cred.pid(), "connected");
        conns.insert(id, Conn { stream, decoder: protocol::frame_decoder(), out: Vec::new(), closing: false });
    }
}

/// Reads, answers and writes for one connection; false: drop it.
fn service(id: ConnId, c: &mut Conn, ev: PollFlags, daemon: &mut Daemon) -> bool {
    if ev.contains(PollFlags::POLLIN) && !c.closing {
        let mut buf = [0u8; 4096];
        // Bounded, so a flooding client cannot keep the loop from its next test.
        for _ in 0..16 {
            match c.stream.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => c.decoder.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    debug!(conn = id, "read: {e}");
                    return false;
                }
            }
            // Answer as frames complete, so a flood cannot grow the buffers.
            if !answer(id, c, daemon) || !flush(c) {
                break;
            }
        }
    } else if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) && c.out.is_empty() {
        return false;
    }
    flush(c)
}

/// Answers every complete frame; false once the connection must close.
fn answer(id: ConnId, c: &mut Conn, daemon: &mut Daemon) -> bool {
    while !c.closing {
        let reply = match c.decoder.next_frame() {
            Ok(None) => break,
            Ok(Some(body)) => match serde_json::from_slice::<Request>(&body) {
                Ok(req) => daemon.request(id, req, clock_monotonic()),
                Err(e) => {
                    warn!(conn = id, "malformed request: {e}");
                    Response::Error { kind: ErrorKind::BadRequest, message: format!("malformed request: {e}") }
                }
            },
            Err(e @ FrameError::TooLarge { .. }) => {
                warn!(conn = id, "{e}; closing the connection");
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
    if c.out.len() > MAX_PENDING_OUT {
        warn!("client does not read its replies; closing");
        return false;
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
