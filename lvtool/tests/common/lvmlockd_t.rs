//! Real lvm2 on a shared VG, through `lvmlockd -T` (test mode: lock requests succeed without
//! sanlock, spec §2.9) in a private mount namespace, with /dev/mapper/<vg>-lvmlock a loop device
//! over the lock LV's extents. lvm2 only reads or writes a shared VG through lvmlockd, so this is
//! how tests run real lvm2 commands (vgck, lvcreate, ...) on VGs that lvtool shares. Test mode
//! writes no leases: it checks the metadata side only.

use std::path::Path;
use std::process::{Command, Output};

use super::Lvm;

/// Whether lvmlockd and unshare exist; under CI their absence fails the test, elsewhere the
/// test says it skipped and the caller returns.
pub fn available(test: &str) -> bool {
    let have = |c: &str| {
        Command::new("sh").arg("-c").arg(format!("command -v {c}")).output().is_ok_and(|o| o.status.success())
    };
    if have("lvmlockd") && have("unshare") {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: lvmlockd (apt-get install lvm2-lockd) and unshare are required under CI");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: lvmlockd or unshare missing");
    false
}

/// Runs `commands` (shell lines; `lvm CMD $D ...` restricts lvm2 to `dev`) after starting
/// lvmlockd -T for shared VG `vg` on the single PV `dev`, whose lock LV sits at PE 0 after
/// `pe_start` bytes, `lock_lv_bytes` long. Asserts success; returns the output.
pub fn run(lvm: &Lvm, vg: &str, dev: &Path, pe_start: u64, lock_lv_bytes: u64, commands: &str) -> Output {
    let etc = lvm.scratch.dir.join("etc-lockd");
    std::fs::create_dir_all(&etc).unwrap();
    let conf = std::fs::read_to_string(lvm.scratch.dir.join("etc/lvm.conf")).unwrap();
    std::fs::write(etc.join("lvm.conf"), conf.replace("global {\n", "global {\n use_lvmlockd = 1\n")).unwrap();
    std::fs::write(etc.join("lvmlocal.conf"), "local {\n host_id = 1\n}\n").unwrap();
    let log = lvm.scratch.dir.join("lvmlockd.log");
    let script = format!(
        r#"set -e
mount -t tmpfs tmpfs /run
mkdir -p /dev/mapper /run/lvm
mount -t tmpfs tmpfs /dev/mapper
LL=$(losetup -f --show -o {pe_start} --sizelimit {lock_lv_bytes} {d})
trap 'losetup -d $LL' EXIT
ln -s $LL /dev/mapper/{vg}-lvmlock
lvmlockd -T -f -p /run/lvmlockd.pid -s /run/lvm/lvmlockd.socket >{log} 2>&1 &
LP=$!
for i in $(seq 100); do [ -S /run/lvm/lvmlockd.socket ] && break; sleep 0.1; done
export LVM_SYSTEM_DIR={etc} LVM_SUPPRESS_FD_WARNINGS=1 LVM_LVMLOCKD_SOCKET=/run/lvm/lvmlockd.socket
D="--driverloaded n --devices {d}"
lvm vgchange $D --lock-start {vg}
{commands}
lvm vgchange $D --lock-stop {vg}
kill $LP
wait $LP || true
"#,
        d = dev.display(),
        log = log.display(),
        etc = etc.display(),
    );
    let out = Command::new("unshare").arg("-m").arg("sh").arg("-c").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "real lvm2 under lvmlockd -T failed:\n{}\n{}\nlvmlockd log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    out
}
