//! Delta leases (Chockler/Malkhi light-weight leases): host_id ownership within a lockspace.
//!
//! Host N owns sector N-1 of the lockspace area. It proves it is alive by rewriting its record
//! with a new timestamp every 2N; peers watch the timestamp *change*, timed by their own clock.
//!
//! Rules, each with its reason:
//! - Acquire always writes, waits 2N, and re-reads an identical sector: any other live writer of
//!   the same host_id renews within 2N, so either it sees our record (and stops) or we see its.
//! - A record held under another name, or under our name by an incarnation that may still be
//!   alive, is first watched for 8N+W: only if it stays unchanged is its owner certainly reset by
//!   its watchdog.
//! - The 8N+W wait is skipped only when the record carries our stable host name and a boot id
//!   different from ours: the previous incarnation died with that boot.
//! - Between reading a record and writing over it at most N may pass ([`STALE_READ_LIMIT_IO`]);
//!   a slower step restarts, so a stalled acquirer cannot overwrite a lease that changed hands
//!   after its read.
//! - Acquire counts only if its confirming re-read completes within 7N of issuing its write
//!   ([`Timeouts::delta_confirm_limit`]): that write is the lease's first renewal, so peers
//!   may take the host_id 8N+W after it, and wdmd must learn the expiry (write + 8N) before it
//!   passes for the watchdog to reset us first. A late round writes the record again.
//! - A renewal write is never issued when it could complete after our 8N expiry: peers may
//!   then have stopped watching for it, and our watchdog fires on the old expiry anyway.
//! - A corrupt record is an error, never free.

use std::time::Duration;

use crate::clock::{monotime_secs, Clock};
use crate::diskio::{AlignedBuf, Disk, IoError};
use crate::error::LeaseError;
use crate::ondisk::{
    delta_sector_offset, BootStamp, Geometry, HostBitmap, LeaderRecord, LeaseKind, Name, LEADER_RECORD_LEN,
};
use crate::timeouts::Timeouts;

/// How many io_timeouts may pass between issuing a read and issuing the write that relies on it.
pub const STALE_READ_LIMIT_IO: u32 = 1;
/// Restarts of an acquire whose read went stale, or whose confirmation came too late
/// ([`Timeouts::delta_confirm_limit`]), before giving up.
pub const MAX_STALE_RESTARTS: u32 = 3;

/// Where a lockspace lives.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LockspaceArea {
    pub name: Name,
    /// Byte offset of the area on the disk.
    pub offset: u64,
    pub geometry: Geometry,
}

impl LockspaceArea {
    pub fn sector_offset(&self, host_id: u64) -> u64 {
        self.offset + delta_sector_offset(self.geometry, host_id)
    }

    pub fn check_host_id(&self, host_id: u64) -> Result<(), LeaseError> {
        let max = self.geometry.max_hosts();
        if host_id == 0 || host_id > max {
            return Err(LeaseError::Invalid(format!("host_id {host_id} is outside 1..={max} for this lockspace")));
        }
        Ok(())
    }
}

/// Who we are in a lockspace.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    pub host_id: u64,
    /// Stable across reboots (from the config or /etc/machine-id).
    pub host_name: Name,
    /// This boot's id; `None` disables the fast rejoin.
    pub boot: Option<BootStamp>,
}

/// Test-only switches that break the protocol on purpose, so the simulator can prove that its
/// checker catches the breakage. All false in production.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtocolFaults {
    /// Delta acquire: skip the 2N wait and re-read after writing.
    pub skip_delta_short_delay: bool,
    /// Delta acquire: skip the 8N+W wait on a record that may still be owned.
    pub skip_delta_large_delay: bool,
    /// Delta acquire: take the fast rejoin on our own name even within the same boot.
    pub ignore_boot_id: bool,
    /// Delta acquire: count a confirmation however late it comes after our write.
    pub ignore_confirm_limit: bool,
    /// Paxos acquire: treat a held resource as free without the owner liveness wait.
    pub skip_owner_liveness: bool,
}

