//! `lockd direct`: offline lease tools with `sanlock direct`'s syntax and output.
//!
//! Every action opens the device itself, does its I/O through the `lease` crate and exits; there
//! is no daemon state. Arguments are validated completely before the device is opened for any
//! write, so bad input changes nothing on disk.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lease::clock::{Clock, SystemClock};
use lease::delta_lease::{self, AcquirePath, DeltaLease, HostIdentity, LockspaceArea, ProtocolFaults};
use lease::diskio::{block_on, AlignedBuf, DeviceDisk, Disk, IoError};
use lease::ondisk::{
    Align, BootStamp, Geometry, HostBitmap, LeaderRecord, LeaseKind, ModeBlock, Name, PaxosDblock, RecordError,
    RequestRecord, SectorSize, DELTA_DISK_MAGIC, FIRST_DBLOCK_SECTOR, LEADER_RECORD_LEN, MAX_HOST_ID, PAXOS_DISK_CLEAR,
    PAXOS_DISK_MAGIC, REQUEST_SECTOR,
};
use lease::paxos_lease::{self, AcquireOptions, HeldResource, Mode, PaxosCtx, ResourceArea};
use lease::timeouts::{Timeouts, DEFAULT_IO_TIMEOUT_SECS, DEFAULT_WATCHDOG_FIRE_SECS};
use lease::LeaseError;

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a direct action failed; printed as `lockd: <reason>`.
#[derive(Debug)]
pub struct DirectError {
    pub msg: String,
    /// Bad command line (exit 2) rather than a failed operation (exit 1).
    pub usage: bool,
}

impl DirectError {
    pub fn usage(msg: impl Into<String>) -> DirectError {
        DirectError { msg: msg.into(), usage: true }
    }
    pub fn failed(msg: impl Into<String>) -> DirectError {
        DirectError { msg: msg.into(), usage: false }
    }
    pub fn exit_code(&self) -> u8 {
        if self.usage {
            2
        } else {
            1
        }
    }
}

impl fmt::Display for DirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl From<LeaseError> for DirectError {
    fn from(e: LeaseError) -> Self {
        DirectError::failed(e.to_string())
    }
}

impl From<RecordError> for DirectError {
    fn from(e: RecordError) -> Self {
        DirectError::failed(format!("invalid lease record: {e}"))
    }
}

type Result<T> = std::result::Result<T, DirectError>;

/// sanlock's return code for a record error, printed by `read_leader` as sanlock does.
pub fn sanlk_code(e: &RecordError) -> i32 {
    match e {
        RecordError::Magic { .. } | RecordError::Cleared => -223,
        RecordError::Version { .. } => -224,
        RecordError::SectorSize { .. } | RecordError::Geometry { .. } => -225,
        RecordError::LockspaceName { .. } => -226,
        RecordError::ResourceName { .. } => -227,
        RecordError::NumHosts { .. } => -228,
        RecordError::Checksum { .. } => -229,
        RecordError::DblockChecksum { .. } => -214,
        RecordError::BadName(_) | RecordError::Truncated { .. } => -22,
    }
}

// ---------------------------------------------------------------------------------------------
// sanlock's LOCKSPACE / RESOURCE strings

/// Splits at ':' except where escaped with a backslash (sanlock's convention for paths that
/// contain ':').
fn split_escaped(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            ':' => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

fn parse_u64(what: &str, s: &str) -> std::result::Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {s:?} is not a decimal number"));
    }
    s.parse().map_err(|_| format!("{what} {s:?} is too large"))
}

/// `LOCKSPACE = NAME:HOST_ID:PATH:OFFSET`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockspaceArg {
    pub name: Name,
    pub host_id: u64,
    pub path: PathBuf,
    pub offset: u64,
}

impl LockspaceArg {
    pub fn parse(s: &str) -> Result<LockspaceArg> {
        let bad =
            |why: String| DirectError::usage(format!("invalid LOCKSPACE {s:?} (NAME:HOST_ID:PATH:OFFSET): {why}"));
        let f = split_escaped(s);
        if f.len() != 4 {
            return Err(bad(format!("{} fields instead of 4", f.len())));
        }
        let name = Name::new(&f[0]).map_err(|e| bad(e.to_string()))?;
        let host_id = parse_u64("host_id", &f[1]).map_err(bad)?;
        if f[2].is_empty() {
            return Err(bad("empty path".into()));
        }
        let offset = parse_u64("offset", &f[3]).map_err(bad)?;
        Ok(LockspaceArg { name, host_id, path: PathBuf::from(&f[2]), offset })
    }
}

/// `RESOURCE = LOCKSPACE_NAME:RESOURCE_NAME:PATH:OFFSET[:LVER|:SH]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceArg {
    pub lockspace: Name,
    pub name: Name,
    pub path: PathBuf,
    pub offset: u64,
    pub shared: bool,
    pub lver: Option<u64>,
}

