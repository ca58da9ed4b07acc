//! Disk-Paxos resource leases (Gafni/Lamport), exclusive and shared, in sanlock's layout.
//!
//! One ballot decides one new lease version (`lver`); the decision is cached in the leader
//! record. A paxos lease is never renewed on disk: it stays valid exactly as long as its owner's
//! delta lease (owner_id, generation) does.
//!
//! Rules, each with its reason:
//! - mbal ≡ host_id (mod max_hosts) and always above every mbal seen: ballots of different
//!   hosts never collide and a newer ballot always outranks an older one.
//! - Phase 1 keeps the value we accepted earlier in the same lver (textbook Disk Paxos; sanlock
//!   clears it): once our phase 2 may have chosen a value, a retry must not erase the evidence,
//!   or a late commit and a new value could both win.
//! - A held resource is taken only when its owner's delta lease is free, has a newer
//!   generation, or stayed unchanged for the owner's host_dead (its watchdog has reset it).
//! - A held resource's dblock never goes back to an older (lver, mbal): it is our part of
//!   every ballot's evidence. A failed up-conversion leaves its ballot's dblock in the hold, so the later
//!   release or down-conversion writes that one released, not the one we acquired with; an
//!   older dblock would erase the proof that a version was decided, and a ballot that read
//!   the area before that decision could then win the same version with another value.
//! - A ballot whose phase 1 or phase 2 read shows the leader at its lver or beyond has lost:
//!   that version is decided, whatever the dblocks still show.
//! - A corrupt leader or dblock is an error, never free.
//! - Shared holders are marked only in their mode blocks, written *before* the short-hold leader
//!   is released, so an exclusive acquirer's phase 1 always sees them.
//! - Release writes the leader only if we wrote it: a leader committed by someone else on our
//!   behalf is released through our RELEASED dblock instead. A RELEASED dblock at the leader's
//!   lver frees the lease for others even when the leader still names its owner.

use std::cell::Cell;

use crate::clock::{monotime_secs, Clock};
use crate::delta_lease::{verify_sector, LockspaceArea, ProtocolFaults};
use crate::diskio::{AlignedBuf, Disk};
use crate::error::LeaseError;
use crate::host_status::HostStatusTable;
use crate::ondisk::{
    dblock_sector_offset, paxos_read_len, Geometry, LeaderRecord, LeaseKind, ModeBlock, Name, PaxosDblock, RecordError,
    RequestRecord, DBLOCK_FL_RELEASED, DBLOCK_LEN, LEADER_RECORD_LEN, LFL_SHORT_HOLD, LVB_SECTOR, MBLOCK_SHARED,
    MODE_BLOCK_OFFSET, PAXOS_DISK_CLEAR, REQUEST_RECORD_LEN, REQUEST_SECTOR,
};
use crate::timeouts::{Timeouts, BALLOT_BACKOFF_MAX, LIVENESS_POLL, SH_RETRIES};

/// Ballots lost in a row before acquire gives up (each is followed by a random backoff).
pub const MAX_BALLOT_RETRIES: u32 = 64;
/// Restarts of acquire (the leader changed under us) before giving up.
pub const MAX_ACQUIRE_RESTARTS: u32 = 64;

/// Where a resource lease lives.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ResourceArea {
    pub lockspace: Name,
    pub name: Name,
    pub offset: u64,
    pub geometry: Geometry,
}

impl ResourceArea {
    fn host_sector(&self, host_id: u64) -> u64 {
        self.offset + dblock_sector_offset(self.geometry, host_id)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Exclusive,
    Shared,
}

/// Everything a paxos operation needs to know about us.
pub struct PaxosCtx<'a, D, C> {
    pub disk: &'a D,
    pub clock: &'a C,
    pub timeouts: Timeouts,
    /// The lockspace whose delta leases tell owner liveness.
    pub lockspace: LockspaceArea,
    pub host_id: u64,
    /// Our delta lease generation.
    pub generation: u64,
    /// Our view of the other hosts (from renewals); decides whether shared holders are dead.
    pub hosts: Option<&'a HostStatusTable>,
    pub faults: ProtocolFaults,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AcquireOptions {
    pub mode: Mode,
    /// false: sanlock's OWNER_NOWAIT, fail at once while a possibly live owner holds it.
    pub wait_for_owner: bool,
}

/// A resource we hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldResource {
    pub area: ResourceArea,
    pub mode: Mode,
    pub lver: u64,
    /// The leader as we last wrote or read it.
    pub leader: LeaderRecord,
    /// Our dblock as last written.
    pub dblock: PaxosDblock,
}

