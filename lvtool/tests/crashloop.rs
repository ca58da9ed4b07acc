//! `kill -9` at random points of lvcreate, lvremove, lvrename and lvchange on a shared VG, then
//! one `vgck --lock-repair`: no lock of an LV that does not exist, no lease slot that names an
//! LV that does not exist, every LV's lease where its `lock_args` say, and real lvm2's vgck
//! accepts the VG. This is the "lock → check → commit → release" order tested by its outcome: a
//! command killed at any step leaves the old state, or the new one plus at most a slot that the
//! repair can prove orphaned.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::hosts::{self, Host};
use common::{lvm2, lvmlockd_t, LoopDev};
use lease::ondisk::Geometry;
use lease::timeouts::Timeouts;
use lvtool::lockarea::{self, LockArea, Slot};
use lvtool::scan::Scan;

/// Not a test: the entry point of the lockd processes the tests start.
#[test]
fn lockd_daemon_entry() {
    hosts::lockd_daemon_entry();
}

/// Commands killed before they finished (the bar).
const KILLS: usize = 200;
/// Safety net against a loop that never manages to kill (each iteration is one command).
const MAX_ITERATIONS: usize = 20 * KILLS;
const VG: &str = "cl";

/// A small deterministic generator (xorshift64*), so a failing run can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn lv_names(h: &Host) -> Vec<String> {
    h.rows(&["lvs", "-o", "lv_name", VG]).into_iter().map(|r| r[0].clone()).collect()
}

fn spawn(h: &Host, args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lvtool"))
        .args(args)
        .arg("--config")
        .arg(&h.config)
        .arg("--driverloaded")
        .arg("n")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// One command chosen from the VG's current LVs.
fn next_command(rng: &mut Rng, lvs: &[String], serial: usize) -> Vec<String> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let pick = |rng: &mut Rng| format!("{VG}/{}", lvs[rng.below(lvs.len() as u64) as usize]);
    let new_name = format!("c{serial}");
    match rng.below(10) {
        _ if lvs.len() < 3 => v(&["lvcreate", "-L", "4M", "-n", &new_name, VG]),
        0..=2 => {
            let active = if rng.below(2) == 0 { "-ay" } else { "-an" };
            v(&["lvcreate", active, "-L", "4M", "-n", &new_name, VG])
        }
        3..=5 => v(&["lvremove", "-f", &pick(rng)]),
        6 | 7 => v(&["lvrename", &pick(rng), &format!("{VG}/{new_name}")]),
        8 => v(&["lvchange", "-aey", &pick(rng)]),
        _ => v(&["lvchange", "-an", &pick(rng)]),
    }
}

/// What a crash can leave behind, read from lockd and the disk.
#[derive(Debug)]
struct Audit {
    /// Locks lockd holds for LV UUIDs that no LV in the committed metadata has.
    leaked_locks: Vec<String>,
    /// (slot offset, resource name) of slots that name no LV living there.
    orphaned_slots: Vec<(u64, String)>,
    /// LVs whose `lock_args` slot does not name them.
    misplaced_leases: Vec<String>,
}

impl Audit {
    fn of(h: &Host, dev: &Path) -> Audit {
        // Committed metadata: every LV (but the lease LV) and the slot its lock_args name.
        let read = Scan::devices(&[dev.to_path_buf()]).read_vg(VG).unwrap();
        let lv_slots: BTreeMap<String, u64> = read
            .vg
            .lvs
            .iter()
            .filter(|lv| lv.name != lockarea::LOCK_LV_NAME)
            .map(|lv| {
                let args = lv.lock_args.as_deref().unwrap_or_else(|| panic!("LV {} without lock_args", lv.name));
                (lv.id.to_string(), lockarea::parse_lv_lock_args(args).unwrap())
            })
            .collect();
        let held: BTreeSet<String> = hosts::lockd_status_raw(h)
            .lockspaces
            .iter()
            .flat_map(|ls| ls.locks.iter())
            .filter(|l| l.resource != "GLLK" && l.resource != "VGLK")
            .map(|l| l.resource.clone())
            .collect();
        let leaked_locks = held.into_iter().filter(|u| !lv_slots.contains_key(u)).collect();
        let area =
            LockArea::new(&read.vg, &|_| Some(dev.to_path_buf()), Geometry::DEFAULT_512, Timeouts::default()).unwrap();
        let mut orphaned_slots = vec![];
        for offset in area.lv_slots() {
            match area.slot(offset).unwrap() {
                Slot::Named(n) if n == lockarea::R_NAME_UNUSED => {}
                Slot::Named(n) => {
                    if lv_slots.get(&n) != Some(&offset) {
                        orphaned_slots.push((offset, n));
                    }
                }
                Slot::Unformatted => panic!("LV slot at {offset} is not formatted"),
            }
        }
        let misplaced_leases = lv_slots
            .iter()
            .filter(|(uuid, offset)| area.slot(**offset).ok() != Some(Slot::Named(uuid.to_string())))
            .map(|(uuid, _)| uuid.clone())
            .collect();
        Audit { leaked_locks, orphaned_slots, misplaced_leases }
    }

