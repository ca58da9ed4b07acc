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
use proto::lockd::client::{Client, ClientError};
use proto::lockd::protocol::{AreaPiece, ErrorCode, ErrorReply, LeaseArea, Mode, Request, Resource, Response};
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
/// LV slots, all `#unused`, and LVM metadata on it (one PV, the `lvmlock` LV at its first
/// extent) from which lockd reads the map itself.
pub struct SharedDisk {
    pub file: Scratch,
    pub vg: String,
    pub vg_uuid: String,
    pub area: LeaseArea,
    pub pv_uuid: String,
}

/// A valid LVM UUID derived from `seed` (dashed form).
pub fn lvm_uuid(seed: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut out = String::new();
    for i in 0..32 {
        for b in seed.bytes().chain([i as u8]) {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        let c = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[(h >> 33) as usize % 62];
        out.push(c as char);
    }
    let g = [6, 4, 4, 4, 4, 4, 6];
    let mut parts = vec![];
    let mut at = 0;
    for n in g {
        parts.push(&out[at..at + n]);
        at += n;
    }
    parts.join("-")
}

/// An LV of the metadata: name, UUID, lease offset (its `lock_args`).
pub struct MetaLv<'a> {
    pub name: &'a str,
    pub uuid: &'a str,
    pub offset: u64,
}

impl SharedDisk {
    pub fn new(tag: &str, vg: &str, slots: u64) -> SharedDisk {
        let size = (67 + slots) * MIB;
        // Room after the lease LV for the LVs of `commit` and for growing it.
        let file = Scratch::new(tag, PV_START + size + 16 * MIB);
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
        let path = std::fs::canonicalize(&file.path).unwrap();
        let area = LeaseArea {
            sector_size: 512,
            align_bytes: MIB,
            pieces: vec![AreaPiece { lv_start: 0, len: size, pv_path: path, pv_start: PV_START }],
        };
        let d = SharedDisk {
            file,
            vg: vg.into(),
            vg_uuid: lvm_uuid(&format!("vg-{tag}-{vg}")),
            area,
            pv_uuid: lvm_uuid(&format!("pv-{tag}")),
        };
        d.write_label();
        d.commit(1, size / MIB, &[]);
        d
    }

    fn write_label(&self) {
        use lvmmeta::device::{BlockDevice, FileDevice};
        use lvmmeta::label::{DiskLocn, Label, SECTOR_SIZE};
        use lvmmeta::mda::MdaHeader;
        let mut dev = FileDevice::open(&self.file.path, true).unwrap();
        let uuid = lvmmeta::uuid::Uuid::parse(&self.pv_uuid).unwrap();
        let mda = DiskLocn { offset: 4096, size: PV_START - 4096 };
        let label = Label::new(uuid, dev.size(), PV_START, vec![mda], true);
        let mut head = vec![0u8; 4 * SECTOR_SIZE];
        head[SECTOR_SIZE..2 * SECTOR_SIZE].copy_from_slice(&label.encode().unwrap());
        let mut a = vec![0u8; 4096];
        a[..512].copy_from_slice(&MdaHeader::new(4096, PV_START - 4096).encode());
        dev.write_at(4096, &a).unwrap();
        dev.write_at(0, &head).unwrap();
        dev.flush().unwrap();
    }

