//! The real disk: a block device (or a regular file) opened for direct, synchronous I/O.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::threads::Threads;
use super::uring::Uring;
use crate::diskio::{AlignedBuf, Disk, IoError};

/// Every O_DIRECT I/O is a multiple of this, whatever the device reports.
const MIN_SECTOR: usize = 512;
/// Pause before trying again an I/O that could not be started (EAGAIN: no worker thread, ring
/// slot or kernel resource free just now; nothing was issued). Tries go on within the I/O's
/// own timeout.
const RETRY_NOT_STARTED: Duration = Duration::from_millis(2);

/// Runs `attempt` (given the time left) until it does something other than fail with EAGAIN,
/// or the timeout is spent.
fn retry_not_started<T>(
    timeout: Duration,
    mut attempt: impl FnMut(Duration) -> Result<T, IoError>,
) -> Result<T, IoError> {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        match attempt(left) {
            Err(IoError::Os(libc::EAGAIN)) if left > RETRY_NOT_STARTED => std::thread::sleep(RETRY_NOT_STARTED),
            r => return r,
        }
    }
}

/// Which I/O backend [`DeviceDisk::open_with`] should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// io_uring when the kernel and sandbox allow it, else the thread pool.
    Auto,
    /// io_uring or fail.
    Uring,
    /// The pread/pwrite thread pool.
    Threads,
}

/// The backend a [`DeviceDisk`] actually uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Uring,
    Threads,
}

enum Inner {
    Uring(Box<Uring>),
    Threads(Threads),
}

/// A shared block device or file holding lease areas.
///
/// Opened with `O_RDWR | O_DIRECT | O_DSYNC`. O_DIRECT bypasses the page cache, so reads see
/// what other hosts wrote. O_DSYNC makes each write durable on the device before it completes,
/// which is what other hosts and a power loss need. O_SYNC (sanlock's choice) would additionally
/// flush file metadata such as mtime on every write, which nothing reads.
/// A write of ours that timed out and may still land.
struct UnsettledWrite {
    offset: u64,
    end: u64,
    /// Also held by the write's buffer, which the backend keeps until the write completes.
    token: Arc<()>,
}

pub struct DeviceDisk {
    unsettled: Mutex<Vec<UnsettledWrite>>,
    inner: Inner,
    file: Arc<File>,
    path: PathBuf,
    logical_sector: Option<u32>,
    block_device: bool,
}

impl std::fmt::Debug for DeviceDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceDisk")
            .field("path", &self.path)
            .field("backend", &self.backend())
            .field("logical_sector", &self.logical_sector)
            .finish()
    }
}

impl DeviceDisk {
    /// Opens `path` with the best backend available.
    pub fn open(path: &Path) -> io::Result<DeviceDisk> {
        DeviceDisk::open_with(path, Backend::Auto)
    }

