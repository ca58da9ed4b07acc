//! The one lock of a lockspace's state, which a panicking request cannot turn into a stopped
//! renewal thread.
//!
//! `std::sync::Mutex` poisons itself when a thread panics while holding it, and every later
//! `lock().unwrap()` panics too: a bug in one request would then stop the renewal thread and
//! the watchdog would reset the host. [`Guarded`] takes the lock back instead, logs that it
//! did, and lets the caller go on. That is sound for lockspace state because of how it is
//! written (see ARCHITECTURE.md, "lockd: one owner of a lockspace's state"): the renewal
//! fields and the phase change in single assignments made by the renewal thread and the
//! lifecycle requests, never half-way through a request's work; a lock table entry a request
//! marked busy is unmarked by [`BusyMark`](crate::locks) when that request unwinds.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing::error;

pub struct Guarded<T> {
    what: &'static str,
    inner: Mutex<T>,
}

impl<T> Guarded<T> {
    pub fn new(what: &'static str, value: T) -> Guarded<T> {
        Guarded { what, inner: Mutex::new(value) }
    }

    /// The lock, also after a holder panicked.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            self.recovered();
            poisoned.into_inner()
        })
    }

    /// Waits on `cv` (which is only ever used with this lock).
    pub fn wait<'a>(&self, cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        cv.wait(guard).unwrap_or_else(|poisoned| {
            self.recovered();
            poisoned.into_inner()
        })
    }

    /// Waits on `cv` for at most `limit`.
    pub fn wait_timeout<'a>(&self, cv: &Condvar, guard: MutexGuard<'a, T>, limit: Duration) -> MutexGuard<'a, T> {
        match cv.wait_timeout(guard, limit) {
            Ok((g, _)) => g,
            Err(poisoned) => {
                self.recovered();
                poisoned.into_inner().0
            }
        }
    }

    #[cfg(test)]
    pub fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    fn recovered(&self) {
        // Only the first taker after a panic gets here: the flag is cleared.
        self.inner.clear_poison();
        error!("{}: a request panicked while holding it; its state is kept and used on", self.what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_panic_under_the_lock_does_not_stop_later_holders() {
        let g = Arc::new(Guarded::new("test state", 1u32));
        let g2 = g.clone();
        let r = std::thread::spawn(move || {
            let mut v = g2.lock();
            *v = 2;
            panic!("a request's bug");
        })
        .join();
        assert!(r.is_err());
        assert!(g.inner.is_poisoned());
        assert_eq!(*g.lock(), 2);
        assert!(!g.inner.is_poisoned(), "the poison is cleared once taken back");
    }
}