impl ResourceArg {
    pub fn parse(s: &str) -> Result<ResourceArg> {
        let bad = |why: String| {
            DirectError::usage(format!("invalid RESOURCE {s:?} (LOCKSPACE:RESOURCE:PATH:OFFSET[:LVER|:SH]): {why}"))
        };
        let f = split_escaped(s);
        if f.len() != 4 && f.len() != 5 {
            return Err(bad(format!("{} fields instead of 4 or 5", f.len())));
        }
        let lockspace = Name::new(&f[0]).map_err(|e| bad(e.to_string()))?;
        let name = Name::new(&f[1]).map_err(|e| bad(e.to_string()))?;
        if f[2].is_empty() {
            return Err(bad("empty path".into()));
        }
        let offset = parse_u64("offset", &f[3]).map_err(bad)?;
        let (mut shared, mut lver) = (false, None);
        if let Some(x) = f.get(4) {
            if x == "SH" {
                shared = true;
            } else {
                lver = Some(parse_u64("lver", x).map_err(bad)?);
            }
        }
        Ok(ResourceArg { lockspace, name, path: PathBuf::from(&f[2]), offset, shared, lver })
    }
}

/// `PATH[:OFFSET[:SIZE]]` of `dump`; OFFSET and SIZE in bytes or with an `M` (MiB) suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpArg {
    pub path: PathBuf,
    pub offset: u64,
    pub size: Option<u64>,
}

impl DumpArg {
    pub fn parse(s: &str) -> Result<DumpArg> {
        let bad =
            |why: String| DirectError::usage(format!("invalid dump location {s:?} (PATH[:OFFSET[:SIZE]]): {why}"));
        let f = split_escaped(s);
        if f.len() > 3 || f[0].is_empty() {
            return Err(bad("expected PATH[:OFFSET[:SIZE]]".into()));
        }
        let num = |what: &str, x: &str| -> std::result::Result<u64, String> {
            match x.strip_suffix('M') {
                Some(m) => parse_u64(what, m)?.checked_mul(1 << 20).ok_or(format!("{what} {x:?} is too large")),
                None => parse_u64(what, x),
            }
        };
        let offset = f.get(1).map(|x| num("offset", x)).transpose().map_err(bad)?.unwrap_or(0);
        let size = f.get(2).map(|x| num("size", x)).transpose().map_err(bad)?;
        Ok(DumpArg { path: PathBuf::from(&f[0]), offset, size })
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// Options most actions share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    /// `-o`: N, seconds.
    pub io_timeout: u32,
    /// `-W`: watchdog fire timeout W (must be the same on every host).
    pub watchdog_fire: u32,
    /// `-Z`: sector size; detected from the record (or the device, for init) when absent.
    pub sector: Option<SectorSize>,
    /// `-A`: align size; detected like the sector size.
    pub align: Option<Align>,
    /// `--io-stats`: print the number of I/Os to stderr.
    pub io_stats: bool,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            io_timeout: DEFAULT_IO_TIMEOUT_SECS,
            watchdog_fire: DEFAULT_WATCHDOG_FIRE_SECS,
            sector: None,
            align: None,
            io_stats: false,
        }
    }
}

/// How much `dump` shows beyond sanlock's default table.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DumpDetail {
    /// Delta host bitmaps and request records (sanlock's `-f 1`).
    pub bitmap: bool,
    /// Every used dblock and mode block (sanlock's `-f 2` plus non-shared mode blocks).
    pub mode_blocks: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    InitLockspace { ls: LockspaceArg },
    InitResource { res: ResourceArg, num_hosts: u64, clear: bool },
    AcquireId { ls: LockspaceArg, host_name: Option<Name> },
    RenewId { ls: LockspaceArg, host_name: Option<Name> },
    ReleaseId { ls: LockspaceArg, host_name: Option<Name> },
    Acquire { res: ResourceArg, host_id: u64, generation: u64, lockspace: Option<LockspaceArg>, wait: bool },
    Release { res: ResourceArg, host_id: u64, generation: u64 },
    ReadLeaderLockspace { ls: LockspaceArg },
    ReadLeaderResource { res: ResourceArg },
    Dump { at: DumpArg, detail: DumpDetail },
}

/// Runs one action, printing its result to `out`.
pub fn run(cmd: &Command, common: &Common, out: &mut dyn Write) -> Result<()> {
    let timeouts =
        Timeouts::new(common.io_timeout, common.watchdog_fire).map_err(|e| DirectError::usage(e.to_string()))?;
    check_static(cmd, common)?;
    let path = match cmd {
        Command::InitLockspace { ls }
        | Command::AcquireId { ls, .. }
        | Command::RenewId { ls, .. }
        | Command::ReleaseId { ls, .. }
        | Command::ReadLeaderLockspace { ls } => &ls.path,
        Command::InitResource { res, .. }
        | Command::Acquire { res, .. }
        | Command::Release { res, .. }
        | Command::ReadLeaderResource { res } => &res.path,
        Command::Dump { at, .. } => &at.path,
    };
    let disk = CountingDisk::new(
        DeviceDisk::open(path).map_err(|e| DirectError::failed(format!("cannot open {}: {e}", path.display())))?,
    );
    let ctx = Ctx { disk: &disk, common, timeouts, clock: SystemClock::default() };
    let r = match cmd {
        Command::InitLockspace { ls } => ctx.init_lockspace(ls, out),
        Command::InitResource { res, num_hosts, clear } => ctx.init_resource(res, *num_hosts, *clear, out),
        Command::AcquireId { ls, host_name } => ctx.acquire_id(ls, host_name, out),
        Command::RenewId { ls, host_name } => ctx.renew_or_release_id(ls, host_name, false, out),
        Command::ReleaseId { ls, host_name } => ctx.renew_or_release_id(ls, host_name, true, out),
        Command::Acquire { res, host_id, generation, lockspace, wait } => {
            ctx.acquire(res, *host_id, *generation, lockspace.as_ref(), *wait, out)
        }
        Command::Release { res, host_id, generation } => ctx.release(res, *host_id, *generation, out),
        Command::ReadLeaderLockspace { ls } => ctx.read_leader_lockspace(ls, out),
        Command::ReadLeaderResource { res } => ctx.read_leader_resource(res, out),
        Command::Dump { at, detail } => ctx.dump(at, *detail, out),
    };
    if common.io_stats {
        eprintln!(
            "io: {} reads ({} bytes), {} writes ({} bytes)",
            disk.reads.get(),
            disk.read_bytes.get(),
            disk.writes.get(),
            disk.write_bytes.get()
        );
    }
    r
}