/// A held delta lease.
#[derive(Clone, Debug)]
pub struct DeltaLease {
    pub area: LockspaceArea,
    pub identity: HostIdentity,
    pub generation: u64,
    /// Our io_timeout as written in the record.
    pub io_timeout: u16,
    /// The full sector we last wrote: a renewal must find exactly this on disk.
    pub last_written: AlignedBuf,
    /// Our clock when the last successful write was issued; the wdmd expiry counts from it.
    pub last_success: Duration,
    /// Renewal writes that timed out and may still land (newest last, at most
    /// [`MAX_MAYBE_WRITTEN`]): finding one of them on disk is not a foreign change.
    pub maybe_written: Vec<AlignedBuf>,
}

/// Timed-out renewal writes remembered as possibly on disk.
pub const MAX_MAYBE_WRITTEN: usize = 4;

impl DeltaLease {
    pub fn leader(&self) -> LeaderRecord {
        LeaderRecord::decode(&self.last_written).expect("we wrote it")
    }
}

/// How acquire decided to treat the record it found.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AcquirePath {
    /// Timestamp 0: released cleanly.
    Free,
    /// Our name with an earlier boot id: the previous holder died with its boot.
    Rejoin,
    /// Possibly owned: watched unchanged for 8N+W first.
    WaitedForOwner,
}

/// Writes a whole lockspace area: every host record free. The first record's magic is written
/// last, in a second single-sector write, so a partly written area never looks valid.
pub async fn init<D: Disk>(disk: &D, area: &LockspaceArea, timeouts: Timeouts) -> Result<(), LeaseError> {
    let g = area.geometry;
    let sector = g.sector_bytes();
    let max_hosts = g.max_hosts();
    let mut buf = AlignedBuf::zeroed(g.area_bytes() as usize);
    let mut leader = LeaderRecord::new(LeaseKind::Delta, g, area.name, Name::EMPTY);
    leader.max_hosts = 1; // what sanlock writes (legacy)
    leader.io_timeout = timeouts.io_timeout as u16;
    for h in 0..max_hosts as usize {
        leader.encode(&mut buf[h * sector..h * sector + LEADER_RECORD_LEN]);
    }
    let mut first = buf[..sector].to_vec();
    let mut unmagic = leader.clone();
    unmagic.magic = 0;
    unmagic.encode(&mut buf[..LEADER_RECORD_LEN]);
    disk.write(area.offset, buf, init_timeout(timeouts)).await.map_err(LeaseError::Write)?;
    leader.encode(&mut first[..LEADER_RECORD_LEN]);
    disk.write(area.offset, AlignedBuf::from_slice(&first), timeouts.io()).await.map_err(LeaseError::Write)
}

/// Large init writes get more time than an ordinary I/O (sanlock's write_init_io_timeout).
pub fn init_timeout(timeouts: Timeouts) -> Duration {
    timeouts.io().max(Duration::from_secs(60))
}

async fn read_sector<D: Disk>(
    disk: &D,
    area: &LockspaceArea,
    host_id: u64,
    timeouts: Timeouts,
) -> Result<(AlignedBuf, LeaderRecord), LeaseError> {
    let buf = disk
        .read(area.sector_offset(host_id), area.geometry.sector_bytes(), timeouts.io())
        .await
        .map_err(LeaseError::Read)?;
    let leader = verify_sector(area, &buf)?;
    Ok((buf, leader))
}

/// Validates one delta sector of `area`.
pub fn verify_sector(area: &LockspaceArea, sector: &[u8]) -> Result<LeaderRecord, LeaseError> {
    Ok(LeaderRecord::verify(sector, LeaseKind::Delta, Some(area.geometry.sector_bytes() as u32), &area.name, None)?)
}

/// Decides whether the record found must be watched for 8N+W before we may take it.
pub fn acquire_path(
    found: &LeaderRecord,
    found_sector: &[u8],
    me: &HostIdentity,
    faults: ProtocolFaults,
) -> AcquirePath {
    if found.timestamp == 0 {
        return AcquirePath::Free;
    }
    if found.resource_name == me.host_name {
        if faults.ignore_boot_id {
            return AcquirePath::Rejoin;
        }
        // Our name and a boot id that is not this boot's: the writer was this machine in an
        // earlier boot, which ended with everything it held. No stamp, or our own boot: a
        // daemon of this boot may still have leases in use; its watchdog must act first.
        if let (Some(theirs), Some(ours)) = (BootStamp::decode(found_sector), me.boot) {
            if theirs != ours {
                return AcquirePath::Rejoin;
            }
        }
    }
    AcquirePath::WaitedForOwner
}