/// A verified read of a resource area.
#[derive(Clone, Debug)]
pub struct ResourceView {
    pub leader: LeaderRecord,
    /// Index i is host_id i+1, for the first num_hosts hosts.
    pub dblocks: Vec<PaxosDblock>,
    pub mode_blocks: Vec<ModeBlock>,
}

impl ResourceView {
    fn max_mbal(&self) -> u64 {
        self.dblocks.iter().map(|d| d.mbal).max().unwrap_or(0)
    }

    /// Shared holders other than `except`, with the generation in their mode block.
    pub fn shared_holders(&self, except: u64) -> Vec<(u64, u64)> {
        self.mode_blocks
            .iter()
            .enumerate()
            .filter(|(i, m)| m.shared() && *i as u64 + 1 != except)
            .map(|(i, m)| (i as u64 + 1, m.generation))
            .collect()
    }
}

/// Writes a whole resource area: leader (or the "cleared" magic), request record, empty
/// dblocks, in one I/O.
pub async fn init<D: Disk>(
    disk: &D,
    area: &ResourceArea,
    num_hosts: u64,
    clear: bool,
    timeouts: Timeouts,
) -> Result<(), LeaseError> {
    let g = area.geometry;
    let max = g.max_hosts();
    let num_hosts = if num_hosts == 0 { max } else { num_hosts };
    if num_hosts > max {
        return Err(LeaseError::Invalid(format!("num_hosts {num_hosts} exceeds {max} for this geometry")));
    }
    let mut buf = AlignedBuf::zeroed(g.area_bytes() as usize);
    let mut leader = LeaderRecord::new(LeaseKind::Paxos, g, area.lockspace, area.name);
    leader.num_hosts = num_hosts;
    leader.max_hosts = max;
    if clear {
        leader.magic = PAXOS_DISK_CLEAR;
    }
    leader.encode(&mut buf[..LEADER_RECORD_LEN]);
    let req_at = REQUEST_SECTOR as usize * g.sector_bytes();
    RequestRecord::new(0, 0).encode(&mut buf[req_at..req_at + REQUEST_RECORD_LEN]);
    disk.write(area.offset, buf, crate::delta_lease::init_timeout(timeouts)).await.map_err(LeaseError::Write)
}

/// Reads the leader and every dblock of a resource in one I/O and verifies them all.
pub async fn read_resource<D: Disk>(
    disk: &D,
    area: &ResourceArea,
    timeouts: Timeouts,
) -> Result<ResourceView, LeaseError> {
    let g = area.geometry;
    let len = paxos_read_len(g, g.max_hosts()) as usize;
    let buf = disk.read(area.offset, len, timeouts.io()).await.map_err(LeaseError::Read)?;
    parse_resource(area, &buf)
}

/// Verifies a resource area read from disk.
pub fn parse_resource(area: &ResourceArea, buf: &[u8]) -> Result<ResourceView, LeaseError> {
    let g = area.geometry;
    let sector = g.sector_bytes();
    let leader = LeaderRecord::verify(buf, LeaseKind::Paxos, Some(sector as u32), &area.lockspace, Some(&area.name))?;
    let num_hosts = leader.num_hosts.min(g.max_hosts());
    let mut dblocks = Vec::with_capacity(num_hosts as usize);
    let mut mode_blocks = Vec::with_capacity(num_hosts as usize);
    for h in 1..=num_hosts {
        let at = dblock_sector_offset(g, h) as usize;
        let Some(s) = buf.get(at..at + sector) else { break };
        // Most of the 2000 hosts never wrote here: a blank sector decodes to the defaults
        // (a zero dblock is valid unchecksummed), found without decoding it.
        if s.len() >= MODE_BLOCK_OFFSET + 16
            && all_zero(&s[..DBLOCK_LEN])
            && all_zero(&s[MODE_BLOCK_OFFSET..MODE_BLOCK_OFFSET + 16])
        {
            dblocks.push(PaxosDblock::default());
            mode_blocks.push(ModeBlock::default());
            continue;
        }
        dblocks.push(PaxosDblock::verify(s, h)?);
        mode_blocks.push(ModeBlock::decode(s)?);
    }
    Ok(ResourceView { leader, dblocks, mode_blocks })
}