/// Checks that need no I/O, so that nothing is opened for a hopeless command.
fn check_static(cmd: &Command, common: &Common) -> Result<()> {
    if let (Some(s), Some(a)) = (common.sector, common.align) {
        Geometry::new(s, a).map_err(|e| DirectError::usage(e.to_string()))?;
    }
    let host_range = |h: u64| {
        if h == 0 || h > MAX_HOST_ID {
            Err(DirectError::usage(format!("host_id {h} is outside 1..={MAX_HOST_ID}")))
        } else {
            Ok(())
        }
    };
    let aligned = |path: &Path, off: u64| {
        let unit = common.sector.map_or(512, |s| s.bytes() as u64);
        if !off.is_multiple_of(unit) {
            Err(DirectError::usage(format!("offset {off} of {} is not a multiple of {unit} bytes", path.display())))
        } else {
            Ok(())
        }
    };
    match cmd {
        Command::InitLockspace { ls } => aligned(&ls.path, ls.offset),
        Command::InitResource { res, .. } | Command::ReadLeaderResource { res } => aligned(&res.path, res.offset),
        Command::AcquireId { ls, .. }
        | Command::RenewId { ls, .. }
        | Command::ReleaseId { ls, .. }
        | Command::ReadLeaderLockspace { ls } => {
            host_range(ls.host_id)?;
            aligned(&ls.path, ls.offset)
        }
        Command::Acquire { res, host_id, lockspace, .. } => {
            host_range(*host_id)?;
            aligned(&res.path, res.offset)?;
            if res.lver.is_some() {
                return Err(DirectError::usage("acquiring a specific lver (RESOURCE:LVER) is not supported"));
            }
            if let Some(ls) = lockspace {
                aligned(&ls.path, ls.offset)?;
                if ls.name != res.lockspace {
                    return Err(DirectError::usage(format!(
                        "lockspace {} given with -s is not the resource's lockspace {}",
                        ls.name, res.lockspace
                    )));
                }
                if ls.host_id != 0 && ls.host_id != *host_id {
                    return Err(DirectError::usage(format!(
                        "-s names host_id {} but -i names {host_id}; use 0 in -s",
                        ls.host_id
                    )));
                }
                if !same_file(&ls.path, &res.path) {
                    return Err(DirectError::usage("the lockspace (-s) must be on the same device as the resource"));
                }
            }
            Ok(())
        }
        Command::Release { res, host_id, .. } => {
            host_range(*host_id)?;
            aligned(&res.path, res.offset)
        }
        Command::Dump { .. } => Ok(()),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// This host's stable name: /etc/machine-id (32 hex digits), else the kernel host name.
pub fn default_host_name() -> Result<Name> {
    let from = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let s = from("/etc/machine-id")
        .or_else(|| from("/proc/sys/kernel/hostname"))
        .ok_or_else(|| DirectError::failed("no /etc/machine-id or host name; give one with -e"))?;
    let s: String = s.chars().filter(|c| *c != ':').take(48).collect();
    Name::new(&s).map_err(|e| DirectError::failed(format!("host name from this machine: {e}; give one with -e")))
}

fn boot_stamp() -> Option<BootStamp> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().and_then(|s| BootStamp::parse_uuid(&s))
}

// ---------------------------------------------------------------------------------------------
// I/O accounting

/// Counts I/Os; cheap enough to wrap every direct action.
pub struct CountingDisk<D> {
    inner: D,
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub read_bytes: Cell<u64>,
    pub write_bytes: Cell<u64>,
}

impl<D> CountingDisk<D> {
    pub fn new(inner: D) -> CountingDisk<D> {
        CountingDisk {
            inner,
            reads: Cell::new(0),
            writes: Cell::new(0),
            read_bytes: Cell::new(0),
            write_bytes: Cell::new(0),
        }
    }
}

impl<D: Disk> Disk for CountingDisk<D> {
    fn logical_sector_size(&self) -> Option<u32> {
        self.inner.logical_sector_size()
    }
    async fn read(&self, offset: u64, len: usize, timeout: Duration) -> std::result::Result<AlignedBuf, IoError> {
        self.reads.set(self.reads.get() + 1);
        self.read_bytes.set(self.read_bytes.get() + len as u64);
        self.inner.read(offset, len, timeout).await
    }
    async fn write(&self, offset: u64, data: AlignedBuf, timeout: Duration) -> std::result::Result<(), IoError> {
        self.writes.set(self.writes.get() + 1);
        self.write_bytes.set(self.write_bytes.get() + data.len() as u64);
        self.inner.write(offset, data, timeout).await
    }
}

// ---------------------------------------------------------------------------------------------
// Actions

struct Ctx<'a> {
    disk: &'a CountingDisk<DeviceDisk>,
    common: &'a Common,
    timeouts: Timeouts,
    clock: SystemClock,
}

