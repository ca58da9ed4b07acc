//! io_uring backend: each I/O is a Read/Write linked to a LinkTimeout.
//!
//! A timed-out block I/O often cannot be cancelled and may still complete, even a write landing
//! much later. Its buffer is then parked in the slot table until its completion is reaped; it is
//! never freed while the kernel may still use it.
//!
//! One ring per disk. The queues are touched only under `state`'s lock; the blocking wait
//! happens outside it so that one slow I/O does not delay other threads' I/O. Exactly one
//! thread at a time (the "leader") sleeps in the kernel; the others sleep on a condvar and the
//! leader wakes them after each batch of completions. While a leader sleeps nobody else reaps,
//! so any completion makes the leader's wait return.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{opcode, squeue, types, IoUring, Probe};

use super::file::transfer_result;
use crate::diskio::{AlignedBuf, IoError};

/// Each I/O takes two SQEs and yields two CQEs; with `MAX_SLOTS * 2 <= RING_ENTRIES` the
/// submission queue always has room and the completion queue (twice as large) cannot overflow.
const RING_ENTRIES: u32 = 64;
/// Most I/Os in flight per disk, parked ones included. Beyond this the device is stuck.
const MAX_SLOTS: usize = 32;
/// Extra wait past the I/O timeout in case the kernel's timeout completion is itself late.
const BACKSTOP: Duration = Duration::from_secs(1);
/// How long dropping the backend waits for parked I/Os before leaking their buffers.
const DROP_WAIT: Duration = Duration::from_secs(1);

/// user_data: slot id shifted left, low bit set for the LinkTimeout.
const TIMEOUT_TAG: u64 = 1;

struct Slot {
    /// The I/O's buffer, until its CQE is reaped (or the caller takes it).
    buf: Option<AlignedBuf>,
    /// The LinkTimeout's timespec; kept until its CQE in case submission is delayed.
    _timespec: Box<Timespec>,
    op_res: Option<i32>,
    timeout_res: Option<i32>,
    /// A caller waits for this slot; otherwise it is parked and reaping cleans it up.
    waiting: bool,
}

impl Slot {
    /// The linked timeout expired (rather than being cancelled by the I/O completing).
    fn timer_fired(&self) -> bool {
        self.timeout_res.is_some_and(|r| r != -libc::ECANCELED)
    }
}

#[derive(Default)]
struct State {
    slots: HashMap<u64, Slot>,
    next_id: u64,
    /// A thread is waiting in the kernel for completions without holding the lock.
    leader: bool,
}

impl State {
    fn record(&mut self, user_data: u64, res: i32) {
        let id = user_data >> 1;
        let Some(slot) = self.slots.get_mut(&id) else { return };
        if user_data & TIMEOUT_TAG != 0 {
            slot.timeout_res = Some(res);
        } else {
            slot.op_res = Some(res);
        }
        self.tidy(id);
    }

    /// Frees what nobody waits for and the kernel no longer uses.
    fn tidy(&mut self, id: u64) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        if slot.waiting {
            return;
        }
        if slot.op_res.is_some() {
            slot.buf = None;
            if slot.timeout_res.is_some() {
                self.slots.remove(&id);
            }
        }
    }

    /// I/Os abandoned by their callers that the kernel has not completed yet.
    fn parked(&self) -> usize {
        self.slots.values().filter(|s| !s.waiting && s.op_res.is_none()).count()
    }
}

enum Outcome {
    Completed(i32),
    TimedOut,
}

pub(super) struct Uring {
    // Declared before `file`, so the ring is closed first.
    ring: IoUring,
    file: Arc<File>,
    ext_arg: bool,
    state: Mutex<State>,
    reaped: Condvar,
}

