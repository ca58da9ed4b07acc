//! Every timing of the protocol, derived in one place from two numbers:
//! N, a host's io_timeout (written in its delta lease; peers use *that* host's value for it), and
//! W, the watchdog fire timeout (the same on every host).
//!
//! The safety chain these formulas keep (asserted in the tests below):
//! a host renews at `t`; it tells wdmd `expire = t + 8N`; wdmd stops petting one test interval
//! before `expire`; the watchdog fires at most W after the last pet, so the host is reset by
//! `t + 8N + W` = host_dead. Peers time "no change seen for host_dead" with their own monotonic
//! clock starting no earlier than `t`, so they act only after the reset.

use std::time::Duration;

/// sanlock's default io_timeout.
pub const DEFAULT_IO_TIMEOUT_SECS: u32 = 10;
/// sanlock's default watchdog fire timeout; must be equal on all hosts.
pub const DEFAULT_WATCHDOG_FIRE_SECS: u32 = 60;
/// Largest io_timeout that fits the on-disk field as sanlock writes it (masked to 8 bits).
pub const MAX_IO_TIMEOUT_SECS: u32 = 255;
/// Paxos acquire: a shared acquirer that finds a SHORT_HOLD leader retries this often.
pub const SH_RETRIES: u32 = 8;
/// Owner liveness checks poll the owner's delta lease this often.
pub const LIVENESS_POLL: Duration = Duration::from_secs(1);
/// Upper bound of the random backoff after a lost ballot.
pub const BALLOT_BACKOFF_MAX: Duration = Duration::from_secs(1);

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// N, seconds.
    pub io_timeout: u32,
    /// W, seconds.
    pub watchdog_fire: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { io_timeout: DEFAULT_IO_TIMEOUT_SECS, watchdog_fire: DEFAULT_WATCHDOG_FIRE_SECS }
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(s as u64)
}

impl Timeouts {
    pub fn new(io_timeout: u32, watchdog_fire: u32) -> Result<Timeouts, String> {
        if io_timeout == 0 || io_timeout > MAX_IO_TIMEOUT_SECS {
            return Err(format!("io_timeout {io_timeout} must be 1..={MAX_IO_TIMEOUT_SECS} seconds"));
        }
        if watchdog_fire == 0 {
            return Err("watchdog_fire_timeout must be at least 1 second".into());
        }
        Ok(Timeouts { io_timeout, watchdog_fire })
    }

    /// The timings to use for a peer whose delta lease says `peer_io_timeout` (0: unknown, use
    /// ours, as sanlock does).
    pub fn for_peer(self, peer_io_timeout: u16) -> Timeouts {
        let n = if peer_io_timeout == 0 { self.io_timeout } else { peer_io_timeout as u32 };
        Timeouts { io_timeout: n, ..self }
    }