    fn clean(&self) -> bool {
        self.leaked_locks.is_empty() && self.orphaned_slots.is_empty() && self.misplaced_leases.is_empty()
    }
}

#[test]
fn kill9_during_lv_changes_then_repair_leaks_nothing() {
    let test = "kill9_during_lv_changes_then_repair_leaks_nothing";
    let Some(lvm) = lvm2(test) else { return };
    if !lvmlockd_t::available(test) {
        return;
    }
    let file = lvm.scratch.file("shared.img", 400 << 20);
    let lp = LoopDev::attach(&file);
    let mut h = Host::new(&lvm.scratch, 1, &[&lp.path]);
    h.start();
    let dev = lp.path.to_str().unwrap();
    h.ok(&["vgcreate", "--shared", VG, dev]);
    h.ok(&["vgchange", "--lock-start", VG]);

    let seed = std::env::var("SANLVM_CRASHLOOP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_c0de_u64);
    let mut rng = Rng(seed | 1);
    // How long a command takes when not killed, per verb: kills land uniformly in [0, 1.2 × that].
    let mut typical: BTreeMap<String, Duration> = BTreeMap::new();
    let (mut kills, mut iterations) = (0, 0);
    while kills < KILLS {
        iterations += 1;
        assert!(iterations <= MAX_ITERATIONS, "only {kills} kills in {iterations} commands (seed {seed})");
        let lvs = lv_names(&h);
        let cmd = next_command(&mut rng, &lvs, iterations);
        let verb = cmd[0].clone();
        let t0 = Instant::now();
        let mut child = spawn(&h, &cmd);
        match typical.get(&verb) {
            None => {
                child.wait().unwrap();
                typical.insert(verb, t0.elapsed());
            }
            Some(&d) => {
                let at = d.mul_f64(1.2 * rng.below(1000) as f64 / 1000.0);
                std::thread::sleep(at.saturating_sub(t0.elapsed()));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap();
                    kills += 1;
                }
                child.wait().unwrap();
            }
        }
    }
    eprintln!("{kills} kills in {iterations} commands (seed {seed}); typical durations {typical:?}");

    let before = Audit::of(&h, &lp.path);
    eprintln!("before the repair: {before:?}");
    let repair = h.ok(&["vgck", "--lock-repair", VG]);
    eprintln!("repair: {repair}");
    let after = Audit::of(&h, &lp.path);
    assert!(after.clean(), "after the repair (seed {seed}): {after:?}");
    let read = Scan::devices(std::slice::from_ref(&lp.path)).read_vg(VG).unwrap();

    // Real lvm2 accepts the VG.
    let pe_start = read.vg.pvs[0].pe_start * 512;
    let out = lvmlockd_t::run(&lvm, VG, &lp.path, pe_start, 256 << 20, "lvm vgck $D cl");
    let err = String::from_utf8_lossy(&out.stderr);
    for bad in ["checksum", "Checksum", "nconsistent", "Couldn't", "Failed", "rror"] {
        assert!(!err.contains(bad), "vgck complained: {err}");
    }

    // And the VG still works: everything deactivates and goes, and the lockspace stops unforced.
    h.ok(&["vgchange", "-an", VG]);
    let lvs = lv_names(&h);
    if !lvs.is_empty() {
        let mut args = vec!["lvremove".to_string(), "-f".to_string()];
        args.extend(lvs.iter().map(|n| format!("{VG}/{n}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        h.ok(&args);
    }
    h.ok(&["vgchange", "--lock-stop", VG]);
}