impl Uring {
    /// Fails if io_uring is unavailable (seccomp EPERM, ENOSYS, io_uring_disabled) or too old
    /// for Read/Write/LinkTimeout (< 5.6).
    pub(super) fn new(file: Arc<File>) -> io::Result<Uring> {
        let ring = IoUring::new(RING_ENTRIES)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for code in [opcode::Read::CODE, opcode::Write::CODE, opcode::LinkTimeout::CODE] {
            if !probe.is_supported(code) {
                return Err(io::Error::from_raw_os_error(libc::ENOSYS));
            }
        }
        let ext_arg = ring.params().is_feature_ext_arg();
        Ok(Uring { ring, file, ext_arg, state: Mutex::new(State::default()), reaped: Condvar::new() })
    }

    pub(super) fn read(&self, offset: u64, len: usize, timeout: Duration) -> Result<AlignedBuf, IoError> {
        let (buf, res) = self.io(false, offset, AlignedBuf::for_read(len), timeout)?;
        transfer_result(len, res as i64)?;
        Ok(buf)
    }

    pub(super) fn write(&self, offset: u64, data: AlignedBuf, timeout: Duration) -> Result<(), IoError> {
        let len = data.len();
        let (_, res) = self.io(true, offset, data, timeout)?;
        transfer_result(len, res as i64)
    }

