//! Byte-addressed access to a PV: a block device, a loop device or a plain file, or memory in
//! tests. Block devices are opened with O_DIRECT so that metadata another host wrote is read from
//! the disk, never from this host's page cache.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// What the metadata code needs from a device.
pub trait BlockDevice {
    /// The name used in messages (the path it was opened by).
    fn name(&self) -> &str;
    /// Size in bytes.
    fn size(&self) -> u64;
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// Makes every completed write durable (a cache flush on a disk).
    fn flush(&mut self) -> Result<()>;
}

/// A device or file on this host.
pub struct FileDevice {
    name: String,
    file: File,
    size: u64,
    /// I/O granularity when O_DIRECT is in use (the logical sector size), else 1.
    align: u64,
}

const BUF_ALIGN: usize = 4096;

impl FileDevice {
    pub fn open(path: &Path, writable: bool) -> Result<FileDevice> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(&name, "stat", e))?;
        let is_block = meta.file_type().is_block_device();
        let mut opts = OpenOptions::new();
        opts.read(true).write(writable);
        if is_block {
            opts.custom_flags(libc::O_DIRECT);
        }
        let file = opts.open(path).map_err(|e| Error::io(&name, "open", e))?;
        let (size, align) = if is_block { block_geometry(&file, &name)? } else { (meta.len(), 1) };
        Ok(FileDevice { name, file, size, align })
    }

    fn aligned_range(&self, offset: u64, len: usize) -> (u64, usize) {
        let start = offset / self.align * self.align;
        let end = (offset + len as u64).div_ceil(self.align) * self.align;
        (start, (end - start) as usize)
    }
}

/// The block-device ioctls, numbered per architecture by nix's macros (the numbers differ on
/// mips, powerpc and sparc). BLKGETSIZE64 is `_IOR(0x12, 114, size_t)`: its number encodes
/// the size of `size_t`, although the kernel always writes a u64.
mod blk {
    const BLKGETSIZE64: nix::sys::ioctl::ioctl_num_type =
        nix::request_code_read!(0x12, 114, std::mem::size_of::<libc::size_t>());
    nix::ioctl_read_bad!(getsize64, BLKGETSIZE64, u64);
    // `_IO(0x12, 104)` and `_IO(0x12, 123)`, yet both write an int through the pointer.
    nix::ioctl_read_bad!(sszget, libc::BLKSSZGET, libc::c_int);
    nix::ioctl_read_bad!(pbszget, libc::BLKPBSZGET, libc::c_uint);

    #[cfg(test)]
    pub const GETSIZE64: nix::sys::ioctl::ioctl_num_type = BLKGETSIZE64;
}

/// Size in bytes and logical sector size of the block device `file` (`name` in messages).
fn block_geometry(file: &File, name: &str) -> Result<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let mut size: u64 = 0;
    let mut ssz: libc::c_int = 0;
    // SAFETY: the ioctl writes one u64 through the pointer.
    unsafe { blk::getsize64(file.as_raw_fd(), &mut size) }.map_err(|e| Error::io(name, "BLKGETSIZE64", e.into()))?;
    // SAFETY: the ioctl writes one int through the pointer.
    unsafe { blk::sszget(file.as_raw_fd(), &mut ssz) }.map_err(|e| Error::io(name, "BLKSSZGET", e.into()))?;
    if ssz <= 0 {
        let bad = io::Error::new(io::ErrorKind::InvalidData, format!("logical sector size {ssz}"));
        return Err(Error::io(name, "BLKSSZGET", bad));
    }
    Ok((size, ssz as u64))
}

/// Logical and physical sector size of the device at `path`; 512/512 for a regular file.
pub fn sector_sizes(path: &Path) -> Result<(u32, u32)> {
    use std::os::fd::AsRawFd;
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(&name, "open", e))?;
    let meta = file.metadata().map_err(|e| Error::io(&name, "stat", e))?;
    if !meta.file_type().is_block_device() {
        return Ok((512, 512));
    }
    let (_, logical) = block_geometry(&file, &name)?;
    let mut physical: libc::c_uint = 0;
    // SAFETY: the ioctl writes one unsigned int through the pointer.
    unsafe { blk::pbszget(file.as_raw_fd(), &mut physical) }.map_err(|e| Error::io(&name, "BLKPBSZGET", e.into()))?;
    // A sector size the kernel would never report is not guessed around.
    let logical = u32::try_from(logical).ok().filter(|l| l.is_power_of_two() && *l >= 512);
    let physical = Some(physical).filter(|p| p.is_power_of_two() && *p >= 512);
    match (logical, physical) {
        (Some(l), Some(p)) => Ok((l, p.max(l))),
        _ => Err(Error::io(
            &name,
            "BLKPBSZGET",
            io::Error::new(io::ErrorKind::InvalidData, format!("sector sizes {logical:?}/{physical:?}")),
        )),
    }
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

impl AlignedBuf {
    fn zeroed(len: usize) -> AlignedBuf {
        let layout = std::alloc::Layout::from_size_align(len.max(1), BUF_ALIGN).expect("layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, len }
    }
    fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr points to len initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len.max(1), BUF_ALIGN).expect("layout");
        // SAFETY: allocated in zeroed() with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) }
    }
}

