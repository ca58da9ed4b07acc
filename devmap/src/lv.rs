//! Device-mapper activation, as lvm2 does it: one `linear` line per segment, the device named
//! `vg-lv` (dashes doubled), DM UUID `LVM-<vg uuid><lv uuid>`, `/dev/VG/LV` pointing at it.
//!
//! Names, UUIDs and tables are plain functions (tested anywhere); [`Dm`] does the ioctls through
//! the `devicemapper` crate and needs a kernel with `dm_mod`.
//!
//! udev: lvtool makes `/dev/mapper/NAME` and `/dev/VG/LV` itself and never waits for udev (as
//! lvm2 with `activation { udev_rules = 0 udev_sync = 0 }`); the uevents of the devices it
//! creates tell udev's DM and LVM rules to leave those links alone ([`crate::udev_free`]). A device
//! whose links udev made (activated by lvm2) keeps being handled the udev way: a reload leaves
//! udev's rules as they were, and a remove waits for udev to drop its links, as lvm2 would.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use devicemapper::{DevId, DmError, DmFlags, DmName, DmOptions, DmUuid, DM};
use lvmmeta::uuid::Uuid;

use crate::udev_free::{self as dmio, UdevRules};
use crate::{Error, Result};

/// Prefix of the DM UUID of every LV lvm2 activates; udev's LVM rules key off it.
pub const UUID_PREFIX: &str = "LVM-";

/// A block device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    /// The device number of the block device at `path` (symlinks followed).
    pub fn of_path(path: &Path) -> Result<DevNum> {
        let md = fs::metadata(path).map_err(|e| io_error(path, "stat", e))?;
        if !md.file_type().is_block_device() {
            return Err(Error::Device(format!("{}: not a block device", path.display())));
        }
        Ok(DevNum::from_rdev(md.rdev()))
    }

    fn from_rdev(rdev: u64) -> DevNum {
        DevNum { major: libc::major(rdev), minor: libc::minor(rdev) }
    }
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One `linear` table line; all numbers in 512-byte sectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linear {
    /// First LV sector this line maps.
    pub start: u64,
    pub length: u64,
    pub dev: DevNum,
    /// Sector on `dev` where the mapping begins.
    pub offset: u64,
}

impl Linear {
    /// The line for `count` extents of an LV starting at logical extent `le`, stored from physical
    /// extent `pe` of a PV whose data area starts at sector `pe_start` (lvm2's dev_manager).
    pub fn extents(le: u64, count: u64, extent_size: u64, dev: DevNum, pe_start: u64, pe: u64) -> Linear {
        Linear { start: le * extent_size, length: count * extent_size, dev, offset: pe_start + pe * extent_size }
    }

    /// Parses a line as `dmsetup table` prints it: `START LENGTH linear MAJOR:MINOR OFFSET`.
    pub fn parse(line: &str) -> Result<Linear> {
        let bad = |why: &str| Error::Table(format!("bad linear table line \"{line}\": {why}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        let [start, length, target, dev, offset] = f[..] else { return Err(bad("expected 5 fields")) };
        if target != "linear" {
            return Err(bad("not a linear target"));
        }
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad("not a number"));
        let (major, minor) = dev.split_once(':').ok_or_else(|| bad("device is not MAJOR:MINOR"))?;
        let dnum = |s: &str| s.parse::<u32>().map_err(|_| bad("device is not MAJOR:MINOR"));
        Ok(Linear {
            start: num(start)?,
            length: num(length)?,
            dev: DevNum { major: dnum(major)?, minor: dnum(minor)? },
            offset: num(offset)?,
        })
    }

    fn params(&self) -> String {
        format!("{} {}", self.dev, self.offset)
    }
}

impl fmt::Display for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} linear {} {}", self.start, self.length, self.dev, self.offset)
    }
}

/// The table as `dmsetup table NAME` prints it, one line per segment.
pub fn format_table(table: &[Linear]) -> String {
    table.iter().map(|l| format!("{l}\n")).collect()
}