/// Eight bytes at a time (a byte loop was slower than decoding the dblock).
fn all_zero(b: &[u8]) -> bool {
    let words = b.chunks_exact(8);
    let tail = words.remainder().iter().fold(0u8, |a, &x| a | x);
    words.fold(0u64, |a, w| a | u64::from_ne_bytes(w.try_into().expect("8 bytes"))) == 0 && tail == 0
}

async fn read_leader<D: Disk>(disk: &D, area: &ResourceArea, timeouts: Timeouts) -> Result<LeaderRecord, LeaseError> {
    let buf = disk.read(area.offset, area.geometry.sector_bytes(), timeouts.io()).await.map_err(LeaseError::Read)?;
    Ok(LeaderRecord::verify(
        &buf,
        LeaseKind::Paxos,
        Some(area.geometry.sector_bytes() as u32),
        &area.lockspace,
        Some(&area.name),
    )?)
}

async fn write_leader<D: Disk>(
    disk: &D,
    area: &ResourceArea,
    leader: &mut LeaderRecord,
    timeouts: Timeouts,
) -> Result<(), LeaseError> {
    let mut out = AlignedBuf::zeroed(area.geometry.sector_bytes());
    leader.encode(&mut out[..LEADER_RECORD_LEN]);
    disk.write(area.offset, out, timeouts.io()).await.map_err(LeaseError::Write)
}

/// The newest dblock an acquire has issued to our sector (landed or maybe landing).
type Written = Cell<Option<PaxosDblock>>;

/// Writes our host sector: dblock and mode block together (one sector, one I/O). `written`
/// remembers it as issued: from then on it may be on disk, whatever the outcome.
async fn write_host_sector<D, C>(
    ctx: &PaxosCtx<'_, D, C>,
    area: &ResourceArea,
    dblock: &mut PaxosDblock,
    mode: ModeBlock,
    written: Option<&Written>,
) -> Result<(), LeaseError>
where
    D: Disk,
{
    if let Some(w) = written {
        w.set(Some(*dblock));
    }
    let mut out = AlignedBuf::zeroed(area.geometry.sector_bytes());
    dblock.encode(&mut out[..DBLOCK_LEN]);
    mode.encode(&mut out);
    ctx.disk.write(area.host_sector(ctx.host_id), out, ctx.timeouts.io()).await.map_err(LeaseError::Write)
}

fn shared_mode(generation: u64) -> ModeBlock {
    ModeBlock { flags: MBLOCK_SHARED, generation }
}

/// The mode block to write when an acquire gives up: a converting holder still holds shared.
fn keep_mode<D, C>(ctx: &PaxosCtx<'_, D, C>, converting: Option<&HeldResource>) -> ModeBlock {
    if converting.is_some() {
        shared_mode(ctx.generation)
    } else {
        ModeBlock::default()
    }
}

/// What the owner liveness check concluded.
enum Liveness {
    /// The owner can no longer use the lease: run a ballot.
    Gone,
    /// The leader changed while we watched: start over.
    Restart,
}

/// Acquires a resource in `opts.mode`.
pub async fn acquire<D: Disk, C: Clock>(
    ctx: &PaxosCtx<'_, D, C>,
    area: &ResourceArea,
    opts: AcquireOptions,
) -> Result<HeldResource, LeaseError> {
    acquire_inner(ctx, area, opts, None, &Cell::new(None)).await
}

