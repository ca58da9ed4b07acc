//! The two device-mapper ioctls that make the kernel send a uevent, resume and remove, issued
//! without waiting for udev. lvtool's activation and lockd's fencer share them.
//!
//! The `devicemapper` crate, while udevd runs, hangs a udev cookie on each of these and blocks
//! until udev has run all its rules for the device: about 0.4 s per device in a VM, and with no
//! bound at all if udev is stuck. Activating many LVs pays that per LV, and fencing, which must
//! finish before the watchdog fires, cannot afford an unbounded wait. Here nobody waits; the
//! caller chooses, through the flags the uevent carries, what udev's rules may still do (see
//! [`UdevRules`]). The flag values and their meaning are libdevmapper's, which udev's DM rules
//! decode from the uevent's `DM_COOKIE`; a cookie with flags and no semaphore number is, by that
//! convention, "rules control only, nobody to notify". udev still does all its other work for the
//! device, in the background.

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;

use devicemapper::{DeviceInfo, DmName, DM};
use devicemapper_sys as sys;

/// What the uevent of a resume tells udev's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdevRules {
    /// A new activation whose links the caller makes: the DM rules make no `/dev/mapper/NAME`
    /// link and the LVM rules no `/dev/VG/LV` link. The event is marked as coming from the
    /// activating tool itself (the "primary source"), so udev's disk rules still probe the device
    /// and make `/dev/disk/by-id/dm-*` and `/dev/disk/by-uuid/*` (an fstab `UUID=` of a file
    /// system on the LV keeps working). Without that mark, the rules would take the flags of the
    /// device's "add" event, which disable all of that (lvm2's `udev_rules = 0` does so).
    CallerMakesLinks,
    /// No flags at all: udev's DM rules then reuse the flags the device's previous activation
    /// recorded in udev's database, so whoever made the links (lvm2 through udev, or lvtool)
    /// keeps them. For a device that already exists (reload, fencing).
    AsBefore,
}

impl UdevRules {
    fn event_nr(self) -> u32 {
        match self {
            UdevRules::CallerMakesLinks => {
                (sys::DM_UDEV_PRIMARY_SOURCE_FLAG
                    | sys::DM_UDEV_DISABLE_DM_RULES_FLAG
                    | sys::DM_UDEV_DISABLE_SUBSYSTEM_RULES_FLAG)
                    << sys::DM_UDEV_FLAGS_SHIFT
            }
            UdevRules::AsBefore => 0,
        }
    }
}

/// Makes the inactive table of `name` live (resumes it if suspended). Returns the device's state
/// as the kernel reports it after the resume.
pub fn resume(dm: &DM, name: &DmName, rules: UdevRules) -> io::Result<DeviceInfo> {
    let hdr = dev_ioctl(dm, sys::DM_DEV_SUSPEND_CMD, name, rules.event_nr())?;
    DeviceInfo::new(hdr).map_err(|e| io::Error::other(format!("device-mapper answered a resume oddly: {e}")))
}

/// Removes the device `name` (EBUSY while it is open; ENXIO when there is none).
pub fn remove(dm: &DM, name: &DmName) -> io::Result<()> {
    dev_ioctl(dm, sys::DM_DEV_REMOVE_CMD, name, 0).map(|_| ())
}

/// One ioctl on the device `name` that carries no payload; returns the header the kernel wrote.
fn dev_ioctl(dm: &DM, cmd: u32, name: &DmName, event_nr: u32) -> io::Result<sys::dm_ioctl> {
    const HEADER: usize = size_of::<sys::dm_ioctl>();
    // SAFETY: dm_ioctl is plain integers and byte arrays; all zeroes is a valid value.
    let mut hdr: sys::dm_ioctl = unsafe { std::mem::zeroed() };
    // The oldest interface version that has these ioctls; the kernel answers with its own.
    hdr.version = [sys::DM_VERSION_MAJOR, 0, 0];
    hdr.data_size = HEADER as u32;
    hdr.data_start = HEADER as u32;
    hdr.event_nr = event_nr;
    let bytes = name.as_bytes();
    // DmName guarantees a length below DM_NAME_LEN, so the terminating NUL stays.
    assert!(bytes.len() < hdr.name.len());
    for (d, &s) in hdr.name.iter_mut().zip(bytes) {
        *d = s as libc::c_char;
    }
    let request = nix::request_code_readwrite!(sys::DM_IOCTL, cmd, HEADER);
    // SAFETY: the request reads and writes one dm_ioctl of HEADER bytes (data_size says so), the
    // size `hdr` has; the control file descriptor lives as long as `dm`.
    let r = unsafe { libc::ioctl(dm.file().as_raw_fd(), request as _, &mut hdr as *mut sys::dm_ioctl) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(hdr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_codes_are_the_kernels() {
        // From <linux/dm-ioctl.h>: _IOWR(0xfd, cmd, struct dm_ioctl), 312 bytes.
        assert_eq!(size_of::<sys::dm_ioctl>(), 312);
        assert_eq!(nix::request_code_readwrite!(sys::DM_IOCTL, sys::DM_DEV_REMOVE_CMD, 312) as u32, 0xc138_fd04);
        assert_eq!(nix::request_code_readwrite!(sys::DM_IOCTL, sys::DM_DEV_SUSPEND_CMD, 312) as u32, 0xc138_fd06);
    }

    #[test]
    fn udev_flags_are_libdevmappers() {
        // DM_UDEV_DISABLE_DM_RULES_FLAG 0x0001, _SUBSYSTEM_RULES_FLAG 0x0002 and
        // DM_UDEV_PRIMARY_SOURCE_FLAG 0x0040, in the top 16 bits; the low 16 (the semaphore) zero.
        assert_eq!(UdevRules::CallerMakesLinks.event_nr(), 0x0043_0000);
        assert_eq!(UdevRules::AsBefore.event_nr(), 0);
    }
}
