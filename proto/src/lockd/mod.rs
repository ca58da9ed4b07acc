//! lvtool ↔ lockd.

pub mod client;
pub mod protocol;
pub mod status;