/// Bytes read to learn a lease's sizes: its leader is at the start, and 4096 covers either
/// sector size (what sanlock reads too).
const SIZES_READ: usize = 4096;

impl Ctx<'_> {
    fn read(&self, offset: u64, len: usize) -> Result<AlignedBuf> {
        block_on(self.disk.read(offset, len, self.timeouts.io()))
            .map_err(|e| DirectError::failed(format!("read of {len} bytes at offset {offset} failed: {e}")))
    }

    /// Geometry for a new area: `-Z` (else the device's logical sector size, else 512), `-A`
    /// (else 1M for 512 and 8M for 4096).
    fn init_geometry(&self) -> Result<Geometry> {
        let sector = match self.common.sector {
            Some(s) => s,
            None => match self.disk.logical_sector_size() {
                None => SectorSize::B512,
                Some(n) => SectorSize::from_bytes(n as u64)
                    .ok_or_else(|| DirectError::failed(format!("device sector size {n} is not 512 or 4096")))?,
            },
        };
        let align = self.common.align.unwrap_or(Geometry::default_for(sector).align);
        Geometry::new(sector, align).map_err(|e| DirectError::usage(e.to_string()))
    }

    /// The geometry recorded in the leader at `offset` (unless both -Z and -A were given);
    /// explicit options must agree with the record.
    fn existing_geometry(&self, offset: u64, kind: LeaseKind) -> Result<Geometry> {
        if let (Some(s), Some(a)) = (self.common.sector, self.common.align) {
            return Geometry::new(s, a).map_err(|e| DirectError::usage(e.to_string()));
        }
        let size = self.disk.inner.size_bytes().map_err(|e| DirectError::failed(format!("device size: {e}")))?;
        let len = (size.saturating_sub(offset).min(SIZES_READ as u64) / 512 * 512) as usize;
        if len < LEADER_RECORD_LEN {
            return Err(DirectError::failed(format!("offset {offset} is beyond the end of the device ({size} bytes)")));
        }
        let buf = self.read(offset, len)?;
        let l = LeaderRecord::decode(&buf)?;
        if kind == LeaseKind::Paxos && l.magic == PAXOS_DISK_CLEAR {
            return Err(RecordError::Cleared.into());
        }
        if l.magic != kind.magic() {
            return Err(DirectError::failed(format!(
                "no {} at offset {offset}: {}",
                if kind == LeaseKind::Delta { "lockspace" } else { "resource" },
                RecordError::Magic { found: l.magic, expected: kind.magic() }
            )));
        }
        let g = Geometry::from_leader(&l)?;
        if self.common.sector.is_some_and(|s| s != g.sector) || self.common.align.is_some_and(|a| a != g.align) {
            return Err(DirectError::failed(format!(
                "-Z/-A disagree with the record at offset {offset} ({}/{}M)",
                g.sector_bytes(),
                g.area_bytes() >> 20
            )));
        }
        Ok(g)
    }

    fn lockspace_area(&self, ls: &LockspaceArg) -> Result<LockspaceArea> {
        let geometry = self.existing_geometry(ls.offset, LeaseKind::Delta)?;
        let area = LockspaceArea { name: ls.name, offset: ls.offset, geometry };
        check_offset(ls.offset, geometry)?;
        Ok(area)
    }

    fn resource_area(&self, res: &ResourceArg) -> Result<ResourceArea> {
        let geometry = self.existing_geometry(res.offset, LeaseKind::Paxos)?;
        check_offset(res.offset, geometry)?;
        Ok(ResourceArea { lockspace: res.lockspace, name: res.name, offset: res.offset, geometry })
    }

    fn init_lockspace(&self, ls: &LockspaceArg, out: &mut dyn Write) -> Result<()> {
        let g = self.init_geometry()?;
        check_offset(ls.offset, g)?;
        let area = LockspaceArea { name: ls.name, offset: ls.offset, geometry: g };
        block_on(delta_lease::init(self.disk, &area, self.timeouts))?;
        say(
            out,
            format_args!(
                "init done: lockspace {} at {}:{} ({}/{}M, {} hosts, io_timeout {})",
                ls.name,
                ls.path.display(),
                ls.offset,
                g.sector_bytes(),
                g.area_bytes() >> 20,
                g.max_hosts(),
                self.timeouts.io_timeout
            ),
        )
    }

    fn init_resource(&self, res: &ResourceArg, num_hosts: u64, clear: bool, out: &mut dyn Write) -> Result<()> {
        let g = self.init_geometry()?;
        check_offset(res.offset, g)?;
        if num_hosts > g.max_hosts() {
            return Err(DirectError::usage(format!(
                "num_hosts {num_hosts} exceeds {} for {}/{}M",
                g.max_hosts(),
                g.sector_bytes(),
                g.area_bytes() >> 20
            )));
        }
        let area = ResourceArea { lockspace: res.lockspace, name: res.name, offset: res.offset, geometry: g };
        block_on(paxos_lease::init(self.disk, &area, num_hosts, clear, self.timeouts))?;
        say(
            out,
            format_args!(
                "init done: resource {}:{} at {}:{} ({}/{}M, {} hosts{})",
                res.lockspace,
                res.name,
                res.path.display(),
                res.offset,
                g.sector_bytes(),
                g.area_bytes() >> 20,
                if num_hosts == 0 { g.max_hosts() } else { num_hosts },
                if clear { ", cleared" } else { "" }
            ),
        )
    }

    fn identity(&self, ls: &LockspaceArg, host_name: &Option<Name>) -> Result<HostIdentity> {
        let host_name = match host_name {
            Some(n) => *n,
            None => default_host_name()?,
        };
        Ok(HostIdentity { host_id: ls.host_id, host_name, boot: boot_stamp() })
    }

    fn acquire_id(&self, ls: &LockspaceArg, host_name: &Option<Name>, out: &mut dyn Write) -> Result<()> {
        let area = self.lockspace_area(ls)?;
        area.check_host_id(ls.host_id)?;
        let me = self.identity(ls, host_name)?;
        // Tell the operator up front when the protocol has to wait for a previous owner.
        let sector = self.read(area.sector_offset(ls.host_id), area.geometry.sector_bytes())?;
        let found = delta_lease::verify_sector(&area, &sector)?;
        if delta_lease::acquire_path(&found, &sector, &me, ProtocolFaults::default()) == AcquirePath::WaitedForOwner {
            let peer = self.timeouts.for_peer(found.io_timeout);
            eprintln!(
                "host_id {} is held by {:?} (generation {}); waiting {}s for it to prove dead",
                ls.host_id,
                found.resource_name.as_str_lossy(),
                found.owner_generation,
                peer.delta_large_delay().as_secs()
            );
        }
        let (lease, path) = block_on(delta_lease::acquire(
            self.disk,
            &self.clock,
            &area,
            &me,
            self.timeouts,
            ProtocolFaults::default(),
        ))?;
        let how = match path {
            AcquirePath::Free => "free",
            AcquirePath::Rejoin => "rejoin after reboot",
            AcquirePath::WaitedForOwner => "previous owner dead",
        };
        say(
            out,
            format_args!(
                "acquire_id done: host_id {} generation {} host_name {} ({how})",
                ls.host_id, lease.generation, me.host_name
            ),
        )
    }

    /// Offline renew/release: no daemon remembers what we wrote, so the record on disk must
    /// show this host_id, our host name and a live timestamp; its generation is taken from it.
    fn renew_or_release_id(
        &self,
        ls: &LockspaceArg,
        host_name: &Option<Name>,
        release: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        let area = self.lockspace_area(ls)?;
        area.check_host_id(ls.host_id)?;
        let me = self.identity(ls, host_name)?;
        let sector = self.read(area.sector_offset(ls.host_id), area.geometry.sector_bytes())?;
        let found = delta_lease::verify_sector(&area, &sector)?;
        if found.owner_id != ls.host_id {
            return Err(DirectError::failed(format!(
                "host_id {} record names owner_id {}; not ours",
                ls.host_id, found.owner_id
            )));
        }
        if found.timestamp == 0 {
            return Err(DirectError::failed(format!(
                "host_id {} is not held (timestamp 0, generation {}); acquire_id first",
                ls.host_id, found.owner_generation
            )));
        }
        if found.resource_name != me.host_name {
            return Err(DirectError::failed(format!(
                "host_id {} is held by host name {:?}, not {:?} (use -e to name the holder)",
                ls.host_id,
                found.resource_name.as_str_lossy(),
                me.host_name.as_str_lossy()
            )));
        }
        let mut lease = DeltaLease {
            area,
            identity: me,
            generation: found.owner_generation,
            io_timeout: found.io_timeout,
            last_written: sector.clone(),
            last_success: self.clock.now(),
            maybe_written: Vec::new(),
        };
        if release {
            block_on(delta_lease::release(self.disk, &lease, self.timeouts))?;
            return say(out, format_args!("release_id done: host_id {} generation {}", ls.host_id, lease.generation));
        }
        let bitmap = HostBitmap::decode(&sector).unwrap_or_default();
        block_on(delta_lease::renew(self.disk, &self.clock, &mut lease, &bitmap, self.timeouts))?;
        let ts = lease.leader().timestamp;
        say(out, format_args!("renew_id done: host_id {} generation {} timestamp {ts}", ls.host_id, lease.generation))
    }

    fn acquire(
        &self,
        res: &ResourceArg,
        host_id: u64,
        generation: u64,
        lockspace: Option<&LockspaceArg>,
        wait: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        let area = self.resource_area(res)?;
        let ls_area = match lockspace {
            Some(ls) => self.lockspace_area(ls)?,
            // Like `sanlock direct acquire`, which has no lockspace: a held lease cannot be
            // judged. The resource area itself stands in: none of its sectors is a valid delta
            // record, so the liveness check fails closed instead of taking the lease.
            None => LockspaceArea { name: res.lockspace, offset: res.offset, geometry: area.geometry },
        };
        if host_id > area.geometry.max_hosts() {
            return Err(DirectError::failed(format!(
                "host_id {host_id} exceeds {} for this resource's geometry",
                area.geometry.max_hosts()
            )));
        }
        let ctx = self.paxos_ctx(ls_area, host_id, generation);
        let mode = if res.shared { Mode::Shared } else { Mode::Exclusive };
        let opts = AcquireOptions { mode, wait_for_owner: wait };
        let held = match block_on(paxos_lease::acquire(&ctx, &area, opts)) {
            Ok(h) => h,
            Err(LeaseError::Record(RecordError::Magic { expected: DELTA_DISK_MAGIC, .. })) if lockspace.is_none() => {
                let v = block_on(paxos_lease::read_resource(self.disk, &area, self.timeouts))?;
                return Err(DirectError::failed(format!(
                    "held by host_id {} generation {}; its liveness is unknown without its lockspace \
                     (give -s {}:0:PATH:OFFSET)",
                    v.leader.owner_id, v.leader.owner_generation, res.lockspace
                )));
            }
            Err(e) => return Err(e.into()),
        };
        say(
            out,
            format_args!(
                "acquire done: {}:{} lver {} host_id {host_id} generation {generation}{}",
                res.lockspace,
                res.name,
                held.lver,
                if held.mode == Mode::Shared { " shared" } else { "" }
            ),
        )
    }

    fn paxos_ctx(
        &self,
        lockspace: LockspaceArea,
        host_id: u64,
        generation: u64,
    ) -> PaxosCtx<'_, CountingDisk<DeviceDisk>, SystemClock> {
        PaxosCtx {
            disk: self.disk,
            clock: &self.clock,
            timeouts: self.timeouts,
            lockspace,
            host_id,
            generation,
            hosts: None,
            faults: ProtocolFaults::default(),
        }
    }

    /// Offline release: the holder is named by -i/-g and must match the leader (exclusive) or
    /// our mode block (shared, `:SH`).
    fn release(&self, res: &ResourceArg, host_id: u64, generation: u64, out: &mut dyn Write) -> Result<()> {
        let area = self.resource_area(res)?;
        let view = block_on(paxos_lease::read_resource(self.disk, &area, self.timeouts))?;
        let l = &view.leader;
        let idx = host_id as usize - 1;
        let (Some(dblock), Some(mb)) = (view.dblocks.get(idx), view.mode_blocks.get(idx)) else {
            return Err(RecordError::NumHosts { num_hosts: l.num_hosts, host_id }.into());
        };
        let mode = if res.shared {
            if !mb.shared() || mb.generation != generation {
                return Err(DirectError::failed(format!(
                    "not held shared by host_id {host_id} generation {generation} (mode block: {})",
                    describe_mode_block(mb)
                )));
            }
            Mode::Shared
        } else {
            if l.timestamp == 0 {
                return Err(DirectError::failed(format!("not held: the lease is free (lver {})", l.lver)));
            }
            if l.owner_id != host_id || l.owner_generation != generation {
                return Err(DirectError::failed(format!(
                    "held by host_id {} generation {}, not by host_id {host_id} generation {generation}",
                    l.owner_id, l.owner_generation
                )));
            }
            Mode::Exclusive
        };
        let held = HeldResource { area, mode, lver: l.lver, leader: l.clone(), dblock: *dblock };
        let ls_area = LockspaceArea { name: res.lockspace, offset: res.offset, geometry: area.geometry };
        block_on(paxos_lease::release(&self.paxos_ctx(ls_area, host_id, generation), &held))?;
        say(out, format_args!("release done: {}:{} lver {}", res.lockspace, res.name, l.lver))
    }

    fn read_leader_lockspace(&self, ls: &LockspaceArg, out: &mut dyn Write) -> Result<()> {
        let area = self.lockspace_area(ls)?;
        area.check_host_id(ls.host_id)?;
        let sector = self.read(area.sector_offset(ls.host_id), area.geometry.sector_bytes())?;
        let l = LeaderRecord::decode(&sector)?;
        let r =
            LeaderRecord::verify(&sector, LeaseKind::Delta, Some(area.geometry.sector_bytes() as u32), &ls.name, None);
        print_leader(out, &l, true, r.as_ref().err())?;
        r.map(|_| ()).map_err(|e| {
            DirectError::failed(format!(
                "host_id {} at offset {}: invalid lease record: {e}",
                ls.host_id,
                area.sector_offset(ls.host_id)
            ))
        })
    }

    fn read_leader_resource(&self, res: &ResourceArg, out: &mut dyn Write) -> Result<()> {
        let area = self.resource_area(res)?;
        let sector = self.read(res.offset, area.geometry.sector_bytes())?;
        let l = LeaderRecord::decode(&sector)?;
        let r = LeaderRecord::verify(
            &sector,
            LeaseKind::Paxos,
            Some(area.geometry.sector_bytes() as u32),
            &res.lockspace,
            Some(&res.name),
        );
        print_leader(out, &l, false, r.as_ref().err())?;
        r.map(|_| ())
            .map_err(|e| DirectError::failed(format!("resource at offset {}: invalid lease record: {e}", res.offset)))
    }

    fn dump(&self, at: &DumpArg, detail: DumpDetail, out: &mut dyn Write) -> Result<()> {
        let size = self.disk.inner.size_bytes().map_err(|e| DirectError::failed(format!("device size: {e}")))?;
        let end = at.size.map_or(size, |s| at.offset.saturating_add(s).min(size));
        if !at.offset.is_multiple_of(1 << 20) {
            say(out, format_args!("WARNING: dump offset should be a multiple of 1048576 bytes."))?;
        }
        if !at.offset.is_multiple_of(512) {
            return Err(DirectError::usage(format!("dump offset {} is not a multiple of 512", at.offset)));
        }
        let g = match (self.common.sector, self.common.align) {
            (Some(s), Some(a)) => Geometry::new(s, a).map_err(|e| DirectError::usage(e.to_string()))?,
            _ => self.find_geometry(at.offset, end)?,
        };
        let sector = g.sector_bytes();
        let area = g.area_bytes();
        let force = detail.bitmap || detail.mode_blocks;
        say(
            out,
            format_args!(
                "{:>8} {:>36} {:>48} {:>10} {:>4} {:>4} lver{}",
                "offset",
                "lockspace",
                "resource",
                "timestamp",
                "own",
                "gen",
                if force { "/req/mode" } else { "" }
            ),
        )?;
        let mut invalid = Vec::new();
        let mut off = at.offset;
        while off < end {
            let len = (end - off).min(area) as usize / sector * sector;
            if len == 0 {
                break;
            }
            let Ok(buf) = block_on(self.disk.read(off, len, self.timeouts.io())) else { break };
            let magic = u32::from_le_bytes(buf[..4].try_into().unwrap());
            if magic == DELTA_DISK_MAGIC {
                dump_lockspace(out, off, &buf, g, detail, &mut invalid)?;
            } else if magic == PAXOS_DISK_MAGIC {
                dump_resource(out, off, &buf, g, detail, &mut invalid)?;
            } else if at.size.is_none() {
                // Like sanlock: without a size, the first area that is not a lease ends the dump.
                break;
            }
            off += area;
        }
        if let Some((first_off, first)) = invalid.first() {
            for (o, e) in &invalid {
                eprintln!("warning: offset {o}: invalid lease record: {e}");
            }
            return Err(DirectError::failed(format!(
                "{} invalid record(s), the first at offset {first_off}: {first}",
                invalid.len()
            )));
        }
        Ok(())
    }

    /// sanlock's search for the sizes: a leader at the start of any 1 MiB step, up to 1 GiB.
    fn find_geometry(&self, start: u64, end: u64) -> Result<Geometry> {
        let mut off = start;
        for _ in 0..1024 {
            if off + SIZES_READ as u64 > end {
                break;
            }
            let buf = self.read(off, SIZES_READ)?;
            if let Ok(l) = LeaderRecord::decode(&buf) {
                if l.magic == DELTA_DISK_MAGIC || l.magic == PAXOS_DISK_MAGIC {
                    return Ok(Geometry::from_leader(&l)?);
                }
            }
            off += 1 << 20;
        }
        Err(DirectError::failed("cannot find sector_size and align_size, set with -A and -Z"))
    }
}

