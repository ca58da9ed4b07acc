//! What lockd does to the LVs of a VG whose lockspace failed (no renewal for 8N): stop every
//! write to the shared disk from this host before another host may take the leases. The
//! [`Fencer`] replaces the tables of the VG's active LVs with the device-mapper `error` target;
//! then the optional kill command runs (lvmlockctl_kill_command's role).

use std::process::Command;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// An LV whose lease this host holds in the failed lockspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencedLv {
    pub uuid: String,
    pub name: Option<String>,
}

pub trait Fencer: Send + Sync {
    /// Makes every active LV of the VG (`vg_uuid` is the dashed VG UUID) fail all I/O.
    /// `held` are the LVs whose leases we hold; a fencer may also act on every LV of the VG it
    /// finds active. Ok only when no LV of the VG can write any more.
    fn fence(&self, vg: &str, vg_uuid: &str, held: &[FencedLv]) -> Result<(), String>;
}

/// No device-mapper on this host (tests with `--driverloaded n`): nothing to switch; LVs are
/// only as fenced as the kill command makes them.
pub struct NoDmFencer;

impl Fencer for NoDmFencer {
    fn fence(&self, vg: &str, _: &str, held: &[FencedLv]) -> Result<(), String> {
        info!("fence {vg}: no device-mapper here; {} LV lease(s) held, nothing to switch", held.len());
        Ok(())
    }
}

/// Replaces the table of every device-mapper device of the VG with the `error` target
/// ([`devmap::fence`]): open files keep the device, but every I/O fails.
pub struct DmErrorFencer;

impl Fencer for DmErrorFencer {
    fn fence(&self, vg: &str, vg_uuid: &str, held: &[FencedLv]) -> Result<(), String> {
        let id = lvmmeta::uuid::Uuid::parse(vg_uuid).map_err(|e| format!("fence {vg}: VG UUID {vg_uuid:?}: {e}"))?;
        let done = match devmap::fence::error_out_vg(&id) {
            Ok(done) => done,
            Err(devmap::Error::Unavailable(e)) => {
                // No working device-mapper driver: no device of this VG can exist to write.
                info!("fence {vg}: device-mapper unavailable ({e}); no LV device can be active");
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        for name in &done.switched {
            warn!("fence {vg}: {name} now fails all I/O (error target)");
        }
        info!(
            "fence {vg}: {} device(s) switched to the error target ({} LV lease(s) held)",
            done.switched.len(),
            held.len()
        );
        if done.failed.is_empty() {
            Ok(())
        } else {
            Err(done.failed.iter().map(|(name, e)| format!("{name}: {e}")).collect::<Vec<_>>().join("; "))
        }
    }
}

/// The fencer for this host: device-mapper when the kernel has it.
pub fn default_fencer() -> std::sync::Arc<dyn Fencer> {
    if std::path::Path::new("/dev/mapper/control").exists() {
        std::sync::Arc::new(DmErrorFencer)
    } else {
        std::sync::Arc::new(NoDmFencer)
    }
}

/// Runs `argv` with `vg` appended; Ok when it exits 0 before `limit`.
pub fn run_kill_command(argv: &[String], vg: &str, limit: Duration) -> Result<(), String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .arg(vg)
        .spawn()
        .map_err(|e| format!("kill command {:?} failed to start: {e}", argv[0]))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("kill command {:?} exited with {st}", argv[0])),
            Ok(None) if start.elapsed() >= limit => {
                warn!("kill command {:?} still running after {limit:?}; killing it", argv[0]);
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("kill command {:?} did not finish in {limit:?}", argv[0]));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("kill command {:?}: {e}", argv[0])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_command_result() {
        let t = Duration::from_secs(5);
        assert!(run_kill_command(&["true".into()], "vg1", t).is_ok());
        assert!(run_kill_command(&["false".into()], "vg1", t).unwrap_err().contains("exited"));
        assert!(run_kill_command(&["/nonexistent/x".into()], "vg1", t).unwrap_err().contains("start"));
        // The VG name is the last argument.
        assert!(run_kill_command(&["sh".into(), "-c".into(), "test \"$0\" = vg1".into()], "vg1", t).is_ok());
        let slow = run_kill_command(&["sleep".into()], "10", Duration::from_millis(200));
        assert!(slow.unwrap_err().contains("did not finish"));
    }
}