/// `converting`: our current shared hold, carried through every dblock write of the ballot.
async fn acquire_inner<D: Disk, C: Clock>(
    ctx: &PaxosCtx<'_, D, C>,
    area: &ResourceArea,
    opts: AcquireOptions,
    converting: Option<&HeldResource>,
    written: &Written,
) -> Result<HeldResource, LeaseError> {
    ctx.lockspace.check_host_id(ctx.host_id)?;
    let mut short_hold_retries = 0;
    let mut restarts = 0;
    'restart: loop {
        restarts += 1;
        if restarts > MAX_ACQUIRE_RESTARTS {
            return Err(LeaseError::Invalid("paxos acquire: the lease keeps changing under us".into()));
        }
        let view = read_resource(ctx.disk, area, ctx.timeouts).await?;
        let leader = view.leader.clone();
        if leader.num_hosts < ctx.host_id {
            return Err(RecordError::NumHosts { num_hosts: leader.num_hosts, host_id: ctx.host_id }.into());
        }
        let ours = leader.owner_id == ctx.host_id && leader.owner_generation == ctx.generation;
        let our_dead_incarnation = leader.owner_id == ctx.host_id && leader.owner_generation < ctx.generation;
        if leader.timestamp != 0 && !ours && !our_dead_incarnation {
            if leader.flags & LFL_SHORT_HOLD != 0 && opts.mode == Mode::Shared {
                // Another shared acquirer holds the leader for a moment; it will release it.
                short_hold_retries += 1;
                if short_hold_retries > SH_RETRIES {
                    return Err(LeaseError::ShortHoldRetry);
                }
                ctx.clock.sleep(ctx.clock.random_delay(BALLOT_BACKOFF_MAX)).await;
                continue 'restart;
            }
            if !ctx.faults.skip_owner_liveness {
                match owner_liveness(ctx, area, &leader, opts.wait_for_owner).await? {
                    Liveness::Gone => {}
                    Liveness::Restart => continue 'restart,
                }
            }
        }

        let next_lver = leader.lver + 1;
        let max_hosts = leader.max_hosts.max(1);
        let max_mbal = view.max_mbal();
        let mut our_mbal =
            if max_mbal == 0 { ctx.host_id } else { max_mbal - max_mbal % max_hosts + max_hosts + ctx.host_id };
        let mut prev = view.dblocks.get(ctx.host_id as usize - 1).copied().unwrap_or_default();
        let mut first = true;
        let mut lost = 0;
        let chosen = loop {
            if !first {
                let now = read_leader(ctx.disk, area, ctx.timeouts).await?;
                if now.lver == next_lver {
                    if now.owner_id == ctx.host_id && now.owner_generation == ctx.generation {
                        // Someone committed our value for us; the shared holders are ours to
                        // check, since that host did not act on its phase 1 for us.
                        let shared = read_resource(ctx.disk, area, ctx.timeouts).await?.shared_holders(ctx.host_id);
                        return finish_acquire(
                            ctx,
                            area,
                            opts,
                            converting,
                            now,
                            BallotWon { dblock: prev, shared },
                            written,
                        )
                        .await;
                    }
                    return Err(LeaseError::Owned { owner_id: now.owner_id, owner_generation: now.owner_generation });
                }
                if now != leader {
                    continue 'restart;
                }
            }
            first = false;
            match run_ballot(ctx, area, next_lver, our_mbal, prev, converting.is_some(), written).await {
                Ok(b) => break b,
                Err(BallotEnd::Lost(d)) => {
                    prev = d;
                    lost += 1;
                    if lost > MAX_BALLOT_RETRIES {
                        return Err(LeaseError::Invalid("paxos acquire: lost too many ballots".into()));
                    }
                    ctx.clock.sleep(ctx.clock.random_delay(BALLOT_BACKOFF_MAX)).await;
                    our_mbal += max_hosts;
                }
                Err(BallotEnd::Failed { error, phase2_started }) => {
                    if phase2_started {
                        // Another host may still commit our value; mark it released so they
                        // do not wait for us. Best effort: the error is what we report. A
                        // converting holder keeps its shared mark: it still holds shared.
                        let mut d = prev;
                        d.flags |= DBLOCK_FL_RELEASED;
                        let _ = write_host_sector(ctx, area, &mut d, keep_mode(ctx, converting), Some(written)).await;
                    }
                    return Err(error);
                }
            }
        };

        // Commit: the leader caches the decision.
        let mut new = leader.clone();
        new.lver = chosen.dblock.lver;
        new.owner_id = chosen.dblock.inp;
        new.owner_generation = chosen.dblock.inp2;
        new.timestamp = chosen.dblock.inp3;
        new.write_id = ctx.host_id;
        new.write_generation = ctx.generation;
        new.write_timestamp = monotime_secs(ctx.clock);
        let ours = new.owner_id == ctx.host_id && new.owner_generation == ctx.generation;
        if ours && opts.mode == Mode::Shared {
            new.flags |= LFL_SHORT_HOLD;
        } else {
            new.flags &= !LFL_SHORT_HOLD;
        }
        if let Err(e) = write_leader(ctx.disk, area, &mut new, ctx.timeouts).await {
            let mut d = chosen.dblock;
            d.flags |= DBLOCK_FL_RELEASED;
            let _ = write_host_sector(ctx, area, &mut d, keep_mode(ctx, converting), Some(written)).await;
            return Err(e);
        }
        if !ours {
            return Err(LeaseError::Other { owner_id: new.owner_id });
        }
        return finish_acquire(ctx, area, opts, converting, new, chosen, written).await;
    }
}

