//! Virtual time as one host sees it: global virtual time plus that boot's own offset, so
//! timestamps written by different hosts (and boots) never share an origin.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::world::{Event, WorldRef};
use crate::clock::Clock;

#[derive(Clone)]
pub struct SimClock {
    pub world: WorldRef,
    pub offset: Duration,
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        self.world.borrow().now + self.offset
    }
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        let until = self.world.borrow().now + d;
        Sleep { world: self.world.clone(), until, registered: false }
    }
    fn random_delay(&self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        self.world.borrow_mut().rng.between(Duration::ZERO, max - Duration::from_nanos(1))
    }
}

/// Ready once global time reaches `until`.
pub struct Sleep {
    world: WorldRef,
    until: Duration,
    registered: bool,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut w = this.world.borrow_mut();
        if w.now >= this.until {
            return Poll::Ready(());
        }
        if !this.registered {
            this.registered = true;
            w.schedule(this.until, Event::Wake(cx.waker().clone()));
        }
        Poll::Pending
    }
}
