//! The event trace: a bounded ring of compact events, formatted only when printed, and a
//! running hash of every event (the replay check compares it).

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use crate::ondisk::{BootStamp, LeaderRecord, ModeBlock, Name, PaxosDblock};
use crate::paxos_lease::Mode;

/// One lockd incarnation on one host: the unit that holds beliefs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Holder {
    pub host: usize,
    pub inc: u32,
}

/// The owner of the setup I/O (area init), not a host.
pub const ADMIN: Holder = Holder { host: usize::MAX, inc: 0 };

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == ADMIN {
            write!(f, "admin")
        } else {
            write!(f, "h{}.{}", self.host, self.inc)
        }
    }
}

/// A decoded summary of one sector, for reading traces.
#[derive(Clone, Debug, Hash)]
pub enum RecSum {
    Delta { owner_id: u64, gen: u64, ts: u64, name: Name, boot: Option<u16> },
    Leader { res: usize, lver: u64, owner: u64, gen: u64, ts: u64, flags: u32, write_id: u64 },
    Dblock { res: usize, host_id: u64, mbal: u64, bal: u64, inp: u64, inp2: u64, lver: u64, flags: u32, shared: bool },
    Request { res: usize },
    Zero,
    Garbage,
}

impl RecSum {
    /// Decodes the sector at `offset` with the simulator's layout: lockspace area first, then
    /// one resource area per `area_bytes`.
    pub fn of(offset: u64, sector: &[u8], sector_bytes: usize, area_bytes: u64) -> RecSum {
        if sector.iter().all(|b| *b == 0) {
            return RecSum::Zero;
        }
        if offset < area_bytes {
            return match LeaderRecord::decode(sector) {
                Ok(l) => RecSum::Delta {
                    owner_id: l.owner_id,
                    gen: l.owner_generation,
                    ts: l.timestamp,
                    name: l.resource_name,
                    boot: BootStamp::decode(sector).map(|b| u16::from_be_bytes([b.boot_id[0], b.boot_id[1]])),
                },
                Err(_) => RecSum::Garbage,
            };
        }
        let res = (offset / area_bytes - 1) as usize;
        let sec = (offset % area_bytes) / sector_bytes as u64;
        match sec {
            0 => match LeaderRecord::decode(sector) {
                Ok(l) => RecSum::Leader {
                    res,
                    lver: l.lver,
                    owner: l.owner_id,
                    gen: l.owner_generation,
                    ts: l.timestamp,
                    flags: l.flags & 1,
                    write_id: l.write_id,
                },
                Err(_) => RecSum::Garbage,
            },
            1 => RecSum::Request { res },
            _ => match PaxosDblock::decode(sector) {
                Ok(d) => RecSum::Dblock {
                    res,
                    host_id: sec - 1,
                    mbal: d.mbal,
                    bal: d.bal,
                    inp: d.inp,
                    inp2: d.inp2,
                    lver: d.lver,
                    flags: d.flags,
                    shared: ModeBlock::decode(sector).map(|m| m.shared()).unwrap_or(false),
                },
                Err(_) => RecSum::Garbage,
            },
        }
    }
}

impl fmt::Display for RecSum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecSum::Delta { owner_id, gen, ts, name, boot } => {
                write!(f, "[delta id={owner_id} gen={gen} ts={ts} name={}", name.as_str_lossy())?;
                match boot {
                    Some(b) => write!(f, " boot={b:04x}]"),
                    None => write!(f, "]"),
                }
            }
            RecSum::Leader { res, lver, owner, gen, ts, flags, write_id } => write!(
                f,
                "[r{res} leader lver={lver} owner={owner}/{gen} ts={ts}{} wid={write_id}]",
                if *flags != 0 { " SHORT" } else { "" }
            ),
            RecSum::Dblock { res, host_id, mbal, bal, inp, inp2, lver, flags, shared } => write!(
                f,
                "[r{res} dblock h{host_id} lver={lver} mbal={mbal} bal={bal} inp={inp}/{inp2}{}{}]",
                if flags & 1 != 0 { " REL" } else { "" },
                if *shared { " SH" } else { "" }
            ),
            RecSum::Request { res } => write!(f, "[r{res} request]"),
            RecSum::Zero => write!(f, "[zeros]"),
            RecSum::Garbage => write!(f, "[garbage]"),
        }
    }
}

