//! The client ↔ wdmd protocol, defined once for the daemon and [`client`](super::client).
//!
//! Framing: [`crate::frame`] (a length prefix, then JSON), with [`MAX_FRAME`].
//!
//! Times are CLOCK_MONOTONIC of this host in milliseconds (the clock lockd's renewals use), so
//! an expiry compares directly with wdmd's own clock. An expiry of 0 means "no expiry".

use std::io::Read;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest frame body either side accepts. Real messages are far below it.
pub const MAX_FRAME: usize = 64 * 1024;
/// Longest client name, in bytes (sanlock's WDMD_NAME_SIZE).
pub const MAX_NAME: usize = 128;
/// Socket file name inside the run directory.
pub const SOCKET_NAME: &str = "wdmd.sock";
/// The default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/wdmd";
/// Most registered clients (lockd registers one per started lockspace; a restarted lockd's
/// orphaned entries count until they are taken over or cleared).
pub const MAX_CLIENTS: usize = 512;

/// How far ahead of wdmd's clock an expiry may be: 8N for the largest N a delta lease can
/// carry (`MAX_IO_TIMEOUT_SECS`, 255 s: 34 min). A client reports `renewal + 8N` with the
/// renewal in the past, so an honest expiry is never further; a larger one (u64::MAX) would
/// only switch fencing off for that client. The fire timeout plays no part in the expiry.
pub fn max_expiry_ahead() -> Duration {
    let t = lease::timeouts::Timeouts::new(lease::timeouts::MAX_IO_TIMEOUT_SECS, 1).expect("the largest N is valid");
    t.renewal_fail()
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Makes this connection the client `name` (lockd: `lockd_<lockspace>:<host_id>`).
    /// `takeover`: adopt the entry a previous connection of the same name left behind with an
    /// expiry set (a restarted lockd resuming its lease, or a restarted wdmd); without it such an
    /// entry is an error, because only a client that can keep that lease alive may own it.
    /// `fire_timeout_secs`: the W the client's timings assume; a different W in wdmd breaks
    /// the safety chain, so the registration is refused.
    Register { name: String, takeover: bool, fire_timeout_secs: u32 },
    /// After a renewal: the renewal time and the expiry (ms). `expiry_ms == 0` clears the
    /// expiry: the client no longer needs the host reset.
    SetExpiry { renewal_ms: u64, expiry_ms: u64 },
    /// The daemon's state; allowed without registering.
    Status,
    /// Drops this connection's client. Refused while its expiry is set: clear it first.
    Unregister,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Registered { adopted: Option<Times> },
    Ok,
    Status(Status),
    Error { kind: ErrorKind, message: String },
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not a valid request (bad JSON, unknown op, bad name). The connection stays usable.
    BadRequest,
    /// The frame was longer than [`MAX_FRAME`]; the daemon closes the connection.
    FrameTooLarge,
    /// The peer is not root (SO_PEERCRED); the daemon closes the connection.
    PermissionDenied,
    NotRegistered,
    AlreadyRegistered,
    /// Another live connection is this client.
    NameInUse,
    /// A disconnected client of this name still has an expiry; register with `takeover`.
    NameOrphaned,
    /// Unregister with the expiry still set.
    ExpirySet,
    /// The client assumes another watchdog fire timeout than wdmd uses.
    FireTimeoutMismatch,
    /// The change applies, but could not be recorded in the run directory, so a wdmd restart
    /// would forget it.
    StateNotSaved,
    /// An expiry (or renewal time) further ahead of wdmd's clock than any real lease can be
    /// (see [`max_expiry_ahead`]): it would mean "never fence".
    ExpiryOutOfRange,
    /// wdmd already has [`MAX_CLIENTS`] clients.
    TooManyClients,
    /// This connection was closed to make room: it was idle and not registered, and the
    /// daemon's share of such connections was full. Reconnect and send the request at once.
    TooManyConnections,
}

/// A client's last reported times (ms, CLOCK_MONOTONIC).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Times {
    pub renewal_ms: u64,
    pub expiry_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The daemon's clock when it answered.
    pub now_ms: u64,
    /// The device (path, or the test file with a warning).
    pub device: String,
    pub fire_timeout_secs: u32,
    /// The standard test interval (also how far before an expiry petting stops).
    pub test_interval_ms: u64,
    /// The interval in use now: the standard one, or the short one after a failed test.
    pub current_interval_ms: u64,
    /// The device is open and being petted; false: closed armed, it will fire.
    pub petting: bool,
    pub last_keepalive_ms: Option<u64>,
    pub last_close_armed_ms: Option<u64>,
    pub clients: Vec<ClientStatus>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ClientStatus {
    pub name: String,
    /// Pid of the connection that registered it (0: restored after a wdmd restart).
    pub pid: i32,
    /// False for an entry left behind by a closed connection: it can only expire.
    pub connected: bool,
    pub times: Times,
}

/// Milliseconds of a monotonic instant, rounded down. Rounding an expiry down makes it
/// earlier, which only makes wdmd stop petting sooner.
pub fn to_ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

pub fn from_ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Checks a client name: 1..=MAX_NAME bytes, printable, no whitespace.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("client name must be 1..={MAX_NAME} bytes, got {}", name.len()));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("client name {name:?} contains whitespace or control characters"));
    }
    Ok(())
}

pub use crate::frame::{encode, write_frame, FrameError};

/// Reads one message (blocking); see [`crate::frame`].
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, FrameError> {
    crate::frame::read_frame(r, MAX_FRAME)
}

/// A stream decoder with this protocol's limit.
pub fn frame_decoder() -> crate::frame::FrameDecoder {
    crate::frame::FrameDecoder::new(MAX_FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_decoder() {
        let reqs = [
            Request::Register { name: "lockd_lvm_vg1:3".into(), takeover: false, fire_timeout_secs: 60 },
            Request::SetExpiry { renewal_ms: 1000, expiry_ms: 81_000 },
            Request::Status,
            Request::Unregister,
        ];
        let mut dec = frame_decoder();
        let bytes: Vec<u8> = reqs.iter().flat_map(encode).collect();
        // Byte by byte: frames may arrive split anywhere.
        let mut got = Vec::new();
        for b in bytes {
            dec.push(&[b]);
            while let Some(body) = dec.next_frame().unwrap() {
                got.push(serde_json::from_slice::<Request>(&body).unwrap());
            }
        }
        assert_eq!(got, reqs);
    }

    #[test]
    fn oversized_frame_is_rejected_from_its_prefix() {
        let mut dec = frame_decoder();
        dec.push(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(matches!(dec.next_frame(), Err(FrameError::TooLarge { .. })));
        let mut r = &((MAX_FRAME as u32) + 1).to_be_bytes()[..];
        assert!(matches!(read_frame::<Request>(&mut r), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn wire_format_is_stable() {
        let f = encode(&Request::SetExpiry { renewal_ms: 5, expiry_ms: 0 });
        assert_eq!(&f[4..], br#"{"op":"set_expiry","renewal_ms":5,"expiry_ms":0}"#);
        assert_eq!(u32::from_be_bytes(f[..4].try_into().unwrap()) as usize, f.len() - 4);
        let e = Response::Error { kind: ErrorKind::NameInUse, message: "x".into() };
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"reply":"error","kind":"name_in_use","message":"x"}"#);
    }

    #[test]
    fn names() {
        assert!(check_name("lockd_lvm_vg1:1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(MAX_NAME + 1)).is_err());
    }
}