    /// Opens `path` with the given backend; `Backend::Uring` fails if io_uring is unusable.
    pub fn open_with(path: &Path, backend: Backend) -> io::Result<DeviceDisk> {
        let file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT | libc::O_DSYNC).open(path)?;
        let block_device = file.metadata()?.file_type().is_block_device();
        let logical_sector = if block_device { Some(logical_sector_size(&file)?) } else { None };
        let file = Arc::new(file);
        let inner = match backend {
            Backend::Uring => Inner::Uring(Box::new(Uring::new(file.clone())?)),
            Backend::Threads => Inner::Threads(Threads::new(file.clone())),
            // Any failure (EPERM under seccomp, ENOSYS, EINVAL, io_uring_disabled, old kernel)
            // just means "no io_uring here".
            Backend::Auto => match Uring::new(file.clone()) {
                Ok(u) => Inner::Uring(Box::new(u)),
                Err(_) => Inner::Threads(Threads::new(file.clone())),
            },
        };
        Ok(DeviceDisk {
            unsettled: Mutex::default(),
            inner,
            file,
            path: path.to_path_buf(),
            logical_sector,
            block_device,
        })
    }

    pub fn backend(&self) -> BackendKind {
        match self.inner {
            Inner::Uring(_) => BackendKind::Uring,
            Inner::Threads(_) => BackendKind::Threads,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current size of the device or file in bytes.
    pub fn size_bytes(&self) -> io::Result<u64> {
        if self.block_device {
            // Seeking to the end reports the same size as BLKGETSIZE64 without per-architecture
            // ioctl numbers; the file position is never used (all I/O is positional).
            (&*self.file).seek(SeekFrom::End(0))
        } else {
            Ok(self.file.metadata()?.len())
        }
    }

    // `u64::is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
    fn check_aligned(&self, offset: u64, len: usize) -> Result<(), IoError> {
        let sector = self.logical_sector.map_or(MIN_SECTOR, |s| s as usize);
        let ok = |unit: usize| offset.is_multiple_of(unit as u64) && len.is_multiple_of(unit);
        if !ok(MIN_SECTOR) || !ok(sector) {
            return Err(IoError::Unaligned { offset, len, sector: sector.max(MIN_SECTOR) });
        }
        if len > u32::MAX as usize || offset.checked_add(len as u64).is_none_or(|end| end > i64::MAX as u64) {
            return Err(IoError::Os(libc::EINVAL));
        }
        Ok(())
    }

    fn read_now(&self, offset: u64, len: usize, timeout: Duration) -> Result<AlignedBuf, IoError> {
        self.check_aligned(offset, len)?;
        if len == 0 {
            return Ok(AlignedBuf::zeroed(0));
        }
        retry_not_started(timeout, |left| match &self.inner {
            Inner::Uring(u) => u.read(offset, len, left),
            Inner::Threads(t) => t.read(offset, len, left),
        })
    }

    /// A write never overtakes one of our own timed-out writes to the same range: that write
    /// may still land, and landing after ours it would put older data back (e.g. erase a
    /// shared mode block written since). Until it settles, overlapping writes fail with EBUSY
    /// without being issued.
    fn write_now(&self, offset: u64, data: AlignedBuf, timeout: Duration) -> Result<(), IoError> {
        self.check_aligned(offset, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        {
            // Not held during the I/O: writes of other threads (other sectors) go on meanwhile.
            let mut unsettled = self.unsettled.lock().unwrap_or_else(|e| e.into_inner());
            if !unsettled.is_empty() {
                if let Inner::Uring(u) = &self.inner {
                    u.reap_now();
                }
                unsettled.retain(|w| Arc::strong_count(&w.token) > 1);
                if unsettled.iter().any(|w| w.offset < end && offset < w.end) {
                    return Err(IoError::Os(libc::EBUSY));
                }
            }
        }
        let token = Arc::new(());
        // Each try gets its own buffer: a try that could not start drops the one it was given.
        let mut first = Some(data);
        let copy = first.as_ref().map(|d| d.to_vec()).unwrap_or_default();
        let res = retry_not_started(timeout, |left| {
            let mut buf = first.take().unwrap_or_else(|| AlignedBuf::from_slice(&copy));
            buf.track(token.clone());
            match &self.inner {
                Inner::Uring(u) => u.write(offset, buf, left),
                Inner::Threads(t) => t.write(offset, buf, left),
            }
        });
        if res == Err(IoError::TimedOut) && Arc::strong_count(&token) > 1 {
            self.unsettled.lock().unwrap_or_else(|e| e.into_inner()).push(UnsettledWrite { offset, end, token });
        }
        res
    }
}

impl Disk for DeviceDisk {
    fn logical_sector_size(&self) -> Option<u32> {
        self.logical_sector
    }

    fn read(&self, offset: u64, len: usize, timeout: Duration) -> impl Future<Output = Result<AlignedBuf, IoError>> {
        std::future::ready(self.read_now(offset, len, timeout))
    }

    fn write(&self, offset: u64, data: AlignedBuf, timeout: Duration) -> impl Future<Output = Result<(), IoError>> {
        std::future::ready(self.write_now(offset, data, timeout))
    }
}

fn logical_sector_size(file: &File) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int into `size`.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::BLKSSZGET, &mut size) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size as u32)
}

