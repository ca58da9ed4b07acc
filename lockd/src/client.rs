//! A blocking client of lockd, for lvtool and `lockd status`. One connection is one command:
//! GL and VG locks it takes end when it is dropped.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::config::SOCKET_NAME;
use crate::protocol::{read_frame, write_frame, ErrorReply, FrameError, Request, Response};

#[derive(Debug)]
pub enum ClientError {
    /// lockd is not running (no socket, or nobody answers).
    NotRunning {
        path: PathBuf,
        source: std::io::Error,
    },
    Io(std::io::Error),
    Protocol(String),
    /// lockd answered with an error.
    Daemon(ErrorReply),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning { path, source } => {
                write!(f, "lockd is not running (cannot connect to {}: {source})", path.display())
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
        let stream = UnixStream::connect(&path).map_err(|source| ClientError::NotRunning { path, source })?;
        Ok(Client { stream })
    }

    /// One round trip; an error reply is `Err(Daemon)`.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        write_frame(&mut self.stream, req).map_err(ClientError::Io)?;
        match read_frame::<Response>(&mut self.stream) {
            Ok(Response::Error(e)) => Err(ClientError::Daemon(e)),
            Ok(r) => Ok(r),
            Err(FrameError::Io(e)) => Err(ClientError::Io(e)),
            Err(e) => Err(ClientError::Protocol(e.to_string())),
        }
    }
}
