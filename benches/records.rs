//! Encode, decode and checksum of the on-disk records.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use lease::ondisk::{
    sanlock_crc, Geometry, LeaderRecord, LeaseKind, Name, PaxosDblock, DBLOCK_CHECKSUM_LEN, DBLOCK_LEN,
    LEADER_CHECKSUM_LEN, LEADER_RECORD_LEN,
};
use lease::paxos_lease::{parse_resource, ResourceArea};

fn leader() -> LeaderRecord {
    let mut l = LeaderRecord::new(
        LeaseKind::Paxos,
        Geometry::DEFAULT_512,
        Name::new("lvm_vg").unwrap(),
        Name::new("VGLK").unwrap(),
    );
    l.num_hosts = 2000;
    l.max_hosts = 2000;
    l.owner_id = 17;
    l.owner_generation = 4;
    l.lver = 123;
    l.timestamp = 98765;
    l.write_id = 17;
    l
}

fn records(c: &mut Criterion) {
    let l = leader();
    let bytes = l.to_bytes();
    let ls = Name::new("lvm_vg").unwrap();
    let res = Name::new("VGLK").unwrap();
    c.bench_function("leader_encode", |b| {
        let mut out = [0u8; LEADER_RECORD_LEN];
        b.iter(|| black_box(&l).clone().encode(black_box(&mut out)))
    });
    c.bench_function("leader_decode", |b| b.iter(|| LeaderRecord::decode(black_box(&bytes)).unwrap()));
    c.bench_function("leader_verify", |b| {
        b.iter(|| LeaderRecord::verify(black_box(&bytes), LeaseKind::Paxos, Some(512), &ls, Some(&res)).unwrap())
    });
    c.bench_function("leader_checksum", |b| b.iter(|| sanlock_crc(black_box(&bytes[..LEADER_CHECKSUM_LEN]))));

    let d = PaxosDblock { mbal: 4001, bal: 4001, inp: 1, inp2: 3, inp3: 5555, lver: 9, ..Default::default() };
    let mut dbytes = [0u8; DBLOCK_LEN];
    d.clone().encode(&mut dbytes);
    c.bench_function("dblock_encode", |b| {
        let mut out = [0u8; DBLOCK_LEN];
        b.iter(|| black_box(d).encode(black_box(&mut out)))
    });
    c.bench_function("dblock_verify", |b| b.iter(|| PaxosDblock::verify(black_box(&dbytes), 1).unwrap()));
    c.bench_function("dblock_checksum", |b| b.iter(|| sanlock_crc(black_box(&dbytes[..DBLOCK_CHECKSUM_LEN]))));

    // What every ballot phase does with the 1 MiB it reads: verify the leader and 2000 dblocks.
    let g = Geometry::DEFAULT_512;
    let area = ResourceArea { lockspace: ls, name: res, offset: 0, geometry: g };
    let mut buf = vec![0u8; g.area_bytes() as usize];
    l.clone().encode(&mut buf[..LEADER_RECORD_LEN]);
    for h in 0..2000usize {
        let mut d = PaxosDblock { mbal: h as u64 + 1, lver: 1, inp: 1, bal: 1, ..Default::default() };
        let at = (2 + h) * 512;
        d.encode(&mut buf[at..at + DBLOCK_LEN]);
    }
    c.bench_function("resource_area_parse_2000_hosts", |b| b.iter(|| parse_resource(&area, black_box(&buf)).unwrap()));
    // The usual case: only a few hosts ever wrote their sector.
    buf[2 * 512..].fill(0);
    c.bench_function("resource_area_parse_blank", |b| b.iter(|| parse_resource(&area, black_box(&buf)).unwrap()));
}

criterion_group!(benches, records);
criterion_main!(benches);
