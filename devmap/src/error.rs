//! What can go wrong talking to device-mapper. lvtool's commands turn these into their own
//! error type (`From` below), keeping I/O and naming errors as such.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No working device-mapper driver: `/dev/mapper/control` missing or not answering.
    #[error("device-mapper is not available (is dm_mod loaded?): {0}")]
    Unavailable(String),
    /// An ioctl failed; `what` says which, on which device.
    #[error("{what}: {source}")]
    Kernel { what: String, source: io::Error },
    /// An ioctl failed in a way the kernel did not give an errno for.
    #[error("{what}: {reason}")]
    Other { what: String, reason: String },
    /// The device is open (mounted, used by a process or stacked under another device).
    #[error("device {name} is in use (open count {open_count}), not removed")]
    Busy { name: String, open_count: i32 },
    #[error("device-mapper device {0} does not exist")]
    NoDevice(String),
    #[error("device-mapper device {0} already exists")]
    Exists(String),
    /// The name is free but another device carries the UUID.
    #[error("cannot create device-mapper device {name}: another device has its UUID {uuid}")]
    UuidTaken { name: String, uuid: String },
    /// A table the kernel would refuse, or one with targets this crate does not handle.
    #[error("{0}")]
    Table(String),
    /// A file operation under /dev (a link, a directory, a stat).
    #[error("{path}: {op} failed: {source}")]
    Io { path: String, op: &'static str, source: io::Error },
    /// A path that is not a block device, or a device node devtmpfs did not make.
    #[error("{0}")]
    Device(String),
    #[error("invalid name \"{name}\": {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid UUID \"{text}\": {reason}")]
    InvalidUuid { text: String, reason: &'static str },
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for lvmmeta::Error {
    fn from(e: Error) -> lvmmeta::Error {
        match e {
            Error::Io { path, op, source } => lvmmeta::Error::Io { device: path, op, source },
            Error::InvalidName { name, reason } => lvmmeta::Error::InvalidName { name, reason },
            Error::InvalidUuid { text, reason } => lvmmeta::Error::InvalidUuid { text, reason },
            other => lvmmeta::Error::Activation(other.to_string()),
        }
    }
}
