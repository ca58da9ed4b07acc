//! On-disk records, byte-compatible with sanlock 3.8.5.
//!
//! Every struct here is defined once and encoded/decoded field by field in little-endian order.
//! Decoding never trusts a record: `verify_*` checks magic, major version, sector size, names and
//! checksum, and each failure has its own error, because a corrupt record must never be mistaken
//! for a free one.

use std::fmt;

/// Bytes in a lockspace or resource name (`SANLK_NAME_LEN`); no NUL terminator is required.
pub const NAME_LEN: usize = 48;

pub const DELTA_DISK_MAGIC: u32 = 0x1221_2010;
pub const PAXOS_DISK_MAGIC: u32 = 0x0615_2010;
/// Written by a "clear" init; reads back as a magic error, never as a lease.
pub const PAXOS_DISK_CLEAR: u32 = 0x1128_2016;
pub const REQ_DISK_MAGIC: u32 = 0x0829_2011;

pub const DELTA_DISK_VERSION: u32 = 0x0003_0004;
pub const PAXOS_DISK_VERSION: u32 = 0x0006_0004;
pub const REQ_DISK_VERSION: u32 = 0x0001_0001;
const VERSION_MAJOR_MASK: u32 = 0xFFFF_0000;

/// Leader flag: the owner holds the leader only briefly while acquiring shared.
pub const LFL_SHORT_HOLD: u32 = 0x1;
const LFL_ALIGN_MASK: u32 = 0xF0;

/// Bytes of the leader covered by its checksum (everything before `checksum`).
pub const LEADER_CHECKSUM_LEN: usize = 168;
/// Bytes of the leader that identify "the same lease" (everything before `timestamp`).
pub const LEADER_COMPARE_LEN: usize = 152;
pub const LEADER_RECORD_LEN: usize = 200;
/// Delta leases: the host bitmap sits after the leader in the same sector.
pub const HOSTID_BITMAP_OFFSET: usize = 256;
pub const HOSTID_BITMAP_SIZE: usize = 256;
/// Our extension in a delta sector: bytes 200..256 are unused by sanlock.
pub const BOOT_STAMP_OFFSET: usize = 200;

pub const DBLOCK_LEN: usize = 56;
pub const DBLOCK_CHECKSUM_LEN: usize = 48;
pub const DBLOCK_FL_RELEASED: u32 = 0x1;
/// The mode block follows the dblock in each host's sector of a resource.
pub const MODE_BLOCK_OFFSET: usize = 128;
pub const MBLOCK_SHARED: u32 = 0x1;
pub const REQUEST_RECORD_LEN: usize = 24;

/// Sector of a resource area holding the lock value block (fixed by sanlock).
pub const LVB_SECTOR: u64 = 2002;
/// Resource area: sector 0 leader, sector 1 request record, host N's dblock in sector 1 + N.
pub const REQUEST_SECTOR: u64 = 1;
pub const FIRST_DBLOCK_SECTOR: u64 = 2;

/// Largest host_id any geometry allows.
pub const MAX_HOST_ID: u64 = 2000;

/// sanlock's checksum: CRC-32C seeded with `!1` and no final xor, over the little-endian bytes.
pub fn sanlock_crc(data: &[u8]) -> u32 {
    !crc32c::crc32c_append(1, data)
}

// ---------------------------------------------------------------------------------------------
// Geometry

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum SectorSize {
    B512,
    B4096,
}

impl SectorSize {
    pub fn bytes(self) -> usize {
        match self {
            SectorSize::B512 => 512,
            SectorSize::B4096 => 4096,
        }
    }
    pub fn from_bytes(n: u64) -> Option<SectorSize> {
        match n {
            512 => Some(SectorSize::B512),
            4096 => Some(SectorSize::B4096),
            _ => None,
        }
    }
}

/// Size of one lease area (a lockspace or one resource).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Align {
    M1,
    M2,
    M4,
    M8,
}

