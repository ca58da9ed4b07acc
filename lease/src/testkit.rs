//! Immediate in-memory disk and a clock that jumps on sleep: for unit tests of single-host
//! behaviour. Concurrency, latency and faults belong to [`crate::sim`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use crate::clock::Clock;
use crate::diskio::{AlignedBuf, Disk, IoError};

/// A shared in-memory disk; clones see the same bytes. Counts I/Os.
#[derive(Clone, Debug)]
pub struct MemDisk {
    bytes: Rc<RefCell<Vec<u8>>>,
    pub reads: Rc<Cell<u64>>,
    pub writes: Rc<Cell<u64>>,
    /// When set, every I/O fails with this error and changes nothing.
    pub fail_with: Rc<RefCell<Option<IoError>>>,
}

impl MemDisk {
    pub fn new(size: usize) -> MemDisk {
        MemDisk {
            bytes: Rc::new(RefCell::new(vec![0; size])),
            reads: Rc::default(),
            writes: Rc::default(),
            fail_with: Rc::default(),
        }
    }
    pub fn snapshot(&self, offset: u64, len: usize) -> Vec<u8> {
        self.bytes.borrow()[offset as usize..offset as usize + len].to_vec()
    }
    pub fn poke(&self, offset: u64, data: &[u8]) {
        self.bytes.borrow_mut()[offset as usize..offset as usize + data.len()].copy_from_slice(data);
    }
    fn check(&self, offset: u64, len: usize) -> Result<(), IoError> {
        if let Some(e) = self.fail_with.borrow().clone() {
            return Err(e);
        }
        if !offset.is_multiple_of(512) || !len.is_multiple_of(512) {
            return Err(IoError::Unaligned { offset, len, sector: 512 });
        }
        let size = self.bytes.borrow().len();
        if offset as usize + len > size {
            return Err(IoError::Short { expected: len, got: size.saturating_sub(offset as usize) });
        }
        Ok(())
    }
}

impl Disk for MemDisk {
    fn logical_sector_size(&self) -> Option<u32> {
        None
    }
    fn read(&self, offset: u64, len: usize, _timeout: Duration) -> impl Future<Output = Result<AlignedBuf, IoError>> {
        self.reads.set(self.reads.get() + 1);
        let r = self.check(offset, len).map(|()| AlignedBuf::from_slice(&self.snapshot(offset, len)));
        std::future::ready(r)
    }
    fn write(&self, offset: u64, data: AlignedBuf, _timeout: Duration) -> impl Future<Output = Result<(), IoError>> {
        self.writes.set(self.writes.get() + 1);
        let r = self.check(offset, data.len()).map(|()| self.poke(offset, &data));
        std::future::ready(r)
    }
}

/// A clock that advances only when slept on (or by hand). Starts at `start`.
#[derive(Clone, Debug)]
pub struct StepClock {
    now: Rc<Cell<Duration>>,
    pub slept: Rc<Cell<Duration>>,
}

impl StepClock {
    pub fn new(start: Duration) -> StepClock {
        StepClock { now: Rc::new(Cell::new(start)), slept: Rc::default() }
    }
    pub fn advance(&self, d: Duration) {
        self.now.set(self.now.get() + d);
    }
}

impl Clock for StepClock {
    fn now(&self) -> Duration {
        self.now.get()
    }
    fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        self.advance(d);
        self.slept.set(self.slept.get() + d);
        std::future::ready(())
    }
    fn random_delay(&self, max: Duration) -> Duration {
        max / 2
    }
}
