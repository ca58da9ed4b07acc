//! The checks behind the daemons' fuzz targets, callable from libFuzzer (fuzz_targets/) and
//! from a plain test that replays the committed corpus (tests/corpus.rs). Each function panics
//! only on a real defect: a crash in a daemon's decoding or request handling, a framing
//! disagreement, a broken round trip, or a broken invariant.
//!
//! Input: the bytes a client could write on the socket, split into frames exactly as the
//! daemons split them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proto::frame::{FrameDecoder, FrameError};

/// Frame bodies of `data` as a daemon's non-blocking decoder sees them, and whether the
/// stream ended on an oversized length prefix. The blocking reader (lvtool's and lockd's
/// client side, lockd before its own reader) must agree on the first frame.
fn frames(data: &[u8], max: usize) -> (Vec<Vec<u8>>, bool) {
    let mut dec = FrameDecoder::new(max);
    // Pushed in uneven pieces: frames arrive split anywhere.
    for chunk in data.chunks(7) {
        dec.push(chunk);
    }
    let mut bodies = Vec::new();
    let too_large = loop {
        match dec.next_frame() {
            Ok(Some(b)) => {
                assert!(b.len() <= max, "body of {} bytes passed a limit of {max}", b.len());
                bodies.push(b)
            }
            Ok(None) => break false,
            Err(FrameError::TooLarge { len, max: m }) => {
                assert!(len > m && m == max, "refused {len} bytes under the limit {m}");
                break true;
            }
            Err(e) => panic!("the decoder fails only on size, not with {e}"),
        }
    };
    match (proto::frame::read_body(&mut &data[..], max), bodies.first()) {
        (Ok(b), Some(first)) => assert_eq!(&b, first, "blocking and streaming readers disagree"),
        (Ok(b), None) => panic!("blocking reader found a frame of {} bytes the decoder did not", b.len()),
        (Err(FrameError::TooLarge { .. }), None) => assert!(too_large),
        (Err(FrameError::Io(e)), None) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        (Err(e), first) => panic!("blocking reader: {e}, decoder: {:?}", first.map(|b| b.len())),
    }
    (bodies, too_large)
}

/// One lockd with no lockspace and no disk, shared by every run (as one daemon serves many
/// connections): its handling of any request must answer, not panic.
fn lockd() -> &'static lockd::daemon::Daemon {
    static D: OnceLock<lockd::daemon::Daemon> = OnceLock::new();
    D.get_or_init(|| {
        let run_dir = std::env::temp_dir().join(format!("daemons-fuzz-lockd-{}", std::process::id()));
        let text = format!(
            "host_id = 1\nhost_name = \"fuzz\"\nio_timeout = 1\nwatchdog_fire_timeout = 3\nuse_watchdog = false\nrun_dir = \
             \"{}\"\n",
            run_dir.display()
        );
        let cfg = proto::config::Config::parse(&text, "fuzz").expect("the fuzz config parses");
        lockd::daemon::Daemon::new(cfg, Arc::new(lockd::watchdog::NoWatchdog), Arc::new(lockd::fence::NoDmFencer))
            .expect("a daemon without disks starts")
    })
}

/// Target `lockd_request`: frames as lockd's server splits them; each body that decodes as a
/// request re-encodes to the same request, and the daemon answers it with a reply that fits a
/// frame. `lock_start` is decoded but not handled: it opens the devices the request names.
pub fn lockd_request(data: &[u8]) {
    use proto::lockd::protocol::{encode, read_frame, Request, MAX_FRAME};
    let (bodies, _) = frames(data, MAX_FRAME);
    let d = lockd();
    let conn = d.new_conn();
    for body in bodies {
        let Ok(req) = serde_json::from_slice::<Request>(&body) else { continue };
        let enc = encode(&req);
        let back: Request = read_frame(&mut &enc[..]).expect("an encoded request reads back");
        assert_eq!(back, req, "request changed by encode+decode");
        if matches!(req, Request::LockStart { .. }) {
            continue;
        }
        let resp = d.handle(conn, req);
        assert!(encode(&resp).len() - 4 <= MAX_FRAME, "reply larger than a frame");
    }
    d.conn_closed(conn);
}

/// A watchdog that only counts: the decision code is what is fuzzed.
#[derive(Default)]
struct CountingWatchdog {
    open: bool,
    pets: u64,
}

impl wdmd::device::Watchdog for CountingWatchdog {
    fn describe(&self) -> String {
        "fuzz".into()
    }
    fn is_open(&self) -> bool {
        self.open
    }
    fn open(&mut self, _: u32) -> std::io::Result<()> {
        self.open = true;
        Ok(())
    }
    fn keepalive(&mut self) -> std::io::Result<()> {
        self.pets += 1;
        Ok(())
    }
    fn close_armed(&mut self) {
        self.open = false;
    }
    fn close_disarmed(&mut self) -> std::io::Result<()> {
        self.open = false;
        Ok(())
    }
}

/// Where the virtual clock starts, and how far it moves per frame.
const START: Duration = Duration::from_secs(1000);
const STEP: Duration = Duration::from_millis(250);

/// Target `wdmd_request`: frames as wdmd's poll loop splits them, alternately from two
/// connections, on a virtual clock with a test whenever the daemon asks for one. Each request
/// re-encodes to itself; an expiry wdmd accepts is never beyond `max_expiry_ahead`; a
/// client's expiry set means shutdown refuses.
pub fn wdmd_request(data: &[u8]) {
    use proto::wdmd::protocol::{encode, max_expiry_ahead, read_frame, to_ms, Request, Response, MAX_FRAME};
    let (bodies, _) = frames(data, MAX_FRAME);
    let mut d = wdmd::daemon::Daemon::start(Box::<CountingWatchdog>::default(), 60, None, START)
        .expect("a daemon on a counting watchdog starts");
    let conns = [d.connect(100), d.connect(200)];
    let mut now = START;
    for (i, body) in bodies.iter().enumerate() {
        now += STEP;
        while d.next_tick() <= now {
            let at = d.next_tick().max(START);
            d.tick(at);
        }
        let Ok(req) = serde_json::from_slice::<Request>(body) else { continue };
        let enc = encode(&req);
        let back: Request = read_frame(&mut &enc[..]).expect("an encoded request reads back");
        assert_eq!(back, req, "request changed by encode+decode");
        let resp = d.request(conns[i % 2], req.clone(), now);
        if let (Request::SetExpiry { expiry_ms, .. }, Response::Ok) = (&req, &resp) {
            assert!(*expiry_ms <= to_ms(now + max_expiry_ahead()), "accepted expiry {expiry_ms} at {now:?}");
        }
        assert!(encode(&resp).len() - 4 <= MAX_FRAME, "reply larger than a frame");
    }
    if !d.armed_clients().is_empty() {
        assert!(d.shutdown().is_err(), "shutdown with an expiry set");
    }
    for c in conns {
        d.disconnect(c);
    }
    let _ = d.status(now);
}
