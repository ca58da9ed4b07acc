//! Time, as the protocol sees it: this host's monotonic clock only. Peers never compare
//! clocks; they watch whether a timestamp *changes* and time that with their own clock.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

pub trait Clock {
    /// This host's monotonic time since an arbitrary origin (boot, for the system clock).
    fn now(&self) -> Duration;
    /// Waits `d` of this clock's time.
    fn sleep(&self, d: Duration) -> impl Future<Output = ()>;
    /// A random duration in `[0, max)`, for ballot backoff (seeded in the simulator).
    fn random_delay(&self, max: Duration) -> Duration;
}

/// Whole monotonic seconds as written into timestamps. Never 0, which means "free" on disk.
pub fn monotime_secs(clock: &impl Clock) -> u64 {
    clock.now().as_secs().max(1)
}

/// CLOCK_MONOTONIC, the clock wdmd also uses, so expiries compare directly on one host.
#[derive(Debug)]
pub struct SystemClock {
    rng: Cell<u64>,
}

impl Default for SystemClock {
    fn default() -> Self {
        // Seed from time and pid: only backoff spreading depends on it.
        let seed = clock_monotonic().as_nanos() as u64 ^ ((std::process::id() as u64) << 32) | 1;
        SystemClock { rng: Cell::new(seed) }
    }
}

pub fn clock_monotonic() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_MONOTONIC is always available on Linux");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        clock_monotonic()
    }
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        std::thread::sleep(d);
        std::future::ready(())
    }
    fn random_delay(&self, max: Duration) -> Duration {
        // xorshift64: plenty for spreading retries.
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        if max.is_zero() {
            return Duration::ZERO;
        }
        Duration::from_nanos(x % max.as_nanos() as u64)
    }
}
