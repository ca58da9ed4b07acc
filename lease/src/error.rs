//! Errors of lease operations. Each failure a caller must react to differently has its own
//! variant (sanlock's SANLK_* codes are named alongside where one exists).

use std::fmt;

use crate::diskio::IoError;
use crate::ondisk::RecordError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseError {
    /// A record failed validation: corrupt or foreign, never treated as free.
    Record(RecordError),
    /// A read failed or timed out.
    Read(IoError),
    /// A write failed; on `IoError::TimedOut` it may still land.
    Write(IoError),
    /// The host_id's delta lease changed under us while acquiring (SANLK_HOSTID_BUSY).
    HostIdBusy { owner_name: String, owner_generation: u64 },
    /// Our delta lease is past its 8N expiry: the lockspace has failed on this host.
    Expired,
    /// Our delta lease no longer shows us as owner (SANLK_RENEW_OWNER).
    RenewOwner,
    /// Our delta lease differs from what we last wrote (SANLK_RENEW_DIFF).
    RenewDiff,
    /// The resource is held by a host that is alive (SANLK_ACQUIRE_IDLIVE).
    IdLive { owner_id: u64, owner_generation: u64 },
    /// The resource is held and we were asked not to wait (SANLK_ACQUIRE_OWNED_RETRY).
    OwnedRetry { owner_id: u64, owner_generation: u64 },
    /// Another host won the ballot for this lver (SANLK_ACQUIRE_OWNED).
    Owned { owner_id: u64, owner_generation: u64 },
    /// A ballot committed someone else's value (SANLK_ACQUIRE_OTHER).
    Other { owner_id: u64 },
    /// Live shared holders prevent an exclusive hold (-EAGAIN).
    SharedHeld { holders: Vec<u64> },
    /// The leader stayed in a short hold through all retries (SANLK_ACQUIRE_SHRETRY).
    ShortHoldRetry,
    /// Our release found a different lver (SANLK_RELEASE_LVER).
    ReleaseLver { expected: u64, found: u64 },
    /// Our release found a different owner (SANLK_RELEASE_OWNER).
    ReleaseOwner { owner_id: u64 },
    /// The request record lver is not newer than the holder's (SANLK_REQUEST_OLD / _LVER).
    RequestOld { lver: u64 },
    /// Bad arguments (host_id out of range, name too long, ...). Nothing was written.
    Invalid(String),
}

impl LeaseError {
    /// True when a write may have reached the disk although it reported failure.
    pub fn maybe_written(&self) -> bool {
        matches!(self, LeaseError::Write(IoError::TimedOut))
    }
}

impl From<RecordError> for LeaseError {
    fn from(e: RecordError) -> Self {
        LeaseError::Record(e)
    }
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseError::Record(e) => write!(f, "invalid lease record: {e}"),
            LeaseError::Read(e) => write!(f, "read failed: {e}"),
            LeaseError::Write(IoError::TimedOut) => write!(f, "write timed out (it may still land)"),
            LeaseError::Write(e) => write!(f, "write failed: {e}"),
            LeaseError::HostIdBusy { owner_name, owner_generation } => {
                write!(
                    f,
                    "host_id busy: record changed while acquiring (now {owner_name:?} generation {owner_generation})"
                )
            }
            LeaseError::Expired => write!(f, "delta lease expired: no successful renewal for 8 io_timeouts"),
            LeaseError::RenewOwner => write!(f, "delta lease is no longer ours"),
            LeaseError::RenewDiff => write!(f, "delta lease changed since our last renewal"),
            LeaseError::IdLive { owner_id, owner_generation } => {
                write!(f, "held by live host {owner_id} (generation {owner_generation})")
            }
            LeaseError::OwnedRetry { owner_id, owner_generation } => {
                write!(f, "held by host {owner_id} (generation {owner_generation}), not waiting")
            }
            LeaseError::Owned { owner_id, owner_generation } => {
                write!(f, "acquired by host {owner_id} (generation {owner_generation}) first")
            }
            LeaseError::Other { owner_id } => write!(f, "ballot committed host {owner_id} instead of us"),
            LeaseError::SharedHeld { holders } => write!(f, "held shared by live hosts {holders:?}"),
            LeaseError::ShortHoldRetry => write!(f, "leader held briefly by shared acquirers through every retry"),
            LeaseError::ReleaseLver { expected, found } => {
                write!(f, "release: lease version is {found}, we hold {expected}")
            }
            LeaseError::ReleaseOwner { owner_id } => write!(f, "release: lease is owned by host {owner_id}, not us"),
            LeaseError::RequestOld { lver } => write!(f, "request for lver {lver} is not newer than the lease"),
            LeaseError::Invalid(s) => write!(f, "{s}"),
        }
    }
}

impl std::error::Error for LeaseError {}