/// Acquires `me.host_id` in the lockspace. Returns the held lease and the path taken.
pub async fn acquire<D: Disk, C: Clock>(
    disk: &D,
    clock: &C,
    area: &LockspaceArea,
    me: &HostIdentity,
    timeouts: Timeouts,
    faults: ProtocolFaults,
) -> Result<(DeltaLease, AcquirePath), LeaseError> {
    area.check_host_id(me.host_id)?;
    let stale_limit = timeouts.io() * STALE_READ_LIMIT_IO;
    let mut restarts = 0;
    // Set after a confirmation that came too late: our own record exactly as the re-read found
    // it, and when that re-read was issued. The next round writes over it at once.
    let mut own: Option<(LeaderRecord, Duration)> = None;
    // The path of the last round that read the record (what the returned lease rests on).
    let mut path_taken = None;
    loop {
        let (base, based_on_read, short_delay) = match own.take() {
            // Only we wrote this record since we took it over, and nobody holds anything under
            // it: a new write needs no owner wait, only the race check against a twin. A twin
            // that read the record before our first write has landed by our first re-read
            // (which waited 2N of that record's N); any later one read our record, so it times
            // us with our N, and our own 2N wait is the one that catches it.
            Some((record, read_issued)) => (record, read_issued, timeouts.delta_short_delay()),
            None => {
                let read_issued = clock.now();
                let (sector, found) = read_sector(disk, area, me.host_id, timeouts).await?;
                let peer = timeouts.for_peer(found.io_timeout);
                let path = acquire_path(&found, &sector, me, faults);
                path_taken = Some(path);
                // A live writer of this host_id (misconfigured twin) renews within 2N of its
                // own N; we do not know its N, so wait for the larger of ours and the record's.
                let short_delay = timeouts.delta_short_delay().max(peer.delta_short_delay());
                if path == AcquirePath::WaitedForOwner && !faults.skip_delta_large_delay {
                    clock.sleep(peer.delta_large_delay()).await;
                    let reread_issued = clock.now();
                    let (_, now_found) = read_sector(disk, area, me.host_id, timeouts).await?;
                    // Unchanged: its owner has been silent for 8N+W and is reset. Freed
                    // meanwhile: fine.
                    if now_found.to_bytes() != found.to_bytes() && now_found.timestamp != 0 {
                        return Err(LeaseError::HostIdBusy {
                            owner_name: now_found.resource_name.as_str_lossy(),
                            owner_generation: now_found.owner_generation,
                        });
                    }
                    (now_found, reread_issued, short_delay)
                } else {
                    (found, read_issued, short_delay)
                }
            }
        };

        let mut leader = base;
        leader.timestamp = monotime_secs(clock);
        leader.io_timeout = timeouts.io_timeout as u16;
        leader.owner_id = me.host_id;
        leader.owner_generation += 1;
        leader.resource_name = me.host_name;
        let mut out = AlignedBuf::zeroed(area.geometry.sector_bytes());
        leader.encode(&mut out[..LEADER_RECORD_LEN]);
        if let Some(b) = me.boot {
            b.encode(&mut out);
        }
        let write_issued = clock.now();
        if write_issued.saturating_sub(based_on_read) > stale_limit {
            restarts += 1;
            if restarts > MAX_STALE_RESTARTS {
                return Err(LeaseError::Invalid("delta acquire: reads keep going stale (host too slow)".into()));
            }
            continue;
        }
        disk.write(area.sector_offset(me.host_id), out.clone(), timeouts.io()).await.map_err(LeaseError::Write)?;

        let mut reread_issued = None;
        if !faults.skip_delta_short_delay {
            clock.sleep(short_delay).await;
            reread_issued = Some(clock.now());
            let (now_sector, now_found) = read_sector(disk, area, me.host_id, timeouts).await?;
            if now_sector[..] != out[..] {
                return Err(LeaseError::HostIdBusy {
                    owner_name: now_found.resource_name.as_str_lossy(),
                    owner_generation: now_found.owner_generation,
                });
            }
        }
        // Our write is the lease's first renewal: peers that saw it may take the host_id
        // 8N+W after it was issued. Learning that we own it later than the confirmation limit
        // (a stall, or a 2N wait of a record with a much longer io_timeout) would hand wdmd an
        // expiry too late for the watchdog to reset us before then. Such a round does not
        // count; the record is still ours, so write it again and confirm again.
        if clock.now().saturating_sub(write_issued) > timeouts.delta_confirm_limit() && !faults.ignore_confirm_limit {
            restarts += 1;
            if restarts > MAX_STALE_RESTARTS {
                return Err(LeaseError::Invalid(
                    "delta acquire: confirmations keep coming too late (host too slow)".into(),
                ));
            }
            own = reread_issued.map(|at| (leader, at));
            continue;
        }
        let lease = DeltaLease {
            area: *area,
            identity: *me,
            generation: leader.owner_generation,
            io_timeout: timeouts.io_timeout as u16,
            last_written: out,
            last_success: write_issued,
            maybe_written: Vec::new(),
        };
        return Ok((lease, path_taken.expect("the first round reads the record")));
    }
}