/// How the disk decided to treat an I/O when it was issued.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Plan {
    Ok,
    Eio,
    TimedOut,
    /// Timed out, and the write never lands.
    Lost,
    /// Timed out, and only some sectors of the write land.
    Torn,
    /// Timed out while queued behind the same process's unsettled write: never submitted.
    HeldBack,
    Invalid,
}

#[derive(Clone, Debug, Hash)]
pub enum Ev {
    IoIssue {
        io: u64,
        by: Holder,
        write: bool,
        offset: u64,
        len: usize,
        plan: Plan,
        rec: Option<RecSum>,
    },
    /// A write reached the medium (all sectors, or some when torn).
    IoLand {
        io: u64,
        by: Holder,
        offset: u64,
        len: usize,
        torn: bool,
        late: bool,
    },
    /// A read took its snapshot of the medium.
    IoRead {
        io: u64,
        by: Holder,
        offset: u64,
        len: usize,
        rec: Option<RecSum>,
    },
    IoDone {
        io: u64,
        by: Holder,
        write: bool,
        err: Option<String>,
    },
    DeltaAcquired {
        by: Holder,
        host_id: u64,
        gen: u64,
        path: &'static str,
    },
    DeltaAcquireFailed {
        by: Holder,
        err: String,
    },
    Renewed {
        by: Holder,
        gen: u64,
    },
    RenewFailed {
        by: Holder,
        err: String,
    },
    LockspaceFailed {
        by: Holder,
    },
    KillPathDone {
        by: Holder,
    },
    Acquired {
        by: Holder,
        res: usize,
        mode: Mode,
        lver: u64,
    },
    AcquireFailed {
        by: Holder,
        res: usize,
        mode: Mode,
        wait: bool,
        err: String,
    },
    ReleaseBegin {
        by: Holder,
        res: usize,
        mode: Mode,
    },
    ReleaseDone {
        by: Holder,
        res: usize,
        err: Option<String>,
    },
    Converted {
        by: Holder,
        res: usize,
        to: Mode,
        now: Mode,
        err: Option<String>,
    },
    LeaveBegin {
        by: Holder,
    },
    LeaveDone {
        by: Holder,
        err: Option<String>,
    },
    Boot {
        by: Holder,
        boot: u16,
        clock_offset: Duration,
    },
    DaemonStart {
        by: Holder,
    },
    Reboot {
        host: usize,
    },
    DaemonCrash {
        by: Holder,
    },
    StallStart {
        host: usize,
        until: Duration,
    },
    StallEnd {
        host: usize,
    },
    WatchdogPlan {
        host: usize,
        fire_at: Option<Duration>,
    },
    WatchdogReset {
        host: usize,
    },
    InitDone {
        what: String,
    },
    Violation {
        what: String,
    },
}

fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Exclusive => "ex",
        Mode::Shared => "sh",
    }
}

fn opt_err(e: &Option<String>) -> String {
    match e {
        None => "ok".into(),
        Some(e) => format!("ERR {e}"),
    }
}

fn secs(d: Duration) -> String {
    format!("{}.{:06}", d.as_secs(), d.subsec_micros())
}