    /// Collects completions that have arrived, so settled I/Os release their buffers now.
    pub(super) fn reap_now(&self) {
        let mut st = self.lock();
        self.reap(&mut st);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves every available CQE into the slot table. Caller holds the lock (that is the only
    /// thing making the shared completion queue access exclusive).
    fn reap(&self, st: &mut State) {
        // SAFETY: the completion queue is only ever accessed with `state` locked.
        let cq = unsafe { self.ring.completion_shared() };
        for cqe in cq {
            st.record(cqe.user_data(), cqe.result());
        }
    }

    fn io(
        &self,
        write: bool,
        offset: u64,
        mut buf: AlignedBuf,
        timeout: Duration,
    ) -> Result<(AlignedBuf, i32), IoError> {
        let mut st = self.lock();
        if !st.leader {
            self.reap(&mut st);
        }
        if st.slots.len() >= MAX_SLOTS {
            return Err(IoError::Os(libc::EAGAIN));
        }
        st.next_id += 1;
        let id = st.next_id;
        let timespec = Box::new(Timespec::from(timeout));
        let fd = types::Fd(self.file.as_raw_fd());
        let len = buf.len() as u32; // DeviceDisk checked it fits
        let op = if write {
            opcode::Write::new(fd, buf.as_ptr(), len).offset(offset).build()
        } else {
            opcode::Read::new(fd, buf.as_mut_ptr(), len).offset(offset).build()
        };
        let entries = [
            op.flags(squeue::Flags::IO_LINK).user_data(id << 1),
            opcode::LinkTimeout::new(&*timespec).build().user_data(id << 1 | TIMEOUT_TAG),
        ];
        // Moving the buffer and timespec into the slot does not move their heap memory.
        st.slots
            .insert(id, Slot { buf: Some(buf), _timespec: timespec, op_res: None, timeout_res: None, waiting: true });
        // SAFETY: the submission queue is only accessed with `state` locked. The buffer and
        // timespec stay in the slot until their CQEs are reaped (or are leaked in Drop), and
        // the fd belongs to `self.file`, which outlives the ring.
        if unsafe { self.ring.submission_shared().push_multiple(&entries) }.is_err() {
            // Cannot happen given MAX_SLOTS, but nothing was queued, so the buffer is free.
            st.slots.remove(&id);
            return Err(IoError::Os(libc::EAGAIN));
        }
        // A failed submit leaves the entries queued; the waiting below submits them again.
        let _ = self.ring.submit();

        let now = Instant::now();
        let deadline = now.checked_add(timeout.saturating_add(BACKSTOP)).unwrap_or(now + Duration::from_secs(1 << 32));
        let outcome = loop {
            if !st.leader {
                self.reap(&mut st);
            }
            let slot = &st.slots[&id];
            if let Some(res) = slot.op_res {
                break Outcome::Completed(res);
            }
            if slot.timer_fired() {
                break Outcome::TimedOut;
            }
            let now = Instant::now();
            if now >= deadline {
                break Outcome::TimedOut;
            }
            if st.leader {
                st = self.reaped.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            }
            st.leader = true;
            drop(st);
            self.wait_kernel(deadline - now);
            st = self.lock();
            st.leader = false;
            self.reap(&mut st);
            self.reaped.notify_all();
        };

        let slot = st.slots.get_mut(&id).expect("slot outlives its waiter");
        slot.waiting = false;
        let result = match outcome {
            Outcome::Completed(res) => {
                let buf = slot.buf.take().expect("buffer of a waited-for slot");
                let cancelled = res == -libc::ECANCELED || (res == -libc::EINTR && slot.timer_fired());
                if cancelled {
                    Err(IoError::TimedOut)
                } else {
                    Ok((buf, res))
                }
            }
            // The buffer stays parked in the slot until the kernel completes the I/O.
            Outcome::TimedOut => Err(IoError::TimedOut),
        };
        st.tidy(id);
        // We may have been leader last; let a follower take over.
        self.reaped.notify_all();
        result
    }

    /// Sleeps in io_uring_enter until at least one completion (or `max`), also submitting
    /// anything still queued.
    fn wait_kernel(&self, max: Duration) {
        let res = if self.ext_arg {
            let ts = Timespec::from(max);
            self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&ts))
        } else {
            // Pre-5.11: no wait timeout, but the linked timeout always produces a completion.
            self.ring.submit_and_wait(1)
        };
        match res.map_err(|e| e.raw_os_error()) {
            Ok(_) | Err(Some(libc::ETIME)) | Err(Some(libc::EINTR)) => {}
            // EAGAIN/EBUSY: out of kernel resources; retry shortly rather than spin.
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }

    #[cfg(test)]
    fn parked(&self) -> usize {
        self.lock().parked()
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        let deadline = Instant::now() + DROP_WAIT;
        loop {
            let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
            // SAFETY: `&mut self`: no other thread touches the queues.
            for cqe in unsafe { self.ring.completion_shared() } {
                st.record(cqe.user_data(), cqe.result());
            }
            let now = Instant::now();
            if st.parked() == 0 || now >= deadline || !self.ext_arg {
                break;
            }
            self.wait_kernel(deadline - now);
        }
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, slot) in st.slots.drain() {
            if slot.op_res.is_none() {
                // The kernel may still write into (or read from) this buffer, even after the
                // ring is closed: leak it deliberately rather than hand it back to the allocator.
                std::mem::forget(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::{FromRawFd, OwnedFd};

    const LONG: Duration = Duration::from_secs(30);

    /// A pipe as (read end, write end). I/O on an empty (or full) pipe blocks until the other
    /// end acts, which makes io_uring timeouts deterministic.
    fn pipe() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills both fds, which we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh fds owned by nobody else.
        unsafe { (File::from(OwnedFd::from_raw_fd(fds[0])), File::from(OwnedFd::from_raw_fd(fds[1]))) }
    }

    fn uring(file: File) -> Option<Uring> {
        match Uring::new(Arc::new(file)) {
            Ok(u) => Some(u),
            Err(e) => {
                eprintln!("io_uring unavailable here ({e}); skipping");
                None
            }
        }
    }

    #[test]
    fn diskio_uring_read_times_out_on_empty_pipe() {
        let (r, mut w) = pipe();
        let Some(u) = uring(r) else { return };
        // Nothing is written yet, so only the linked timeout can end this read.
        assert_eq!(u.read(0, 4096, Duration::from_millis(20)).err(), Some(IoError::TimedOut));
        // The timed-out read was cancelled, not left pending: the next read gets the data,
        // and nothing stays parked.
        w.write_all(&[7; 4096]).unwrap();
        assert_eq!(&u.read(0, 4096, LONG).unwrap()[..], &[7; 4096][..]);
        assert_eq!(u.parked(), 0);
    }

    #[test]
    fn diskio_uring_write_times_out_on_full_pipe() {
        let (mut r, w) = pipe();
        // Fill the pipe without blocking, so the next write must wait for a reader.
        // SAFETY: fcntl on an fd we own.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let mut filler = &w;
        while filler.write(&[1; 4096]).is_ok() {}
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETFL, 0) };
        let Some(u) = uring(w) else { return };
        assert_eq!(u.write(0, AlignedBuf::from_slice(&[2; 4096]), Duration::from_millis(20)), Err(IoError::TimedOut));
        // Drain: only filler bytes; the cancelled write never went in.
        // SAFETY: as above.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        let mut all = Vec::new();
        let _ = r.read_to_end(&mut all);
        assert!(!all.is_empty() && all.iter().all(|&b| b == 1));
    }

    #[test]
    fn diskio_uring_short_read() {
        let (r, mut w) = pipe();
        let Some(u) = uring(r) else { return };
        w.write_all(&[3; 100]).unwrap();
        assert_eq!(u.read(0, 4096, LONG).err(), Some(IoError::Short { expected: 4096, got: 100 }));
    }

    #[test]
    fn diskio_uring_os_error() {
        // Reading from a pipe's write end fails with EBADF.
        let (_r, w) = pipe();
        let Some(u) = uring(w) else { return };
        assert_eq!(u.read(0, 4096, LONG).err(), Some(IoError::Os(libc::EBADF)));
    }

    #[test]
    fn diskio_uring_slow_io_does_not_delay_others() {
        let (r, mut w) = pipe();
        let Some(u) = uring(r) else { return };
        let u = Arc::new(u);
        let slow = {
            let u = u.clone();
            std::thread::spawn(move || u.read(0, 4096, LONG))
        };
        // Whichever of the two waits in the kernel, this one ends by its own timeout while
        // the other stays blocked (it cannot finish before the pipe is written below).
        for _ in 0..3 {
            assert_eq!(u.read(0, 4096, Duration::from_millis(20)).err(), Some(IoError::TimedOut));
        }
        assert!(!slow.is_finished());
        w.write_all(&[9; 4096]).unwrap();
        assert_eq!(&slow.join().unwrap().unwrap()[..], &[9; 4096][..]);
    }

    fn slot(waiting: bool) -> Slot {
        Slot {
            buf: Some(AlignedBuf::zeroed(512)),
            _timespec: Box::new(Timespec::new()),
            op_res: None,
            timeout_res: None,
            waiting,
        }
    }

    // The uncancellable case (block I/O in flight when the timer fires) cannot be produced on
    // demand with real devices here, so the slot bookkeeping is driven with synthetic CQEs.
    #[test]
    fn diskio_uring_parked_buffer_kept_until_cqe() {
        let mut st = State::default();
        st.slots.insert(1, slot(true));
        // Timer fired, cancellation impossible: the I/O's own CQE has not come.
        st.record(1 << 1 | TIMEOUT_TAG, -libc::EALREADY);
        assert!(st.slots[&1].timer_fired() && st.slots[&1].op_res.is_none());
        // The caller gives up (what `io` does on TimedOut): the buffer stays parked.
        st.slots.get_mut(&1).unwrap().waiting = false;
        st.tidy(1);
        assert_eq!(st.parked(), 1);
        assert!(st.slots[&1].buf.is_some());
        // Unrelated CQEs change nothing; the late completion frees everything.
        st.record(7 << 1, 512);
        assert_eq!(st.parked(), 1);
        st.record(1 << 1, 512);
        assert_eq!(st.parked(), 0);
        assert!(st.slots.is_empty());
    }

    #[test]
    fn diskio_uring_slot_waits_for_both_cqes() {
        let mut st = State::default();
        st.slots.insert(1, slot(false));
        st.record(1 << 1, 512);
        // The I/O is done (buffer freed) but its timeout's CQE is still to come.
        assert!(st.slots[&1].buf.is_none());
        assert_eq!(st.parked(), 0);
        st.record(1 << 1 | TIMEOUT_TAG, -libc::ECANCELED);
        assert!(st.slots.is_empty());
        // A completed I/O whose timeout was cancelled did not time out.
        let mut s = slot(true);
        s.timeout_res = Some(-libc::ECANCELED);
        assert!(!s.timer_fired());
    }
}
