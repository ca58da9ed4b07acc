//! The watchdog decision, without sockets or a clock: the server feeds it requests and calls
//! [`Daemon::tick`] at [`Daemon::next_tick`]; tests do the same with a virtual clock.
//!
//! Each test: a client whose expiry is set fails once `now ≥ expiry − test_interval`
//! ([`Timeouts::wdmd_last_pet`]). No failure: pet (reopening the device if needed). Any failure:
//! close the device without 'V' and test every second; the watchdog then fires at most W after
//! that close, which is before `expiry + W` = the moment peers treat this host as dead. The
//! test runs every test interval, and also exactly at each client's `expiry − test_interval`
//! and right after any expiry changes, so a late scheduler tick cannot push the last pet past
//! the deadline by a whole interval.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::time::Duration;

use lease::timeouts::{Timeouts, DEFAULT_IO_TIMEOUT_SECS};
use tracing::{debug, error, info, warn};

use crate::device::Watchdog;
use crate::state::{SavedClient, StateFile};
use proto::limits::RateLimit;
use proto::wdmd::protocol::{self, ClientStatus, ErrorKind, Request, Response, Status, Times};

pub type ConnId = u64;

/// At most one log line per this interval about refused expiries.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Client {
    pid: i32,
    /// None: its connection closed while the expiry was set; it can only expire or be taken over.
    conn: Option<ConnId>,
    times: Times,
}

impl Client {
    fn expiry(&self) -> Option<Duration> {
        (self.times.expiry_ms != 0).then(|| protocol::from_ms(self.times.expiry_ms))
    }
}

#[derive(Debug)]
struct Conn {
    pid: i32,
    client: Option<String>,
}

pub struct Daemon {
    t: Timeouts,
    wd: Box<dyn Watchdog>,
    state: Option<StateFile>,
    clients: BTreeMap<String, Client>,
    conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    last_tick: Duration,
    interval: Duration,
    petting: bool,
    /// An expiry changed at this time: test again at once.
    recheck_at: Option<Duration>,
    last_keepalive: Option<Duration>,
    last_close_armed: Option<Duration>,
    /// Log lines about refused expiries: a looping client must not flood the log.
    refusals: RateLimit,
    /// Registered clients allowed: [`protocol::MAX_CLIENTS`], fewer with a low open-file limit.
    max_clients: usize,
}

fn err(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error { kind, message: message.into() }
}