impl Align {
    pub fn bytes(self) -> u64 {
        (match self {
            Align::M1 => 1,
            Align::M2 => 2,
            Align::M4 => 4,
            Align::M8 => 8,
        }) << 20
    }
    pub fn flag(self) -> u32 {
        match self {
            Align::M1 => 0x10,
            Align::M2 => 0x20,
            Align::M4 => 0x40,
            Align::M8 => 0x80,
        }
    }
    pub fn from_flag(flags: u32) -> Option<Align> {
        match flags & LFL_ALIGN_MASK {
            0x10 => Some(Align::M1),
            0x20 => Some(Align::M2),
            0x40 => Some(Align::M4),
            0x80 => Some(Align::M8),
            _ => None,
        }
    }
    /// Parses sanlock's `-A` argument: `1M`, `2M`, `4M`, `8M`.
    pub fn parse(s: &str) -> Option<Align> {
        match s {
            "1M" | "1" => Some(Align::M1),
            "2M" | "2" => Some(Align::M2),
            "4M" | "4" => Some(Align::M4),
            "8M" | "8" => Some(Align::M8),
            _ => None,
        }
    }
}

/// Sector size and area size of a lease area; only sanlock's five combinations exist.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub sector: SectorSize,
    pub align: Align,
}

impl Geometry {
    pub const DEFAULT_512: Geometry = Geometry { sector: SectorSize::B512, align: Align::M1 };

    pub fn new(sector: SectorSize, align: Align) -> Result<Geometry, RecordError> {
        let g = Geometry { sector, align };
        match g.max_hosts_checked() {
            Some(_) => Ok(g),
            None => Err(RecordError::Geometry { sector_size: sector.bytes() as u32, align: align.bytes() }),
        }
    }

    fn max_hosts_checked(self) -> Option<u64> {
        match (self.sector, self.align) {
            (SectorSize::B512, Align::M1) => Some(2000),
            (SectorSize::B4096, Align::M1) => Some(250),
            (SectorSize::B4096, Align::M2) => Some(500),
            (SectorSize::B4096, Align::M4) => Some(1000),
            (SectorSize::B4096, Align::M8) => Some(2000),
            _ => None,
        }
    }

    /// The number of host slots an area of this geometry holds.
    pub fn max_hosts(self) -> u64 {
        self.max_hosts_checked().expect("Geometry is only built through Geometry::new")
    }

    pub fn sector_bytes(self) -> usize {
        self.sector.bytes()
    }

    pub fn area_bytes(self) -> u64 {
        self.align.bytes()
    }

    /// Default align for a sector size, as sanlock and lvmlockd choose it.
    pub fn default_for(sector: SectorSize) -> Geometry {
        match sector {
            SectorSize::B512 => Geometry { sector, align: Align::M1 },
            SectorSize::B4096 => Geometry { sector, align: Align::M8 },
        }
    }

    /// Geometry recorded in a leader: its sector size and align flag (old leases without an
    /// align flag imply 1M for 512 and 8M for 4K, as sanlock assumes).
    pub fn from_leader(l: &LeaderRecord) -> Result<Geometry, RecordError> {
        let sector = SectorSize::from_bytes(l.sector_size as u64)
            .ok_or(RecordError::SectorSize { found: l.sector_size, expected: None })?;
        let align = Align::from_flag(l.flags).unwrap_or(match sector {
            SectorSize::B512 => Align::M1,
            SectorSize::B4096 => Align::M8,
        });
        Geometry::new(sector, align)
    }

