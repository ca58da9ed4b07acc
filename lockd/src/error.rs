//! lockd's errors: one variant for each reaction a caller has, and each mapped onto the wire
//! [`ErrorCode`] the client sees.

use lease::diskio::IoError;
use lease::LeaseError;

use proto::lockd::protocol::{ErrorCode, ErrorReply, Holder};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Another command here, or hosts not named, hold it: retrying later may succeed.
    #[error("{0}")]
    Contention(String),
    /// Held by the named hosts (host id, generation, state).
    #[error("{message}")]
    HeldBy { message: String, holders: Vec<Holder> },
    /// A record failed validation; never treated as free. `offset` in the lease LV, if known.
    #[error("{reason}")]
    Corrupt { offset: Option<u64>, reason: String },
    /// Disk or device I/O failed.
    #[error("{0}")]
    Io(String),
    /// An I/O timed out: a write may still land ("maybe written").
    #[error("{0}")]
    Timeout(String),
    /// The request itself is invalid (bad field, offset, name, geometry).
    #[error("{0}")]
    InvalidRequest(String),
    /// The VG's lockspace is not started here.
    #[error("{0}")]
    NotStarted(String),
    /// The lockspace is joining or stopping; try again.
    #[error("{0}")]
    Busy(String),
    /// The lockspace has failed on this host (renewals stopped): no new locks.
    #[error("{0}")]
    Failed(String),
    /// Valid, but not in this state (LVs active, VG lock not held ex, slot taken, ...).
    #[error("{0}")]
    Refused(String),
    /// No free LV lease slot.
    #[error("{0}")]
    NoSpace(String),
    /// No started VG has the global lock enabled.
    #[error("{0}")]
    NoGlobalLock(String),
    /// More than one started VG has the global lock enabled.
    #[error("{0}")]
    DuplicateGlobalLock(String),
    /// A bug or an unexpected local failure (watchdog registration, a panicking request).
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn contention(m: impl Into<String>) -> Error {
        Error::Contention(m.into())
    }
    pub fn corrupt(offset: Option<u64>, m: impl Into<String>) -> Error {
        Error::Corrupt { offset, reason: m.into() }
    }
    pub fn io(m: impl Into<String>) -> Error {
        Error::Io(m.into())
    }
    pub fn invalid(m: impl Into<String>) -> Error {
        Error::InvalidRequest(m.into())
    }
    pub fn not_started(m: impl Into<String>) -> Error {
        Error::NotStarted(m.into())
    }
    pub fn busy(m: impl Into<String>) -> Error {
        Error::Busy(m.into())
    }
    pub fn failed(m: impl Into<String>) -> Error {
        Error::Failed(m.into())
    }
    pub fn refused(m: impl Into<String>) -> Error {
        Error::Refused(m.into())
    }
    pub fn no_space(m: impl Into<String>) -> Error {
        Error::NoSpace(m.into())
    }
    pub fn no_global_lock(m: impl Into<String>) -> Error {
        Error::NoGlobalLock(m.into())
    }
    pub fn duplicate_global_lock(m: impl Into<String>) -> Error {
        Error::DuplicateGlobalLock(m.into())
    }
    pub fn internal(m: impl Into<String>) -> Error {
        Error::Internal(m.into())
    }

    /// A lease operation's error, `what` saying what was tried (lease in the lease LV at
    /// `offset`, when there is one).
    pub fn lease(what: &str, offset: Option<u64>, e: &LeaseError) -> Error {
        let m = format!("{what}: {e}");
        match e {
            LeaseError::Record(_) | LeaseError::RenewOwner | LeaseError::RenewDiff => Error::corrupt(offset, m),
            LeaseError::Read(IoError::TimedOut) | LeaseError::Write(IoError::TimedOut) => Error::Timeout(m),
            LeaseError::Read(_) | LeaseError::Write(_) => Error::Io(m),
            LeaseError::Expired => Error::Failed(m),
            LeaseError::Invalid(_) => Error::Refused(m),
            _ => Error::Contention(m),
        }
    }

    /// The same kind of error, its message after `prefix`.
    pub fn context(self, prefix: &str) -> Error {
        let p = |m: String| format!("{prefix}{m}");
        match self {
            Error::Contention(m) => Error::Contention(p(m)),
            Error::HeldBy { message, holders } => Error::HeldBy { message: p(message), holders },
            Error::Corrupt { offset, reason } => Error::Corrupt { offset, reason: p(reason) },
            Error::Io(m) => Error::Io(p(m)),
            Error::Timeout(m) => Error::Timeout(p(m)),
            Error::InvalidRequest(m) => Error::InvalidRequest(p(m)),
            Error::NotStarted(m) => Error::NotStarted(p(m)),
            Error::Busy(m) => Error::Busy(p(m)),
            Error::Failed(m) => Error::Failed(p(m)),
            Error::Refused(m) => Error::Refused(p(m)),
            Error::NoSpace(m) => Error::NoSpace(p(m)),
            Error::NoGlobalLock(m) => Error::NoGlobalLock(p(m)),
            Error::DuplicateGlobalLock(m) => Error::DuplicateGlobalLock(p(m)),
            Error::Internal(m) => Error::Internal(p(m)),
        }
    }

    /// Whether another try may succeed without anything changing here.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Contention(_) | Error::HeldBy { .. })
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Contention(_) | Error::HeldBy { .. } => ErrorCode::Conflict,
            Error::Corrupt { .. } => ErrorCode::Corrupt,
            Error::Io(_) => ErrorCode::Io,
            Error::Timeout(_) => ErrorCode::Timeout,
            Error::InvalidRequest(_) => ErrorCode::BadRequest,
            Error::NotStarted(_) => ErrorCode::NoLockspace,
            Error::Busy(_) => ErrorCode::Busy,
            Error::Failed(_) => ErrorCode::LockspaceFailed,
            Error::Refused(_) => ErrorCode::Refused,
            Error::NoSpace(_) => ErrorCode::NoSpace,
            Error::NoGlobalLock(_) => ErrorCode::NoGlobalLock,
            Error::DuplicateGlobalLock(_) => ErrorCode::DuplicateGlobalLock,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<Error> for ErrorReply {
    fn from(e: Error) -> ErrorReply {
        let code = e.code();
        match e {
            Error::HeldBy { message, holders } => ErrorReply { code, message, holders },
            e => ErrorReply { code, message: e.to_string(), holders: vec![] },
        }
    }
}

impl From<lease::ondisk::RecordError> for Error {
    fn from(e: lease::ondisk::RecordError) -> Self {
        Error::corrupt(None, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_keeps_its_wire_code() {
        let timed_out = Error::lease("write", Some(4096), &LeaseError::Write(IoError::TimedOut));
        assert_eq!(timed_out.code(), ErrorCode::Timeout);
        let corrupt = Error::lease("read", Some(4096), &LeaseError::RenewDiff);
        assert!(matches!(corrupt, Error::Corrupt { offset: Some(4096), .. }));
        assert_eq!(corrupt.code(), ErrorCode::Corrupt);
        let held = Error::lease("acquire", None, &LeaseError::IdLive { owner_id: 2, owner_generation: 3 });
        assert!(held.is_conflict());
        assert_eq!(ErrorReply::from(Error::not_started("x")).code, ErrorCode::NoLockspace);
        assert_eq!(Error::lease("renew", None, &LeaseError::Expired).code(), ErrorCode::LockspaceFailed);
    }
}