/// After winning: deal with shared holders and, for a shared hold, turn the short-hold leader
/// into a mode block.
async fn finish_acquire<D: Disk, C: Clock>(
    ctx: &PaxosCtx<'_, D, C>,
    area: &ResourceArea,
    opts: AcquireOptions,
    converting: Option<&HeldResource>,
    mut leader: LeaderRecord,
    won: BallotWon,
    written: &Written,
) -> Result<HeldResource, LeaseError> {
    let BallotWon { mut dblock, shared } = won;
    if opts.mode == Mode::Exclusive {
        let live = clear_dead_shared(ctx, area, &shared).await?;
        if !live.is_empty() {
            // Give the leader back; a converting holder stays shared.
            let mut d = dblock;
            d.flags |= DBLOCK_FL_RELEASED;
            write_host_sector(ctx, area, &mut d, keep_mode(ctx, converting), Some(written)).await?;
            release_leader(ctx, area, &leader).await?;
            return Err(LeaseError::SharedHeld { holders: live });
        }
        if converting.is_some() {
            write_host_sector(ctx, area, &mut dblock, ModeBlock::default(), Some(written)).await?;
        }
        return Ok(HeldResource { area: *area, mode: Mode::Exclusive, lver: leader.lver, leader, dblock });
    }
    // Shared: mode block first, then free the leader, so an exclusive acquirer always sees us.
    dblock.flags |= DBLOCK_FL_RELEASED;
    write_host_sector(ctx, area, &mut dblock, shared_mode(ctx.generation), Some(written)).await?;
    leader = release_leader(ctx, area, &leader).await?;
    Ok(HeldResource { area: *area, mode: Mode::Shared, lver: leader.lver, leader, dblock })
}

/// Writes the leader free (timestamp 0, short hold cleared), as written by us.
async fn release_leader<D: Disk, C: Clock>(
    ctx: &PaxosCtx<'_, D, C>,
    area: &ResourceArea,
    leader: &LeaderRecord,
) -> Result<LeaderRecord, LeaseError> {
    let mut l = leader.clone();
    l.timestamp = 0;
    l.flags &= !LFL_SHORT_HOLD;
    l.write_id = ctx.host_id;
    l.write_generation = ctx.generation;
    l.write_timestamp = monotime_secs(ctx.clock);
    write_leader(ctx.disk, area, &mut l, ctx.timeouts).await?;
    Ok(l)
}

/// Visits the shared holders counted in phase 1: clears those whose host is gone, returns the
/// live ones. Without a host table every holder counts as live.
async fn clear_dead_shared<D: Disk, C: Clock>(
    ctx: &PaxosCtx<'_, D, C>,
    area: &ResourceArea,
    shared: &[(u64, u64)],
) -> Result<Vec<u64>, LeaseError> {
    let mut live = Vec::new();
    for &(host_id, _) in shared {
        if host_id == ctx.host_id {
            continue;
        }
        let sector = ctx
            .disk
            .read(area.host_sector(host_id), area.geometry.sector_bytes(), ctx.timeouts.io())
            .await
            .map_err(LeaseError::Read)?;
        PaxosDblock::verify(&sector, host_id)?;
        let mb = ModeBlock::decode(&sector)?;
        if !mb.shared() {
            continue;
        }
        let now = ctx.clock.now();
        let dead = ctx.hosts.is_some_and(|h| h.holder_dead(host_id, mb.generation, now));
        if dead {
            // Its watchdog has reset it: its shared hold is void.
            let zero = AlignedBuf::zeroed(area.geometry.sector_bytes());
            ctx.disk.write(area.host_sector(host_id), zero, ctx.timeouts.io()).await.map_err(LeaseError::Write)?;
        } else {
            live.push(host_id);
        }
    }
    Ok(live)
}