    /// Whether the LVB sector lies inside a resource area of this geometry.
    pub fn has_lvb(self) -> bool {
        (LVB_SECTOR + 1) * self.sector_bytes() as u64 <= self.area_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Names

/// A 48-byte lockspace, resource or host name, NUL padded.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct Name(pub [u8; NAME_LEN]);

impl Name {
    pub const EMPTY: Name = Name([0; NAME_LEN]);

    /// A name for use on disk: 1..=48 bytes, no NUL and no ':' (the separator in sanlock's
    /// `LS:ID:PATH:OFFSET` arguments).
    pub fn new(s: &str) -> Result<Name, RecordError> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > NAME_LEN || b.contains(&0) || b.contains(&b':') {
            return Err(RecordError::BadName(s.to_string()));
        }
        let mut n = [0u8; NAME_LEN];
        n[..b.len()].copy_from_slice(b);
        Ok(Name(n))
    }

    pub fn as_str_lossy(&self) -> String {
        let end = self.0.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        String::from_utf8_lossy(&self.0[..end]).into_owned()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str_lossy())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str_lossy())
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a record read from disk was rejected. Each is distinct so an operator can tell a wiped
/// area from a foreign one from bit rot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Magic is not the expected one (includes a never-initialised, zeroed sector).
    Magic {
        found: u32,
        expected: u32,
    },
    /// A paxos area that was explicitly cleared.
    Cleared,
    Version {
        found: u32,
        expected: u32,
    },
    SectorSize {
        found: u32,
        expected: Option<u32>,
    },
    LockspaceName {
        found: Name,
        expected: Name,
    },
    ResourceName {
        found: Name,
        expected: Name,
    },
    Checksum {
        found: u32,
        computed: u32,
    },
    /// The dblock of one host fails its checksum.
    DblockChecksum {
        host_id: u64,
        found: u32,
        computed: u32,
    },
    NumHosts {
        num_hosts: u64,
        host_id: u64,
    },
    Geometry {
        sector_size: u32,
        align: u64,
    },
    BadName(String),
    /// A buffer too short for the record (a short read).
    Truncated {
        need: usize,
        got: usize,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Magic { found, expected } => {
                write!(f, "bad magic 0x{found:08x} (expected 0x{expected:08x})")
            }
            RecordError::Cleared => write!(f, "lease area was cleared"),
            RecordError::Version { found, expected } => {
                write!(f, "unsupported version 0x{found:08x} (expected major 0x{expected:08x})")
            }
            RecordError::SectorSize { found, expected: Some(e) } => {
                write!(f, "sector size {found} does not match {e}")
            }
            RecordError::SectorSize { found, expected: None } => write!(f, "invalid sector size {found}"),
            RecordError::LockspaceName { found, expected } => {
                write!(f, "lockspace name {found:?} does not match {expected:?}")
            }
            RecordError::ResourceName { found, expected } => {
                write!(f, "resource name {found:?} does not match {expected:?}")
            }
            RecordError::Checksum { found, computed } => {
                write!(f, "checksum 0x{found:08x} does not match computed 0x{computed:08x}")
            }
            RecordError::DblockChecksum { host_id, found, computed } => {
                write!(f, "dblock of host {host_id}: checksum 0x{found:08x} does not match computed 0x{computed:08x}")
            }
            RecordError::NumHosts { num_hosts, host_id } => {
                write!(f, "host_id {host_id} exceeds the lease's num_hosts {num_hosts}")
            }
            RecordError::Geometry { sector_size, align } => {
                write!(f, "invalid sector size {sector_size} with align {} MiB", align >> 20)
            }
            RecordError::BadName(s) => write!(f, "invalid name {s:?}: 1-48 bytes, no NUL or ':'"),
            RecordError::Truncated { need, got } => write!(f, "record truncated: need {need} bytes, got {got}"),
        }
    }
}

impl std::error::Error for RecordError {}

fn need(buf: &[u8], n: usize) -> Result<(), RecordError> {
    if buf.len() < n {
        Err(RecordError::Truncated { need: n, got: buf.len() })
    } else {
        Ok(())
    }
}

// Little-endian field access at fixed offsets; callers check lengths first.
fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}
fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Leader record

/// Which kind of lease a leader belongs to; selects magic and version.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LeaseKind {
    Delta,
    Paxos,
}

impl LeaseKind {
    pub fn magic(self) -> u32 {
        match self {
            LeaseKind::Delta => DELTA_DISK_MAGIC,
            LeaseKind::Paxos => PAXOS_DISK_MAGIC,
        }
    }
    pub fn version(self) -> u32 {
        match self {
            LeaseKind::Delta => DELTA_DISK_VERSION,
            LeaseKind::Paxos => PAXOS_DISK_VERSION,
        }
    }
}

/// `struct leader_record`, 200 bytes. For a delta lease `resource_name` is the owner's host
/// name and `timestamp` its last renewal; for a paxos lease `timestamp` 0 means free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderRecord {
    pub magic: u32,
    pub version: u32,
    pub flags: u32,
    pub sector_size: u32,
    pub num_hosts: u64,
    pub max_hosts: u64,
    pub owner_id: u64,
    pub owner_generation: u64,
    pub lver: u64,
    pub space_name: Name,
    pub resource_name: Name,
    pub timestamp: u64,
    pub unused1: u64,
    pub checksum: u32,
    pub unused2: u16,
    pub io_timeout: u16,
    pub write_id: u64,
    pub write_generation: u64,
    pub write_timestamp: u64,
}

