//! Unit-test setting for the daemon core: lockspaces on an in-memory lease LV with a stepped
//! clock, and a fencer and wdmd that record what they were told.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lease::clock::Clock;
use lease::delta_lease::{self, HostIdentity, LockspaceArea};
use lease::diskio::{block_on, DeviceDisk};
use lease::ondisk::{Align, Geometry, Name, SectorSize};
use lease::paxos_lease::{self, ResourceArea};
use lease::testkit::{MemDisk, StepClock};
use lease::timeouts::Timeouts;

use crate::fence::{FencedLv, Fencer};
use crate::leasemap::VgLeases;
use crate::locks::{GL_LOCK_BEGIN, LV_LOCK_BEGIN, R_NAME_GL, R_NAME_VG, VG_LOCK_BEGIN};
use crate::lockspace::{Backend, Env, Lockspace};
use crate::state::StateDir;
use crate::watchdog::{Watchdog, WatchdogFactory};
use proto::lockd::protocol::{AreaPiece, LeaseArea, Resource};

pub const MIB: u64 = 1 << 20;
/// LV slots in the test lease LV.
pub const LV_SLOTS: u64 = 3;
pub const VG: &str = "vg1";
pub const VG_UUID: &str = "vguuid-1";

pub struct TestBackend {
    pub disk: MemDisk,
    pub clock: StepClock,
}

impl Backend for TestBackend {
    type Disk = MemDisk;
    type Clock = StepClock;
    fn clock(&self) -> StepClock {
        self.clock.clone()
    }
    fn now(&self) -> Duration {
        self.clock.now()
    }
    fn open(&self, _: &LeaseArea, _: &mut HashMap<PathBuf, Arc<DeviceDisk>>) -> std::io::Result<MemDisk> {
        Ok(self.disk.clone())
    }
}

#[derive(Default)]
pub struct RecordingFencer {
    pub fenced: Mutex<Vec<Vec<String>>>,
}

impl Fencer for RecordingFencer {
    fn fence(&self, _vg: &str, _vg_uuid: &str, held: &[FencedLv]) -> Result<(), String> {
        self.fenced.lock().unwrap().push(held.iter().map(|l| l.uuid.clone()).collect());
        Ok(())
    }
}

/// What lockd told "wdmd": expiries set, and whether it was cleared.
#[derive(Default)]
pub struct WdLog {
    pub expiries: Vec<Duration>,
    pub cleared: bool,
}

#[derive(Default)]
pub struct RecordingWatchdog {
    pub log: Arc<Mutex<WdLog>>,
}

struct WdClient(Arc<Mutex<WdLog>>);

impl Watchdog for WdClient {
    fn set_expiry(&mut self, _: Duration, expiry: Duration) -> Result<(), String> {
        self.0.lock().unwrap().expiries.push(expiry);
        Ok(())
    }
    fn clear(&mut self) -> Result<(), String> {
        self.0.lock().unwrap().cleared = true;
        Ok(())
    }
    fn close(&mut self) {}
}

impl WatchdogFactory for RecordingWatchdog {
    fn register(&self, _: &str, _: bool) -> Result<Box<dyn Watchdog>, String> {
        Ok(Box::new(WdClient(self.log.clone())))
    }
    fn enabled(&self) -> bool {
        true
    }
}

pub fn timeouts() -> Timeouts {
    Timeouts::new(10, 60).unwrap()
}

fn geometry() -> Geometry {
    Geometry::new(SectorSize::B512, Align::M1).unwrap()
}

pub fn area() -> LeaseArea {
    let len = (LV_LOCK_BEGIN + LV_SLOTS) * MIB;
    LeaseArea {
        sector_size: 512,
        align_bytes: MIB,
        pieces: vec![AreaPiece { lv_start: 0, len, pv_path: "/dev/test-pv".into(), pv_start: 0 }],
    }
}

/// The offset of LV slot `i` and the LV's UUID.
pub fn lv(i: u64) -> (u64, String) {
    ((LV_LOCK_BEGIN + i) * MIB, format!("lv-uuid-{i}"))
}

pub fn lv_resource(i: u64) -> Resource {
    let (offset, uuid) = lv(i);
    Resource::Lv { uuid, offset, name: format!("lv{i}") }
}

/// A lease LV as lvmlockd's init_vg leaves it, plus every LV slot named after its LV.
pub fn new_disk() -> MemDisk {
    let disk = MemDisk::new(area().size() as usize);
    let t = timeouts();
    let g = geometry();
    let ls_name = Name::new(&format!("lvm_{VG}")).unwrap();
    block_on(delta_lease::init(&disk, &LockspaceArea { name: ls_name, offset: 0, geometry: g }, t)).unwrap();
    let mut slots = vec![(GL_LOCK_BEGIN * MIB, R_NAME_GL.to_string()), (VG_LOCK_BEGIN * MIB, R_NAME_VG.to_string())];
    slots.extend((0..LV_SLOTS).map(lv));
    for (offset, name) in slots {
        let a = ResourceArea { lockspace: ls_name, name: Name::new(&name).unwrap(), offset, geometry: g };
        block_on(paxos_lease::init(&disk, &a, 0, false, t)).unwrap();
    }
    disk
}

/// The committed metadata as lockd would read it: every LV in its slot.
pub fn leases() -> VgLeases {
    let mut lvs = BTreeMap::new();
    let mut slots = BTreeMap::new();
    for i in 0..LV_SLOTS {
        let (offset, uuid) = lv(i);
        lvs.insert(uuid.clone(), (format!("lv{i}"), Some(offset)));
        slots.insert(offset, vec![uuid]);
    }
    VgLeases { seqno: 1, area: area(), lvs, slots }
}

pub fn scratch_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d =
        std::env::temp_dir().join(format!("lockd-unit-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub struct Host {
    pub env: Arc<Env>,
    /// What failure handling fenced, and what wdmd was told.
    pub fencer: Arc<RecordingFencer>,
    pub wd: Arc<Mutex<WdLog>>,
}

pub fn host(host_id: u64, run_dir: &Path) -> Host {
    let fencer = Arc::new(RecordingFencer::default());
    let wd = RecordingWatchdog::default();
    let log = wd.log.clone();
    let env = Env {
        timeouts: timeouts(),
        host: HostIdentity { host_id, host_name: Name::new(&format!("host{host_id}")).unwrap(), boot: None },
        watchdog: Arc::new(wd),
        fencer: fencer.clone(),
        kill_command: None,
        state: StateDir::new(run_dir).unwrap(),
        boot_id: "boot-1".into(),
        devices: vec![],
    };
    Host { env: Arc::new(env), fencer, wd: log }
}

/// A lockspace of `h` on `disk`, not joined yet, with the metadata read installed.
pub fn lockspace(h: &Host, disk: &MemDisk, clock: &StepClock) -> Arc<Lockspace<TestBackend>> {
    let b = TestBackend { disk: disk.clone(), clock: clock.clone() };
    let ls = Lockspace::with_backend(h.env.clone(), VG, VG_UUID, area(), b).unwrap();
    ls.set_leases(leases());
    // The core takes `Arc<Self>` as the daemon shares it; these tests stay on one thread.
    #[allow(clippy::arc_with_non_send_sync)]
    Arc::new(ls)
}