/// Watches the owner's delta lease. Returns when the owner can no longer hold the lease, or
/// the leader changed; fails with IdLive when it is seen alive, OwnedRetry when not waiting.
async fn owner_liveness<D: Disk, C: Clock>(
    ctx: &PaxosCtx<'_, D, C>,
    area: &ResourceArea,
    leader: &LeaderRecord,
    wait: bool,
) -> Result<Liveness, LeaseError> {
    let owner = leader.owner_id;
    if owner == 0 || owner > ctx.lockspace.geometry.max_hosts() {
        return Err(LeaseError::Invalid(format!("resource leader names impossible owner host_id {owner}")));
    }
    // Start from what the renewal loop already saw of this owner, if it is the same incarnation.
    let cached = ctx.hosts.and_then(|h| h.get(owner)).filter(|hs| hs.generation == leader.owner_generation);
    let mut wait_start = cached.map(|hs| hs.last_live.unwrap_or(hs.first_check));
    let mut last_ts = cached.map(|hs| hs.timestamp);
    // The owner has released this lver in its dblock, but the leader was not written free:
    // committed on its behalf by another host, or its own commit failed and may have landed
    // late. Either way the owner no longer uses it.
    if owner_released_dblock(ctx, area, leader).await? {
        return Ok(Liveness::Gone);
    }
    loop {
        let buf = ctx
            .disk
            .read(ctx.lockspace.sector_offset(owner), ctx.lockspace.geometry.sector_bytes(), ctx.timeouts.io())
            .await
            .map_err(LeaseError::Read)?;
        let now = ctx.clock.now();
        let delta = verify_sector(&ctx.lockspace, &buf)?;
        // Free: released by its owner, which stops using its leases first.
        if delta.timestamp == 0 {
            return Ok(Liveness::Gone);
        }
        // Another incarnation holds the host_id: the owner's generation is over.
        if delta.owner_id != owner || delta.owner_generation > leader.owner_generation {
            return Ok(Liveness::Gone);
        }
        let peer = ctx.timeouts.for_peer(delta.io_timeout);
        match last_ts {
            Some(ts) if ts != delta.timestamp => {
                if owner_released_dblock(ctx, area, leader).await? {
                    return Ok(Liveness::Gone);
                }
                return Err(LeaseError::IdLive { owner_id: owner, owner_generation: leader.owner_generation });
            }
            Some(_) => {}
            None => {
                last_ts = Some(delta.timestamp);
                wait_start = Some(now);
            }
        }
        let since = now.saturating_sub(wait_start.expect("set above"));
        if since >= peer.host_dead() {
            return Ok(Liveness::Gone);
        }
        if !wait {
            return Err(LeaseError::OwnedRetry { owner_id: owner, owner_generation: leader.owner_generation });
        }
        ctx.clock.sleep(LIVENESS_POLL).await;
        let again = read_leader(ctx.disk, area, ctx.timeouts).await?;
        if &again != leader {
            return Ok(Liveness::Restart);
        }
    }
}

async fn owner_released_dblock<D: Disk, C: Clock>(
    ctx: &PaxosCtx<'_, D, C>,
    area: &ResourceArea,
    leader: &LeaderRecord,
) -> Result<bool, LeaseError> {
    let owner = leader.owner_id;
    let s = ctx
        .disk
        .read(area.host_sector(owner), area.geometry.sector_bytes(), ctx.timeouts.io())
        .await
        .map_err(LeaseError::Read)?;
    let d = PaxosDblock::verify(&s, owner)?;
    // Only a release of this very lease version counts.
    Ok(d.released() && d.lver == leader.lver)
}

struct BallotWon {
    dblock: PaxosDblock,
    /// Shared holders seen in phase 1.
    shared: Vec<(u64, u64)>,
}

enum BallotEnd {
    /// A higher mbal or lver was seen; retry with a higher ballot. Carries our dblock.
    Lost(PaxosDblock),
    Failed {
        error: LeaseError,
        phase2_started: bool,
    },
}