impl LeaderRecord {
    /// A fresh leader as an init writes it.
    pub fn new(kind: LeaseKind, geometry: Geometry, space: Name, resource: Name) -> LeaderRecord {
        LeaderRecord {
            magic: kind.magic(),
            version: kind.version(),
            flags: geometry.align.flag(),
            sector_size: geometry.sector_bytes() as u32,
            num_hosts: 0,
            max_hosts: 0,
            owner_id: 0,
            owner_generation: 0,
            lver: 0,
            space_name: space,
            resource_name: resource,
            timestamp: 0,
            unused1: 0,
            checksum: 0,
            unused2: 0,
            io_timeout: 0,
            write_id: 0,
            write_generation: 0,
            write_timestamp: 0,
        }
    }

    /// Decodes without judging; see [`LeaderRecord::verify`].
    pub fn decode(b: &[u8]) -> Result<LeaderRecord, RecordError> {
        need(b, LEADER_RECORD_LEN)?;
        let name = |off: usize| Name(b[off..off + NAME_LEN].try_into().unwrap());
        Ok(LeaderRecord {
            magic: get_u32(b, 0),
            version: get_u32(b, 4),
            flags: get_u32(b, 8),
            sector_size: get_u32(b, 12),
            num_hosts: get_u64(b, 16),
            max_hosts: get_u64(b, 24),
            owner_id: get_u64(b, 32),
            owner_generation: get_u64(b, 40),
            lver: get_u64(b, 48),
            space_name: name(56),
            resource_name: name(104),
            timestamp: get_u64(b, 152),
            unused1: get_u64(b, 160),
            checksum: get_u32(b, 168),
            unused2: get_u16(b, 172),
            io_timeout: get_u16(b, 174),
            write_id: get_u64(b, 176),
            write_generation: get_u64(b, 184),
            write_timestamp: get_u64(b, 192),
        })
    }

    /// Encodes into the first 200 bytes of `b` with a freshly computed checksum, which is also
    /// stored back into `self.checksum`.
    pub fn encode(&mut self, b: &mut [u8]) {
        assert!(b.len() >= LEADER_RECORD_LEN, "leader buffer too small");
        put_u32(b, 0, self.magic);
        put_u32(b, 4, self.version);
        put_u32(b, 8, self.flags);
        put_u32(b, 12, self.sector_size);
        put_u64(b, 16, self.num_hosts);
        put_u64(b, 24, self.max_hosts);
        put_u64(b, 32, self.owner_id);
        put_u64(b, 40, self.owner_generation);
        put_u64(b, 48, self.lver);
        b[56..104].copy_from_slice(&self.space_name.0);
        b[104..152].copy_from_slice(&self.resource_name.0);
        put_u64(b, 152, self.timestamp);
        put_u64(b, 160, self.unused1);
        put_u16(b, 172, self.unused2);
        put_u16(b, 174, self.io_timeout);
        put_u64(b, 176, self.write_id);
        put_u64(b, 184, self.write_generation);
        put_u64(b, 192, self.write_timestamp);
        self.checksum = sanlock_crc(&b[..LEADER_CHECKSUM_LEN]);
        put_u32(b, 168, self.checksum);
    }

    /// The encoded bytes (200).
    pub fn to_bytes(&self) -> [u8; LEADER_RECORD_LEN] {
        let mut b = [0u8; LEADER_RECORD_LEN];
        self.clone().encode(&mut b);
        b
    }

    /// Checks everything a reader must check before trusting the record, in sanlock's order:
    /// magic, major version, sector size, lockspace name, resource name, checksum.
    /// `resource` is `None` for delta leases (their resource_name is the owner's host name).
    pub fn verify(
        b: &[u8],
        kind: LeaseKind,
        sector_size: Option<u32>,
        space: &Name,
        resource: Option<&Name>,
    ) -> Result<LeaderRecord, RecordError> {
        let l = LeaderRecord::decode(b)?;
        if kind == LeaseKind::Paxos && l.magic == PAXOS_DISK_CLEAR {
            return Err(RecordError::Cleared);
        }
        if l.magic != kind.magic() {
            return Err(RecordError::Magic { found: l.magic, expected: kind.magic() });
        }
        if l.version & VERSION_MAJOR_MASK != kind.version() & VERSION_MAJOR_MASK {
            return Err(RecordError::Version { found: l.version, expected: kind.version() & VERSION_MAJOR_MASK });
        }
        if SectorSize::from_bytes(l.sector_size as u64).is_none() || sector_size.is_some_and(|s| s != l.sector_size) {
            return Err(RecordError::SectorSize { found: l.sector_size, expected: sector_size });
        }
        if &l.space_name != space {
            return Err(RecordError::LockspaceName { found: l.space_name, expected: *space });
        }
        if let Some(r) = resource {
            if &l.resource_name != r {
                return Err(RecordError::ResourceName { found: l.resource_name, expected: *r });
            }
        }
        let computed = sanlock_crc(&b[..LEADER_CHECKSUM_LEN]);
        if computed != l.checksum {
            return Err(RecordError::Checksum { found: l.checksum, computed });
        }
        Ok(l)
    }

