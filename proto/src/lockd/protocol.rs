//! The lvtool ↔ lockd protocol, defined once for the daemon, lvtool and `lockd status`.
//!
//! Framing: [`crate::frame`] (a length prefix, then JSON, as wdmd's protocol), with [`MAX_FRAME`].
//! One request, one response, in order, on a unix stream socket (`run_dir/lockd.sock`).
//!
//! Where the leases are: lockd reads the committed LVM metadata itself (`leasemap`): the map of
//! the VG's lease area (the hidden `lvmlock` LV) on the PVs and every LV's slot (`lock_args`).
//! Offsets inside the area are LV byte offsets, exactly as lvmlockd uses them (lockspace at 0,
//! GLLK at A×65, VGLK at A×66, LV leases at the offset in the LV's `lock_args`). Requests may
//! still carry a map ([`LeaseArea`]) for compatibility: it is only checked against lockd's own
//! read (and refused when it differs), never used. A request outside lockd's map makes it read
//! the metadata again (the lock LV grew).
//!
//! GL and VG locks belong to the connection that took them and end with it (one command);
//! LV locks taken with `persistent` belong to the host and stay until unlocked.

use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Largest frame either side accepts; real messages are a few hundred bytes, a status reply of
/// a lockspace with 2000 hosts well under this.
pub const MAX_FRAME: usize = 1 << 20;
/// Bumped on incompatible changes; a client sends it in `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

pub use lvmmeta::lockarea::{AreaPiece, LeaseArea};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// The global lock (GLLK of whichever started VG has it enabled).
    Gl,
    /// The VG lock (VGLK).
    Vg,
    /// An LV lease: resource name = the LV UUID (dashed), `offset` from its `lock_args`;
    /// `name` is only for messages.
    Lv { uuid: String, offset: u64, name: String },
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Ex,
    Sh,
    Un,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Optional first request: checks the protocol version.
    Hello {
        version: u32,
    },
    /// Joins lockspace `lvm_<vg>` (acquires our delta lease, renews it every 2N). Answers when
    /// the lockspace is usable; `Started { already: true }` when it was started before. lockd
    /// reads the VG (by name and UUID) from the devices of its lvmlocal.toml; `area` must equal
    /// the lease map it computes (refused with `BadRequest` otherwise).
    LockStart {
        vg: String,
        vg_uuid: String,
        area: LeaseArea,
    },
    /// Leaves the lockspace. Refused while LV locks are held, unless `force` (which releases
    /// them: only for LVs known to be unused).
    LockStop {
        vg: String,
        force: bool,
    },
    /// Takes, converts or releases a lock. GL: `vg` is ignored (lockd picks the one started VG
    /// whose GL is enabled; none or several: `NoGlobalLock` / `DuplicateGlobalLock`). LV: the
    /// offset must be the one the LV's `lock_args` name in the committed metadata (an LV not
    /// committed yet: a slot no committed LV names, whose leader names the LV), else
    /// `Refused`. `area`: an optional hint, checked, never used (not checked on release).
    Lock {
        vg: String,
        resource: Resource,
        mode: Mode,
        persistent: bool,
        area: Option<LeaseArea>,
    },
    /// Needs the VG lock in ex: names a free LV slot after `lv_uuid`; answers `LvLease`. Free:
    /// a verified `#unused` leader nobody live holds, named by no committed LV's `lock_args`;
    /// a slot that does not verify is a `Corrupt` error naming its offset.
    InitLv {
        vg: String,
        lv_uuid: String,
        area: Option<LeaseArea>,
    },
    /// Needs the VG lock in ex: drops our holds of the LV's lease and marks its slot `#unused`.
    /// Only after the commit that removed the LV (an LV still in the committed metadata, or a
    /// slot another LV names, is `Refused`), only a slot whose leader names `lv_uuid`, and only
    /// once lockd holds it in ex (a live holder elsewhere: `Conflict`).
    FreeLv {
        vg: String,
        lv_uuid: String,
        offset: u64,
        area: Option<LeaseArea>,
    },
    /// Needs the VG lock in ex: sets the VG lease's value block to `version` (the new seqno),
    /// so other hosts learn that their copy of the metadata is stale.
    VgUpdate {
        vg: String,
        version: u32,
    },
    Status,
    /// lvmlockctl --gl-enable: makes VG `vg` (started here) hold the enabled global lock and
    /// disables it in every other VG started here. Done while holding the GL slots of all
    /// VGs started here in ex (see `glctl`). Answers `Gl`.
    GlEnable {
        vg: String,
    },
    /// lvmlockctl --gl-disable: renames the GL slot of `vg` to `_GLLK_disabled`. Answers `Gl`.
    GlDisable {
        vg: String,
    },
    /// Needs the VG lock in ex: frees orphaned LV slots (leader names an LV UUID no LV in the
    /// committed metadata has, nobody live holds it) and releases this host's locks of LVs no
    /// longer in the metadata, unless `keep` lists them (LVs with a device active here).
    /// Answers `Repaired`.
    Repair {
        vg: String,
        #[serde(default)]
        keep: Vec<String>,
    },
}

