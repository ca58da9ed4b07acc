//! Fallback backend: pread/pwrite on a small pool of worker threads.
//!
//! A blocking syscall cannot be timed out, so the caller waits on a channel with a timeout and
//! abandons the worker if it is late. The worker keeps the buffer (and the file) until the
//! syscall returns, so a late write still writes the caller's data, never freed memory.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::file::transfer_result;
use crate::diskio::{AlignedBuf, IoError};

/// Most worker threads one disk may have, hung ones included. Beyond this the device is clearly
/// stuck and new I/O fails at once instead of piling up threads.
const MAX_THREADS: usize = 64;
/// Idle workers kept around; more exit when they finish.
const KEEP_IDLE: usize = 4;

enum Op {
    Read,
    Write,
}

struct Job {
    op: Op,
    offset: u64,
    buf: AlignedBuf,
    reply: SyncSender<(AlignedBuf, io::Result<usize>)>,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    shutdown: bool,
}

#[cfg(test)]
pub(super) type Hook = Arc<dyn Fn(HookPoint) + Send + Sync>;

/// Where a worker calls the test hook: just before and just after its syscall.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HookPoint {
    Before,
    After,
}

struct Pool {
    file: Arc<File>,
    state: Mutex<PoolState>,
    work: Condvar,
    max_threads: usize,
    #[cfg(test)]
    hook: Mutex<Option<Hook>>,
}

pub(super) struct Threads {
    pool: Arc<Pool>,
}

impl Threads {
    pub(super) fn new(file: Arc<File>) -> Threads {
        Threads::with_max_threads(file, MAX_THREADS)
    }

    pub(super) fn with_max_threads(file: Arc<File>, max_threads: usize) -> Threads {
        Threads {
            pool: Arc::new(Pool {
                file,
                state: Mutex::new(PoolState::default()),
                work: Condvar::new(),
                max_threads,
                #[cfg(test)]
                hook: Mutex::new(None),
            }),
        }
    }

    pub(super) fn read(&self, offset: u64, len: usize, timeout: Duration) -> Result<AlignedBuf, IoError> {
        let (buf, n) = self.run(Op::Read, offset, AlignedBuf::for_read(len), timeout)?;
        transfer_result(len, n as i64)?;
        Ok(buf)
    }

    pub(super) fn write(&self, offset: u64, data: AlignedBuf, timeout: Duration) -> Result<(), IoError> {
        let len = data.len();
        let (_, n) = self.run(Op::Write, offset, data, timeout)?;
        transfer_result(len, n as i64)
    }

    fn run(&self, op: Op, offset: u64, buf: AlignedBuf, timeout: Duration) -> Result<(AlignedBuf, usize), IoError> {
        let (reply, done) = mpsc::sync_channel(1);
        self.submit(Job { op, offset, buf, reply })?;
        match done.recv_timeout(timeout) {
            Ok((buf, Ok(n))) => Ok((buf, n)),
            Ok((_, Err(e))) => Err(IoError::Os(e.raw_os_error().unwrap_or(libc::EIO))),
            // The worker still owns the buffer; dropping `done` makes its reply a no-op.
            Err(RecvTimeoutError::Timeout) => Err(IoError::TimedOut),
            Err(RecvTimeoutError::Disconnected) => Err(IoError::Os(libc::EIO)),
        }
    }