/// Refuses times no real lease produces: an expiry or renewal further ahead of `now` than
/// [`protocol::max_expiry_ahead`]. An expiry in the past is accepted: it fences at once, which
/// is what it asks for.
fn check_times(renewal_ms: u64, expiry_ms: u64, now: Duration) -> Result<(), String> {
    let limit = now + protocol::max_expiry_ahead();
    let limit_ms = protocol::to_ms(limit);
    if expiry_ms > limit_ms {
        return Err(format!(
            "expiry {} is more than {} s ahead of wdmd's clock ({}): no lease lasts that long",
            secs(protocol::from_ms(expiry_ms)),
            protocol::max_expiry_ahead().as_secs(),
            secs(now)
        ));
    }
    if renewal_ms > limit_ms {
        return Err(format!(
            "renewal time {} is in the future (now {})",
            secs(protocol::from_ms(renewal_ms)),
            secs(now)
        ));
    }
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

impl Daemon {
    /// Restores the clients saved by a previous wdmd of this boot, then opens the device and
    /// pets it, unless a restored client is already past its last pet: opening would pet a
    /// watchdog that must be left to fire.
    pub fn start(
        wd: Box<dyn Watchdog>,
        fire_timeout: u32,
        state: Option<StateFile>,
        now: Duration,
    ) -> io::Result<Daemon> {
        // wdmd uses only the timings derived from W; N is a placeholder.
        let t = Timeouts::new(DEFAULT_IO_TIMEOUT_SECS, fire_timeout).map_err(io::Error::other)?;
        let mut clients = BTreeMap::new();
        if let Some(st) = &state {
            for c in st.load()? {
                error!(
                    client = %c.name, expiry = %secs(protocol::from_ms(c.times.expiry_ms)),
                    "restored a client with an expiry from a previous wdmd of this boot; it expires unless its \
                     owner registers again with takeover"
                );
                clients.insert(c.name, Client { pid: 0, conn: None, times: c.times });
            }
        }
        let mut d = Daemon {
            t,
            wd,
            state,
            clients,
            conns: HashMap::new(),
            next_conn: 1,
            last_tick: now,
            interval: t.wdmd_test_interval(),
            petting: false,
            recheck_at: None,
            last_keepalive: None,
            last_close_armed: None,
            refusals: RateLimit::new(REFUSAL_LOG_INTERVAL),
            max_clients: protocol::MAX_CLIENTS,
        };
        let failing = d.failing(now);
        if !failing.is_empty() {
            d.interval = t.wdmd_recover_test_interval();
            error!(clients = ?failing, "restored clients are at or past their last pet: the device stays closed and will fire");
            return Ok(d);
        }
        if let Err(e) = d.wd.open(fire_timeout) {
            if d.wd.is_open() {
                // Nothing may be disarmed while a restored client still counts on it.
                if d.clients.is_empty() {
                    let _ = d.wd.close_disarmed();
                } else {
                    d.wd.close_armed();
                }
            }
            return Err(io::Error::new(e.kind(), format!("{}: {e}", d.wd.describe())));
        }
        d.pet(now);
        d.petting = true;
        info!(device = %d.wd.describe(), fire_timeout, test_interval = %secs(d.interval), "watchdog open");
        Ok(d)
    }

    pub fn timeouts(&self) -> Timeouts {
        self.t
    }

    /// True while the device is open and was petted at the last test.
    pub fn petting(&self) -> bool {
        self.petting
    }

    /// When the loop must call [`Daemon::tick`] next.
    pub fn next_tick(&self) -> Duration {
        let mut next = self.last_tick + self.interval;
        if let Some(r) = self.recheck_at {
            next = next.min(r);
        }
        if self.petting {
            for c in self.clients.values() {
                if let Some(e) = c.expiry() {
                    let deadline = self.t.wdmd_last_pet(e);
                    if deadline > self.last_tick {
                        next = next.min(deadline);
                    }
                }
            }
        }
        next
    }

    /// Clients at or past their last pet.
    fn failing(&self, now: Duration) -> Vec<String> {
        self.clients
            .iter()
            .filter(|(_, c)| c.expiry().is_some_and(|e| now >= self.t.wdmd_last_pet(e)))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn pet(&mut self, now: Duration) {
        match self.wd.keepalive() {
            Ok(()) => {
                self.last_keepalive = Some(now);
                debug!("keepalive");
            }
            Err(e) => error!(device = %self.wd.describe(), "keepalive failed: {e}"),
        }
    }

    /// One test of every client, then pet or stop petting.
    pub fn tick(&mut self, now: Duration) {
        self.last_tick = now;
        self.recheck_at = None;
        let failing = self.failing(now);
        if failing.is_empty() {
            if !self.wd.is_open() {
                if let Err(e) = self.wd.open(self.t.watchdog_fire) {
                    error!(device = %self.wd.describe(), "reopen failed, the watchdog stays armed: {e}");
                    if self.wd.is_open() {
                        self.wd.close_armed();
                    }
                    self.petting = false;
                    self.interval = self.t.wdmd_recover_test_interval();
                    return;
                }
                info!(device = %self.wd.describe(), "watchdog reopened");
            }
            self.pet(now);
            if !self.petting {
                info!("every client is clear of its expiry again: petting resumed");
            }
            self.petting = true;
            self.interval = self.t.wdmd_test_interval();
        } else {
            if self.wd.is_open() {
                self.wd.close_armed();
                self.last_close_armed = Some(now);
                let detail: Vec<String> = failing
                    .iter()
                    .map(|n| {
                        let c = &self.clients[n];
                        let e = protocol::from_ms(c.times.expiry_ms);
                        format!("{n} (pid {}, expiry {}, in {})", c.pid, secs(e), secs(e.saturating_sub(now)))
                    })
                    .collect();
                error!(
                    now = %secs(now), clients = ?detail, fire_timeout = self.t.watchdog_fire,
                    "expiry within one test interval: watchdog closed armed, petting stopped; it fires unless \
                     these clients clear or extend their expiry"
                );
            } else {
                debug!(now = %secs(now), clients = ?failing, "still failing, not petting");
            }
            self.petting = false;
            self.interval = self.t.wdmd_recover_test_interval();
        }
    }

    /// A new connection from `pid` (already checked to be root).
    pub fn connect(&mut self, pid: i32) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(id, Conn { pid, client: None });
        id
    }

    /// Lowers the number of clients that may register (the server's share of descriptors).
    pub fn limit_clients(&mut self, max: usize) {
        self.max_clients = max.min(protocol::MAX_CLIENTS);
    }

    /// Whether the connection is a registered client (the server keeps unregistered ones on a
    /// shorter leash).
    pub fn is_registered(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.client.is_some())
    }

    /// The connection closed. Its client stays if its expiry is set: it will expire.
    pub fn disconnect(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else { return };
        let Some(name) = c.client else { return };
        let Some(client) = self.clients.get_mut(&name) else { return };
        if client.expiry().is_some() {
            client.conn = None;
            error!(
                client = %name, pid = client.pid, expiry = %secs(protocol::from_ms(client.times.expiry_ms)),
                "client disconnected with its expiry set: it stays and will expire (host reset) unless it registers \
                 again with takeover"
            );
        } else {
            self.clients.remove(&name);
            debug!(client = %name, "client gone");
        }
    }

    pub fn request(&mut self, conn: ConnId, req: Request, now: Duration) -> Response {
        let Some(c) = self.conns.get(&conn) else {
            return err(ErrorKind::NotRegistered, "unknown connection");
        };
        let (pid, registered) = (c.pid, c.client.clone());
        match req {
            Request::Status => Response::Status(self.status(now)),
            Request::Register { name, takeover, fire_timeout_secs } => {
                if let Some(n) = registered {
                    return err(ErrorKind::AlreadyRegistered, format!("this connection is already client {n}"));
                }
                if fire_timeout_secs != self.t.watchdog_fire {
                    return err(
                        ErrorKind::FireTimeoutMismatch,
                        format!(
                            "client {name} assumes a watchdog fire timeout of {fire_timeout_secs} s, wdmd uses {} s",
                            self.t.watchdog_fire
                        ),
                    );
                }
                if let Err(e) = protocol::check_name(&name) {
                    return err(ErrorKind::BadRequest, e);
                }
                let (count, max) = (self.clients.len(), self.max_clients);
                let adopted = match self.clients.get_mut(&name) {
                    None if count >= max => {
                        return err(
                            ErrorKind::TooManyClients,
                            format!("wdmd has {count} clients, its limit of {max}; client {name} not registered"),
                        );
                    }
                    None => {
                        self.clients.insert(name.clone(), Client { pid, conn: Some(conn), times: Times::default() });
                        info!(client = %name, pid, "registered");
                        None
                    }
                    Some(c) if c.conn.is_some() => {
                        return err(ErrorKind::NameInUse, format!("client {name} is connected (pid {})", c.pid));
                    }
                    Some(c) if !takeover => {
                        return err(
                            ErrorKind::NameOrphaned,
                            format!(
                                "client {name} was left with expiry {} by a closed connection; only its owner may \
                                 take it over (takeover)",
                                secs(protocol::from_ms(c.times.expiry_ms))
                            ),
                        );
                    }
                    Some(c) => {
                        warn!(client = %name, pid, old_pid = c.pid, expiry = %secs(protocol::from_ms(c.times.expiry_ms)),
                            "client taken over by a new connection");
                        c.conn = Some(conn);
                        c.pid = pid;
                        Some(c.times)
                    }
                };
                self.conns.get_mut(&conn).expect("checked above").client = Some(name);
                Response::Registered { adopted }
            }
            Request::SetExpiry { renewal_ms, expiry_ms } => {
                let Some(name) = registered else {
                    return err(ErrorKind::NotRegistered, "register first");
                };
                if let Err(e) = check_times(renewal_ms, expiry_ms, now) {
                    if let Some(left_out) = self.refusals.allow(now) {
                        warn!(client = %name, pid, left_out, "refused: {e}");
                    }
                    return err(ErrorKind::ExpiryOutOfRange, e);
                }
                let c = self.clients.get_mut(&name).expect("a registered connection has its client");
                if (c.times.expiry_ms == 0) != (expiry_ms == 0) {
                    info!(client = %name, renewal = %secs(protocol::from_ms(renewal_ms)),
                        expiry = %secs(protocol::from_ms(expiry_ms)),
                        "{}", if expiry_ms == 0 { "expiry cleared" } else { "expiry set" });
                } else {
                    debug!(client = %name, renewal_ms, expiry_ms, "expiry");
                }
                c.times = Times { renewal_ms, expiry_ms };
                self.recheck_at = Some(now);
                match self.save() {
                    Ok(()) => Response::Ok,
                    Err(e) => {
                        error!("saving the clients' expiries failed: {e}");
                        err(ErrorKind::StateNotSaved, format!("applied, but not saved for a wdmd restart: {e}"))
                    }
                }
            }
            Request::Unregister => {
                let Some(name) = registered else {
                    return err(ErrorKind::NotRegistered, "register first");
                };
                if self.clients[&name].expiry().is_some() {
                    return err(ErrorKind::ExpirySet, format!("client {name} still has an expiry: clear it first"));
                }
                self.clients.remove(&name);
                self.conns.get_mut(&conn).expect("checked above").client = None;
                info!(client = %name, "unregistered");
                Response::Ok
            }
        }
    }

    fn save(&self) -> io::Result<()> {
        let Some(st) = &self.state else { return Ok(()) };
        let saved: Vec<SavedClient> = self
            .clients
            .iter()
            .filter(|(_, c)| c.expiry().is_some())
            .map(|(n, c)| SavedClient { name: n.clone(), times: c.times })
            .collect();
        st.save(&saved)
    }

    pub fn status(&self, now: Duration) -> Status {
        Status {
            now_ms: protocol::to_ms(now),
            device: self.wd.describe(),
            fire_timeout_secs: self.t.watchdog_fire,
            test_interval_ms: protocol::to_ms(self.t.wdmd_test_interval()),
            current_interval_ms: protocol::to_ms(self.interval),
            petting: self.petting,
            last_keepalive_ms: self.last_keepalive.map(protocol::to_ms),
            last_close_armed_ms: self.last_close_armed.map(protocol::to_ms),
            clients: self
                .clients
                .iter()
                .map(|(n, c)| ClientStatus { name: n.clone(), pid: c.pid, connected: c.conn.is_some(), times: c.times })
                .collect(),
        }
    }

    /// Clients whose expiry is set; while there are any, the daemon must not disarm and exit.
    pub fn armed_clients(&self) -> Vec<String> {
        self.clients.iter().filter(|(_, c)| c.expiry().is_some()).map(|(n, _)| n.clone()).collect()
    }

    /// Clean shutdown: the magic close, allowed only when no client has an expiry; otherwise
    /// nothing changes and the clients are returned.
    pub fn shutdown(&mut self) -> Result<(), Vec<String>> {
        let armed = self.armed_clients();
        if !armed.is_empty() {
            return Err(armed);
        }
        // A device left closed armed by an earlier failure is armed: open it to disarm it.
        if !self.wd.is_open() {
            if let Err(e) = self.wd.open(self.t.watchdog_fire) {
                error!(device = %self.wd.describe(), "cannot reopen to disarm, the watchdog stays armed: {e}");
                return Ok(());
            }
        }
        match self.wd.close_disarmed() {
            Ok(()) => info!(device = %self.wd.describe(), "watchdog disarmed (magic close)"),
            Err(e) => error!(device = %self.wd.describe(), "magic close failed, the watchdog may fire: {e}"),
        }
        self.petting = false;
        if let Some(st) = &self.state {
            if let Err(e) = st.remove() {
                warn!("removing {}: {e}", st.path().display());
            }
        }
        Ok(())
    }
}