/// Who holds a lock we could not get.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host_id: u64,
    pub generation: u64,
    /// From the holder's delta lease, when we could read it.
    pub host_name: Option<String>,
    /// live, fail, dead, unknown, free (as `lockd status`).
    pub state: String,
    /// Wall-clock time since which this host incarnation is known live here (RFC 3339, UTC).
    pub live_since: Option<String>,
    /// The holder holds it shared.
    pub shared: bool,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {}", self.host_id)?;
        let mut parts = vec![];
        if let Some(n) = &self.host_name {
            parts.push(n.clone());
        }
        match &self.live_since {
            Some(t) if self.state == "live" => parts.push(format!("live since {t}")),
            _ => parts.push(self.state.clone()),
        }
        if self.shared {
            parts.push("shared".into());
        }
        write!(f, " ({})", parts.join(", "))
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a valid request (bad JSON, unknown op, bad field). The connection stays usable.
    BadRequest,
    /// The frame was longer than [`MAX_FRAME`]; the connection is closed after this reply.
    TooLarge,
    /// The peer is not root.
    PermissionDenied,
    /// The VG's lockspace is not started here (lvmlockd's ENOLS).
    NoLockspace,
    /// The lockspace is being started or stopped, or lockd has as many connections as it
    /// serves and none it may close (try again later).
    Busy,
    /// Held by another host (or another command here); `holders` says by whom.
    Conflict,
    /// The lockspace has failed on this host (renewals stopped): no new locks.
    LockspaceFailed,
    /// A lease record is corrupt (checksum, magic, names): never treated as free.
    Corrupt,
    /// Disk I/O failed or timed out.
    Io,
    /// No free LV lease slot: extend the lock LV, commit, and retry.
    NoSpace,
    /// Shared VGs are started (or exist) but none started here has the global lock enabled.
    NoGlobalLock,
    /// More than one started VG has the global lock enabled: none is granted.
    DuplicateGlobalLock,
    /// The request is valid but not in this state (lock-stop with LVs active, update without
    /// the VG lock, ...).
    Refused,
    Internal,
    /// Disk I/O timed out: a write may still have landed.
    Timeout,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default)]
    pub holders: Vec<Holder>,
}