/// Maps a completed transfer of `got` bytes (or a negative errno) to the caller's result.
pub(super) fn transfer_result(expected: usize, got: i64) -> Result<(), IoError> {
    if got < 0 {
        return Err(IoError::Os(-got as i32));
    }
    if got as usize != expected {
        return Err(IoError::Short { expected, got: got as usize });
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::diskio::block_on;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A scratch file on a filesystem that accepts O_DIRECT, removed on drop.
    pub(in crate::diskio) struct TempDisk {
        pub path: PathBuf,
    }

    impl Drop for TempDisk {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    impl TempDisk {
        /// `size` bytes of a recognisable pattern.
        pub fn new(tag: &str, size: usize) -> TempDisk {
            static SEQ: AtomicU64 = AtomicU64::new(0);
            let name = format!("sanlvm-diskio-{}-{}-{}", tag, std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
            let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            // tmpfs may refuse O_DIRECT (EINVAL); /var/tmp is normally disk-backed.
            for dir in [std::env::temp_dir(), PathBuf::from("/var/tmp")] {
                let path = dir.join(&name);
                std::fs::write(&path, &content).unwrap();
                let t = TempDisk { path };
                match OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(&t.path) {
                    Ok(_) => return t,
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
                    Err(e) => panic!("open {}: {e}", t.path.display()),
                }
            }
            panic!("no directory accepts O_DIRECT");
        }

        pub fn pattern(offset: usize, len: usize) -> Vec<u8> {
            (offset..offset + len).map(|i| (i % 251) as u8).collect()
        }
    }

    const T: Duration = Duration::from_secs(10);

    fn open(t: &TempDisk, backend: Backend) -> Option<DeviceDisk> {
        match DeviceDisk::open_with(&t.path, backend) {
            Ok(d) => Some(d),
            Err(e) if backend == Backend::Uring => {
                eprintln!("io_uring unavailable here ({e}); skipping");
                None
            }
            Err(e) => panic!("open: {e}"),
        }
    }

    fn roundtrip(backend: Backend) {
        let t = TempDisk::new("rt", 1 << 20);
        let Some(d) = open(&t, backend) else { return };
        assert_eq!(d.logical_sector_size(), None);
        assert_eq!(d.size_bytes().unwrap(), 1 << 20);
        // Existing content is read back exactly.
        let got = block_on(d.read(4096, 8192, T)).unwrap();
        assert_eq!(&got[..], &TempDisk::pattern(4096, 8192)[..]);
        for (i, &(off, len)) in
            [(0u64, 512usize), (512, 1024), (65536, 4096), ((1 << 20) - 512, 512), (300 * 512, 3 * 4096)]
                .iter()
                .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|j| (j as u8).wrapping_mul(7).wrapping_add(i as u8 + 1)).collect();
            block_on(d.write(off, AlignedBuf::from_slice(&data), T)).unwrap();
            let back = block_on(d.read(off, len, T)).unwrap();
            assert_eq!(&back[..], &data[..], "offset {off}");
        }
        // Untouched neighbours keep their content.
        let got = block_on(d.read(2048, 2048, T)).unwrap();
        assert!(got[..] == TempDisk::pattern(2048, 2048)[..], "neighbour changed");
    }

    #[test]
    fn diskio_roundtrip_threads() {
        roundtrip(Backend::Threads);
    }

    #[test]
    fn diskio_roundtrip_uring() {
        roundtrip(Backend::Uring);
    }

    #[test]
    fn diskio_auto_reports_backend() {
        let t = TempDisk::new("auto", 8192);
        let d = DeviceDisk::open(&t.path).unwrap();
        let forced_uring = DeviceDisk::open_with(&t.path, Backend::Uring).is_ok();
        assert_eq!(d.backend() == BackendKind::Uring, forced_uring);
        assert_eq!(DeviceDisk::open_with(&t.path, Backend::Threads).unwrap().backend(), BackendKind::Threads);
        block_on(d.write(0, AlignedBuf::from_slice(&[9; 512]), T)).unwrap();
        assert_eq!(&block_on(d.read(0, 512, T)).unwrap()[..], &[9; 512][..]);
    }

    fn unaligned_rejected(backend: Backend) {
        let t = TempDisk::new("unal", 16384);
        let Some(d) = open(&t, backend) else { return };
        let before = std::fs::read(&t.path).unwrap();
        for (off, len) in [(100u64, 512usize), (0, 1000), (512, 4095), (4096 + 1, 4096)] {
            let r = block_on(d.write(off, AlignedBuf::from_slice(&vec![0xee; len]), T));
            assert_eq!(r, Err(IoError::Unaligned { offset: off, len, sector: 512 }));
            let r = block_on(d.read(off, len, T));
            assert_eq!(r, Err(IoError::Unaligned { offset: off, len, sector: 512 }));
        }
        assert_eq!(std::fs::read(&t.path).unwrap(), before, "nothing written");
    }

    #[test]
    fn diskio_unaligned_threads() {
        unaligned_rejected(Backend::Threads);
    }

    #[test]
    fn diskio_unaligned_uring() {
        unaligned_rejected(Backend::Uring);
    }

    fn past_end(backend: Backend) {
        let t = TempDisk::new("end", 8192);
        let Some(d) = open(&t, backend) else { return };
        match block_on(d.read(8192, 4096, T)) {
            Err(IoError::Short { expected: 4096, got: 0 }) | Err(IoError::Os(_)) => {}
            r => panic!("read past end: {r:?}"),
        }
        // Straddling the end: the part that exists comes back, short.
        match block_on(d.read(4096, 8192, T)) {
            Err(IoError::Short { expected: 8192, got: 4096 }) | Err(IoError::Os(_)) => {}
            r => panic!("read across end: {r:?}"),
        }
    }

    #[test]
    fn diskio_past_end_threads() {
        past_end(Backend::Threads);
    }

    #[test]
    fn diskio_past_end_uring() {
        past_end(Backend::Uring);
    }

    /// An I/O that cannot start yet (EAGAIN: here the only worker thread is stuck) is tried
    /// again within its timeout instead of failing at once: under load a renewal must not fail
    /// for want of a thread.
    #[test]
    fn diskio_retries_io_that_could_not_start() {
        let t = TempDisk::new("retry", 16384);
        let Some(mut disk) = open(&t, Backend::Threads) else { return };
        disk.inner = Inner::Threads(super::super::threads::Threads::with_max_threads(disk.file.clone(), 1));
        let Inner::Threads(threads) = &disk.inner else { unreachable!() };
        let (open_gate, gate) = std::sync::mpsc::sync_channel::<()>(8);
        let gate = Mutex::new(gate);
        let first = std::sync::atomic::AtomicBool::new(true);
        threads.set_hook(Arc::new(move |at| {
            if at == super::super::threads::HookPoint::Before && first.swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                gate.lock().unwrap().recv().unwrap();
            }
        }));
        // The one worker hangs in this write; it times out for its caller.
        assert_eq!(
            disk.write_now(0, AlignedBuf::from_slice(&[1u8; 512]), Duration::from_millis(1)),
            Err(IoError::TimedOut)
        );
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            open_gate.send(()).unwrap();
        });
        // No worker free: the backend says EAGAIN until the hung write returns, then this goes.
        assert_eq!(disk.write_now(4096, AlignedBuf::from_slice(&[2u8; 512]), T), Ok(()));
        assert_eq!(disk.read_now(4096, 512, T).unwrap()[..], [2u8; 512][..]);
        release.join().unwrap();
    }

    #[test]
    fn diskio_write_never_overtakes_our_timed_out_write() {
        let t = TempDisk::new("overtake", 16384);
        let Some(disk) = open(&t, Backend::Threads) else { return };
        let Inner::Threads(threads) = &disk.inner else { unreachable!() };
        let (open_gate, gate) = std::sync::mpsc::sync_channel::<()>(8);
        let (after_tx, after) = std::sync::mpsc::sync_channel::<()>(8);
        let (gate, after_tx) = (Mutex::new(gate), Mutex::new(after_tx));
        threads.set_hook(Arc::new(move |at| match at {
            super::super::threads::HookPoint::Before => gate.lock().unwrap().recv().unwrap(),
            super::super::threads::HookPoint::After => after_tx.lock().unwrap().send(()).unwrap(),
        }));
        let long = Duration::from_secs(30);
        let old = vec![0x11u8; 512];
        let new = vec![0x22u8; 512];
        // The first write hangs in its worker and times out: it may still land.
        assert_eq!(disk.write_now(512, AlignedBuf::from_slice(&old), Duration::from_millis(1)), Err(IoError::TimedOut));
        // An overlapping write is refused, not issued: it could be overwritten by the old one.
        assert_eq!(disk.write_now(0, AlignedBuf::from_slice(&[0x33u8; 1024]), long), Err(IoError::Os(libc::EBUSY)));
        assert_eq!(std::fs::read(&t.path).unwrap()[..1024], TempDisk::pattern(0, 1024)[..], "nothing written");
        // The old write lands; from then on the range is writable again.
        open_gate.send(()).unwrap();
        after.recv_timeout(long).unwrap();
        assert_eq!(std::fs::read(&t.path).unwrap()[512..1024], old[..]);
        open_gate.send(()).unwrap();
        assert_eq!(disk.write_now(512, AlignedBuf::from_slice(&new), long), Ok(()));
        assert_eq!(std::fs::read(&t.path).unwrap()[512..1024], new[..]);
    }

    #[test]
    fn diskio_shared_across_threads() {
        for backend in [Backend::Threads, Backend::Uring] {
            let t = TempDisk::new("mt", 64 * 4096);
            let Some(d) = open(&t, backend) else { continue };
            let d = Arc::new(d);
            let handles: Vec<_> = (0..8u8)
                .map(|k| {
                    let d = d.clone();
                    std::thread::spawn(move || {
                        for round in 0..16u8 {
                            let off = (k as u64 * 8 + (round as u64 % 8)) * 4096;
                            let data = vec![k.wrapping_mul(31) ^ round; 4096];
                            block_on(d.write(off, AlignedBuf::from_slice(&data), T))
                                .unwrap_or_else(|e| panic!("{backend:?} write: {e:?}"));
                            assert_eq!(&block_on(d.read(off, 4096, T)).unwrap()[..], &data[..]);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        }
    }

    /// Opt-in: SANLVM_TEST_SCRATCH_BLOCKDEV names a block device (e.g. a loop device) whose
    /// first 64 KiB this test OVERWRITES.
    #[test]
    fn diskio_scratch_block_device() {
        let Some(dev) = std::env::var_os("SANLVM_TEST_SCRATCH_BLOCKDEV") else { return };
        for backend in [Backend::Threads, Backend::Uring] {
            let d = match DeviceDisk::open_with(Path::new(&dev), backend) {
                Ok(d) => d,
                Err(e) if backend == Backend::Uring => {
                    eprintln!("io_uring unavailable here ({e}); skipping");
                    continue;
                }
                Err(e) => panic!("open {dev:?}: {e}"),
            };
            let sector = d.logical_sector_size().expect("block devices report a sector size") as usize;
            assert!(sector >= 512 && sector.is_power_of_two());
            eprintln!("{dev:?}: {:?} backend, {sector}-byte sectors", d.backend());
            assert!(d.size_bytes().unwrap() >= 65536);
            let data: Vec<u8> = (0..2 * sector).map(|i| (i * 3 + sector) as u8).collect();
            block_on(d.write(sector as u64, AlignedBuf::from_slice(&data), T)).unwrap();
            assert_eq!(&block_on(d.read(sector as u64, 2 * sector, T)).unwrap()[..], &data[..]);
            if sector > 512 {
                let r = block_on(d.read(512, 512, T));
                assert_eq!(r, Err(IoError::Unaligned { offset: 512, len: 512, sector }));
            }
            let end = d.size_bytes().unwrap();
            match block_on(d.read(end, sector, T)) {
                Err(IoError::Short { got: 0, .. }) | Err(IoError::Os(_)) => {}
                r => panic!("read past end: {r:?}"),
            }
        }
    }

    #[test]
    fn diskio_transfer_result() {
        assert_eq!(transfer_result(512, 512), Ok(()));
        assert_eq!(transfer_result(512, 0), Err(IoError::Short { expected: 512, got: 0 }));
        assert_eq!(transfer_result(512, -(libc::EIO as i64)), Err(IoError::Os(libc::EIO)));
    }
}
