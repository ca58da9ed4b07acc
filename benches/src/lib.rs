//! Helpers of the benches: a Disk that counts I/Os.

use std::cell::Cell;
use std::time::Duration;

use lease::diskio::{AlignedBuf, Disk, IoError};

/// Wraps a disk and counts reads and writes (and their bytes).
pub struct CountingDisk<D> {
    pub inner: D,
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub read_bytes: Cell<u64>,
    pub write_bytes: Cell<u64>,
}

impl<D> CountingDisk<D> {
    pub fn new(inner: D) -> Self {
        CountingDisk {
            inner,
            reads: Cell::new(0),
            writes: Cell::new(0),
            read_bytes: Cell::new(0),
            write_bytes: Cell::new(0),
        }
    }
    /// (reads, writes) so far, and resets the counters.
    pub fn take(&self) -> (u64, u64) {
        let r = (self.reads.replace(0), self.writes.replace(0));
        self.read_bytes.set(0);
        self.write_bytes.set(0);
        r
    }
}

impl<D: Disk> Disk for CountingDisk<D> {
    fn logical_sector_size(&self) -> Option<u32> {
        self.inner.logical_sector_size()
    }
    async fn read(&self, offset: u64, len: usize, timeout: Duration) -> Result<AlignedBuf, IoError> {
        self.reads.set(self.reads.get() + 1);
        self.read_bytes.set(self.read_bytes.get() + len as u64);
        self.inner.read(offset, len, timeout).await
    }
    async fn write(&self, offset: u64, data: AlignedBuf, timeout: Duration) -> Result<(), IoError> {
        self.writes.set(self.writes.get() + 1);
        self.write_bytes.set(self.write_bytes.get() + data.len() as u64);
        self.inner.write(offset, data, timeout).await
    }
}