/// Size of the device a table makes, in sectors.
pub fn table_sectors(table: &[Linear]) -> u64 {
    table.iter().map(|l| l.length).sum()
}

/// A table the kernel accepts: non-empty, lines in order, no gaps or overlaps, no empty line.
pub fn check_table(table: &[Linear]) -> Result<()> {
    if table.is_empty() {
        return Err(Error::Table("empty device-mapper table".into()));
    }
    let mut next = 0;
    for l in table {
        if l.start != next || l.length == 0 {
            return Err(Error::Table(format!(
                "device-mapper table line \"{l}\" does not continue at sector {next} with a non-zero length"
            )));
        }
        next += l.length;
    }
    Ok(())
}

/// lvm2's DM name of LV `lv` in VG `vg`: `-` inside either name is doubled, then joined by `-`.
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// The parts of a DM name, as `dmsetup splitname` gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitName {
    pub vg: String,
    pub lv: String,
    /// Sub-device layer (`tmeta`, `_mlog`, ...), empty for a top-level LV.
    pub layer: String,
}

/// Splits a DM name at its single dashes (`--` is an escaped `-`); `None` when there is no VG part.
pub fn split_dm_name(name: &str) -> Option<SplitName> {
    let mut parts = vec![String::new()];
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                chars.next();
                parts.last_mut()?.push('-');
            }
            '-' if parts.len() < 3 => parts.push(String::new()),
            c => parts.last_mut()?.push(c),
        }
    }
    let mut it = parts.into_iter();
    let (vg, lv, layer) = (it.next()?, it.next().unwrap_or_default(), it.next().unwrap_or_default());
    (!vg.is_empty()).then_some(SplitName { vg, lv, layer })
}

/// lvm2's DM UUID of an LV: `LVM-` and both 32-character ids without dashes.
pub fn dm_uuid(vg: &Uuid, lv: &Uuid) -> String {
    format!("{}{}", vg_uuid_prefix(vg), lv.bare())
}

/// What the DM UUID of every LV of the VG `vg` (top-level or sub-device) starts with.
pub fn vg_uuid_prefix(vg: &Uuid) -> String {
    format!("{UUID_PREFIX}{}", vg.bare())
}

/// The VG and LV ids (32 characters each) of an LVM DM UUID; `None` for other devices and for
/// sub-devices (a `-layer` suffix).
pub fn split_dm_uuid(uuid: &str) -> Option<(&str, &str)> {
    let ids = uuid.strip_prefix(UUID_PREFIX)?;
    (ids.len() == 64 && ids.is_ascii() && !ids.contains('-')).then(|| ids.split_at(32))
}

/// What the kernel says about one DM device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmDevice {
    pub name: String,
    /// Empty when the device has none.
    pub uuid: String,
    pub dev: DevNum,
    /// How many openers the device has (mounted, opened by a process, stacked under another device).
    pub open_count: i32,
    pub suspended: bool,
    /// A table is live (the device maps something).
    pub live_table: bool,
    /// A table is loaded but not yet live (a reload interrupted before resume).
    pub inactive_table: bool,
}

/// How often, and how far apart, a remove refused because the device is open is tried again
/// while udev runs: its rules (blkid) open a device for a moment after every change, and nothing
/// here waits for them. lvm2's `retry_deactivation` numbers: 25 × 0.2 s.
const REMOVE_RETRIES: u32 = 25;
const REMOVE_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// How many device-mapper ioctls a batch keeps in flight. Creating, resuming and above all
/// removing a device wait in the kernel (RCU grace periods, queue freezes) far longer than they
/// compute; concurrent waits overlap, even on one CPU.
pub const PARALLEL_IOCTLS: usize = 8;

/// `f` applied to every item by up to `workers` threads; the results in the items' order.
pub fn parallel<T: Sync, R: Send>(items: &[T], workers: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    if items.len() <= 1 || workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results.into_inner().unwrap().into_iter().map(|r| r.expect("every item was taken by a worker")).collect()
}