/// Runs one ballot for `next_lver` with `mbal`. `prev` is our current dblock.
async fn run_ballot<D: Disk, C: Clock>(
    ctx: &PaxosCtx<'_, D, C>,
    area: &ResourceArea,
    next_lver: u64,
    mbal: u64,
    prev: PaxosDblock,
    carry_shared: bool,
    written: &Written,
) -> Result<BallotWon, BallotEnd> {
    let mode = if carry_shared { shared_mode(ctx.generation) } else { ModeBlock::default() };
    let fail1 = |error| BallotEnd::Failed { error, phase2_started: false };
    // Phase 1: announce mbal, keeping any value we accepted in this same lver.
    let mut dblock = if prev.lver == next_lver {
        PaxosDblock { mbal, flags: 0, ..prev }
    } else {
        PaxosDblock { mbal, lver: next_lver, ..Default::default() }
    };
    write_host_sector(ctx, area, &mut dblock, mode, Some(written)).await.map_err(fail1)?;
    let view = read_resource(ctx.disk, area, ctx.timeouts).await.map_err(fail1)?;
    if view.leader.lver >= next_lver {
        // That version is decided already (our first read was older than this ballot).
        return Err(BallotEnd::Lost(dblock));
    }
    let shared = view.shared_holders(ctx.host_id);
    let mut best: Option<PaxosDblock> = None;
    for (i, d) in view.dblocks.iter().enumerate() {
        if i as u64 + 1 == ctx.host_id || d.lver < next_lver {
            continue;
        }
        if d.lver > next_lver || d.mbal > mbal {
            return Err(BallotEnd::Lost(dblock));
        }
        if d.inp != 0 && best.is_none_or(|b| d.bal > b.bal) {
            best = Some(*d);
        }
    }
    // Our own earlier acceptance counts like anyone's.
    if dblock.inp != 0 && best.is_none_or(|b| dblock.bal > b.bal) {
        best = Some(dblock);
    }
    match best {
        Some(b) => {
            dblock.inp = b.inp;
            dblock.inp2 = b.inp2;
            dblock.inp3 = b.inp3;
        }
        None => {
            dblock.inp = ctx.host_id;
            dblock.inp2 = ctx.generation;
            dblock.inp3 = monotime_secs(ctx.clock);
        }
    }
    dblock.bal = mbal;

    // Phase 2: accept the value; it is chosen if nobody started a higher ballot meanwhile.
    let fail2 = |error| BallotEnd::Failed { error, phase2_started: true };
    write_host_sector(ctx, area, &mut dblock, mode, Some(written)).await.map_err(fail2)?;
    let view = read_resource(ctx.disk, area, ctx.timeouts).await.map_err(fail2)?;
    if view.leader.lver >= next_lver {
        // Committed meanwhile: the caller reads the leader to see whether it is our value.
        return Err(BallotEnd::Lost(dblock));
    }
    for (i, d) in view.dblocks.iter().enumerate() {
        if i as u64 + 1 == ctx.host_id || d.lver < next_lver {
            continue;
        }
        if d.lver > next_lver || d.mbal > mbal {
            return Err(BallotEnd::Lost(dblock));
        }
    }
    Ok(BallotWon { dblock, shared })
}

/// Releases a held resource.
pub async fn release<D: Disk, C: Clock>(ctx: &PaxosCtx<'_, D, C>, held: &HeldResource) -> Result<(), LeaseError> {
    let area = &held.area;
    let mut d = held.dblock;
    d.flags |= DBLOCK_FL_RELEASED;
    // Our sector: released dblock, no mode block. A failure here is not fatal for an
    // exclusive hold (the leader release below is what counts).
    let sector = write_host_sector(ctx, area, &mut d, ModeBlock::default(), None).await;
    if held.mode == Mode::Shared {
        return sector;
    }
    let leader = read_leader(ctx.disk, area, ctx.timeouts).await?;
    if leader.write_id != ctx.host_id || leader.write_generation != ctx.generation {
        // Committed by someone else on our behalf: our RELEASED dblock tells the others.
        return sector;
    }
    if leader.lver != held.lver {
        return Err(LeaseError::ReleaseLver { expected: held.lver, found: leader.lver });
    }
    if leader.timestamp == 0 || leader.owner_id != ctx.host_id || leader.owner_generation != ctx.generation {
        return Err(LeaseError::ReleaseOwner { owner_id: leader.owner_id });
    }
    release_leader(ctx, area, &leader).await.map(|_| ())
}