impl fmt::Display for Ev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rec = |r: &Option<RecSum>| r.as_ref().map(|r| format!(" {r}")).unwrap_or_default();
        match self {
            Ev::IoIssue { io, by, write, offset, len, plan, rec: r } => write!(
                f,
                "{by} io#{io} issue {} off={offset:#x} len={len} plan={plan:?}{}",
                if *write { "WRITE" } else { "read" },
                rec(r)
            ),
            Ev::IoLand { io, by, offset, len, torn, late } => write!(
                f,
                "{by} io#{io} LANDS off={offset:#x} len={len}{}{}",
                if *torn { " TORN" } else { "" },
                if *late { " (after its timeout)" } else { "" }
            ),
            Ev::IoRead { io, by, offset, len, rec: r } => {
                write!(f, "{by} io#{io} read snapshot off={offset:#x} len={len}{}", rec(r))
            }
            Ev::IoDone { io, by, write, err } => {
                write!(f, "{by} io#{io} {} completes {}", if *write { "write" } else { "read" }, opt_err(err))
            }
            Ev::DeltaAcquired { by, host_id, gen, path } => {
                write!(f, "{by} DELTA ACQUIRED host_id={host_id} gen={gen} path={path}")
            }
            Ev::DeltaAcquireFailed { by, err } => write!(f, "{by} delta acquire failed: {err}"),
            Ev::Renewed { by, gen } => write!(f, "{by} renewed gen={gen}"),
            Ev::RenewFailed { by, err } => write!(f, "{by} renewal failed: {err}"),
            Ev::LockspaceFailed { by } => write!(f, "{by} LOCKSPACE FAILED (no renewal for 8N): kill path starts"),
            Ev::KillPathDone { by } => write!(f, "{by} kill path done: leases no longer used, wdmd expiry cleared"),
            Ev::Acquired { by, res, mode: m, lver } => write!(f, "{by} ACQUIRED r{res} {} lver={lver}", mode(*m)),
            Ev::AcquireFailed { by, res, mode: m, wait, err } => {
                write!(f, "{by} acquire r{res} {} wait={wait} failed: {err}", mode(*m))
            }
            Ev::ReleaseBegin { by, res, mode: m } => write!(f, "{by} RELEASE r{res} {} begins", mode(*m)),
            Ev::ReleaseDone { by, res, err } => write!(f, "{by} release r{res} {}", opt_err(err)),
            Ev::Converted { by, res, to, now, err } => {
                write!(f, "{by} CONVERT r{res} to {}: {}, holds {}", mode(*to), opt_err(err), mode(*now))
            }
            Ev::LeaveBegin { by } => write!(f, "{by} clean leave begins"),
            Ev::LeaveDone { by, err } => write!(f, "{by} delta released {}", opt_err(err)),
            Ev::Boot { by, boot, clock_offset } => {
                write!(f, "{by} BOOT boot={boot:04x} monotonic=global+{}", secs(*clock_offset))
            }
            Ev::DaemonStart { by } => write!(f, "{by} lockd starts (same boot)"),
            Ev::Reboot { host } => write!(f, "h{host} CRASH/REBOOT (fenced)"),
            Ev::DaemonCrash { by } => write!(f, "{by} LOCKD CRASH (same boot; leases stay in use, wdmd stays armed)"),
            Ev::StallStart { host, until } => write!(f, "h{host} STALL until {}", secs(*until)),
            Ev::StallEnd { host } => write!(f, "h{host} stall ends"),
            Ev::WatchdogPlan { host, fire_at: Some(t) } => write!(f, "h{host} watchdog would fire at {}", secs(*t)),
            Ev::WatchdogPlan { host, fire_at: None } => write!(f, "h{host} watchdog disarmed"),
            Ev::WatchdogReset { host } => write!(f, "h{host} WATCHDOG RESET (fenced)"),
            Ev::InitDone { what } => write!(f, "admin initialised {what}"),
            Ev::Violation { what } => write!(f, "VIOLATION: {what}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub at: Duration,
    pub step: u64,
    pub ev: Ev,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>14} #{:<8} {}", secs(self.at), self.step, self.ev)
    }
}

/// FNV-1a: stable across runs and platforms, unlike `DefaultHasher`'s unspecified algorithm.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub struct Trace {
    cap: usize,
    ring: VecDeque<Entry>,
    hash: Fnv,
    pub count: u64,
    /// Print every event as it happens.
    pub echo: bool,
}

impl Trace {
    pub fn new(cap: usize, echo: bool) -> Trace {
        Trace { cap, ring: VecDeque::with_capacity(cap), hash: Fnv(0xcbf2_9ce4_8422_2325), count: 0, echo }
    }

    pub fn push(&mut self, at: Duration, step: u64, ev: Ev) {
        at.hash(&mut self.hash);
        step.hash(&mut self.hash);
        ev.hash(&mut self.hash);
        self.count += 1;
        let e = Entry { at, step, ev };
        if self.echo {
            println!("{e}");
        }
        if self.cap == 0 {
            return;
        }
        if self.ring.len() == self.cap {
            self.ring.pop_front();
        }
        self.ring.push_back(e);
    }

    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.ring.iter()
    }
}