fn check_offset(offset: u64, g: Geometry) -> Result<()> {
    if !offset.is_multiple_of(g.sector_bytes() as u64) {
        return Err(DirectError::usage(format!(
            "offset {offset} is not a multiple of the {}-byte sector",
            g.sector_bytes()
        )));
    }
    Ok(())
}

fn say(out: &mut dyn Write, args: fmt::Arguments<'_>) -> Result<()> {
    writeln!(out, "{args}").map_err(write_err)
}

fn write_err(e: io::Error) -> DirectError {
    DirectError::failed(format!("writing output: {e}"))
}

fn describe_mode_block(mb: &ModeBlock) -> String {
    if mb.flags == 0 && mb.generation == 0 {
        "empty".into()
    } else {
        format!("flags 0x{:x} generation {}", mb.flags, mb.generation)
    }
}

/// The leader, field by field, as `sanlock direct read_leader` prints it.
fn print_leader(out: &mut dyn Write, l: &LeaderRecord, is_ls: bool, err: Option<&RecordError>) -> Result<()> {
    let rv = err.map_or(0, sanlk_code);
    let (w1, w2, w3) =
        if is_ls { ("extra1", "extra2", "extra3") } else { ("write_id", "write_generation", "write_timestamp") };
    let text = format!(
        "read_leader done {rv}\nmagic 0x{:x}\nversion 0x{:x}\nflags 0x{:x}\nsector_size {}\nnum_hosts {}\n\
         max_hosts {}\nowner_id {}\nowner_generation {}\nlver {}\nspace_name {}\nresource_name {}\n\
         timestamp {}\nchecksum 0x{:x}\nio_timeout {}\n{w1} {}\n{w2} {}\n{w3} {}\n",
        l.magic,
        l.version,
        l.flags,
        l.sector_size,
        l.num_hosts,
        l.max_hosts,
        l.owner_id,
        l.owner_generation,
        l.lver,
        l.space_name,
        l.resource_name,
        l.timestamp,
        l.checksum,
        l.io_timeout,
        l.write_id,
        l.write_generation,
        l.write_timestamp
    );
    out.write_all(text.as_bytes()).map_err(write_err)
}