/// A handle on the kernel's device-mapper.
pub struct Dm {
    dm: DM,
}

/// Turns a crate error into ours, keeping only the errno of a failed ioctl (its Display dumps
/// both ioctl headers).
fn dm_error(what: &str, e: DmError) -> Error {
    match errno_of(&e) {
        Some(code) => Error::Kernel { what: what.to_string(), source: io::Error::from_raw_os_error(code) },
        None => Error::Other { what: what.to_string(), reason: e.to_string() },
    }
}

fn errno_of(e: &DmError) -> Option<i32> {
    match e {
        DmError::Core(devicemapper::errors::Error::Ioctl(_, _, _, errno)) => Some(**errno as i32),
        _ => None,
    }
}

fn name_arg(name: &str) -> Result<&DmName> {
    DmName::new(name).map_err(|_| Error::InvalidName {
        name: name.to_string(),
        reason: "not a valid device-mapper name (empty, too long or with '/')",
    })
}

impl Dm {
    /// Opens `/dev/mapper/control` and checks that the kernel answers.
    pub fn open() -> Result<Dm> {
        let unavailable = |e: &dyn fmt::Display| Error::Unavailable(e.to_string());
        let dm = DM::new().map_err(|e| unavailable(&e))?;
        dm.version().map_err(|e| match errno_of(&e) {
            Some(code) => unavailable(&io::Error::from_raw_os_error(code)),
            None => unavailable(&e),
        })?;
        Ok(Dm { dm })
    }

    /// The kernel's DM ioctl interface version.
    pub fn version(&self) -> Result<(u32, u32, u32)> {
        self.dm.version().map_err(|e| dm_error("device-mapper version", e))
    }

    /// The device named `name`, or `None` when there is none.
    pub fn info(&self, name: &str) -> Result<Option<DmDevice>> {
        match self.dm.device_info(&DevId::Name(name_arg(name)?)) {
            Ok(i) => Ok(Some(device_of(name, &i))),
            Err(e) if errno_of(&e) == Some(libc::ENXIO) => Ok(None),
            Err(e) => Err(dm_error(&format!("device-mapper info {name}"), e)),
        }
    }