impl BlockDevice for FileDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if self.align == 1 {
            return self.file.read_exact_at(buf, offset).map_err(|e| Error::io(&self.name, "read", e));
        }
        let (start, len) = self.aligned_range(offset, buf.len());
        let mut bounce = AlignedBuf::zeroed(len);
        self.file.read_exact_at(bounce.as_mut_slice(), start).map_err(|e| Error::io(&self.name, "read", e))?;
        let skip = (offset - start) as usize;
        buf.copy_from_slice(&bounce.as_slice()[skip..skip + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if self.align == 1 {
            return self.file.write_all_at(data, offset).map_err(|e| Error::io(&self.name, "write", e));
        }
        let (start, len) = self.aligned_range(offset, data.len());
        let mut bounce = AlignedBuf::zeroed(len);
        let skip = (offset - start) as usize;
        if skip != 0 || len != data.len() {
            // Read-modify-write of partial sectors (512-byte structures on a 4K-sector disk).
            self.file.read_exact_at(bounce.as_mut_slice(), start).map_err(|e| Error::io(&self.name, "read", e))?;
        }
        bounce.as_mut_slice()[skip..skip + data.len()].copy_from_slice(data);
        self.file.write_all_at(bounce.as_slice(), start).map_err(|e| Error::io(&self.name, "write", e))
    }

    fn flush(&mut self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.name, "fdatasync", e))
    }
}

/// An in-memory device (tests, and building images).
#[derive(Clone)]
pub struct MemDevice {
    pub name: String,
    pub data: Vec<u8>,
}

impl MemDevice {
    pub fn new(name: &str, size: usize) -> MemDevice {
        MemDevice { name: name.to_string(), data: vec![0; size] }
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        let end = offset.checked_add(len as u64).filter(|&e| e <= self.data.len() as u64);
        end.map(|_| offset as usize).ok_or_else(|| {
            Error::io(&self.name, "access", io::Error::new(io::ErrorKind::UnexpectedEof, "beyond end of device"))
        })
    }
}

impl BlockDevice for MemDevice {
    fn name(&self) -> &str {
        &self.name
    }
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let o = self.check(offset, buf.len())?;
        buf.copy_from_slice(&self.data[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let o = self.check(offset, data.len())?;
        self.data[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

impl<T: BlockDevice + ?Sized> BlockDevice for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn size(&self) -> u64 {
        (**self).size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        (**self).write_at(offset, data)
    }
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
}

/// Reads `len` bytes at `offset`, reporting a short device as [`Error::Truncated`].
pub fn read_exact(dev: &dyn BlockDevice, offset: u64, len: usize, what: &'static str) -> Result<Vec<u8>> {
    let end = offset.saturating_add(len as u64);
    if end > dev.size() {
        return Err(Error::Truncated {
            at: crate::error::At { device: dev.name().to_string(), offset },
            what,
            need: len as u64,
            have: dev.size().saturating_sub(offset),
        });
    }
    let mut buf = vec![0u8; len];
    dev.read_at(offset, &mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers the macros compute are the kernel's: libc's, and <linux/fs.h>'s where the
    /// value is known.
    #[test]
    // The request type is c_ulong with glibc, c_int with musl.
    #[allow(clippy::unnecessary_cast)]
    fn ioctl_numbers() {
        let code = blk::GETSIZE64 as u64 & 0xffff_ffff;
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"))]
        assert_eq!(code, 0x8008_1272);
        #[cfg(target_arch = "x86")]
        assert_eq!(code, 0x8004_1272);
        assert_eq!(((code >> 16) & 0x1fff) as usize, std::mem::size_of::<libc::size_t>());
        assert_eq!(code & 0xffff, 0x1272);
    }

    /// A regular file is no block device: the ioctl's failure is an error naming it, never a
    /// size of 0.
    #[test]
    fn ioctl_failure_is_an_error() {
        let path = std::env::temp_dir().join(format!("lvmmeta-ioctl-{}", std::process::id()));
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let f = File::open(&path).unwrap();
        let e = block_geometry(&f, "file").unwrap_err();
        assert!(matches!(&e, Error::Io { op: "BLKGETSIZE64", .. }), "{e}");
        assert_eq!(sector_sizes(&path).unwrap(), (512, 512));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(sector_sizes(&path), Err(Error::Io { op: "open", .. })));
    }

    #[test]
    fn file_device_round_trip() {
        let dir = std::env::temp_dir().join(format!("lvtool-dev-{}", std::process::id()));
        std::fs::write(&dir, vec![0u8; 8192]).unwrap();
        let mut d = FileDevice::open(&dir, true).unwrap();
        assert_eq!(d.size(), 8192);
        d.write_at(700, b"hello").unwrap();
        d.flush().unwrap();
        let mut b = [0u8; 5];
        d.read_at(700, &mut b).unwrap();
        assert_eq!(&b, b"hello");
        assert!(matches!(read_exact(&d, 8190, 4, "x"), Err(Error::Truncated { .. })));
        std::fs::remove_file(&dir).unwrap();
    }
}