fn dump_lockspace(
    out: &mut dyn Write,
    base: u64,
    buf: &[u8],
    g: Geometry,
    detail: DumpDetail,
    invalid: &mut Vec<(u64, RecordError)>,
) -> Result<()> {
    let sector = g.sector_bytes();
    for (i, s) in buf.chunks_exact(sector).enumerate() {
        if s[..4] == [0; 4] {
            continue;
        }
        let l = LeaderRecord::decode(s)?;
        // Never acquired: sanlock leaves these out.
        if l.owner_id == 0 && l.owner_generation == 0 {
            continue;
        }
        let off = base + (i * sector) as u64;
        if let Err(e) = LeaderRecord::verify_any_name(s, LeaseKind::Delta).and_then(|l| {
            if l.sector_size as usize != sector {
                Err(RecordError::SectorSize { found: l.sector_size, expected: Some(sector as u32) })
            } else {
                Ok(l)
            }
        }) {
            invalid.push((off, e));
        }
        let mut line = format!(
            "{off:08} {:>36} {:>48} {:010} {:04} {:04}",
            l.space_name.as_str_lossy(),
            l.resource_name.as_str_lossy(),
            l.timestamp,
            l.owner_id,
            l.owner_generation
        );
        if detail.bitmap || detail.mode_blocks {
            let bm = HostBitmap::decode(s)?;
            for h in (1..=g.max_hosts()).filter(|&h| bm.is_set(h)) {
                line.push_str(&format!(" {h}"));
            }
        }
        say(out, format_args!("{line}"))?;
    }
    Ok(())
}