    /// The live table of `name`; an error when it has other targets than `linear`.
    pub fn table(&self, name: &str) -> Result<Vec<Linear>> {
        let opts = DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE);
        let (_, lines) = self
            .dm
            .table_status(&DevId::Name(name_arg(name)?), opts)
            .map_err(|e| dm_error(&format!("device-mapper table {name}"), e))?;
        lines
            .iter()
            .map(|(start, length, target, params)| Linear::parse(&format!("{start} {length} {target} {params}")))
            .collect()
    }

    /// Every DM device whose UUID starts with `LVM-` (LVs activated by lvm2 or by us).
    pub fn list_lvm(&self) -> Result<Vec<DmDevice>> {
        let all = self.dm.list_devices().map_err(|e| dm_error("device-mapper list", e))?;
        let mut out = vec![];
        for (name, _, _) in all {
            // A device can vanish between the list and the query: skip it.
            if let Some(d) = self.info(&name.to_string())? {
                if d.uuid.starts_with(UUID_PREFIX) {
                    out.push(d);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Creates and resumes the device of LV `vg/lv` with DM UUID `uuid` (see [`dm_uuid`]), then makes
    /// sure `/dev/mapper/NAME` and `/dev/VG/LV` exist (made here when udev does not).
    pub fn create(&self, vg: &str, lv: &str, uuid: &str, table: &[Linear]) -> Result<DmDevice> {
        self.try_create(vg, lv, uuid, table)?.ok_or_else(|| Error::Exists(dm_name(vg, lv)))
    }

    /// [`Dm::create`], or `None` when a device of that name already exists (left untouched). Three
    /// ioctls (create, load, resume): the kernel refuses a taken name or UUID itself, and the
    /// resume answers with the device's state.
    pub fn try_create(&self, vg: &str, lv: &str, uuid: &str, table: &[Linear]) -> Result<Option<DmDevice>> {
        if self.create_loaded(vg, lv, uuid, table)?.is_none() {
            return Ok(None);
        }
        self.go_live(vg, lv).map(Some)
    }

    /// First half of [`Dm::try_create`]: the device with `table` loaded but not live, and its
    /// `/dev` links (nothing uses it yet: udev has not been told to look at it). Returns its
    /// device number, or `None` when a device of that name already exists (left untouched).
    pub fn create_loaded(&self, vg: &str, lv: &str, uuid: &str, table: &[Linear]) -> Result<Option<DevNum>> {
        check_table(table)?;
        let name = dm_name(vg, lv);
        let dm_name_arg = name_arg(&name)?;
        let uuid_arg = DmUuid::new(uuid)
            .map_err(|_| Error::InvalidUuid { text: uuid.to_string(), reason: "not a valid device-mapper UUID" })?;
        let id = DevId::Name(dm_name_arg);
        let created = match self.dm.device_create(dm_name_arg, Some(uuid_arg), DmOptions::default()) {
            Ok(info) => info,
            Err(e) if errno_of(&e) == Some(libc::EBUSY) => {
                // The name or the UUID is taken.
                if self.info(&name)?.is_some() {
                    return Ok(None);
                }
                return Err(Error::UuidTaken { name, uuid: uuid.to_string() });
            }
            Err(e) => return Err(dm_error(&format!("create device-mapper device {name}"), e)),
        };
        let dev = DevNum { major: created.device().major, minor: created.device().minor };
        let loaded = self
            .dm
            .table_load(&id, &targets(table), DmOptions::default())
            .map_err(|e| dm_error(&format!("load table of {name}"), e))
            .and_then(|_| ensure_links(vg, lv, &name, dev));
        if let Err(e) = loaded {
            // Leave nothing half-made behind: a device without a table only confuses later runs.
            self.discard(&name, dev);
            return Err(e);
        }
        Ok(Some(dev))
    }

    /// Removes a device this command made and could not finish, with its links.
    fn discard(&self, name: &str, dev: DevNum) {
        if let Ok(arg) = name_arg(name) {
            let _ = dmio::remove(&self.dm, arg);
        }
        let _ = remove_links(name, dev);
    }

    /// Second half of [`Dm::try_create`]: makes the loaded table of LV `vg/lv` live (one ioctl;
    /// udev hears of the device now). On failure the device and its links are removed.
    pub fn go_live(&self, vg: &str, lv: &str) -> Result<DmDevice> {
        let name = dm_name(vg, lv);
        match dmio::resume(&self.dm, name_arg(&name)?, UdevRules::CallerMakesLinks) {
            Ok(i) => Ok(device_of(&name, &i)),
            Err(e) => {
                if let Ok(Some(d)) = self.info(&name) {
                    self.discard(&name, d.dev);
                }
                Err(Error::Kernel { what: format!("resume {name}"), source: e })
            }
        }
    }

    /// Replaces the table of `name` (for `--refresh` after a resize): load into the inactive slot,
    /// suspend, resume. A failed load leaves the live table untouched.
    pub fn reload(&self, name: &str, table: &[Linear]) -> Result<DmDevice> {
        check_table(table)?;
        let id = DevId::Name(name_arg(name)?);
        self.dm
            .table_load(&id, &targets(table), DmOptions::default())
            .map_err(|e| dm_error(&format!("load new table of {name}"), e))?;
        let suspend = DmOptions::default().set_flags(DmFlags::DM_SUSPEND);
        if let Err(e) = self.dm.device_suspend(&id, suspend) {
            let _ = self.dm.table_clear(&id);
            return Err(dm_error(&format!("suspend {name}"), e));
        }
        let info = dmio::resume(&self.dm, name_arg(name)?, UdevRules::AsBefore)
            .map_err(|e| Error::Kernel { what: format!("resume {name}"), source: e })?;
        Ok(device_of(name, &info))
    }

    /// Removes the device `name` and the links made for it. Fails while it is open.
    pub fn remove(&self, name: &str) -> Result<()> {
        if self.remove_if_exists(name)? {
            Ok(())
        } else {
            Err(Error::NoDevice(name.to_string()))
        }
    }

    /// [`Dm::remove`]; false (and nothing done) when there is no device `name`.
    pub fn remove_if_exists(&self, name: &str) -> Result<bool> {
        let Some(info) = self.info(name)? else { return Ok(false) };
        let arg = name_arg(name)?;
        let udev_links = udev_made_mapper_link(info.dev, name);
        let mut tries = 0;
        loop {
            let removed = if udev_links {
                // Wait until udev has dropped its links, or a new device of the same LV made
                // right after could lose its links to udev's late cleanup.
                self.dm.device_remove(&DevId::Name(arg), DmOptions::default()).map(|_| ()).map_err(|e| {
                    match errno_of(&e) {
                        Some(code) => io::Error::from_raw_os_error(code),
                        None => io::Error::other(e.to_string()),
                    }
                })
            } else {
                dmio::remove(&self.dm, arg)
            };
            match removed {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(false),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    tries += 1;
                    if udev_running() && tries <= REMOVE_RETRIES {
                        std::thread::sleep(REMOVE_RETRY_DELAY);
                        continue;
                    }
                    let open = self.info(name)?.map_or(info.open_count, |i| i.open_count);
                    return Err(Error::Busy { name: name.to_string(), open_count: open });
                }
                Err(e) => return Err(Error::Kernel { what: format!("remove {name}"), source: e }),
            }
        }
        remove_links(name, info.dev)?;
        Ok(true)
    }
}

fn io_error(path: &Path, op: &'static str, source: io::Error) -> Error {
    Error::Io { path: path.display().to_string(), op, source }
}

/// Our view of the state the kernel returned for the device `name` (after an info or a resume).
fn device_of(name: &str, i: &devicemapper::DeviceInfo) -> DmDevice {
    let flags = i.flags();
    DmDevice {
        name: i.name().map(|n| n.to_string()).unwrap_or_else(|| name.to_string()),
        uuid: i.uuid().map(|u| u.to_string()).unwrap_or_default(),
        dev: DevNum { major: i.device().major, minor: i.device().minor },
        open_count: i.open_count(),
        suspended: flags.contains(DmFlags::DM_SUSPEND),
        live_table: flags.contains(DmFlags::DM_ACTIVE_PRESENT),
        inactive_table: flags.contains(DmFlags::DM_INACTIVE_PRESENT),
    }
}

fn targets(table: &[Linear]) -> Vec<(u64, u64, String, String)> {
    table.iter().map(|l| (l.start, l.length, "linear".to_string(), l.params())).collect()
}

/// The node devtmpfs makes for every DM device; udev's links point at it too.
fn dm_node(dev: DevNum) -> PathBuf {
    PathBuf::from(format!("/dev/dm-{}", dev.minor))
}

fn udev_running() -> bool {
    Path::new("/run/udev/control").exists()
}

/// Whether udev's rules made `/dev/mapper/NAME` for the device `dev` (lvm2 activated it with its
/// default `udev_rules = 1`): udev's database lists the links it made as `S:` lines.
fn udev_made_mapper_link(dev: DevNum, name: &str) -> bool {
    let db = format!("/run/udev/data/b{}:{}", dev.major, dev.minor);
    let link = format!("S:mapper/{name}");
    fs::read_to_string(db).is_ok_and(|text| text.lines().any(|l| l == link))
}

/// Where `/dev/VG/LV` is, when `name` is a top-level LVM device name.
fn lv_link(name: &str) -> Option<PathBuf> {
    let s = split_dm_name(name).filter(|s| s.layer.is_empty() && !s.lv.is_empty())?;
    Some(Path::new("/dev").join(s.vg).join(s.lv))
}

/// Makes `/dev/mapper/NAME` and `/dev/VG/LV` as udev's DM and LVM rules would (symlinks to
/// `../dm-N`), unless they already lead to the device.
fn ensure_links(vg: &str, lv: &str, name: &str, dev: DevNum) -> Result<()> {
    let node = dm_node(dev);
    if !node.exists() {
        // devtmpfs makes the node when the device is created; without it there is nothing to
        // link to (and udev was told not to make the links).
        return Err(Error::Device(format!("{} missing: is devtmpfs mounted on /dev?", node.display())));
    }
    let target = Path::new("..").join(node.file_name().expect("dm-N"));
    link_if_missing(&target, &Path::new("/dev/mapper").join(name))?;
    link_if_missing(&target, &Path::new("/dev").join(vg).join(lv))
}

/// Makes the symlink `link` → `target` unless `link` already leads somewhere (udev made it). One
/// syscall when nothing is there (activating many LVs without udev); makes `/dev/VG` if missing.
fn link_if_missing(target: &Path, link: &Path) -> Result<()> {
    let symlink = || std::os::unix::fs::symlink(target, link);
    // A second try: a link made meanwhile (by udev) is as good as ours.
    let again = || match symlink() {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io_error(link, "symlink", e)),
        _ => Ok(()),
    };
    match symlink() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let dir = link.parent().expect("a link in a directory");
            fs::create_dir_all(dir).map_err(|e| io_error(dir, "mkdir", e))?;
            again()
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if link.exists() {
                return Ok(());
            }
            // A dangling link left by a device that was removed without us.
            let _ = fs::remove_file(link);
            again()
        }
        Err(e) => Err(io_error(link, "symlink", e)),
    }
}

