//! The shared-VG flow on one machine: three "hosts", each a lockd process with its own host_id,
//! config and run_dir, and lvtool with `--driverloaded n` pointed at one host's config, all on
//! one shared file (see `common::hosts`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::hosts::{self, lockd_status, parallel, Host};
use common::Scratch;

/// Not a test: the entry point of the lockd processes the tests start.
#[test]
fn lockd_daemon_entry() {
    hosts::lockd_daemon_entry();
}

#[test]
fn shared_vg_on_three_hosts() {
    if !common::as_root("shared_vg_on_three_hosts") {
        return;
    }
    let s = Scratch::new("lockd-hosts");
    let disk = s.file("shared.img", 400 << 20);
    let mut hosts: Vec<Host> = (1..=3).map(|i| Host::new(&s, i, &[&disk])).collect();
    for h in &mut hosts {
        h.start();
    }
    let [h1, h2, h3] = [&hosts[0], &hosts[1], &hosts[2]];
    let d = disk.to_str().unwrap();
    h1.ok(&["vgcreate", "--shared", "sv", d]);
    // Not started on host 3 yet: reading warns, changing is refused.
    let o = h3.lvtool(&["lvs", "sv"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Reading VG sv without a lock"));
    h3.fails("lockspace is not started here", &["lvcreate", "-an", "-L", "4M", "-n", "early", "sv"]);

    let out = parallel(&hosts, |h| h.ok(&["vgchange", "--lock-start"]));
    for (h, o) in hosts.iter().zip(&out) {
        assert!(o.contains(&format!("VG sv lockspace started (host_id {}, generation", h.id)), "{o}");
    }
    assert!(h1.ok(&["vgchange", "--lock-start", "sv"]).contains("VG sv lockspace already started"));

    // Create, extend and remove from any host.
    h2.ok(&["lvcreate", "-an", "-L", "8M", "-n", "lv1", "sv"]);
    h3.ok(&["lvcreate", "-an", "-L", "4M", "-n", "lv2", "sv"]);
    h1.ok(&["lvextend", "-L", "+4M", "sv/lv1"]);
    assert_eq!(
        h3.rows(&["lvs", "-o", "lv_name,lv_size,lv_lockargs", "sv"]),
        vec![vec!["lv1", "12.00m", "1.0.0:70254592"], vec!["lv2", "4.00m", "1.0.0:71303168"]]
    );
    h3.ok(&["lvcreate", "-an", "-L", "4M", "-n", "tmp", "sv"]);
    h1.ok(&["lvremove", "sv/tmp"]);

    // -aey on one host is refused on the others, naming the holder.
    h1.ok(&["lvchange", "-aey", "sv/lv1"]);
    for h in [h2, h3] {
        // Right after joining, a peer may still be "unknown" (not yet seen renewing).
        let e = h.fails("LV sv/lv1 is locked by host 1 (node1, ", &["lvchange", "-aey", "sv/lv1"]);
        assert!(!e.contains("WARNING"), "{e}");
        h.fails("locked by host 1", &["lvchange", "-asy", "sv/lv1"]);
    }
    assert_eq!(h3.rows(&["lvs", "-o", "lv_name,lock_owner", "sv/lv1"]), vec![vec!["lv1", "1 (node1)"]]);
    // Once host 2 has seen host 1 renew, it says since when host 1 is live.
    let t0 = Instant::now();
    while !h2.fails("locked by host 1", &["lvchange", "-aey", "sv/lv1"]).contains("(node1, live since 20") {
        assert!(t0.elapsed() < Duration::from_secs(20), "host 1 never seen live");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Changing an LV active elsewhere needs its lock: refused.
    h2.fails("locked by host 1", &["lvremove", "-f", "sv/lv1"]);
    h2.fails("locked by host 1", &["lvextend", "-L", "+4M", "sv/lv1"]);
    // The holder extends its own active LV.
    h1.ok(&["lvextend", "-L", "+4M", "sv/lv1"]);

    // -asy on two hosts; -aey refused while they hold it.
    h2.ok(&["lvchange", "-asy", "sv/lv2"]);
    h3.ok(&["lvchange", "-asy", "sv/lv2"]);
    // Host 1 may not have seen hosts 2 and 3 renew yet ("unknown"): the holders are named either way.
    let e = h1.fails("LV sv/lv2 is locked by host 2 (node2, ", &["lvchange", "-aey", "sv/lv2"]);
    assert!(e.contains("host 3 (node3, "), "{e}");
    let owner = &h1.rows(&["lvs", "-o", "lock_owner", "sv/lv2"])[0][0];
    assert_eq!(owner, "sh 2 (node2),3 (node3)");

    // Lock stop refuses while LVs are active here.
    h2.fails("deactivate them first", &["vgchange", "--lock-stop", "sv"]);
    h2.ok(&["lvchange", "-an", "sv/lv2"]);
    h3.ok(&["lvchange", "-an", "sv/lv2"]);
    assert!(h2.ok(&["vgchange", "--lock-stop", "sv"]).contains("VG sv lockspace stopped"));
    h2.fails("lockspace is not started here", &["lvchange", "-aey", "sv/lv2"]);
    h1.ok(&["lvchange", "-an", "sv/lv1"]);
    h3.ok(&["lvchange", "-aey", "sv/lv1"]);
    assert_eq!(h1.rows(&["lvs", "-o", "lock_owner", "sv/lv1"]), vec![vec!["3 (node3)"]]);
    h3.ok(&["lvchange", "-an", "sv/lv1"]);
    h1.ok(&["lvremove", "-f", "sv/lv1", "sv/lv2"]);
    assert_eq!(h1.rows(&["lvs", "-o", "lv_name", "sv"]), Vec::<Vec<String>>::new());

    // vgchange -aey takes its LV locks many at a time: one held elsewhere fails alone.
    let many: Vec<String> = (1..=12).map(|i| format!("m{i}")).collect();
    for n in &many {
        h1.ok(&["lvcreate", "-an", "-L", "4M", "-n", n, "sv"]);
    }
    h3.ok(&["lvchange", "-aey", "sv/m3"]);
    h1.fails("LV sv/m3 is locked by host 3 (node3, ", &["vgchange", "-aey", "sv"]);
    for row in h3.rows(&["lvs", "-o", "lv_name,lock_owner", "sv"]) {
        let want = if row[0] == "m3" { "3 (node3)" } else { "1 (node1)" };
        assert_eq!(row[1], want, "{row:?}");
    }
    h1.ok(&["vgchange", "-an", "sv"]);
    h3.ok(&["lvchange", "-an", "sv/m3"]);
    assert!(h3.rows(&["lvs", "-o", "lock_owner", "sv"]).iter().all(|r| r[0].is_empty()));
    let mut remove = vec!["lvremove", "-f"];
    let paths: Vec<String> = many.iter().map(|n| format!("sv/{n}")).collect();
    remove.extend(paths.iter().map(String::as_str));
    h1.ok(&remove);

    let st = lockd_status(h1);
    assert!(st.contains("lockspace lvm_sv (VG sv) running, global lock"), "{st}");
    assert!(st.contains("locks:\n    none"), "{st}");

    // vgremove only when no other host is in the lockspace (lvmlockd's free_vg): host 3 is, with
    // an LV active whose extents the removal would free under it.
    h3.ok(&["lvcreate", "-L", "4M", "-n", "busy", "sv"]);
    h1.fails("VG sv lockspace is in use by other hosts: 3 (node3, ", &["vgremove", "-f", "sv"]);
    assert_eq!(h3.rows(&["lvs", "-o", "lv_name,lock_owner", "sv"]), vec![vec!["busy", "3 (node3)"]]);
    h3.ok(&["lvchange", "-an", "sv/busy"]);
    h3.ok(&["vgchange", "--lock-stop", "sv"]);
    // Right away: host 1's lockd may not have seen host 3 leave, the record on disk decides.
    let out = h1.ok(&["vgremove", "-f", "sv"]);
    assert!(out.contains("Volume group \"sv\" successfully removed"), "{out}");
    assert!(lockd_status(h1).contains("no lockspaces started"), "{}", lockd_status(h1));
}

#[test]
fn several_vgs_start_in_parallel() {
    if !common::as_root("several_vgs_start_in_parallel") {
        return;
    }
    let s = Scratch::new("lockd-multi");
    let disks: Vec<PathBuf> = (0..3).map(|i| s.file(&format!("d{i}.img"), 300 << 20)).collect();
    let paths: Vec<&Path> = disks.iter().map(|p| p.as_path()).collect();
    let mut h = Host::new(&s, 7, &paths);
    h.start();
    // The first shared VG holds the global lock; the others are made under it.
    h.ok(&["vgcreate", "--shared", "mv0", disks[0].to_str().unwrap()]);
    h.ok(&["vgchange", "--lock-start", "mv0"]);
    for (i, d) in disks.iter().enumerate().skip(1) {
        h.ok(&["vgcreate", "--shared", &format!("mv{i}"), d.to_str().unwrap()]);
    }
    let out = h.ok(&["vgchange", "--lock-start"]);
    assert!(out.contains("VG mv0 lockspace already started"), "{out}");
    for i in 1..3 {
        assert!(out.contains(&format!("VG mv{i} lockspace started (host_id 7,")), "{out}");
    }
    // The global lock lives in the first shared VG.
    h.ok(&["lvcreate", "-an", "-L", "4M", "-n", "x", "mv2"]);
    h.ok(&["lvcreate", "-an", "-L", "4M", "-n", "y", "mv1"]);
    h.ok(&["lvcreate", "-an", "-L", "4M", "-n", "z", "--addtag", "boot", "mv0"]);
    let st = lockd_status(&h);
    assert!(st.contains("lockspace lvm_mv0 (VG mv0) running, global lock"), "{st}");
    assert!(st.contains("lockspace lvm_mv2 (VG mv2) running\n"), "{st}");
    // Autoactivation at boot: only what this host's config lists, of shared VGs.
    h.ok(&["vgchange", "-aay"]);
    assert!(!lockd_status(&h).contains(" persistent"), "nothing listed, nothing activated");
    let mut conf = std::fs::read_to_string(&h.config).unwrap();
    conf.push_str("auto_activation_volume_list = [\"mv1/y\", \"@boot\"]\n");
    std::fs::write(&h.config, conf).unwrap();
    h.ok(&["vgchange", "-aay"]);
    let st = lockd_status(&h);
    assert!(st.contains("(y) at 70254592 lver 1 persistent") && st.contains("(z) at"), "{st}");
    assert!(!st.contains("(x)"), "{st}");
    // mv2 has no active LV and stops; mv0 and mv1 refuse until their LVs are deactivated.
    h.fails("deactivate them first", &["vgchange", "--lock-stop"]);
    h.ok(&["vgchange", "-an", "mv0", "mv1"]);
    let out = h.ok(&["vgchange", "--lock-stop"]);
    assert!(out.contains("VG mv0 lockspace stopped") && out.contains("VG mv1 lockspace stopped"), "{out}");
    assert!(out.contains("VG mv2 lockspace is not started"), "{out}");
}

/// lvrename and lvremove take the LV lock in ex before they commit: an LV active on another
/// host is neither renamed nor removed under it; one active here is deactivated first (with
/// -f or -y, as lvm2 asks) or the command refuses, in both cases before anything is written.
#[test]
fn lv_lock_before_rename_and_remove() {
    if !common::as_root("lv_lock_before_rename_and_remove") {
        return;
    }
    let s = Scratch::new("lockd-lvlock");
    let disk = s.file("shared.img", 400 << 20);
    let mut hosts: Vec<Host> = (1..=2).map(|i| Host::new(&s, i, &[&disk])).collect();
    for h in &mut hosts {
        h.start();
    }
    let [h1, h2] = [&hosts[0], &hosts[1]];
    h1.ok(&["vgcreate", "--shared", "sv", disk.to_str().unwrap()]);
    parallel(&hosts, |h| h.ok(&["vgchange", "--lock-start", "sv"]));
    h1.ok(&["lvcreate", "-L", "8M", "-n", "a", "sv"]);
    h2.ok(&["lvcreate", "-an", "-L", "4M", "-n", "b", "sv"]);
    let names = |h: &Host| -> Vec<String> {
        h.rows(&["lvs", "-o", "lv_name", "sv"]).into_iter().map(|r| r[0].clone()).collect()
    };
    let seqno = |h: &Host| h.rows(&["vgs", "-o", "vg_seqno", "sv"])[0][0].clone();
    let before = seqno(h1);

    // Active on host 1: host 2 can neither rename nor remove it; host 1 keeps its device name.
    h2.fails("LV sv/a is locked by host 1", &["lvrename", "sv/a", "sv/a2"]);
    h2.fails("LV sv/a is locked by host 1", &["lvrename", "sv", "a", "a2"]);
    h2.fails("LV sv/a is locked by host 1", &["lvremove", "-f", "sv/a"]);
    // Active here: renaming would leave the device under the old name.
    h1.fails("while it is active on this host", &["lvrename", "sv/a", "sv/a2"]);
    // Reducing it here asks first (lockd knows it is active even without a DM view).
    h1.fails("Logical volume a NOT reduced.", &["lvreduce", "-L", "-4M", "sv/a"]);
    // Active here, not confirmed: refused before the commit; the LV, its lock and slot stay.
    h1.fails("Logical volume sv/a not removed.", &["lvremove", "sv/a"]);
    assert_eq!(names(h1), ["a", "b"]);
    assert_eq!(seqno(h1), before, "nothing committed");
    assert!(lockd_status(h1).contains("(a) at 70254592 lver 1 persistent"), "{}", lockd_status(h1));

    // Inactive everywhere: renamed, under its lock.
    h1.ok(&["lvrename", "sv/b", "sv/b2"]);
    assert_eq!(names(h2), ["a", "b2"]);
    // Shared on two hosts: removal refused, naming the other holder; shared here only: removed.
    h1.ok(&["lvchange", "-asy", "sv/b2"]);
    h2.ok(&["lvchange", "-asy", "sv/b2"]);
    h2.fails("LV sv/b2 is locked by host 1", &["lvremove", "-f", "sv/b2"]);
    assert_eq!(names(h1), ["a", "b2"]);
    h1.fails("Logical volume sv/b2 not removed.", &["lvremove", "sv/b2"]);
    h1.ok(&["lvchange", "-an", "sv/b2"]);
    // (Host 2's shared activation went before its lock request: lockd does not convert it.)
    h2.ok(&["lvchange", "-asy", "sv/b2"]);
    h2.ok(&["lvremove", "-y", "sv/b2"]);
    assert_eq!(names(h1), ["a"]);
    assert!(lockd_status(h2).contains("locks:\n    none"), "{}", lockd_status(h2));

    // -f: deactivated, then locked, committed and its slot freed; nothing is left held.
    let lock_args = h1.rows(&["lvs", "-o", "lv_lockargs", "sv/a"])[0][0].clone();
    assert_eq!(lock_args, "1.0.0:70254592");
    h1.ok(&["lvremove", "-f", "sv/a"]);
    assert_eq!(names(h2), Vec::<String>::new());
    assert!(lockd_status(h1).contains("locks:\n    none"), "{}", lockd_status(h1));
    h1.ok(&["lvcreate", "-an", "-L", "4M", "-n", "c", "sv"]);
    assert_eq!(h2.rows(&["lvs", "-o", "lv_lockargs", "sv/c"])[0][0], "1.0.0:70254592", "slot freed and reused");
    // Nothing held: the lockspace stops without force.
    assert!(h1.ok(&["vgchange", "--lock-stop", "sv"]).contains("VG sv lockspace stopped"));
}

/// Commands that need the global lock fail when no started VG holds it, naming what to do;
/// only the first shared VG is made without one (it enables it).
#[test]
fn global_lock_is_required() {
    if !common::as_root("global_lock_is_required") {
        return;
    }
    let s = Scratch::new("lockd-gl");
    let disks: Vec<PathBuf> =
        [400u64, 64, 300].iter().enumerate().map(|(i, m)| s.file(&format!("d{i}.img"), m << 20)).collect();
    let paths: Vec<&Path> = disks.iter().map(|p| p.as_path()).collect();
    let mut h = Host::new(&s, 1, &paths);
    h.start();
    let d: Vec<&str> = disks.iter().map(|p| p.to_str().unwrap()).collect();
    let out = h.ok(&["vgcreate", "--shared", "sv", d[0]]);
    assert!(out.contains("Enabling sanlock global lock"), "{out}");
    let before: Vec<Vec<u8>> = disks.iter().map(|f| std::fs::read(f).unwrap()).collect();
    h.fails("Global lock failed: no shared VG is started here, so no global lock is available", &["pvcreate", d[1]]);
    h.fails("shared VGs not started here: sv", &["vgcreate", "lv", d[1]]);
    h.fails("shared VGs not started here: sv", &["vgcreate", "--shared", "sv2", d[2]]);
    let after: Vec<Vec<u8>> = disks.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(before == after, "nothing written without the global lock");
    h.ok(&["vgchange", "--lock-start", "sv"]);
    h.ok(&["pvcreate", d[1]]);
    let out = h.ok(&["vgcreate", "--shared", "sv2", d[2]]);
    assert!(!out.contains("Enabling sanlock global lock"), "{out}");
    h.ok(&["vgchange", "--lock-start", "sv2"]);
    h.ok(&["vgextend", "sv2", d[1]]);
    h.ok(&["vgreduce", "sv2", d[1]]);
    h.ok(&["pvremove", d[1]]);
}
