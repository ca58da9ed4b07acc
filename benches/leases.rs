//! Lease operations on a real file through DeviceDisk (O_DIRECT|O_DSYNC): an uncontended paxos
//! acquire+release, and a delta acquire at io_timeout 1 (it waits 2N = 2 s by design).
//!
//! Before timing, prints the I/Os of one uncontended paxos acquire. The protocol minimum, the
//! same as sanlock's: read the area (1), phase 1 write + read (2), phase 2 write + read (2),
//! commit write (1) = 3 reads + 3 writes.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use lease::clock::SystemClock;
use lease::delta_lease::{self, HostIdentity, LockspaceArea, ProtocolFaults};
use lease::diskio::{block_on, DeviceDisk};
use lease::ondisk::{Geometry, Name};
use lease::paxos_lease::{self, AcquireOptions, Mode, PaxosCtx, ResourceArea};
use lease::timeouts::Timeouts;
use sanlvm_benches::CountingDisk;
use sanlvm_tests::Scratch;

fn leases(c: &mut Criterion) {
    let g = Geometry::DEFAULT_512;
    let f = Scratch::new("bench", 2 * g.area_bytes());
    let disk = CountingDisk::new(DeviceDisk::open(&f.path).unwrap());
    let t = Timeouts::new(1, 60).unwrap();
    let name = |s: &str| Name::new(s).unwrap();
    let ls = LockspaceArea { name: name("LS"), offset: 0, geometry: g };
    let area = ResourceArea { lockspace: name("LS"), name: name("RES"), offset: g.area_bytes(), geometry: g };
    block_on(delta_lease::init(&disk, &ls, t)).unwrap();
    block_on(paxos_lease::init(&disk, &area, 0, false, t)).unwrap();
    let clock = SystemClock::default();
    let ctx = PaxosCtx {
        disk: &disk,
        clock: &clock,
        timeouts: t,
        lockspace: ls,
        host_id: 1,
        generation: 1,
        hosts: None,
        faults: ProtocolFaults::default(),
    };
    let ex = AcquireOptions { mode: Mode::Exclusive, wait_for_owner: false };

    disk.take();
    let held = block_on(paxos_lease::acquire(&ctx, &area, ex)).unwrap();
    let (r, w) = (disk.reads.get(), disk.writes.get());
    let (rb, wb) = (disk.read_bytes.get(), disk.write_bytes.get());
    disk.take();
    block_on(paxos_lease::release(&ctx, &held)).unwrap();
    let (rr, rw) = disk.take();
    println!(
        "I/O per uncontended paxos acquire ({:?}, 512/1M): {r} reads ({rb} bytes), {w} writes ({wb} bytes); \
         protocol minimum 3 reads + 3 writes. Release: {rr} reads, {rw} writes.",
        disk.inner.backend()
    );

    let mut group = c.benchmark_group("paxos");
    group.bench_function("acquire_release_512_1M", |b| {
        b.iter(|| {
            let held = block_on(paxos_lease::acquire(&ctx, &area, ex)).unwrap();
            block_on(paxos_lease::release(&ctx, &held)).unwrap();
        })
    });
    group.finish();

    let mut group = c.benchmark_group("delta");
    group.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(20));
    let me = HostIdentity { host_id: 1, host_name: name("bench-host"), boot: None };
    group.bench_function("acquire_id_release_id_io_timeout_1", |b| {
        b.iter(|| {
            let (lease, _) =
                block_on(delta_lease::acquire(&disk, &clock, &ls, &me, t, ProtocolFaults::default())).unwrap();
            block_on(delta_lease::release(&disk, &lease, t)).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, leases);
criterion_main!(benches);
