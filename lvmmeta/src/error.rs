//! One error type for the whole crate. Each variant names a different problem a user must fix (or
//! a caller must react to) differently, and carries where it was found.

use std::fmt;
use std::io;

/// Where on which device something was found (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At {
    pub device: String,
    /// Absolute byte offset on the device.
    pub offset: u64,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.device, self.offset)
    }
}

#[derive(Debug)]
pub enum Error {
    /// A read, write or open failed.
    Io { device: String, op: &'static str, source: io::Error },
    /// The device (or the area a header points to) ends before the data it must hold.
    Truncated { at: At, what: &'static str, need: u64, have: u64 },
    /// No LABELONE label in sectors 0..3: not a PV.
    NoLabel { device: String },
    /// A label was found but its CRC does not match its contents.
    LabelChecksum { at: At, stored: u32, computed: u32 },
    /// A label says it lives in another sector than where it was found.
    LabelSector { at: At, stored: u64 },
    /// A label of another type than "LVM2 001", or with a bad pv_header layout.
    LabelFormat { at: At, reason: String },
    /// The mda header's CRC does not match.
    MdaChecksum { at: At, stored: u32, computed: u32 },
    /// The mda header does not start with " LVM2 x[5A%r0N*>".
    MdaMagic { at: At },
    /// The mda header has another version than 1.
    MdaVersion { at: At, found: u32 },
    /// The mda header's `start` is not where it was found, or its size/locations are impossible.
    MdaLayout { at: At, reason: String },
    /// The metadata text does not match the CRC stored in the mda header.
    TextChecksum { at: At, stored: u32, computed: u32 },
    /// The metadata text is not valid libdm config syntax.
    Parse { line: usize, byte: usize, reason: String },
    /// The text parses but does not describe a VG lvm2 would accept.
    Metadata { vg: String, reason: String },
    /// The new metadata text does not fit: two copies must fit in the circular buffer.
    MetadataTooLarge { device: String, size: u64, max: u64 },
    /// Two devices carry the same PV UUID (cloned disk, or two paths to one disk).
    DuplicatePvUuid { uuid: String, devices: Vec<String> },
    /// The VG metadata lists a PV that none of the scanned devices carries.
    MissingPv { vg: String, uuid: String, hint: Option<String> },
    /// No scanned device holds metadata of this VG.
    VgNotFound { vg: String },
    /// A text id is not a valid LVM UUID.
    InvalidUuid { text: String, reason: &'static str },
    /// A VG, LV or PV name lvm2 would reject.
    InvalidName { name: String, reason: &'static str },
    /// An LV of a segment type (or with flags) this tool does not handle: never modified or activated.
    UnsupportedLv { vg: String, lv: String, reason: String },
    /// The VG carries something (an unknown status flag, ...) that forbids writing it.
    ReadOnlyVg { vg: String, reason: String },
    /// The on-disk metadata changed between our read and our write (someone else wrote).
    ConcurrentChange { at: At },
    /// A caller asked for something impossible (no such LV, extent out of range, ...).
    Invalid(String),
    /// The config file (lvmlocal.toml) cannot be read or has a bad value.
    Config { path: String, reason: String },
    /// Initialising or reading the sanlock lease area in the lvmlock LV failed.
    Lease { what: String, reason: String },
    /// Not enough free extents for an allocation.
    InsufficientSpace { vg: String, needed: u64, free: u64 },
    /// Activation is impossible here (no device-mapper driver).
    Activation(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(device: &str, op: &'static str, source: io::Error) -> Error {
        Error::Io { device: device.to_string(), op, source }
    }

    pub fn metadata(vg: &str, reason: impl Into<String>) -> Error {
        Error::Metadata { vg: vg.to_string(), reason: reason.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { device, op, source } => write!(f, "{device}: {op} failed: {source}"),
            Error::Truncated { at, what, need, have } => {
                write!(f, "{at}: {what} truncated: needs {need} bytes, only {have} available")
            }
            Error::NoLabel { device } => write!(f, "{device}: no LVM label found (not a physical volume)"),
            Error::LabelChecksum { at, stored, computed } => {
                write!(f, "{at}: bad label checksum {stored:#010x} (contents give {computed:#010x})")
            }
            Error::LabelSector { at, stored } => write!(f, "{at}: label claims to be in sector {stored}"),
            Error::LabelFormat { at, reason } => write!(f, "{at}: bad PV label: {reason}"),
            Error::MdaChecksum { at, stored, computed } => {
                write!(f, "{at}: bad metadata area header checksum {stored:#010x} (contents give {computed:#010x})")
            }
            Error::MdaMagic { at } => write!(f, "{at}: wrong magic in metadata area header"),
            Error::MdaVersion { at, found } => write!(f, "{at}: unsupported metadata area header version {found}"),
            Error::MdaLayout { at, reason } => write!(f, "{at}: bad metadata area header: {reason}"),
            Error::TextChecksum { at, stored, computed } => {
                write!(f, "{at}: metadata text checksum {computed:#010x} does not match header ({stored:#010x})")
            }
            Error::Parse { line, byte, reason } => {
                write!(f, "metadata parse error at byte {byte} (line {line}): {reason}")
            }
            Error::Metadata { vg, reason } => write!(f, "VG {vg}: invalid metadata: {reason}"),
            Error::MetadataTooLarge { device, size, max } => {
                write!(f, "{device}: metadata ({size} bytes) exceeds maximum metadata size ({max} bytes)")
            }
            Error::DuplicatePvUuid { uuid, devices } => {
                write!(f, "PV UUID {uuid} found on several devices: {}", devices.join(", "))
            }
            Error::MissingPv { vg, uuid, hint } => match hint {
                Some(h) => write!(f, "VG {vg}: PV {uuid} (last seen on {h}) not found"),
                None => write!(f, "VG {vg}: PV {uuid} not found"),
            },
            Error::VgNotFound { vg } => write!(f, "Volume group \"{vg}\" not found"),
            Error::InvalidUuid { text, reason } => write!(f, "invalid UUID \"{text}\": {reason}"),
            Error::InvalidName { name, reason } => write!(f, "invalid name \"{name}\": {reason}"),
            Error::UnsupportedLv { vg, lv, reason } => {
                write!(f, "LV {vg}/{lv} is not supported by lvtool ({reason}); it is left untouched")
            }
            Error::ReadOnlyVg { vg, reason } => write!(f, "VG {vg} cannot be changed by lvtool: {reason}"),
            Error::ConcurrentChange { at } => write!(f, "{at}: metadata changed on disk since it was read"),
            Error::Invalid(msg) => f.write_str(msg),
            Error::Config { path, reason } => write!(f, "config file {path}: {reason}"),
            Error::Lease { what, reason } => write!(f, "lease area: {what}: {reason}"),
            Error::InsufficientSpace { vg, needed, free } => {
                write!(f, "Volume group \"{vg}\" has insufficient free space ({free} extents): {needed} required.")
            }
            Error::Activation(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