    /// Checks only magic/version/sector size/checksum: for readers that learn the names from
    /// the record itself (`direct dump`, `read_leader`).
    pub fn verify_any_name(b: &[u8], kind: LeaseKind) -> Result<LeaderRecord, RecordError> {
        let l = LeaderRecord::decode(b)?;
        LeaderRecord::verify(b, kind, None, &l.space_name, None)
    }

    /// The bytes that identify the lease apart from its timestamp and write_* fields.
    pub fn same_lease(&self, other: &LeaderRecord) -> bool {
        self.to_bytes()[..LEADER_COMPARE_LEN] == other.to_bytes()[..LEADER_COMPARE_LEN]
    }
}

// ---------------------------------------------------------------------------------------------
// Delta sector extensions: host bitmap (sanlock) and boot stamp (ours)

/// The 2048-bit host bitmap after a delta leader: bit `host_id - 1` set means "host_id, look
/// at your resources" (requests and host events).
#[derive(Clone, PartialEq, Eq)]
pub struct HostBitmap(pub [u8; HOSTID_BITMAP_SIZE]);

impl Default for HostBitmap {
    fn default() -> Self {
        HostBitmap([0; HOSTID_BITMAP_SIZE])
    }
}

impl fmt::Debug for HostBitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.hosts()).finish()
    }
}

impl HostBitmap {
    pub fn decode(sector: &[u8]) -> Result<HostBitmap, RecordError> {
        need(sector, HOSTID_BITMAP_OFFSET + HOSTID_BITMAP_SIZE)?;
        Ok(HostBitmap(sector[HOSTID_BITMAP_OFFSET..HOSTID_BITMAP_OFFSET + HOSTID_BITMAP_SIZE].try_into().unwrap()))
    }
    pub fn encode(&self, sector: &mut [u8]) {
        sector[HOSTID_BITMAP_OFFSET..HOSTID_BITMAP_OFFSET + HOSTID_BITMAP_SIZE].copy_from_slice(&self.0);
    }
    pub fn set(&mut self, host_id: u64) {
        assert!((1..=MAX_HOST_ID).contains(&host_id));
        let i = (host_id - 1) as usize;
        self.0[i / 8] |= 1 << (i % 8);
    }
    pub fn is_set(&self, host_id: u64) -> bool {
        if !(1..=MAX_HOST_ID).contains(&host_id) {
            return false;
        }
        let i = (host_id - 1) as usize;
        self.0[i / 8] & (1 << (i % 8)) != 0
    }
    pub fn hosts(&self) -> Vec<u64> {
        (1..=MAX_HOST_ID).filter(|&h| self.is_set(h)).collect()
    }
}

/// Our extension of a delta sector (bytes 200..256, unused by sanlock): the boot id of the
/// machine that wrote the record. It lets a rebooted host prove that the previous holder of its
/// host_id died with an earlier boot, so nothing of it can still write.
/// Layout: magic "SLVMBOOT" (8), boot id (16), CRC-32C of the previous 24 bytes (4), zeros.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BootStamp {
    pub boot_id: [u8; 16],
}

const BOOT_STAMP_MAGIC: &[u8; 8] = b"SLVMBOOT";
const BOOT_STAMP_LEN: usize = 28;

impl BootStamp {
    /// Reads a stamp; `None` when absent or damaged (e.g. the record was written by sanlock),
    /// which simply disables the fast rejoin.
    pub fn decode(sector: &[u8]) -> Option<BootStamp> {
        let s = sector.get(BOOT_STAMP_OFFSET..BOOT_STAMP_OFFSET + BOOT_STAMP_LEN)?;
        if &s[..8] != BOOT_STAMP_MAGIC || sanlock_crc(&s[..24]) != get_u32(s, 24) {
            return None;
        }
        Some(BootStamp { boot_id: s[8..24].try_into().unwrap() })
    }
    pub fn encode(&self, sector: &mut [u8]) {
        let s = &mut sector[BOOT_STAMP_OFFSET..BOOT_STAMP_OFFSET + BOOT_STAMP_LEN];
        s[..8].copy_from_slice(BOOT_STAMP_MAGIC);
        s[8..24].copy_from_slice(&self.boot_id);
        let crc = sanlock_crc(&s[..24]);
        put_u32(s, 24, crc);
    }
    /// Parses the kernel's `/proc/sys/kernel/random/boot_id` (a UUID string).
    pub fn parse_uuid(text: &str) -> Option<BootStamp> {
        let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(BootStamp { boot_id: id })
    }
}

