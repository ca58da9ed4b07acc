//! A blocking client of lockd, for lvtool and `lockd status`. One connection is one command:
//! GL and VG locks it takes end when it is dropped.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::config::SOCKET_NAME;
use crate::lockd::protocol::{read_frame, write_frame, ErrorReply, FrameError, Request, Response};

#[derive(Debug)]
pub enum ClientError {
    /// lockd is not running (no socket, or nobody answers).
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The socket (or its directory) is root's only: the caller is not root.
    PermissionDenied {
        path: PathBuf,
    },
    Io(std::io::Error),
    Protocol(String),
    /// lockd answered with an error (also its refusal of a connection: not root, too many).
    Daemon(ErrorReply),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning { path, source } => {
                write!(f, "lockd is not running (cannot connect to {}: {source})", path.display())
            }
            ClientError::PermissionDenied { path } => {
                write!(f, "permission denied on {}: lockd serves root only; run this as root", path.display())
            }
            ClientError::Io(e) => write!(f, "lockd connection: {e}"),
            ClientError::Protocol(m) => write!(f, "lockd protocol: {m}"),
            ClientError::Daemon(e) => f.write_str(&e.message),
        }
    }
}

impl std::error::Error for ClientError {}

pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects to `run_dir/lockd.sock`.
    pub fn connect(run_dir: &Path) -> Result<Client, ClientError> {
        let path = run_dir.join(SOCKET_NAME);
        match UnixStream::connect(&path) {
            Ok(stream) => Ok(Client { stream }),
            // The run directory is 0700 and the socket 0600, both root's: EACCES is the
            // caller's uid, never a stopped daemon.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(ClientError::PermissionDenied { path }),
            Err(source) => Err(ClientError::NotRunning { path, source }),
        }
    }

    /// One round trip; an error reply is `Err(Daemon)`.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        if let Err(e) = write_frame(&mut self.stream, req) {
            // lockd may have refused the connection (not root, too many) and closed it: its
            // reply says why, which the broken pipe does not.
            return match read_frame::<Response>(&mut self.stream) {
                Ok(Response::Error(r)) => Err(ClientError::Daemon(r)),
                _ => Err(ClientError::Io(e)),
            };
        }
        match read_frame::<Response>(&mut self.stream) {
            Ok(Response::Error(e)) => Err(ClientError::Daemon(e)),
            Ok(r) => Ok(r),
            Err(FrameError::Io(e)) => Err(ClientError::Io(e)),
            Err(e) => Err(ClientError::Protocol(e.to_string())),
        }
    }
}