fn dump_resource(
    out: &mut dyn Write,
    off: u64,
    buf: &[u8],
    g: Geometry,
    detail: DumpDetail,
    invalid: &mut Vec<(u64, RecordError)>,
) -> Result<()> {
    let sector = g.sector_bytes();
    let l = LeaderRecord::decode(buf)?;
    if let Err(e) = LeaderRecord::verify_any_name(buf, LeaseKind::Paxos) {
        invalid.push((off, e));
    }
    let mut line = format!(
        "{off:08} {:>36} {:>48} {:010} {:04} {:04} {}",
        l.space_name.as_str_lossy(),
        l.resource_name.as_str_lossy(),
        l.timestamp,
        l.owner_id,
        l.owner_generation,
        l.lver
    );
    if detail.bitmap || detail.mode_blocks {
        let at = REQUEST_SECTOR as usize * sector;
        let rr = buf.get(at..at + sector).map(RequestRecord::decode).transpose()?;
        let (lver, force) = rr.map_or((0, 0), |r| (r.lver, r.force_mode));
        line.push_str(&format!("/{lver}/{force}"));
    }
    say(out, format_args!("{line}"))?;
    let slots = (buf.len() / sector).saturating_sub(FIRST_DBLOCK_SECTOR as usize) as u64;
    for i in 0..l.num_hosts.min(slots) {
        let at = (FIRST_DBLOCK_SECTOR + i) as usize * sector;
        let s = &buf[at..at + sector];
        let d = PaxosDblock::decode(s)?;
        let mb = ModeBlock::decode(s)?;
        if detail.mode_blocks && (d.mbal != 0 || d.inp != 0 || d.lver != 0) {
            if let Err(e) = PaxosDblock::verify(s, i + 1) {
                invalid.push((off + at as u64, e));
            }
            say(
                out,
                format_args!(
                    "dblock[{i:04}] mbal {} bal {} inp {} inp2 {} inp3 {} lver {} sum {:x}",
                    d.mbal, d.bal, d.inp, d.inp2, d.inp3, d.lver, d.checksum
                ),
            )?;
        }
        if mb.shared() {
            say(out, format_args!("{:106}{:04} {:04} SH", "", i + 1, mb.generation))?;
        } else if detail.mode_blocks && (mb.flags != 0 || mb.generation != 0) {
            say(out, format_args!("mode[{i:04}] flags 0x{:x} generation {}", mb.flags, mb.generation))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockspace_strings() {
        let ls = LockspaceArg::parse("lvm_vg:7:/dev/mapper/vg-lvmlock:0").unwrap();
        assert_eq!(ls.name, Name::new("lvm_vg").unwrap());
        assert_eq!((ls.host_id, ls.offset), (7, 0));
        assert_eq!(ls.path, PathBuf::from("/dev/mapper/vg-lvmlock"));
        let esc = LockspaceArg::parse(r"ls:1:/dev/foo\:32:1048576").unwrap();
        assert_eq!(esc.path, PathBuf::from("/dev/foo:32"));
        for bad in ["ls:1:/p", "ls:1:/p:0:9", ":1:/p:0", "ls:x:/p:0", "ls:1::0", "ls:1:/p:-5", "ls:1:/p:0x10"] {
            let e = LockspaceArg::parse(bad).unwrap_err();
            assert!(e.usage && e.msg.contains("invalid LOCKSPACE"), "{bad}: {e}");
        }
        assert!(LockspaceArg::parse(&format!("{}:1:/p:0", "n".repeat(49))).is_err());
    }

    #[test]
    fn resource_strings() {
        let r = ResourceArg::parse("lvm_vg:VGLK:/dev/x:69206016").unwrap();
        assert_eq!((r.offset, r.shared, r.lver), (69206016, false, None));
        assert!(ResourceArg::parse("ls:r:/p:0:SH").unwrap().shared);
        assert_eq!(ResourceArg::parse("ls:r:/p:0:5").unwrap().lver, Some(5));
        for bad in ["ls:r:/p", "ls:r:/p:0:sh", "ls:r:/p:0:1:2", "ls::/p:0", "ls:r:/p:1M"] {
            assert!(ResourceArg::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dump_strings() {
        assert_eq!(DumpArg::parse("/p").unwrap(), DumpArg { path: "/p".into(), offset: 0, size: None });
        assert_eq!(
            DumpArg::parse("/p:2M:1048576").unwrap(),
            DumpArg { path: "/p".into(), offset: 2 << 20, size: Some(1 << 20) }
        );
        assert!(DumpArg::parse("/p:x").is_err());
        assert!(DumpArg::parse(":0").is_err());
    }

    #[test]
    fn record_errors_map_to_sanlock_codes() {
        assert_eq!(sanlk_code(&RecordError::Checksum { found: 1, computed: 2 }), -229);
        assert_eq!(sanlk_code(&RecordError::Magic { found: 0, expected: 1 }), -223);
        let n = Name::new("a").unwrap();
        assert_eq!(sanlk_code(&RecordError::ResourceName { found: n, expected: n }), -227);
    }
}
