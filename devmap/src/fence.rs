//! The device-mapper half of fencing: every device of a VG made to fail all I/O.
//!
//! Each device whose DM UUID marks it as an LV of the VG (top-level or sub-device, activated by
//! lvm2 or by lvtool) gets one `error` target of its own length, like `dmsetup wipe_table`:
//! loaded, then suspended without flushing (the disk may be gone, and queued writes must fail
//! rather than land), then resumed without waiting for udev, since fencing must finish before the
//! watchdog fires. Open files keep the device, but every I/O fails.

use devicemapper::{DevId, DmFlags, DmName, DmOptions, DM};
use lvmmeta::uuid::Uuid;

use crate::lv::vg_uuid_prefix;
use crate::udev_free::{self, UdevRules};
use crate::{Error, Result};

/// What [`error_out_vg`] did, device by device.
#[derive(Debug, Default)]
pub struct Fenced {
    /// Devices that now fail every I/O.
    pub switched: Vec<String>,
    /// Devices that could not be switched, with the reason.
    pub failed: Vec<(String, Error)>,
}

/// Switches every device of the VG `vg` to the `error` target. `Err` only when device-mapper
/// itself is unusable (then no device of the VG can exist either: the caller decides what that
/// means); per-device failures are in [`Fenced::failed`].
pub fn error_out_vg(vg: &Uuid) -> Result<Fenced> {
    let dm = DM::new().map_err(|e| Error::Unavailable(e.to_string()))?;
    let prefix = vg_uuid_prefix(vg);
    let devices =
        dm.list_devices().map_err(|e| Error::Other { what: "device-mapper list".into(), reason: e.to_string() })?;
    let mut out = Fenced::default();
    for (name, _, _) in devices {
        let id = DevId::Name(&name);
        // A device can vanish between the list and the query: nothing left to fence.
        let Ok(info) = dm.device_info(&id) else { continue };
        if !info.uuid().is_some_and(|u| u.to_string().starts_with(&prefix)) {
            continue;
        }
        match switch_to_error(&dm, &name) {
            Ok(()) => out.switched.push(name.to_string()),
            Err(e) => out.failed.push((name.to_string(), e)),
        }
    }
    Ok(out)
}

fn switch_to_error(dm: &DM, name: &DmName) -> Result<()> {
    let id = DevId::Name(name);
    let fail =
        |what: &str, e: devicemapper::DmError| Error::Other { what: format!("{what} {name}"), reason: e.to_string() };
    let (_, lines) = dm
        .table_status(&id, DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE | DmFlags::DM_NOFLUSH))
        .map_err(|e| fail("table", e))?;
    let len: u64 = lines.iter().map(|l| l.1).sum();
    let table = [(0u64, len, "error".to_string(), String::new())];
    dm.table_load(&id, &table, DmOptions::default()).map_err(|e| fail("load error table of", e))?;
    let noflush = DmOptions::default().set_flags(DmFlags::DM_SUSPEND | DmFlags::DM_NOFLUSH);
    dm.device_suspend(&id, noflush).map_err(|e| fail("suspend", e))?;
    udev_free::resume(dm, name, UdevRules::AsBefore)
        .map_err(|e| Error::Kernel { what: format!("resume {name}"), source: e })?;
    Ok(())
}