// ---------------------------------------------------------------------------------------------
// Paxos dblock, mode block, request record

/// `struct paxos_dblock`, 56 bytes at the start of each host's sector in a resource area.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct PaxosDblock {
    pub mbal: u64,
    pub bal: u64,
    pub inp: u64,
    pub inp2: u64,
    pub inp3: u64,
    pub lver: u64,
    pub checksum: u32,
    pub flags: u32,
}

impl PaxosDblock {
    pub fn decode(b: &[u8]) -> Result<PaxosDblock, RecordError> {
        need(b, DBLOCK_LEN)?;
        Ok(PaxosDblock {
            mbal: get_u64(b, 0),
            bal: get_u64(b, 8),
            inp: get_u64(b, 16),
            inp2: get_u64(b, 24),
            inp3: get_u64(b, 32),
            lver: get_u64(b, 40),
            checksum: get_u32(b, 48),
            flags: get_u32(b, 52),
        })
    }

    /// Decodes and checks the checksum. A never-written dblock (all of checksum, mbal, bal, inp,
    /// lver zero) is valid without one, as in sanlock.
    pub fn verify(b: &[u8], host_id: u64) -> Result<PaxosDblock, RecordError> {
        let d = PaxosDblock::decode(b)?;
        if d.checksum == 0 && d.mbal == 0 && d.bal == 0 && d.inp == 0 && d.lver == 0 {
            return Ok(d);
        }
        let computed = sanlock_crc(&b[..DBLOCK_CHECKSUM_LEN]);
        if computed != d.checksum {
            return Err(RecordError::DblockChecksum { host_id, found: d.checksum, computed });
        }
        Ok(d)
    }

    pub fn encode(&mut self, b: &mut [u8]) {
        assert!(b.len() >= DBLOCK_LEN, "dblock buffer too small");
        put_u64(b, 0, self.mbal);
        put_u64(b, 8, self.bal);
        put_u64(b, 16, self.inp);
        put_u64(b, 24, self.inp2);
        put_u64(b, 32, self.inp3);
        put_u64(b, 40, self.lver);
        self.checksum = sanlock_crc(&b[..DBLOCK_CHECKSUM_LEN]);
        put_u32(b, 48, self.checksum);
        put_u32(b, 52, self.flags);
    }

    pub fn released(&self) -> bool {
        self.flags & DBLOCK_FL_RELEASED != 0
    }
}

/// `struct mode_block`, 16 bytes at +128 of a host's sector: marks a shared holder.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ModeBlock {
    pub flags: u32,
    pub generation: u64,
}

impl ModeBlock {
    pub fn decode(sector: &[u8]) -> Result<ModeBlock, RecordError> {
        need(sector, MODE_BLOCK_OFFSET + 16)?;
        Ok(ModeBlock { flags: get_u32(sector, MODE_BLOCK_OFFSET), generation: get_u64(sector, MODE_BLOCK_OFFSET + 8) })
    }
    pub fn encode(&self, sector: &mut [u8]) {
        put_u32(sector, MODE_BLOCK_OFFSET, self.flags);
        put_u32(sector, MODE_BLOCK_OFFSET + 4, 0);
        put_u64(sector, MODE_BLOCK_OFFSET + 8, self.generation);
    }
    pub fn shared(&self) -> bool {
        self.flags & MBLOCK_SHARED != 0
    }
}

/// `struct request_record`, 24 bytes in sector 1 of a resource area.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub magic: u32,
    pub version: u32,
    pub lver: u64,
    pub force_mode: u32,
}

/// `force_mode` values of a request record.
pub const REQ_FORCE: u32 = 1;
pub const REQ_GRACEFUL: u32 = 2;

