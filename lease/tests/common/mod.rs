//! Shared fixtures for the protocol rule tests.
#![allow(dead_code)]

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use lease::clock::Clock;
use lease::delta_lease::{HostIdentity, LockspaceArea};
use lease::ondisk::{BootStamp, Geometry, Name};
use lease::paxos_lease::ResourceArea;
use lease::testkit::StepClock;
use lease::timeouts::Timeouts;

pub const MIB: u64 = 1 << 20;

/// N = 1 s, W = 10 s: 2N = 2, 8N+W = 18.
pub fn timeouts() -> Timeouts {
    Timeouts::new(1, 10).unwrap()
}

pub fn lockspace() -> LockspaceArea {
    LockspaceArea { name: Name::new("ls").unwrap(), offset: 0, geometry: Geometry::DEFAULT_512 }
}

pub fn resource(i: u64) -> ResourceArea {
    ResourceArea {
        lockspace: Name::new("ls").unwrap(),
        name: Name::new(&format!("r{i}")).unwrap(),
        offset: MIB * (1 + i),
        geometry: Geometry::DEFAULT_512,
    }
}

pub fn boot(n: u8) -> BootStamp {
    BootStamp { boot_id: [n; 16] }
}

pub fn host(id: u64, name: &str, boot_n: u8) -> HostIdentity {
    HostIdentity { host_id: id, host_name: Name::new(name).unwrap(), boot: Some(boot(boot_n)) }
}

type Hook = Box<dyn FnMut(Duration)>;

/// A step clock that runs a hook after every sleep: lets a test change the disk "while we
/// wait", deterministically.
#[derive(Clone)]
pub struct HookClock {
    pub inner: StepClock,
    hook: Rc<RefCell<Option<Hook>>>,
}

impl HookClock {
    pub fn new() -> HookClock {
        HookClock { inner: StepClock::new(Duration::from_secs(1000)), hook: Rc::default() }
    }
    pub fn on_sleep(&self, f: impl FnMut(Duration) + 'static) {
        *self.hook.borrow_mut() = Some(Box::new(f));
    }
    pub fn clear_hook(&self) {
        *self.hook.borrow_mut() = None;
    }
    pub fn slept(&self) -> Duration {
        self.inner.slept.get()
    }
}

impl Clock for HookClock {
    fn now(&self) -> Duration {
        self.inner.now()
    }
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        self.inner.advance(d);
        self.inner.slept.set(self.inner.slept.get() + d);
        if let Some(h) = self.hook.borrow_mut().as_mut() {
            h(d);
        }
        std::future::ready(())
    }
    fn random_delay(&self, max: Duration) -> Duration {
        max / 2
    }
}
