//! The socket: `run_dir/lockd.sock`, mode 0600, root (or lockd's own user) only, checked with
//! SO_PEERCRED. One thread per connection: a request may block for seconds (a lock start
//! takes 2N), and other commands must not wait behind it. A malformed request gets an error
//! reply and the connection goes on; an oversized one gets an error and the connection closes.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use tracing::{debug, error, warn};

use crate::config::SOCKET_NAME;
use crate::daemon::Daemon;
use crate::protocol::{read_body, write_frame, ErrorCode, FrameError, Request, Response};

/// Binds the socket, refusing when another lockd answers on it.
pub fn bind(run_dir: &Path) -> io::Result<UnixListener> {
    std::fs::create_dir_all(run_dir)?;
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

/// Accepts connections forever.
pub fn serve(daemon: Arc<Daemon>, listener: UnixListener) {
    for s in listener.incoming() {
        match s {
            Ok(stream) => {
                let d = daemon.clone();
                let spawned = std::thread::Builder::new().name("conn".into()).spawn(move || connection(d, stream));
                if let Err(e) = spawned {
                    error!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => warn!("accept: {e}"),
        }
    }
}

fn connection(daemon: Arc<Daemon>, mut stream: UnixStream) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    match peer_uid(&stream) {
        Ok(uid) if uid == 0 || uid == me => {}
        Ok(uid) => {
            warn!("refused a connection from uid {uid}");
            let _ = write_frame(&mut stream, &Response::error(ErrorCode::PermissionDenied, "lockd serves root only"));
            return;
        }
        Err(e) => {
            warn!("SO_PEERCRED: {e}");
            return;
        }
    }
    let conn = daemon.new_conn();
    loop {
        let body = match read_body(&mut stream) {
            Ok(b) => b,
            Err(FrameError::TooLarge { len, max }) => {
                warn!("connection {conn}: frame of {len} bytes refused");
                let msg = format!("request of {len} bytes exceeds the limit of {max}");
                let _ = write_frame(&mut stream, &Response::error(ErrorCode::TooLarge, msg));
                break;
            }
            Err(_) => break,
        };
        let resp = match serde_json::from_slice::<Request>(&body) {
            Ok(req) => {
                debug!("connection {conn}: {req:?}");
                let d = daemon.clone();
                // A bug in one request must not take the daemon down.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.handle(conn, req))) {
                    Ok(r) => r,
                    Err(_) => Response::error(ErrorCode::Internal, "internal error (see lockd's log)"),
                }
            }
            Err(e) => {
                warn!("connection {conn}: malformed request: {e}");
                Response::error(ErrorCode::BadRequest, format!("malformed request: {e}"))
            }
        };
        if write_frame(&mut stream, &resp).is_err() {
            break;
        }
    }
    daemon.conn_closed(conn);
}
