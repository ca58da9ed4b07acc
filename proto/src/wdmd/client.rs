//! A blocking client of wdmd, for lockd: one [`Client`] per lockspace.
//!
//! ```no_run
//! # use std::time::Duration;
//! # fn renewal() -> Duration { Duration::ZERO }
//! let t = lease::timeouts::Timeouts::default();
//! let mut wd = proto::wdmd::client::Client::connect(std::path::Path::new(proto::wdmd::protocol::DEFAULT_RUN_DIR))?;
//! wd.register("lockd_lvm_vg1:1", t.watchdog_fire)?;
//! // After every successful renewal started at `r` (CLOCK_MONOTONIC):
//! let r = renewal();
//! wd.set_expiry(r, t.wdmd_expiry(r))?;
//! // Leaving the lockspace cleanly:
//! wd.clear()?;
//! wd.unregister()?;
//! # Ok::<(), proto::wdmd::client::ClientError>(())
//! ```

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::wdmd::protocol::{self, ErrorKind, FrameError, Request, Response, Status, Times};

/// Default bound on one request/response round trip; wdmd answers in microseconds unless it
/// is stuck, and lockd must not be stuck with it.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum ClientError {
    /// wdmd is not running (or not at this run directory), or refused us.
    Connect { path: PathBuf, source: std::io::Error },
    /// The connection broke or timed out: whatever was being set may or may not have applied.
    Io(std::io::Error),
    /// An answer that does not fit the request.
    Protocol(String),
    /// wdmd refused the request.
    Daemon { kind: ErrorKind, message: String },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect { path, source } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                write!(f, "permission denied on {}: wdmd serves root only", path.display())
            }
            ClientError::Connect { path, source } => {
                write!(f, "cannot connect to wdmd at {}: {source}", path.display())
            }
            ClientError::Io(e) => write!(f, "wdmd connection: {e}"),
            ClientError::Protocol(m) => write!(f, "wdmd protocol: {m}"),
            ClientError::Daemon { kind, message } => write!(f, "wdmd refused ({kind:?}): {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => ClientError::Io(e),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

pub struct Client {
    stream: UnixStream,
}

/// A time as the protocol carries it; a nonzero duration never becomes the "clear" value 0.
fn ms_nonzero(d: Duration) -> u64 {
    protocol::to_ms(d).max(1)
}

impl Client {
    /// Connects to `run_dir/wdmd.sock`.
    pub fn connect(run_dir: &Path) -> Result<Client, ClientError> {
        let path = run_dir.join(protocol::SOCKET_NAME);
        let stream = UnixStream::connect(&path).map_err(|source| ClientError::Connect { path, source })?;
        let c = Client { stream };
        c.set_io_timeout(DEFAULT_IO_TIMEOUT).map_err(ClientError::Io)?;
        Ok(c)
    }

    pub fn set_io_timeout(&self, t: Duration) -> std::io::Result<()> {
        self.stream.set_read_timeout(Some(t))?;
        self.stream.set_write_timeout(Some(t))
    }

    /// One raw round trip.
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        if let Err(e) = protocol::write_frame(&mut self.stream, req) {
            // wdmd may have refused the connection (not root, no room) and closed it: its
            // reply says why, which the broken pipe does not.
            return match protocol::read_frame(&mut self.stream) {
                Ok(Response::Error { kind, message }) => Err(ClientError::Daemon { kind, message }),
                _ => Err(ClientError::Io(e)),
            };
        }
        Ok(protocol::read_frame(&mut self.stream)?)
    }

    fn expect_ok(&mut self, req: &Request) -> Result<(), ClientError> {
        match self.request(req)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Registers a new client `name`; `fire_timeout` is the W the caller's timings assume
    /// (refused with `FireTimeoutMismatch` if wdmd uses another). Fails with `NameOrphaned` if
    /// an earlier connection of that name left an expiry behind (see
    /// [`Client::register_takeover`]).
    pub fn register(&mut self, name: &str, fire_timeout: u32) -> Result<(), ClientError> {
        let req = Request::Register { name: name.into(), takeover: false, fire_timeout_secs: fire_timeout };
        match self.request(&req)? {
            Response::Registered { adopted: None } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Registers `name`, adopting the entry an earlier connection of that name left with an
    /// expiry, whose times are returned. Only for an owner that is resuming that very lease.
    pub fn register_takeover(&mut self, name: &str, fire_timeout: u32) -> Result<Option<Times>, ClientError> {
        let req = Request::Register { name: name.into(), takeover: true, fire_timeout_secs: fire_timeout };
        match self.request(&req)? {
            Response::Registered { adopted } => Ok(adopted),
            other => Err(unexpected(other)),
        }
    }

    /// Reports a renewal: wdmd stops petting one test interval before `expiry` unless told a
    /// later one. Both are CLOCK_MONOTONIC times of this host. Only an `Ok` means wdmd has it.
    pub fn set_expiry(&mut self, renewal: Duration, expiry: Duration) -> Result<(), ClientError> {
        if expiry.is_zero() {
            return Err(ClientError::Protocol("an expiry of 0 would clear it; use clear()".into()));
        }
        self.expect_ok(&Request::SetExpiry { renewal_ms: ms_nonzero(renewal), expiry_ms: ms_nonzero(expiry) })
    }

    /// This client no longer needs the host reset (lease released, or its users stopped).
    pub fn clear(&mut self) -> Result<(), ClientError> {
        self.expect_ok(&Request::SetExpiry { renewal_ms: 0, expiry_ms: 0 })
    }

    /// Drops the registration; the expiry must be cleared first.
    pub fn unregister(&mut self) -> Result<(), ClientError> {
        self.expect_ok(&Request::Unregister)
    }

    pub fn status(&mut self) -> Result<Status, ClientError> {
        match self.request(&Request::Status)? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: Response) -> ClientError {
    match r {
        Response::Error { kind, message } => ClientError::Daemon { kind, message },
        other => ClientError::Protocol(format!("unexpected reply {other:?}")),
    }
}