/// A lease record that does not verify: reported as corrupt, never treated as free.
impl From<lease::ondisk::RecordError> for ErrorReply {
    fn from(e: lease::ondisk::RecordError) -> Self {
        ErrorReply { code: ErrorCode::Corrupt, message: e.to_string(), holders: vec![] }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Response {
    Hello {
        version: u32,
        host_id: u64,
        host_name: String,
    },
    Started {
        already: bool,
        host_id: u64,
        generation: u64,
    },
    Stopped {
        released_lv_locks: usize,
    },
    /// A lock request succeeded. For the VG lock: the value block's version (the seqno of the
    /// last change any host announced), when the lease has one.
    Locked {
        vg_version: Option<u32>,
    },
    LvLease {
        offset: u64,
    },
    Ok,
    Status(DaemonStatus),
    Error(ErrorReply),
    /// After gl-enable/gl-disable: the VG now holding the enabled GL among those started here
    /// (None: none), and the VGs whose GL this request disabled.
    Gl {
        enabled: Option<String>,
        disabled: Vec<String>,
    },
    Repaired(RepairReport),
}

/// What a repair did and what it left alone.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct RepairReport {
    /// Slots written `#unused`: (offset, the orphan LV UUID its leader named).
    pub freed: Vec<(u64, String)>,
    /// This host's locks of LVs no longer in the metadata, released: LV UUIDs.
    pub released: Vec<String>,
    /// Orphan slots left alone, and why (held by a live host, unreadable, ...).
    pub left: Vec<(u64, String)>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DaemonStatus {
    pub host_id: u64,
    pub host_name: String,
    pub pid: u32,
    pub io_timeout: u32,
    pub watchdog_fire_timeout: u32,
    pub use_watchdog: bool,
    pub lockspaces: Vec<LockspaceStatus>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LockspaceStatus {
    pub vg: String,
    pub lockspace: String,
    /// starting, running, failed, stopping.
    pub state: String,
    pub host_id: u64,
    pub generation: u64,
    pub pv_path: PathBuf,
    pub offset: u64,
    /// Duration of the last successful renewal and the longest one, ms.
    pub renewal_last_ms: u64,
    pub renewal_max_ms: u64,
    /// Time since the last successful renewal, ms.
    pub renewal_age_ms: u64,
    /// Whether the global lock of the started VGs lives here.
    pub gl_enabled: bool,
    pub hosts: Vec<HostInfo>,
    pub locks: Vec<LockInfo>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub host_id: u64,
    pub host_name: String,
    pub generation: u64,
    pub state: String,
    pub io_timeout: u16,
    /// Time since we last saw its record change, ms (None: never seen change).
    pub last_live_age_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// GLLK, VGLK, or the LV UUID.
    pub resource: String,
    /// The LV name, when lvtool gave it.
    pub name: Option<String>,
    pub offset: u64,
    pub mode: Mode,
    pub lver: u64,
    /// Held for the host (persistent) rather than for commands.
    pub persistent: bool,
    /// Commands (connections) holding it.
    pub commands: usize,
}

pub use crate::frame::{encode, write_frame, FrameError};

/// Reads one frame body (blocking); see [`crate::frame`].
pub fn read_body(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    crate::frame::read_body(r, MAX_FRAME)
}

pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, FrameError> {
    crate::frame::read_frame(r, MAX_FRAME)
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error(ErrorReply { code, message: message.into(), holders: vec![] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let req = Request::Lock {
            vg: "vg1".into(),
            resource: Resource::Lv { uuid: "u".into(), offset: 70254592, name: "lv1".into() },
            mode: Mode::Ex,
            persistent: true,
            area: None,
        };
        let bytes = encode(&req);
        assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - 4);
        let back: Request = read_frame(&mut &bytes[..]).unwrap();
        assert_eq!(back, req);
        let text = std::str::from_utf8(&bytes[4..]).unwrap();
        assert!(text.contains("\"op\":\"lock\"") && text.contains("\"kind\":\"lv\""), "{text}");
    }

    #[test]
    fn oversized_and_malformed() {
        let mut big = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        big.extend_from_slice(b"{}");
        assert!(matches!(read_body(&mut &big[..]), Err(FrameError::TooLarge { .. })));
        let bad = encode(&serde_json::json!({"op": "frobnicate"}));
        assert!(matches!(read_frame::<Request>(&mut &bad[..]), Err(FrameError::Json(_))));
    }

    #[test]
    fn area_locates_leases_inside_one_piece() {
        let m = 1u64 << 20;
        let a = LeaseArea {
            sector_size: 512,
            align_bytes: m,
            pieces: vec![
                AreaPiece { lv_start: 0, len: 256 * m, pv_path: "/dev/a".into(), pv_start: m },
                AreaPiece { lv_start: 256 * m, len: 256 * m, pv_path: "/dev/b".into(), pv_start: 8 * m },
            ],
        };
        assert_eq!(a.size(), 512 * m);
        assert_eq!(a.locate(67 * m), Some((&PathBuf::from("/dev/a"), 68 * m)));
        assert_eq!(a.locate(256 * m), Some((&PathBuf::from("/dev/b"), 8 * m)));
        assert_eq!(a.locate(512 * m), None);
        assert_eq!(a.locate(255 * m + 1), None, "straddles two pieces");
    }

    #[test]
    fn new_requests_on_the_wire() {
        let r: Request = serde_json::from_str(r#"{"op":"gl_enable","vg":"vg1"}"#).unwrap();
        assert_eq!(r, Request::GlEnable { vg: "vg1".into() });
        let r: Request = serde_json::from_str(r#"{"op":"repair","vg":"vg1"}"#).unwrap();
        assert_eq!(r, Request::Repair { vg: "vg1".into(), keep: vec![] });
        let text =
            serde_json::to_string(&Response::Gl { enabled: Some("a".into()), disabled: vec!["b".into()] }).unwrap();
        assert_eq!(text, r#"{"reply":"gl","enabled":"a","disabled":["b"]}"#);
        let e = Response::error(ErrorCode::DuplicateGlobalLock, "x");
        assert!(serde_json::to_string(&e).unwrap().contains("duplicate_global_lock"));
    }

    #[test]
    fn holder_reads_like_lvmlockd_messages() {
        let h = Holder {
            host_id: 2,
            generation: 3,
            host_name: Some("node2".into()),
            state: "live".into(),
            live_since: Some("2025-01-01T00:00:00Z".into()),
            shared: false,
        };
        assert_eq!(h.to_string(), "host 2 (node2, live since 2025-01-01T00:00:00Z)");
    }
}
