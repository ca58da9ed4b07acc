//! sanlock-compatible shared-disk leases.
//!
//! - [`ondisk`]: the records, byte for byte as sanlock 3.8.5 writes them.
//! - [`diskio`]: aligned O_DIRECT I/O with a timeout per I/O (io_uring or threads).
//! - [`timeouts`]: every timing, derived from N (io_timeout) and W (watchdog fire timeout).
//! - [`delta_lease`]: host_id ownership in a lockspace; [`host_status`]: liveness of peers.
//! - [`paxos_lease`]: exclusive and shared resource leases (Disk Paxos).
//! - [`sim`]: a deterministic simulator that runs this same code on a simulated shared disk.
//!
//! The protocol code is `async` over the [`diskio::Disk`] and [`clock::Clock`] traits and has
//! no threads of its own: real backends complete inside `poll` (driven by
//! [`diskio::block_on`]), the simulator interleaves hosts deterministically.
#![allow(async_fn_in_trait)]

pub mod clock;
pub mod delta_lease;
pub mod diskio;
pub mod error;
pub mod host_status;
pub mod ondisk;
pub mod paxos_lease;
pub mod sim;
pub mod testkit;
pub mod timeouts;

pub use error::LeaseError;