impl RequestRecord {
    pub fn new(lver: u64, force_mode: u32) -> RequestRecord {
        RequestRecord { magic: REQ_DISK_MAGIC, version: REQ_DISK_VERSION, lver, force_mode }
    }
    pub fn decode(b: &[u8]) -> Result<RequestRecord, RecordError> {
        need(b, REQUEST_RECORD_LEN)?;
        Ok(RequestRecord {
            magic: get_u32(b, 0),
            version: get_u32(b, 4),
            lver: get_u64(b, 8),
            force_mode: get_u32(b, 16),
        })
    }
    pub fn verify(b: &[u8]) -> Result<RequestRecord, RecordError> {
        let r = RequestRecord::decode(b)?;
        if r.magic != REQ_DISK_MAGIC {
            return Err(RecordError::Magic { found: r.magic, expected: REQ_DISK_MAGIC });
        }
        if r.version & VERSION_MAJOR_MASK != REQ_DISK_VERSION & VERSION_MAJOR_MASK {
            return Err(RecordError::Version { found: r.version, expected: REQ_DISK_VERSION & VERSION_MAJOR_MASK });
        }
        Ok(r)
    }
    pub fn encode(&self, b: &mut [u8]) {
        put_u32(b, 0, self.magic);
        put_u32(b, 4, self.version);
        put_u64(b, 8, self.lver);
        put_u32(b, 16, self.force_mode);
        put_u32(b, 20, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Offsets within areas

/// Byte offset, within a lockspace area, of host_id's delta lease sector.
pub fn delta_sector_offset(g: Geometry, host_id: u64) -> u64 {
    debug_assert!(host_id >= 1);
    (host_id - 1) * g.sector_bytes() as u64
}

/// Byte offset, within a resource area, of host_id's dblock sector.
pub fn dblock_sector_offset(g: Geometry, host_id: u64) -> u64 {
    debug_assert!(host_id >= 1);
    (FIRST_DBLOCK_SECTOR + host_id - 1) * g.sector_bytes() as u64
}

/// Bytes a paxos reader must read to see every dblock: sanlock reads the power-of-two
/// roundup of num_hosts+2 sectors (1 MiB for 2000 hosts at 512 bytes), capped at the area.
pub fn paxos_read_len(g: Geometry, num_hosts: u64) -> u64 {
    let sectors = (num_hosts + FIRST_DBLOCK_SECTOR).next_power_of_two();
    (sectors * g.sector_bytes() as u64).min(g.area_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_values_match_sanlock() {
        // Values computed from sanlock's own crc32c((uint32_t)~1, ...).
        assert_eq!(sanlock_crc(b"123456789"), 0xE8C7_BB34);
        assert_eq!(sanlock_crc(&[0u8; 168]), 0x7E11_FBD1);
        assert_eq!(sanlock_crc(&[0u8; 48]), 0xCB5A_D842);
    }

    #[test]
    fn geometries_and_max_hosts() {
        use Align::*;
        use SectorSize::*;
        let ok = [(B512, M1, 2000), (B4096, M1, 250), (B4096, M2, 500), (B4096, M4, 1000), (B4096, M8, 2000)];
        for (s, a, n) in ok {
            assert_eq!(Geometry::new(s, a).unwrap().max_hosts(), n);
        }
        for a in [M2, M4, M8] {
            assert!(Geometry::new(B512, a).is_err());
        }
        // Only 512/1M and 4K/8M have room for the fixed LVB sector.
        assert!(Geometry::new(B512, M1).unwrap().has_lvb());
        assert!(Geometry::new(B4096, M8).unwrap().has_lvb());
        assert!(!Geometry::new(B4096, M4).unwrap().has_lvb());
    }

    #[test]
    fn leader_field_offsets() {
        let mut l = LeaderRecord::new(
            LeaseKind::Delta,
            Geometry::DEFAULT_512,
            Name::new("ls").unwrap(),
            Name::new("h").unwrap(),
        );
        l.owner_id = 0x0102;
        l.timestamp = 0xAABB;
        l.io_timeout = 10;
        l.write_timestamp = 7;
        let b = l.to_bytes();
        assert_eq!(&b[0..4], &DELTA_DISK_MAGIC.to_le_bytes());
        assert_eq!(&b[32..40], &0x0102u64.to_le_bytes());
        assert_eq!(&b[56..58], b"ls");
        assert_eq!(&b[104..105], b"h");
        assert_eq!(&b[152..160], &0xAABBu64.to_le_bytes());
        assert_eq!(&b[174..176], &10u16.to_le_bytes());
        assert_eq!(&b[192..200], &7u64.to_le_bytes());
        let ls = Name::new("ls").unwrap();
        assert_eq!(LeaderRecord::verify(&b, LeaseKind::Delta, Some(512), &ls, None).unwrap().owner_id, 0x0102);
    }

    #[test]
    fn every_verify_failure_is_distinct() {
        let ls = Name::new("ls").unwrap();
        let r = Name::new("r").unwrap();
        let mut l = LeaderRecord::new(LeaseKind::Paxos, Geometry::DEFAULT_512, ls, r);
        let good = l.to_bytes();
        let check = |b: &[u8]| LeaderRecord::verify(b, LeaseKind::Paxos, Some(512), &ls, Some(&r));
        assert!(check(&good).is_ok());
        assert!(matches!(check(&[0u8; 200]), Err(RecordError::Magic { .. })), "zeroed sector is not free");
        l.magic = PAXOS_DISK_CLEAR;
        assert_eq!(check(&l.to_bytes()), Err(RecordError::Cleared));
        l.magic = PAXOS_DISK_MAGIC;
        l.version = 0x0007_0004;
        assert!(matches!(check(&l.to_bytes()), Err(RecordError::Version { .. })));
        l.version = 0x0006_0009; // minor differences are accepted
        assert!(check(&l.to_bytes()).is_ok());
        l.sector_size = 4096;
        assert!(matches!(check(&l.to_bytes()), Err(RecordError::SectorSize { .. })));
        l.sector_size = 512;
        l.space_name = Name::new("other").unwrap();
        assert!(matches!(check(&l.to_bytes()), Err(RecordError::LockspaceName { .. })));
        l.space_name = ls;
        l.resource_name = Name::new("x").unwrap();
        assert!(matches!(check(&l.to_bytes()), Err(RecordError::ResourceName { .. })));
        let mut bad = good;
        bad[40] ^= 1;
        assert!(matches!(check(&bad), Err(RecordError::Checksum { .. })));
        assert!(matches!(check(&good[..100]), Err(RecordError::Truncated { .. })));
    }

    #[test]
    fn dblock_zero_is_valid_and_corruption_is_not() {
        assert_eq!(PaxosDblock::verify(&[0u8; 56], 1).unwrap(), PaxosDblock::default());
        let mut d = PaxosDblock { mbal: 1, bal: 1, inp: 1, inp2: 1, inp3: 5, lver: 1, ..Default::default() };
        let mut b = [0u8; 56];
        d.encode(&mut b);
        assert_eq!(PaxosDblock::verify(&b, 1).unwrap(), d);
        b[16] ^= 0x80;
        assert!(matches!(PaxosDblock::verify(&b, 1), Err(RecordError::DblockChecksum { host_id: 1, .. })));
    }

    #[test]
    fn bitmap_bits_follow_sanlock() {
        let mut m = HostBitmap::default();
        m.set(1);
        m.set(10);
        m.set(2000);
        assert_eq!(m.0[0], 0x01);
        assert_eq!(m.0[1], 0x02);
        assert_eq!(m.0[249], 0x80);
        assert_eq!(m.hosts(), vec![1, 10, 2000]);
    }

    #[test]
    fn boot_stamp_round_trip_and_absence() {
        let mut sector = [0u8; 512];
        assert_eq!(BootStamp::decode(&sector), None);
        let s = BootStamp::parse_uuid("0f2e5a4c-7b1d-4c3e-9a8b-123456789abc\n").unwrap();
        s.encode(&mut sector);
        assert_eq!(BootStamp::decode(&sector), Some(s));
        sector[210] ^= 1;
        assert_eq!(BootStamp::decode(&sector), None, "a damaged stamp disables the fast path");
    }

    #[test]
    fn request_record_round_trip() {
        let r = RequestRecord::new(5, REQ_FORCE);
        let mut b = [0u8; 24];
        r.encode(&mut b);
        assert_eq!(RequestRecord::verify(&b).unwrap(), r);
        assert!(RequestRecord::verify(&[0u8; 24]).is_err());
    }

    #[test]
    fn names_are_validated() {
        assert!(Name::new("").is_err());
        assert!(Name::new(&"x".repeat(49)).is_err());
        assert!(Name::new("a:b").is_err());
        assert_eq!(Name::new(&"x".repeat(48)).unwrap().as_str_lossy().len(), 48);
    }
}
