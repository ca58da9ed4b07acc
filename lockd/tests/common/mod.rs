//! Host-tier harness: several lockd processes, each with its own host_id, config and run_dir,
//! sharing one scratch file as their "SAN LUN". Timings are short (io_timeout 1, W 3) and
//! never asserted; ordering is, from the clock every process on this machine shares.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lease::delta_lease::{self, LockspaceArea};
use lease::diskio::{block_on, DeviceDisk};
use lease::ondisk::{Geometry, Name};
use lease::paxos_lease::{self, ResourceArea};
use lease::timeouts::Timeouts;
use lockd::client::{Client, ClientError};
use lockd::protocol::{AreaPiece, ErrorCode, ErrorReply, LeaseArea, Mode, Request, Resource, Response};
use sanlvm_tests::Scratch;

pub const MIB: u64 = 1 << 20;
pub const IO_TIMEOUT: u32 = 1;
pub const W: u32 = 3;
/// Where the lease LV starts on the shared file (as if pe_start were 1 MiB).
pub const PV_START: u64 = MIB;

pub fn timeouts() -> Timeouts {
    Timeouts::new(IO_TIMEOUT, W).unwrap()
}

pub fn mono() -> Duration {
    lease::clock::clock_monotonic()
}

/// A shared "disk" with the lease area of VG `vg` laid out as lvmlockd does, with `slots`
/// LV slots, all `#unused`.
pub struct SharedDisk {
    pub file: Scratch,
    pub vg: String,
    pub area: LeaseArea,
}

impl SharedDisk {
    pub fn new(tag: &str, vg: &str, slots: u64) -> SharedDisk {
        let size = (67 + slots) * MIB;
        let file = Scratch::new(tag, PV_START + size + MIB);
        let g = Geometry::DEFAULT_512;
        let t = timeouts();
        let disk = DeviceDisk::open(&file.path).unwrap();
        let ls = Name::new(&format!("lvm_{vg}")).unwrap();
        block_on(delta_lease::init(&disk, &LockspaceArea { name: ls, offset: PV_START, geometry: g }, t)).unwrap();
        let res = |name: &str, at: u64| {
            let a = ResourceArea { lockspace: ls, name: Name::new(name).unwrap(), offset: PV_START + at, geometry: g };
            block_on(paxos_lease::init(&disk, &a, 0, false, t)).unwrap();
        };
        res("GLLK", 65 * MIB);
        res("VGLK", 66 * MIB);
        for k in 0..slots {
            res("#unused", (67 + k) * MIB);
        }
        let area = LeaseArea {
            sector_size: 512,
            align_bytes: MIB,
            pieces: vec![AreaPiece { lv_start: 0, len: size, pv_path: file.path.clone(), pv_start: PV_START }],
        };
        SharedDisk { file, vg: vg.into(), area }
    }

    pub fn slot(k: u64) -> u64 {
        (67 + k) * MIB
    }

    /// Byte offset on the file of LV offset `o`.
    pub fn at(o: u64) -> u64 {
        PV_START + o
    }

    pub fn start_req(&self) -> Request {
        Request::LockStart { vg: self.vg.clone(), vg_uuid: format!("uuid-of-{}", self.vg), area: self.area.clone() }
    }

    /// The on-disk timestamp of host `id`'s delta lease (its writer's CLOCK_MONOTONIC secs).
    pub fn delta_timestamp(&self, id: u64) -> u64 {
        let b = self.file.bytes(PV_START + (id - 1) * 512, 512);
        lease::ondisk::LeaderRecord::decode(&b).unwrap().timestamp
    }
}

pub fn lv(uuid: &str, k: u64) -> Resource {
    Resource::Lv { uuid: uuid.into(), offset: SharedDisk::slot(k), name: format!("lv_{uuid}") }
}

/// One lockd process.
pub struct Host {
    pub id: u64,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Host {
    /// Writes the config; `extra` is appended to it.
    pub fn new(tag: &str, id: u64, extra: &str) -> Host {
        let dir = std::env::temp_dir().join(format!("lockd-host-{tag}-{}-{id}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("lvmlocal.toml");
        std::fs::write(
            &config,
            format!(
                "host_id = {id}\nhost_name = \"node{id}\"\nio_timeout = {IO_TIMEOUT}\nwatchdog_fire_timeout = {W}\n\
                 {}run_dir = \"{}\"\n{extra}\n",
                if extra.contains("use_watchdog") { "" } else { "use_watchdog = false\n" },
                dir.join("run").display()
            ),
        )
        .unwrap();
        let log = dir.join("lockd.log");
        Host { id, dir, config, log, child: None }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lockd"))
            .args(["daemon", "--config"])
            .arg(&self.config)
            .env("LOCKD_DEBUG", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if let Ok(mut c) = Client::connect(&self.run_dir()) {
                if c.call(&Request::Hello { version: lockd::protocol::PROTOCOL_VERSION }).is_ok() {
                    return;
                }
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("lockd {} exited with {st}: {}", self.id, self.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "lockd {} did not come up: {}",
                self.id,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` to the daemon (SIGSTOP freezes it, SIGCONT resumes it).
    pub fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: kill has no memory effects; the pid is our child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Waits up to `limit` for the daemon to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.as_mut().expect("started").try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.run_dir()).unwrap()
    }

    pub fn call(&self, req: &Request) -> Result<Response, ErrorReply> {
        match self.client().call(req) {
            Ok(r) => Ok(r),
            Err(ClientError::Daemon(e)) => Err(e),
            Err(e) => panic!("host {}: {e}", self.id),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("host {} log kept in {}", self.id, self.log.display());
        }
    }
}

pub fn call_on(c: &mut Client, req: &Request) -> Result<Response, ErrorReply> {
    match c.call(req) {
        Ok(r) => Ok(r),
        Err(ClientError::Daemon(e)) => Err(e),
        Err(e) => panic!("{e}"),
    }
}

pub fn lock(vg: &str, resource: Resource, mode: Mode, persistent: bool) -> Request {
    Request::Lock { vg: vg.into(), resource, mode, persistent, area: None }
}

pub fn expect_conflict(r: Result<Response, ErrorReply>, holder: u64) -> ErrorReply {
    let e = r.expect_err("expected a conflict");
    assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
    assert!(e.holders.iter().any(|h| h.host_id == holder), "holder {holder} not named: {e:?}");
    e
}

/// Starts the lockspace on every host in parallel.
pub fn start_all(hosts: &[&Host], d: &SharedDisk) {
    std::thread::scope(|s| {
        let hs: Vec<_> = hosts
            .iter()
            .map(|h| {
                let req = d.start_req();
                s.spawn(move || h.call(&req))
            })
            .collect();
        for (h, j) in hosts.iter().zip(hs) {
            match j.join().unwrap() {
                Ok(Response::Started { already: false, host_id, .. }) => assert_eq!(host_id, h.id),
                other => panic!("host {}: lock start: {other:?}", h.id),
            }
        }
    });
}

pub fn file_exists(p: &Path) -> bool {
    File::open(p).is_ok()
}

/// lvcreate's part: under the VG lock in ex, names the next free slots after `uuids` (in order).
pub fn init_lvs(h: &Host, vg: &str, uuids: &[&str]) {
    let mut c = h.client();
    call_on(&mut c, &lock(vg, Resource::Vg, Mode::Ex, false)).unwrap();
    for (k, u) in uuids.iter().enumerate() {
        let r = call_on(&mut c, &Request::InitLv { vg: vg.into(), lv_uuid: u.to_string(), area: None });
        assert_eq!(r.unwrap(), Response::LvLease { offset: SharedDisk::slot(k as u64) });
    }
}
