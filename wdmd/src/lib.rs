//! wdmd: the watchdog daemon of sanlvm, a replacement for sanlock's wdmd.
//!
//! Clients (lockd, one connection per lockspace) report after every lease renewal the time at
//! which the lease expires. wdmd pets the kernel watchdog while every expiry is more than one
//! test interval away and stops one test interval before the first one, so the host is reset
//! no later than `expiry + W`, the moment other hosts may take its leases
//! (`lease::timeouts` owns every timing).
//!
//! The protocol, its framing and the client lockd uses are in the `proto` crate
//! (`proto::wdmd`), shared with lockd.
//! - [`device`]: the kernel watchdog device, and a file-backed stand-in for host-tier tests.
//! - [`daemon`]: the decision (clients, expiries, when to pet), with no I/O of its own.
//! - [`state`]: the expiries saved in the run directory for a wdmd restart.
//! - [`server`]: socket, signals and the poll loop that drives [`daemon::Daemon`].

pub mod cli;
pub mod daemon;
pub mod device;
pub mod server;
pub mod state;