    /// Commits metadata version `seqno`: the lvmlock LV of `lock_mib` MiB, and `lvs` (one
    /// extent each, after it).
    pub fn commit(&self, seqno: u32, lock_mib: u64, lvs: &[MetaLv]) {
        use lvmmeta::commit::{commit_to, PvTarget};
        use lvmmeta::device::{BlockDevice, FileDevice};
        use lvmmeta::label::DiskLocn;
        let dev = FileDevice::open(&self.file.path, true).unwrap();
        let pe_count = (dev.size() - PV_START) / MIB;
        let mut lv_text = format!(
            "lvmlock {{\nid = \"{}\"\nstatus = [\"READ\", \"WRITE\"]\nflags = []\ncreation_time = 0\n\
             creation_host = \"t\"\nsegment_count = 1\nsegment1 {{\nstart_extent = 0\nextent_count = {lock_mib}\n\
             type = \"striped\"\nstripe_count = 1\nstripes = [\"pv0\", 0]\n}}\n}}\n",
            lvm_uuid(&format!("lock-{}", self.vg_uuid))
        );
        for (i, lv) in lvs.iter().enumerate() {
            lv_text += &format!(
                "{} {{\nid = \"{}\"\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nflags = []\n\
                 creation_time = 0\ncreation_host = \"t\"\nlock_args = \"1.0.0:{}\"\nsegment_count = 1\n\
                 segment1 {{\nstart_extent = 0\nextent_count = 1\ntype = \"striped\"\nstripe_count = 1\n\
                 stripes = [\"pv0\", {}]\n}}\n}}\n",
                lv.name,
                lv.uuid,
                lv.offset,
                lock_mib + i as u64
            );
        }
        let text = format!(
            "contents = \"Text Format Volume Group\"\nversion = 1\ndescription = \"\"\ncreation_host = \"t\"\n\
             creation_time = 0\n{} {{\nid = \"{}\"\nseqno = {seqno}\nformat = \"lvm2\"\n\
             status = [\"RESIZEABLE\", \"READ\", \"WRITE\"]\nflags = []\nlock_type = \"sanlock\"\n\
             lock_args = \"1.0.0:lvmlock\"\nextent_size = 2048\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n\
             physical_volumes {{\npv0 {{\nid = \"{}\"\ndevice = \"{}\"\nstatus = [\"ALLOCATABLE\"]\n\
             flags = []\ndev_size = {}\npe_start = 2048\npe_count = {pe_count}\n}}\n}}\n\
             logical_volumes {{\n{lv_text}}}\n}}\n",
            self.vg,
            self.vg_uuid,
            self.pv_uuid,
            self.file.path.display(),
            dev.size() / 512
        );
        let mut t = text.into_bytes();
        t.push(0);
        let vg = lvmmeta::vg::Vg::from_text(&t).unwrap();
        let area = DiskLocn { offset: 4096, size: PV_START - 4096 };
        let hdr = lvmmeta::mda::read_header(&dev, area).unwrap();
        let mut targets = [PvTarget { dev: Box::new(dev), mdas: vec![(area, hdr.committed_copy())] }];
        commit_to(&mut targets, &vg, &lvmmeta::vg::TextHeader::now("test")).unwrap();
    }

    /// Writes a fresh paxos leader named `name` into LV slot `k` (as lvcreate or lvmlockd do).
    pub fn format_slot(&self, k: u64, name: &str) {
        self.format_at(Self::slot(k), name)
    }

    /// Writes a fresh paxos leader named `name` at LV offset `o`.
    pub fn format_at(&self, o: u64, name: &str) {
        let disk = DeviceDisk::open(&self.file.path).unwrap();
        let ls = Name::new(&format!("lvm_{}", self.vg)).unwrap();
        let a = ResourceArea {
            lockspace: ls,
            name: Name::new(name).unwrap(),
            offset: PV_START + o,
            geometry: Geometry::DEFAULT_512,
        };
        block_on(paxos_lease::init(&disk, &a, 0, false, timeouts())).unwrap();
    }

    pub fn slot(k: u64) -> u64 {
        (67 + k) * MIB
    }

    /// Byte offset on the file of LV offset `o`.
    pub fn at(o: u64) -> u64 {
        PV_START + o
    }

    pub fn start_req(&self) -> Request {
        Request::LockStart { vg: self.vg.clone(), vg_uuid: self.vg_uuid.clone(), area: self.area.clone() }
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
                if c.call(&Request::Hello { version: proto::lockd::protocol::PROTOCOL_VERSION }).is_ok() {
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
