//! Disk I/O as the protocol sees it: aligned buffers, one `Disk` trait, timeouts per I/O.
//!
//! A timed-out I/O may still complete later. Backends keep its buffer alive until it does, and
//! callers treat a timed-out write as "maybe written": it may land at any later moment.

use std::alloc::{self, Layout};
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// Alignment of every I/O buffer: enough for O_DIRECT on 512 and 4096-byte sector devices.
pub const BUF_ALIGN: usize = 4096;

/// A heap buffer aligned to [`BUF_ALIGN`]: zero-initialised, or filled by a read.
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// Dropped with the buffer. Backends keep a buffer exactly as long as its I/O may still
    /// touch it, so a live token elsewhere means "this I/O has not settled".
    in_flight: Option<std::sync::Arc<()>>,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like Vec<u8>.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(1), BUF_ALIGN).expect("buffer size overflow");
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = std::ptr::NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len, in_flight: None }
    }
    /// A buffer for the kernel to read into, not zeroed: zeroing 1 MiB for every paxos read was
    /// most of lockd's CPU time. Its bytes are uninitialised until the read completes, so a
    /// backend only passes its raw pointer to the kernel and hands it out after a transfer of
    /// the full length (a short or failed read drops it unread).
    pub(crate) fn for_read(len: usize) -> AlignedBuf {
        if let Some(ptr) = spare::take(len) {
            return AlignedBuf { ptr, len, in_flight: None };
        }
        let layout = Layout::from_size_align(len.max(1), BUF_ALIGN).expect("buffer size overflow");
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { alloc::alloc(layout) };
        let ptr = std::ptr::NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len, in_flight: None }
    }
    pub fn from_slice(data: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::for_read(data.len());
        // SAFETY: b is valid for data.len() bytes and does not overlap data; this initialises all.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), b.as_mut_ptr(), data.len()) };
        b
    }
    /// Ties `token` to this buffer's lifetime (see [`AlignedBuf::in_flight`]).
    pub fn track(&mut self, token: std::sync::Arc<()>) {
        self.in_flight = Some(token);
    }
    /// The length without looking at the bytes (which `for_read` leaves uninitialised).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if spare::keep(self.ptr, self.len) {
            return;
        }
        let layout = Layout::from_size_align(self.len.max(1), BUF_ALIGN).unwrap();
        // SAFETY: allocated in `zeroed` or `for_read` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// Large buffers are kept for the next read of the same size instead of being freed: every
/// paxos acquire reads the whole lease area (1 MiB) three times, and a fresh allocation that
/// large is fresh pages, each faulted in and zeroed by the kernel (most of an acquire's CPU
/// time in a VM). At most `MAX_SPARE` are kept, all allocated by `AlignedBuf`.
mod spare {
    use std::ptr::NonNull;
    use std::sync::Mutex;

    /// Smaller buffers (single sectors) are cheap to allocate.
    const MIN_LEN: usize = 64 << 10;
    /// Enough for the reads in flight at once in lockd (one per lockspace and per request).
    const MAX_SPARE: usize = 16;

    struct Spare(Vec<(NonNull<u8>, usize)>);
    // SAFETY: the pointers are allocations nobody else refers to (freed buffers).
    unsafe impl Send for Spare {}

    static SPARE: Mutex<Spare> = Mutex::new(Spare(Vec::new()));

    pub(super) fn take(len: usize) -> Option<NonNull<u8>> {
        if len < MIN_LEN {
            return None;
        }
        let mut s = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        let i = s.0.iter().position(|&(_, l)| l == len)?;
        Some(s.0.swap_remove(i).0)
    }

    /// Keeps a buffer being dropped; false: the caller frees it.
    pub(super) fn keep(ptr: NonNull<u8>, len: usize) -> bool {
        if len < MIN_LEN {
            return false;
        }
        let mut s = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.len() >= MAX_SPARE {
            return false;
        }
        s.0.push((ptr, len));
        true
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes for the buffer's lifetime, initialised (zeroed, or
        // by a completed full read: see `for_read`).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        AlignedBuf::from_slice(self)
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

impl PartialEq for AlignedBuf {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoError {
    /// No completion within the timeout. For a write: it may still land ("maybe written").
    TimedOut,
    /// The device reported an error (errno).
    Os(i32),
    /// Fewer bytes than asked (e.g. past the end of the device).
    Short { expected: usize, got: usize },
    /// Offset or length not aligned to the sector size.
    Unaligned { offset: u64, len: usize, sector: usize },
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoError::TimedOut => write!(f, "I/O timed out"),
            IoError::Os(e) => write!(f, "{}", std::io::Error::from_raw_os_error(*e)),
            IoError::Short { expected, got } => write!(f, "short I/O: {got} of {expected} bytes"),
            IoError::Unaligned { offset, len, sector } => {
                write!(f, "I/O at {offset} of {len} bytes is not aligned to {sector}-byte sectors")
            }
        }
    }
}

impl std::error::Error for IoError {}

/// A shared block device (or file) holding lease areas.
pub trait Disk {
    /// The logical sector size the device reports (BLKSSZGET); `None` for plain files, where
    /// the lease's own `sector_size` decides.
    fn logical_sector_size(&self) -> Option<u32>;
    /// Reads `len` bytes at `offset` (both sector-aligned) in one I/O.
    fn read(&self, offset: u64, len: usize, timeout: Duration) -> impl Future<Output = Result<AlignedBuf, IoError>>;
    /// Writes `data` at `offset` in one I/O. The buffer moves into the backend, which keeps it
    /// until the device completes the write, even after a timeout.
    fn write(&self, offset: u64, data: AlignedBuf, timeout: Duration) -> impl Future<Output = Result<(), IoError>>;
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread. The real backends complete inside `poll`, so
/// this is all the executor the daemon and the CLI need.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

mod file;
mod threads;
mod uring;
pub use file::{Backend, BackendKind, DeviceDisk};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_read_buffers_are_reused_small_ones_freed() {
        // A length no other test uses: the spare list is shared by the whole process.
        let len = (64 << 10) + 7 * 4096;
        let first = AlignedBuf::for_read(len);
        let at = first.as_ptr();
        drop(first);
        let again = AlignedBuf::for_read(len);
        assert_eq!(again.as_ptr(), at, "a dropped large buffer serves the next read of its size");
        assert_eq!(again.len(), len);
        // Copies overwrite a reused buffer whole.
        drop(again);
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let copy = AlignedBuf::from_slice(&data);
        assert_eq!(copy.as_ptr(), at);
        assert_eq!(&copy[..], &data[..]);
        assert!(!spare::keep(copy.ptr, 4096), "small buffers are freed");
        assert_eq!(spare::take(4096), None);
    }
}
