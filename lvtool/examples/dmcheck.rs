//! Exercises `lvtool::dm` on a real kernel (the VM tier's `lvtool-activate` scenario runs it as
//! root on a scratch disk of at least 410 MiB; everything on it may be overwritten).
//!
//! It lays out an LV the way a VG with pe_start 1 MiB and 4 MiB extents would: 4 extents at PE 64
//! and 1 at PE 72, activates it, writes through the DM device and reads the disk where the data
//! must land, extends it (2 more extents at PE 100) with a reload + suspend/resume, then removes
//! it. Prints one line per check; exits 1 at the first failure.
//!
//! usage: dmcheck DISK

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use lvtool::dm::{self, DevNum, Dm, Linear};
use lvtool::uuid::Uuid;

const SECTOR: u64 = 512;
const PE_START: u64 = 2048;
const EXTENT: u64 = 8192;
const EXTENT_BYTES: u64 = EXTENT * SECTOR;
const BLOCK: usize = 4096;
// A dash in each name, so the kernel name must have them doubled.
const VG: &str = "dm-check";
const LV: &str = "lv-1";

type Check<T> = Result<T, String>;

fn main() -> ExitCode {
    let Some(disk) = std::env::args().nth(1) else {
        eprintln!("usage: dmcheck DISK");
        return ExitCode::from(2);
    };
    let t0 = Instant::now();
    match run(Path::new(&disk)) {
        Ok(n) => {
            println!("dmcheck: all {n} checks passed in {:.2}s", t0.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("dmcheck: FAIL: {e}");
            ExitCode::from(1)
        }
    }
}

/// Counts and prints checks with how long the step before them took.
struct Steps {
    n: usize,
    last: Instant,
}

impl Steps {
    fn ok(&mut self, what: &str) {
        self.n += 1;
        println!("ok {:2} {what} ({} ms)", self.n, self.last.elapsed().as_millis());
        self.last = Instant::now();
    }
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Check<()> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn run(disk: &Path) -> Check<usize> {
    let mut s = Steps { n: 0, last: Instant::now() };
    let dev = DevNum::of_path(disk).map_err(|e| e.to_string())?;
    let dm = Dm::open().map_err(|e| e.to_string())?;
    let (a, b, c) = dm.version().map_err(|e| e.to_string())?;
    println!("disk {} is {dev}, DM ioctl interface {a}.{b}.{c}", disk.display());
    s.ok("device-mapper answers");

    let vg_id = Uuid::parse("dmchek-0000-0000-0000-0000-0000-00vg01").map_err(|e| e.to_string())?;
    let lv_id = Uuid::parse("dmchek-0000-0000-0000-0000-0000-00lv01").map_err(|e| e.to_string())?;
    let uuid = dm::dm_uuid(&vg_id, &lv_id);
    let name = dm::dm_name(VG, LV);
    ensure(name == "dm--check-lv--1", || format!("dm name {name}"))?;
    if dm.info(&name).map_err(|e| e.to_string())?.is_some() {
        return Err(format!("{name} already exists: not a scratch machine"));
    }

    // (LV byte offset, disk byte offset): first and last block of each segment, before and after
    // the extension; and blocks just outside the first two segments. All zeroed first, so that
    // the checks do not depend on what earlier runs left on the disk.
    let at = |pe: u64| (PE_START + pe * EXTENT) * SECTOR;
    let blk = BLOCK as u64;
    let placed = [
        (0, at(64)),
        (4 * EXTENT_BYTES - blk, at(68) - blk),
        (4 * EXTENT_BYTES, at(72)),
        (5 * EXTENT_BYTES - blk, at(73) - blk),
    ];
    let new = [(5 * EXTENT_BYTES, at(100)), (7 * EXTENT_BYTES - blk, at(102) - blk)];
    let outside = [at(64) - blk, at(68), at(72) - blk, at(73)];
    let disk_dev = open_direct(&disk.display().to_string())?;
    for off in placed.iter().chain(&new).map(|p| p.1).chain(outside) {
        write_block(&disk_dev, &disk.display().to_string(), off, &[0; BLOCK])?;
    }
    disk_dev.sync_all().map_err(|e| format!("fsync {}: {e}", disk.display()))?;
    s.ok("zeroed the disk blocks to check");

    let table =
        vec![Linear::extents(0, 4, EXTENT, dev, PE_START, 64), Linear::extents(4, 1, EXTENT, dev, PE_START, 72)];
    let text = dm::format_table(&table);
    let want = format!("0 32768 linear {dev} 526336\n32768 8192 linear {dev} 591872\n");
    ensure(text == want, || format!("table text\n{text}differs from lvm2's\n{want}"))?;
    print!("{text}");
    s.ok("table lines are the ones lvm2 would load");

    let info = dm.create(VG, LV, &uuid, &table).map_err(|e| e.to_string())?;
    s.ok(&format!("created {name} as {}", info.dev));
    ensure(info.uuid == uuid && info.live_table && !info.suspended, || format!("after create: {info:?}"))?;
    s.ok(&format!("uuid {uuid}, live, not suspended"));
    check_table(&dm, &name, &table)?;
    s.ok("kernel table equals ours");
    match dm.create(VG, LV, &uuid, &table) {
        Ok(_) => return Err("a second create of the same LV succeeded".into()),
        Err(e) => ensure(e.to_string().contains("already exists"), || format!("second create: {e}"))?,
    }
    s.ok("a second create is refused");

    let mapper = format!("/dev/mapper/{name}");
    let lv_path = format!("/dev/{VG}/{LV}");
    for p in [&mapper, &lv_path] {
        let md = std::fs::metadata(p).map_err(|e| format!("{p}: {e}"))?;
        let got = DevNum { major: libc::major(md.rdev()), minor: libc::minor(md.rdev()) };
        ensure(md.file_type().is_block_device() && got == info.dev, || format!("{p} is {got}, not {}", info.dev))?;
    }
    s.ok(&format!("{mapper} and {lv_path} lead to {}", info.dev));
    ensure_size(&mapper, 5 * EXTENT_BYTES)?;
    s.ok("blockdev --getsize64 = 5 extents");

    let lvdev = open_direct(&mapper)?;
    for &(lv_off, _) in &placed {
        write_block(&lvdev, &mapper, lv_off, &pattern(lv_off))?;
    }
    lvdev.sync_all().map_err(|e| format!("fsync {mapper}: {e}"))?;
    s.ok("wrote 4 blocks through the LV");
    for &(lv_off, disk_off) in &placed {
        let got = read_block(&disk_dev, disk, disk_off)?;
        ensure(got == pattern(lv_off), || format!("LV byte {lv_off}: disk byte {disk_off} does not hold it"))?;
    }
    // Just outside both segments: still zero.
    for disk_off in outside {
        ensure(read_block(&disk_dev, disk, disk_off)?.iter().all(|&b| b == 0), || {
            format!("disk byte {disk_off}, outside the LV, was written")
        })?;
    }
    s.ok("data landed at pe_start + pe * extent_size, nothing around it");

    let info = dm.info(&name).map_err(|e| e.to_string())?.ok_or("device gone")?;
    ensure(info.open_count == 1, || format!("open count {} while open once", info.open_count))?;
    s.ok("open count 1 while open");
    match dm.remove(&name) {
        Ok(()) => return Err("remove of an open device succeeded".into()),
        Err(e) => ensure(e.to_string().contains("in use"), || format!("remove while open: {e}"))?,
    }
    s.ok("remove refused while open");

    let mut longer = table.clone();
    longer.push(Linear::extents(5, 2, EXTENT, dev, PE_START, 100));
    let info = dm.reload(&name, &longer).map_err(|e| e.to_string())?;
    ensure(info.live_table && !info.suspended && !info.inactive_table, || format!("after reload: {info:?}"))?;
    s.ok("reloaded with a third segment (suspend/resume)");
    check_table(&dm, &name, &longer)?;
    ensure_size(&mapper, 7 * EXTENT_BYTES)?;
    s.ok("kernel table and blockdev --getsize64 show 7 extents");
    // A fresh open: the old descriptor's view of the size predates the reload.
    let lvdev2 = open_direct(&mapper)?;
    for &(lv_off, _) in &new {
        write_block(&lvdev2, &mapper, lv_off, &pattern(lv_off))?;
    }
    lvdev2.sync_all().map_err(|e| format!("fsync {mapper}: {e}"))?;
    for &(lv_off, disk_off) in placed.iter().chain(&new) {
        ensure(read_block(&disk_dev, disk, disk_off)? == pattern(lv_off), || {
            format!("disk byte {disk_off} after reload")
        })?;
        ensure(read_block(&lvdev2, Path::new(&mapper), lv_off)? == pattern(lv_off), || {
            format!("LV byte {lv_off} after reload")
        })?;
    }
    s.ok("new extents land at PE 100, old data still in place");
    drop(lvdev);
    drop(lvdev2);

    let listed = dm.list_lvm().map_err(|e| e.to_string())?;
    let found = listed.iter().find(|d| d.name == name).ok_or_else(|| format!("{name} not in {listed:?}"))?;
    ensure(found.open_count == 0, || format!("open count {} after close", found.open_count))?;
    ensure(dm::split_dm_uuid(&found.uuid) == Some((vg_id.bare(), lv_id.bare())), || found.uuid.clone())?;
    s.ok("listed among LVM devices with our VG and LV ids, open count 0");

    dm.remove(&name).map_err(|e| e.to_string())?;
    s.ok("removed");
    ensure(dm.info(&name).map_err(|e| e.to_string())?.is_none(), || "still known to the kernel".into())?;
    ensure(!dm.list_lvm().map_err(|e| e.to_string())?.iter().any(|d| d.name == name), || "still listed".into())?;
    for p in [&mapper, &lv_path] {
        ensure(std::fs::symlink_metadata(p).is_err(), || format!("{p} still exists"))?;
    }
    ensure(!Path::new("/dev").join(VG).exists(), || format!("/dev/{VG} still exists"))?;
    s.ok("gone from the kernel, /dev/mapper and /dev/VG");
    Ok(s.n)
}

fn check_table(dm: &Dm, name: &str, want: &[Linear]) -> Check<()> {
    let got = dm.table(name).map_err(|e| e.to_string())?;
    ensure(got == want, || format!("kernel table\n{}differs from\n{}", dm::format_table(&got), dm::format_table(want)))
}

fn ensure_size(path: &str, bytes: u64) -> Check<()> {
    let out = Command::new("blockdev").args(["--getsize64", path]).output().map_err(|e| format!("blockdev: {e}"))?;
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure(got == bytes.to_string(), || format!("blockdev --getsize64 {path} = {got:?}, want {bytes}"))
}

/// A block whose contents name where it was written, so misplaced data cannot match.
fn pattern(lv_off: u64) -> Vec<u8> {
    let mut x = lv_off ^ 0x9e37_79b9_7f4a_7c15;
    (0..BLOCK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// O_DIRECT on both sides: the LV's and the disk's page caches are separate, so buffered reads of
// the disk could miss what went through the LV.
fn open_direct(path: &str) -> Check<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| format!("open {path} O_DIRECT: {e}"))
}

/// A BLOCK-sized buffer aligned for O_DIRECT, without unsafe: slice it out of a larger one.
fn aligned(buf: &mut Vec<u8>) -> &mut [u8] {
    buf.resize(2 * BLOCK, 0);
    let skip = buf.as_ptr().align_offset(BLOCK);
    &mut buf[skip..skip + BLOCK]
}

fn write_block(f: &File, path: &str, off: u64, data: &[u8]) -> Check<()> {
    let mut buf = vec![];
    let b = aligned(&mut buf);
    b.copy_from_slice(data);
    f.write_all_at(b, off).map_err(|e| format!("write {path} at {off}: {e}"))
}

fn read_block(f: &File, path: &Path, off: u64) -> Check<Vec<u8>> {
    let mut buf = vec![];
    let b = aligned(&mut buf);
    f.read_exact_at(b, off).map_err(|e| format!("read {} at {off}: {e}", path.display()))?;
    Ok(b.to_vec())
}