    fn submit(&self, job: Job) -> Result<(), IoError> {
        let mut st = self.pool.lock();
        st.queue.push_back(job);
        // Every queued job needs an idle worker of its own; hung workers are never idle.
        if st.idle < st.queue.len() {
            if st.threads >= self.pool.max_threads {
                st.queue.pop_back();
                return Err(IoError::Os(libc::EAGAIN));
            }
            let pool = self.pool.clone();
            let spawned = std::thread::Builder::new().name("sanlvm-dio".into()).spawn(move || pool.worker());
            if spawned.is_err() {
                st.queue.pop_back();
                return Err(IoError::Os(libc::EAGAIN));
            }
            st.threads += 1;
        }
        self.pool.work.notify_one();
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn set_hook(&self, hook: Hook) {
        *self.pool.hook.lock().unwrap() = Some(hook);
    }

    #[cfg(test)]
    fn threads(&self) -> usize {
        self.pool.lock().threads
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // Idle workers exit; busy (possibly hung) ones exit whenever their syscall returns.
        self.pool.lock().shutdown = true;
        self.pool.work.notify_all();
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Workers never panic while holding the lock, but don't let poisoning cascade.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn worker(&self) {
        let mut st = self.lock();
        loop {
            let Some(job) = st.queue.pop_front() else {
                if st.shutdown {
                    break;
                }
                st.idle += 1;
                st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                st.idle -= 1;
                continue;
            };
            drop(st);
            self.execute(job);
            st = self.lock();
            if st.queue.is_empty() && (st.idle >= KEEP_IDLE || st.shutdown) {
                break;
            }
        }
        st.threads -= 1;
    }

    fn execute(&self, job: Job) {
        let Job { op, offset, mut buf, reply } = job;
        #[cfg(test)]
        self.call_hook(HookPoint::Before);
        let res = match op {
            Op::Read => {
                // Through the raw pointer: the buffer is uninitialised until this fills it.
                // SAFETY: the buffer is valid for len bytes and owned by this job.
                let n = unsafe {
                    libc::pread(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t)
                };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            }
            Op::Write => self.file.write_at(&buf, offset),
        };
        #[cfg(test)]
        self.call_hook(HookPoint::After);
        // The caller may have timed out and gone; then the buffer is simply dropped here.
        let _ = reply.send((buf, res));
    }

    #[cfg(test)]
    fn call_hook(&self, at: HookPoint) {
        let hook = self.hook.lock().unwrap().clone();
        if let Some(h) = hook {
            h(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diskio::file::tests::TempDisk;
    use std::fs::OpenOptions;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::mpsc::Receiver;

    const LONG: Duration = Duration::from_secs(30);

    fn open_direct(t: &TempDisk) -> Arc<File> {
        let f = OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT | libc::O_DSYNC).open(&t.path);
        Arc::new(f.unwrap())
    }

    struct Gate {
        /// One send lets one held worker proceed to its syscall.
        open: SyncSender<()>,
        /// One message per worker that reached its syscall's `Before`.
        entered: Receiver<()>,
        /// One message per finished syscall.
        after: Receiver<()>,
    }

    /// A hook that holds every worker just before its syscall until the test opens the gate.
    fn gated(backend: &Threads) -> Gate {
        let (open, gate_rx) = mpsc::sync_channel::<()>(64);
        let (entered_tx, entered) = mpsc::sync_channel::<()>(64);
        let (after_tx, after) = mpsc::sync_channel::<()>(64);
        let gate_rx = Mutex::new(gate_rx);
        let (entered_tx, after_tx) = (Mutex::new(entered_tx), Mutex::new(after_tx));
        backend.set_hook(Arc::new(move |at| match at {
            HookPoint::Before => {
                entered_tx.lock().unwrap().send(()).unwrap();
                gate_rx.lock().unwrap().recv().unwrap();
            }
            HookPoint::After => after_tx.lock().unwrap().send(()).unwrap(),
        }));
        Gate { open, entered, after }
    }

    #[test]
    fn diskio_threads_timeout_keeps_buffer_until_done() {
        let t = TempDisk::new("thr-to", 16384);
        let backend = Threads::new(open_direct(&t));
        let gate = gated(&backend);
        let data = vec![0x5a; 4096];
        // The worker is held before its pwrite, so this cannot complete in time.
        let r = backend.write(8192, AlignedBuf::from_slice(&data), Duration::from_millis(1));
        assert_eq!(r, Err(IoError::TimedOut));
        gate.entered.recv_timeout(LONG).expect("worker took the job");
        {
            let st = backend.pool.lock();
            assert_eq!((st.threads, st.idle, st.queue.len()), (1, 0, 0), "the hung worker owns the job");
        }
        assert_eq!(std::fs::read(&t.path).unwrap()[8192..12288], TempDisk::pattern(8192, 4096)[..]);
        // Release it: the abandoned write still lands, from the buffer the worker kept.
        gate.open.send(()).unwrap();
        gate.after.recv_timeout(LONG).expect("worker finished");
        assert_eq!(std::fs::read(&t.path).unwrap()[8192..12288], data[..]);
        // The pool keeps working.
        gate.open.send(()).unwrap();
        assert_eq!(&backend.read(8192, 4096, LONG).unwrap()[..], &data[..]);
    }

    #[test]
    fn diskio_threads_cap_on_hung_workers() {
        let t = TempDisk::new("thr-cap", 16384);
        let backend = Threads::with_max_threads(open_direct(&t), 3);
        let gate = gated(&backend);
        for _ in 0..3 {
            assert_eq!(backend.read(0, 4096, Duration::from_millis(1)).err(), Some(IoError::TimedOut));
            gate.entered.recv_timeout(LONG).unwrap();
        }
        assert_eq!(backend.threads(), 3);
        // All workers hung: refuse rather than spawn a fourth.
        assert_eq!(backend.read(0, 4096, LONG).err(), Some(IoError::Os(libc::EAGAIN)));
        assert_eq!(backend.write(0, AlignedBuf::zeroed(4096), LONG), Err(IoError::Os(libc::EAGAIN)));
        assert_eq!(backend.threads(), 3);
        assert_eq!(std::fs::read(&t.path).unwrap()[..4096], TempDisk::pattern(0, 4096)[..], "refused write not done");
        for _ in 0..3 {
            gate.open.send(()).unwrap();
            gate.after.recv_timeout(LONG).unwrap();
        }
        // Recovered workers serve new I/O.
        gate.open.send(()).unwrap();
        assert_eq!(&backend.read(0, 4096, LONG).unwrap()[..], &TempDisk::pattern(0, 4096)[..]);
    }

    #[test]
    fn diskio_threads_os_error() {
        // A read-only fd makes pwrite fail with EBADF: reported as Os, not Short.
        let t = TempDisk::new("thr-err", 4096);
        let backend = Threads::new(Arc::new(File::open(&t.path).unwrap()));
        assert_eq!(backend.write(0, AlignedBuf::zeroed(4096), LONG), Err(IoError::Os(libc::EBADF)));
    }
}