/// Removes what [`ensure_links`] made, if udev has not already. Only entries that still lead to
/// the removed device's node (or nowhere) are touched.
fn remove_links(name: &str, dev: DevNum) -> Result<()> {
    let node = dm_node(dev);
    let ours = |p: &Path| match fs::read_link(p) {
        Ok(t) => t.file_name() == node.file_name() || !p.exists(),
        Err(_) => false,
    };
    let mut links = vec![Path::new("/dev/mapper").join(name)];
    links.extend(lv_link(name));
    for l in &links {
        if ours(l) {
            match fs::remove_file(l) {
                // udev, cleaning up a device whose links it made, was quicker.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r.map_err(|e| io_error(l, "unlink", e))?,
            }
        }
    }
    if let Some(dir) = links.get(1).and_then(|l| l.parent()) {
        // Like lvm2: the VG directory goes when its last LV link does; fails harmlessly otherwise.
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: DevNum = DevNum { major: 254, minor: 0 };

    #[test]
    fn parallel_keeps_order_and_runs_everything_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for (n, workers) in [(0, 8), (1, 8), (5, 1), (100, 8), (3, 50)] {
            let items: Vec<usize> = (0..n).collect();
            let calls = AtomicUsize::new(0);
            let out = parallel(&items, workers, |&i| {
                calls.fetch_add(1, Ordering::Relaxed);
                i * 2
            });
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
            assert_eq!(calls.load(Ordering::Relaxed), n);
        }
    }

    #[test]
    fn names_double_dashes() {
        assert_eq!(dm_name("vg1", "lv1"), "vg1-lv1");
        assert_eq!(dm_name("rust-vg", "data-1"), "rust--vg-data--1");
        assert_eq!(dm_name("a--b", "c-"), "a----b-c--");
    }

    #[test]
    fn split_name_inverts_dm_name() {
        for (vg, lv) in [("vg1", "lv1"), ("rust-vg", "data-1"), ("a--b", "c-"), ("x-", "y"), ("v_g+.", "l.v_")] {
            let s = split_dm_name(&dm_name(vg, lv)).unwrap();
            assert_eq!((s.vg.as_str(), s.lv.as_str(), s.layer.as_str()), (vg, lv, ""), "{vg}/{lv}");
        }
        let s = split_dm_name("vg-pool-tpool").unwrap();
        assert_eq!((s.vg.as_str(), s.lv.as_str(), s.layer.as_str()), ("vg", "pool", "tpool"));
        let s = split_dm_name("plain").unwrap();
        assert_eq!((s.vg.as_str(), s.lv.as_str()), ("plain", ""));
        assert_eq!(split_dm_name("-lv"), None);
        assert_eq!(lv_link("rust--vg-data--1"), Some(PathBuf::from("/dev/rust-vg/data-1")));
        assert_eq!(lv_link("vg-pool-tpool"), None);
        assert_eq!(lv_link("plain"), None);
    }

    #[test]
    fn uuid_is_prefix_and_bare_ids() {
        let vg = Uuid::parse("U0TsMr-HeRj-Zx8D-heeL-Dgpt-sDtV-bpI5lW").unwrap();
        let lv = Uuid::parse("abcdef-ghij-klmn-opqr-stuv-wxyz-ABCDEF").unwrap();
        let u = dm_uuid(&vg, &lv);
        assert_eq!(u, "LVM-U0TsMrHeRjZx8DheeLDgptsDtVbpI5lWabcdefghijklmnopqrstuvwxyzABCDEF");
        assert_eq!(split_dm_uuid(&u), Some(("U0TsMrHeRjZx8DheeLDgptsDtVbpI5lW", "abcdefghijklmnopqrstuvwxyzABCDEF")));
        assert_eq!(split_dm_uuid(&format!("{u}-tpool")), None);
        assert_eq!(split_dm_uuid("CRYPT-LUKS2-0123"), None);
    }

    #[test]
    fn extents_match_worked_example() {
        // lvm2-and-lvmlockd.md §3: 4 extents at PE 64 then 1 at PE 72, pe_start 2048, extent 8192.
        let t = [Linear::extents(0, 4, 8192, DEV, 2048, 64), Linear::extents(4, 1, 8192, DEV, 2048, 72)];
        assert_eq!(format_table(&t), "0 32768 linear 254:0 526336\n32768 8192 linear 254:0 591872\n");
        assert_eq!(table_sectors(&t), 40960);
        check_table(&t).unwrap();
        let lvmlock = [Linear::extents(0, 64, 8192, DevNum { major: 8, minor: 16 }, 2048, 0)];
        assert_eq!(format_table(&lvmlock), "0 524288 linear 8:16 2048\n");
    }

    #[test]
    fn parse_round_trips() {
        let l = Linear { start: 32768, length: 8192, dev: DevNum { major: 259, minor: 1048575 }, offset: 591872 };
        assert_eq!(Linear::parse(&l.to_string()).unwrap(), l);
        assert_eq!(Linear::parse("  0   8 linear  8:0   0 ").unwrap().length, 8);
        for bad in ["0 8 striped 1 8 8:0 0", "0 8 linear /dev/sda 0", "0 8 linear 8:0", "0 x linear 8:0 0", ""] {
            assert!(Linear::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tables_must_be_contiguous() {
        let a = Linear::extents(0, 1, 8, DEV, 0, 0);
        assert!(check_table(&[]).is_err());
        assert!(check_table(&[Linear::extents(1, 1, 8, DEV, 0, 0)]).is_err());
        assert!(check_table(&[a.clone(), Linear::extents(2, 1, 8, DEV, 0, 5)]).is_err());
        assert!(check_table(&[a.clone(), Linear::extents(0, 1, 8, DEV, 0, 5)]).is_err());
        assert!(check_table(&[a.clone(), Linear { length: 0, ..Linear::extents(1, 1, 8, DEV, 0, 5) }]).is_err());
        check_table(&[a, Linear::extents(1, 3, 8, DEV, 0, 9)]).unwrap();
    }

    #[test]
    fn devnum_of_non_block_is_an_error() {
        assert!(DevNum::of_path(Path::new("/")).is_err());
        assert!(DevNum::of_path(Path::new("/nonexistent/dev")).is_err());
        assert_eq!(DevNum::from_rdev(libc::makedev(259, 1048575)), DevNum { major: 259, minor: 1048575 });
    }
}