/// One renewal: read the whole area (one I/O), check our record is exactly what we last wrote,
/// write a new timestamp and `bitmap`. Returns the area as read, for the host-status table.
pub async fn renew<D: Disk, C: Clock>(
    disk: &D,
    clock: &C,
    lease: &mut DeltaLease,
    bitmap: &HostBitmap,
    timeouts: Timeouts,
) -> Result<AlignedBuf, LeaseError> {
    let area = lease.area;
    let g = area.geometry;
    let sector = g.sector_bytes();
    let read_issued = clock.now();
    let buf = disk.read(area.offset, g.area_bytes() as usize, timeouts.io()).await.map_err(LeaseError::Read)?;
    let at = delta_sector_offset(g, lease.identity.host_id) as usize;
    let ours = &buf[at..at + sector];
    let found = verify_sector(&area, ours)?;
    if found.owner_id != lease.identity.host_id
        || found.owner_generation != lease.generation
        || found.resource_name != lease.identity.host_name
    {
        return Err(LeaseError::RenewOwner);
    }
    let same = |w: &AlignedBuf| ours[..LEADER_RECORD_LEN] == w[..LEADER_RECORD_LEN];
    if !same(&lease.last_written) && !lease.maybe_written.iter().any(same) {
        return Err(LeaseError::RenewDiff);
    }
    let mut leader = found;
    leader.timestamp = monotime_secs(clock);
    let mut out = AlignedBuf::zeroed(sector);
    leader.encode(&mut out[..LEADER_RECORD_LEN]);
    if let Some(b) = lease.identity.boot {
        b.encode(&mut out);
    }
    bitmap.encode(&mut out);
    let write_issued = clock.now();
    if write_issued + timeouts.io() > lease.last_success + timeouts.renewal_fail() {
        return Err(LeaseError::Expired);
    }
    if write_issued.saturating_sub(read_issued) > timeouts.io() * STALE_READ_LIMIT_IO {
        // Our view of the sector is too old to overwrite it; the caller retries.
        return Err(LeaseError::Read(IoError::TimedOut));
    }
    match disk.write(area.sector_offset(lease.identity.host_id), out.clone(), timeouts.io()).await {
        Ok(()) => {
            lease.last_written = out;
            lease.last_success = write_issued;
            Ok(buf)
        }
        Err(e) => {
            if e == IoError::TimedOut {
                if lease.maybe_written.len() == MAX_MAYBE_WRITTEN {
                    lease.maybe_written.remove(0);
                }
                lease.maybe_written.push(out);
            }
            Err(LeaseError::Write(e))
        }
    }
}

/// Releases the delta lease: our record with timestamp 0 (same owner and generation).
pub async fn release<D: Disk>(disk: &D, lease: &DeltaLease, timeouts: Timeouts) -> Result<(), LeaseError> {
    let mut leader = lease.leader();
    leader.timestamp = 0;
    let mut out = AlignedBuf::zeroed(lease.area.geometry.sector_bytes());
    leader.encode(&mut out[..LEADER_RECORD_LEN]);
    if let Some(b) = lease.identity.boot {
        b.encode(&mut out);
    }
    disk.write(lease.area.sector_offset(lease.identity.host_id), out, timeouts.io()).await.map_err(LeaseError::Write)
}
