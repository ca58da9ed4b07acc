//! lockd ↔ wdmd.

pub mod client;
pub mod protocol;
