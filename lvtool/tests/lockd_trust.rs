//! The global lock and lease repair as lvtool users see them: lockd hosts (common::hosts) and
//! lvtool with `--driverloaded n`, on shared files.

mod common;

use std::path::{Path, PathBuf};

use common::hosts::Host;
use common::Scratch;

/// Not a test: the entry point of the lockd processes the tests start.
#[test]
fn lockd_daemon_entry() {
    common::hosts::lockd_daemon_entry();
}

fn hosts(s: &Scratch, n: u64, disks: &[&Path]) -> Vec<Host> {
    let mut hs: Vec<Host> = (1..=n).map(|i| Host::new(s, i, disks)).collect();
    for h in &mut hs {
        h.start();
    }
    hs
}

/// Item 10: the GL VG removed, the GL moves to another started shared VG; with none, changes
/// that need the GL fail saying what to do; a host that has not started the VGs says so.
#[test]
fn global_lock_follows_vgremove_and_is_never_skipped() {
    let s = Scratch::new("lockd-gl");
    let d: Vec<PathBuf> = (0..4).map(|i| s.file(&format!("d{i}.img"), 300 << 20)).collect();
    let p: Vec<&Path> = d.iter().map(|x| x.as_path()).collect();
    let hs = hosts(&s, 3, &p);
    let [h1, h2, h3] = [&hs[0], &hs[1], &hs[2]];
    let out = h1.ok(&["vgcreate", "--shared", "g1", p[0].to_str().unwrap()]);
    assert!(out.contains("Enabling sanlock global lock"), "{out}");
    h1.ok(&["vgchange", "--lock-start", "g1"]);
    h1.ok(&["vgcreate", "--shared", "g2", p[1].to_str().unwrap()]);
    for h in [h1, h2] {
        h.ok(&["vgchange", "--lock-start"]);
    }
    // Host 3 started nothing: a change needing the GL fails and names the shared VGs.
    let e = h3.fails("not started here", &["pvcreate", p[2].to_str().unwrap()]);
    assert!(e.contains("g1") && e.contains("g2"), "{e}");
    // A report only warns (lvm2's "Skipping global lock").
    let o = h3.lvtool(&["vgs"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("Skipping global lock"), "{err}");
    // Host 2 stops g2 so that host 1 can remove it later; host 1 removes g1 (the GL VG).
    h2.ok(&["vgchange", "--lock-stop", "g1"]);
    let out = h1.ok(&["vgremove", "g1"]);
    assert!(out.contains("Global lock moved from VG g1 to VG g2"), "{out}");
    // Host 2 uses the GL in g2 now: a change that needs it works there.
    h2.ok(&["pvcreate", p[2].to_str().unwrap()]);
    // The last GL VG removed: a warning, and then changes that need the GL fail.
    h2.ok(&["vgchange", "--lock-stop", "g2"]);
    let o = h1.lvtool(&["vgremove", "g2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("no global lock is enabled"), "{err}");
    h1.ok(&["vgcreate", "--shared", "g3", p[3].to_str().unwrap()]);
    h1.ok(&["vgchange", "--lock-start", "g3"]);
}

/// vgck --lock-repair frees an orphaned slot (an LV's lease left behind) and says so.
#[test]
fn vgck_lock_repair_frees_orphans() {
    let s = Scratch::new("lockd-repair");
    let disk = s.file("shared.img", 300 << 20);
    let hs = hosts(&s, 1, &[&disk]);
    let h = &hs[0];
    h.ok(&["vgcreate", "--shared", "r1", disk.to_str().unwrap()]);
    h.ok(&["vgchange", "--lock-start", "r1"]);
    h.ok(&["lvcreate", "-an", "-L", "4M", "-n", "a", "r1"]);
    let out = h.ok(&["vgck", "--lock-repair", "r1"]);
    assert!(out.contains("no orphaned leases"), "{out}");
    // An orphan: a slot named after an LV UUID no LV has.
    let rows = h.rows(&["lvs", "-o", "lv_name,lock_args", "r1"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let vg = lvtool::scan::Scan::devices(&[&disk]).read_vg("r1").unwrap();
    let read = &vg;
    let area = lvtool::lockarea::LockArea::new(
        &read.vg,
        &|_| Some(disk.clone()),
        lease::ondisk::Geometry::DEFAULT_512,
        lease::timeouts::Timeouts::new(1, 3).unwrap(),
    )
    .unwrap();
    let slot = area.find_free("ghost").unwrap().unwrap();
    let mut ghost = read.vg.lvs[0].clone();
    ghost.id = lvtool::uuid::Uuid::generate().unwrap();
    area.init_lv(slot, &ghost).unwrap();
    let out = h.ok(&["vgck", "--lock-repair", "r1"]);
    assert!(out.contains(&format!("freed orphaned lease of LV {} at offset {slot}", ghost.id)), "{out}");
    assert_eq!(area.slot(slot).unwrap(), lvtool::lockarea::Slot::Named("#unused".into()));
    // A slot an LV's lock_args name is never handed out, even when it says #unused.
    let vg = lvtool::scan::Scan::devices(&[&disk]).read_vg("r1").unwrap().vg;
    let a_slot = lvtool::lockarea::parse_lv_lock_args(vg.lv("a").unwrap().lock_args.as_deref().unwrap()).unwrap();
    let named = lvtool::lockarea::LockArea::new(
        &vg,
        &|_| Some(disk.clone()),
        lease::ondisk::Geometry::DEFAULT_512,
        lease::timeouts::Timeouts::new(1, 3).unwrap(),
    )
    .unwrap();
    named.free_lv(a_slot).unwrap();
    assert_ne!(named.find_free("other").unwrap(), Some(a_slot));
    named.init_lv(a_slot, vg.lv("a").unwrap()).unwrap();
    // A zeroed slot is never the free one lvtool's own fallback picks.
    use std::os::unix::fs::FileExt;
    let (_, at) = area.locate(slot).unwrap();
    std::fs::OpenOptions::new().write(true).open(&disk).unwrap().write_all_at(&[0u8; 512], at).unwrap();
    let e = area.find_free("other").unwrap_err().to_string();
    assert!(e.contains(&slot.to_string()), "{e}");
}