/// Changes the mode of a held resource. Shared → exclusive can fail (SharedHeld or an I/O
/// error), and then we still hold it shared. Exclusive → shared that fails leaves `held`
/// shared too: once our released dblock may be on disk, others may take the lease shared.
pub async fn convert<D: Disk, C: Clock>(
    ctx: &PaxosCtx<'_, D, C>,
    held: &mut HeldResource,
    to: Mode,
) -> Result<(), LeaseError> {
    match (held.mode, to) {
        (a, b) if a == b => Ok(()),
        (Mode::Exclusive, Mode::Shared) => {
            let mut d = held.dblock;
            d.flags |= DBLOCK_FL_RELEASED;
            held.mode = Mode::Shared;
            write_host_sector(ctx, &held.area, &mut d, shared_mode(ctx.generation), None).await?;
            let leader = release_leader(ctx, &held.area, &held.leader).await?;
            *held = HeldResource { mode: Mode::Shared, leader, dblock: d, ..held.clone() };
            Ok(())
        }
        _ => {
            let opts = AcquireOptions { mode: Mode::Exclusive, wait_for_owner: false };
            let written = Cell::new(None);
            match acquire_inner(ctx, &held.area, opts, Some(held), &written).await {
                Ok(h) => {
                    *held = h;
                    Ok(())
                }
                Err(e) => {
                    // Still shared, but our sector now holds (or may yet hold) the failed
                    // ballot's dblock: a later release must not write the older one back.
                    if let Some(d) = written.get() {
                        held.dblock = d;
                    }
                    Err(e)
                }
            }
        }
    }
}

/// Reads the lock value block (one sector at sector 2002 of the area).
pub async fn read_lvb<D: Disk>(disk: &D, area: &ResourceArea, timeouts: Timeouts) -> Result<AlignedBuf, LeaseError> {
    let at = lvb_offset(area)?;
    disk.read(at, area.geometry.sector_bytes(), timeouts.io()).await.map_err(LeaseError::Read)
}

/// Writes the lock value block; `data` is at most one sector. Only the holder should write it.
pub async fn write_lvb<D: Disk>(
    disk: &D,
    area: &ResourceArea,
    data: &[u8],
    timeouts: Timeouts,
) -> Result<(), LeaseError> {
    let at = lvb_offset(area)?;
    let n = area.geometry.sector_bytes();
    if data.len() > n {
        return Err(LeaseError::Invalid(format!("value block of {} bytes exceeds one {n}-byte sector", data.len())));
    }
    let mut out = AlignedBuf::zeroed(n);
    out[..data.len()].copy_from_slice(data);
    disk.write(at, out, timeouts.io()).await.map_err(LeaseError::Write)
}

fn lvb_offset(area: &ResourceArea) -> Result<u64, LeaseError> {
    if !area.geometry.has_lvb() {
        return Err(LeaseError::Invalid("this sector/align size has no room for a value block".into()));
    }
    Ok(area.offset + LVB_SECTOR * area.geometry.sector_bytes() as u64)
}

/// Reads the request record of a resource.
pub async fn read_request<D: Disk>(
    disk: &D,
    area: &ResourceArea,
    timeouts: Timeouts,
) -> Result<RequestRecord, LeaseError> {
    let n = area.geometry.sector_bytes();
    let buf = disk.read(area.offset + REQUEST_SECTOR * n as u64, n, timeouts.io()).await.map_err(LeaseError::Read)?;
    Ok(RequestRecord::verify(&buf)?)
}

/// Asks the holder to give up the lease at `lver` (sanlock's request). `lver` must be newer
/// than the held one and not older than a pending request; 0 with force_mode 0 clears.
pub async fn write_request<D: Disk>(
    disk: &D,
    area: &ResourceArea,
    lver: u64,
    force_mode: u32,
    timeouts: Timeouts,
) -> Result<(), LeaseError> {
    if lver != 0 || force_mode != 0 {
        let leader = read_leader(disk, area, timeouts).await?;
        if leader.lver >= lver {
            return Err(LeaseError::RequestOld { lver });
        }
        let pending = read_request(disk, area, timeouts).await?;
        if pending.lver > lver {
            return Err(LeaseError::RequestOld { lver });
        }
    }
    let n = area.geometry.sector_bytes();
    let mut out = AlignedBuf::zeroed(n);
    RequestRecord::new(lver, force_mode).encode(&mut out);
    disk.write(area.offset + REQUEST_SECTOR * n as u64, out, timeouts.io()).await.map_err(LeaseError::Write)
}

/// Bytes of a resource area a reader fetches; exposed for I/O accounting in benches.
pub fn resource_read_len(g: Geometry) -> u64 {
    paxos_read_len(g, g.max_hosts())
}
