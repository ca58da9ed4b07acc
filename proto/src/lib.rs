//! proto: what sanlvm's programs say to each other, defined once for both ends.
//!
//! Daemons (lockd, wdmd) and clients (lvtool, lockd as wdmd's client, the fuzz targets) depend on
//! this crate; none of them depends on another binary crate.
//! - [`frame`]: a length prefix, then JSON, with a size limit per protocol.
//! - [`lockd`]: the lvtool ↔ lockd requests and replies, the blocking client, `lockd status` text.
//! - [`wdmd`]: the lockd ↔ wdmd requests and replies and the blocking client.
//! - [`config`]: `lvmlocal.toml`, read by lockd and lvtool alike.
//! - [`limits`]: what a client may cost either daemon (log rate, accept back-off, file limits,
//!   private run directories); [`logging`]: both daemons' log lines.

pub mod config;
pub mod frame;
pub mod limits;
pub mod lockd;
pub mod logging;
pub mod wdmd;