    /// N: the timeout of one I/O.
    pub fn io(self) -> Duration {
        secs(self.io_timeout)
    }
    /// 2N: how often the delta lease is renewed.
    pub fn renewal_interval(self) -> Duration {
        secs(2 * self.io_timeout)
    }
    /// 6N: renewals late enough to warn about.
    pub fn renewal_warn(self) -> Duration {
        secs(6 * self.io_timeout)
    }
    /// 8N: no good renewal for this long and the lockspace has failed; also the expiry handed
    /// to wdmd after each renewal.
    pub fn renewal_fail(self) -> Duration {
        secs(8 * self.io_timeout)
    }
    /// 8N + W: a host silent this long has been reset by its watchdog.
    pub fn host_dead(self) -> Duration {
        self.renewal_fail() + secs(self.watchdog_fire)
    }
    /// Delta acquire of a record another incarnation may still hold: wait until its owner is
    /// certainly dead (max(host_dead, 8N), as sanlock).
    pub fn delta_large_delay(self) -> Duration {
        self.host_dead().max(self.renewal_fail())
    }
    /// Delta acquire: after writing our record, wait this long and re-read it unchanged. Any
    /// live writer of the same host_id renews within 2N and would be seen.
    pub fn delta_short_delay(self) -> Duration {
        secs(2 * self.io_timeout)
    }
    /// Delta acquire: how long after issuing its write the confirming re-read may complete
    /// for the acquire to count. That write is the lease's first renewal: its wdmd expiry is
    /// write + 8N and peers that saw it may take the host_id at write + 8N + W. The watchdog
    /// resets us by then only if wdmd learns the expiry before it passes, and a host learns it
    /// owns the lease only when the re-read completes (a stall may delay that without bound).
    /// One N before 8N, so the first renewal can still be issued: a later one could complete
    /// after 8N ([`Timeouts::renewal_fail`]).
    pub fn delta_confirm_limit(self) -> Duration {
        self.renewal_fail() - self.io()
    }
    /// How long a request/event bit stays set in our bitmap.
    pub fn set_bitmap(self) -> Duration {
        secs(6 * self.io_timeout)
    }
    /// Timeout of a renewal write: retrying a slow write is counter-productive (sanlock).
    pub fn renewal_write_timeout(self) -> Duration {
        self.host_dead()
    }
    /// The expiry wdmd is told after a renewal that started at `renewal_start`.
    pub fn wdmd_expiry(self, renewal_start: Duration) -> Duration {
        renewal_start + self.renewal_fail()
    }
    /// wdmd's test interval, from W.
    pub fn wdmd_test_interval(self) -> Duration {
        secs(match self.watchdog_fire {
            60.. => 10,
            30..=59 => 5,
            10..=29 => 2,
            _ => 1,
        })
    }
    /// wdmd's test interval once it has stopped petting: short, so a client that clears or
    /// extends its expiry gets the device petted again well before it fires (sanlock: 1 s).
    pub fn wdmd_recover_test_interval(self) -> Duration {
        secs(1).min(self.wdmd_test_interval())
    }
    /// The latest moment at which wdmd still pets for a client whose expiry is `expiry`: it
    /// closes the device (armed) one test interval before the expiry.
    pub fn wdmd_last_pet(self, expiry: Duration) -> Duration {
        expiry.saturating_sub(self.wdmd_test_interval())
    }
    /// The latest moment the watchdog fires when the last pet was at `last_pet`.
    pub fn watchdog_reset_by(self, last_pet: Duration) -> Duration {
        last_pet + secs(self.watchdog_fire)
    }
    /// After a failed renewal attempt, the next one starts this much later (sanlock: 0.5–1 s):
    /// soon enough for several tries before 8N, without spinning on a dead disk.
    pub fn renewal_retry(self) -> Duration {
        secs(1).min(self.renewal_interval())
    }
    /// How long a command's GL or VG lock request keeps retrying a lock another command holds
    /// (lvmlockd retries briefly, then fails). A holder that renews its lockspace finishes its
    /// command well within it; one that died holds the lock until host_dead.
    pub fn command_lock_wait(self) -> Duration {
        self.renewal_interval()
    }
    /// How long the kill path gets before SIGKILL-level measures (sanlock's kill_grace_seconds).
    pub fn kill_grace(self) -> Duration {
        secs(match self.watchdog_fire {
            60.. => 40,
            30..=59 => 15,
            _ => 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole safety argument in one place: for every renewal time, the host is reset no
    /// later than the moment peers may take over its leases. Changing any formula so that this
    /// breaks fails this test.
    #[test]
    fn safety_chain_holds() {
        for n in [1, 2, 5, 10, 30, 60, 255] {
            for w in [1, 5, 10, 30, 60, 120] {
                let t = Timeouts::new(n, w).unwrap();
                let renewal = Duration::from_secs(1000);
                let expiry = t.wdmd_expiry(renewal);
                assert_eq!(expiry, renewal + Duration::from_secs(8 * n as u64), "expire = renewal + 8N");
                let last_pet = t.wdmd_last_pet(expiry);
                assert!(last_pet < expiry, "wdmd closes before the expiry");
                let reset_by = t.watchdog_reset_by(last_pet);
                let host_dead = renewal + t.host_dead();
                assert_eq!(t.host_dead(), Duration::from_secs(8 * n as u64 + w as u64), "host_dead = 8N + W");
                assert!(reset_by <= host_dead, "N={n} W={w}: reset at {reset_by:?} after host_dead {host_dead:?}");
                assert!(t.delta_large_delay() >= t.host_dead(), "a reused host_id waits for its owner's reset");
                assert!(t.renewal_interval() < t.renewal_fail(), "several renewals fit before failure");
                assert!(t.delta_short_delay() >= t.renewal_interval(), "a live same-id writer renews within the wait");
                // An acquire confirmed in time is told to wdmd before its expiry, with a renewal
                // still possible; an undisturbed acquire (write, 2N, re-read) always fits.
                assert!(t.delta_confirm_limit() + t.io() <= t.renewal_fail(), "confirmed before 8N");
                assert!(
                    t.io() + t.delta_short_delay() + t.io() <= t.delta_confirm_limit(),
                    "write, wait 2N, re-read fits the confirmation limit"
                );
            }
        }
    }

    #[test]
    fn sanlock_table_values() {
        let t = Timeouts::default();
        assert_eq!(t.renewal_interval().as_secs(), 20);
        assert_eq!(t.renewal_warn().as_secs(), 60);
        assert_eq!(t.renewal_fail().as_secs(), 80);
        assert_eq!(t.host_dead().as_secs(), 140);
        assert_eq!(t.delta_short_delay().as_secs(), 20);
        assert_eq!(t.wdmd_test_interval().as_secs(), 10);
        assert_eq!(t.kill_grace().as_secs(), 40);
        let peer = t.for_peer(5);
        assert_eq!(peer.host_dead().as_secs(), 100, "peer's own N, global W");
        assert_eq!(t.for_peer(0), t);
    }

    #[test]
    fn wdmd_recovery_tests_are_frequent() {
        for w in [1, 5, 9, 10, 29, 30, 59, 60, 120] {
            let t = Timeouts::new(10, w).unwrap();
            assert_eq!(t.wdmd_recover_test_interval(), Duration::from_secs(1));
            assert!(t.wdmd_recover_test_interval() <= t.wdmd_test_interval());
        }
    }

    #[test]
    fn lockd_retry_timings() {
        for n in [1, 2, 10, 60] {
            let t = Timeouts::new(n, 60).unwrap();
            assert!(t.renewal_retry() <= t.renewal_interval());
            assert!(t.renewal_fail() >= t.renewal_interval() + 3 * t.renewal_retry(), "several retries before 8N");
            assert!(t.command_lock_wait() < t.renewal_fail());
        }
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Timeouts::new(0, 60).is_err());
        assert!(Timeouts::new(256, 60).is_err());
        assert!(Timeouts::new(10, 0).is_err());
    }
}
