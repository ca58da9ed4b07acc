//! lvtool's commands against the real tools (Debian lvm2 2.03.16 and sanlock 3.8.5) on the same
//! loop devices, every lvm2 command with `--driverloaded n`: what lvtool makes, lvm2 reads with
//! the same names, sizes, UUIDs, segments and lock fields, and prints the same reports; what
//! lvm2 makes, lvtool changes and lvm2's vgck still accepts; the lease area of a shared VG made
//! by lvtool is what `sanlock direct` finds where lvmlockd would look.

mod common;

use std::process::Command;

use common::{lvm2, lvmlockd_t, Fixture, LoopDev, Lvm, Tool};

fn tool_on(lvm: &Lvm) -> Tool {
    Tool { devices: lvm.devices.clone() }
}

/// Two loop devices of the given sizes (bytes), the only devices both tools see.
fn attach_two(lvm: &mut Lvm, a: u64, b: u64) -> Vec<LoopDev> {
    let files = [lvm.scratch.file("a.img", a), lvm.scratch.file("b.img", b)];
    let loops: Vec<LoopDev> = files.iter().map(|f| LoopDev::attach(f)).collect();
    lvm.devices = loops.iter().map(|l| l.path.clone()).collect();
    loops
}

/// stdout of an lvm2 command run exactly like lvtool's (same arguments).
fn lvm_out(lvm: &Lvm, args: &[&str]) -> String {
    lvm.ok(args[0], &args[1..])
}

fn vgck_passes(lvm: &Lvm, vg: &str) {
    let out = lvm.run("vgck", &[vg]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vgck failed: {err}");
    for bad in ["checksum", "Checksum", "nconsistent", "Couldn't", "Failed", "rror"] {
        assert!(!err.contains(bad), "vgck complained: {err}");
    }
}

/// The same command through lvm2 and lvtool prints the same report, byte for byte.
fn same_report(lvm: &Lvm, t: &Tool, args: &[&str]) {
    assert_eq!(t.ok(args), lvm_out(lvm, args), "report {args:?} differs");
}

#[test]
fn vg_made_by_lvtool_is_lvm2s_vg() {
    let Some(mut lvm) = lvm2("vg_made_by_lvtool_is_lvm2s_vg") else { return };
    let loops = attach_two(&mut lvm, 300 << 20, 200 << 20);
    let d: Vec<&str> = loops.iter().map(|l| l.path.to_str().unwrap()).collect();
    let t = tool_on(&lvm);
    t.ok(&["pvcreate", d[0], d[1]]);
    t.ok(&["vgcreate", "--addtag", "vgtag", "lt_vg", d[0], d[1]]);
    t.ok(&["lvcreate", "-L", "10M", "-n", "lv1", "--addtag", "t1", "lt_vg"]);
    t.ok(&["lvcreate", "-l", "10", "-n", "lv2", "lt_vg"]);
    t.ok(&["lvextend", "-L", "+8M", "lt_vg/lv1"]);
    t.ok(&["lvcreate", "-l", "40", "-n", "lv3", "lt_vg", d[1]]);
    t.ok(&["lvextend", "-l", "+100%FREE", "lt_vg/lv3"]);
    t.ok(&["lvreduce", "-L", "-200M", "lt_vg/lv3"]);
    vgck_passes(&lvm, "lt_vg");
    for args in [
        &["vgs"][..],
        &["lvs"],
        &["pvs"],
        &["vgs", "--reportformat", "json"],
        &["lvs", "--reportformat", "json"],
        &["pvs", "--reportformat", "json"],
        &["vgs", "-o", "+vg_uuid,vg_seqno,vg_extent_size,vg_tags,vg_free_count,vg_mda_count", "--units", "k"],
        &["vgs", "--units", "H", "--noheadings"],
        &["pvs", "-o", "+pv_uuid,pe_start,dev_size,pv_pe_count,pv_pe_alloc_count,pv_used"],
        &["lvs", "-a", "-o", "+lv_uuid,seg_count,lv_tags,devices,lv_path,lv_dm_path,lv_active", "--units", "s"],
        &["lvs", "--segments", "-o", "+seg_start_pe,seg_size_pe,seg_pe_ranges"],
        &["lvs", "-o", "lv_name,lv_size", "--units", "b", "--nosuffix", "lt_vg/lv1"],
        &["vgs", "--separator", ","],
        &["vgdisplay", "lt_vg"],
        &["lvdisplay", "lt_vg/lv1"],
    ] {
        same_report(&lvm, &t, args);
    }

    // Real lvm2 changes the VG; lvtool reads and changes it again; lvm2 still agrees.
    lvm.ok("lvcreate", &["-L", "12M", "-n", "bylvm", "lt_vg"]);
    lvm.ok("lvextend", &["-L", "+4M", "lt_vg/lv2"]);
    t.ok(&["lvextend", "-L", "+4M", "lt_vg/bylvm"]);
    t.ok(&["lvrename", "lt_vg", "lv2", "renamed"]);
    t.ok(&["lvremove", "lt_vg/lv1"]);
    vgck_passes(&lvm, "lt_vg");
    same_report(&lvm, &t, &["lvs", "-a", "-o", "+lv_uuid,seg_count,devices", "--units", "s"]);
    same_report(&lvm, &t, &["vgs", "-o", "+vg_seqno"]);
    t.ok(&["vgremove", "-f", "lt_vg"]);
    same_report(&lvm, &t, &["pvs"]);
    t.ok(&["pvremove", d[0], d[1]]);
    let out = lvm.run("pvs", &[]);
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "pvremove left labels");
}

#[test]
fn vg_made_by_lvm2_is_changed_by_lvtool() {
    let Some(lvm) = lvm2("vg_made_by_lvm2_is_changed_by_lvtool") else { return };
    let fx = Fixture::new(lvm, "lt_fx");
    let t = tool_on(&fx.lvm);
    same_report(&fx.lvm, &t, &["lvs", "-a", "-o", "+lv_uuid,seg_count,lv_tags,devices", "--units", "s"]);
    same_report(&fx.lvm, &t, &["lvs", "--segments", "-o", "+stripe_size,seg_pe_ranges"]);
    same_report(&fx.lvm, &t, &["vgs", "-o", "+vg_tags,vg_uuid"]);
    t.ok(&["lvcreate", "-L", "6M", "-n", "ours", "lt_fx"]);
    t.ok(&["lvextend", "-L", "+2M", "lt_fx/lv3"]);
    t.ok(&["lvremove", "lt_fx/lv2"]);
    t.ok(&["lvreduce", "-l", "-1", "lt_fx/lv1"]);
    // The striped LV is kept as lvm2 wrote it.
    vgck_passes(&fx.lvm, "lt_fx");
    same_report(&fx.lvm, &t, &["lvs", "-a", "-o", "+lv_uuid,seg_count,lv_tags,devices", "--units", "s"]);
    fx.lvm.ok("lvextend", &["-L", "+1M", "lt_fx/ours"]);
    same_report(&fx.lvm, &t, &["lvs", "-o", "lv_name,lv_size,seg_count"]);
}

/// `-O` orders rows as lvm2 does: the last `-O` replaces the default order, `-` sorts
/// descending, numbers and sizes compare by value, and rows equal in every key keep lvm2's
/// order (VG by VG, each VG's LVs as its metadata lists them, not by name). Which VG lvm2 takes
/// first when two VGs tie is its cache's order, so no case here ties rows of two VGs.
/// `--aligned` keeps the columns padded when a separator is given.
#[test]
fn sort_and_aligned_match_lvm2() {
    let Some(mut lvm) = lvm2("sort_and_aligned_match_lvm2") else { return };
    let loops = attach_two(&mut lvm, 64 << 20, 96 << 20);
    let d: Vec<&str> = loops.iter().map(|l| l.path.to_str().unwrap()).collect();
    let t = tool_on(&lvm);
    t.ok(&["vgcreate", "lt_sa", d[0]]);
    t.ok(&["vgcreate", "lt_sb", d[1]]);
    // Created out of name order, with equal sizes inside one VG.
    for (vg, lv, size) in [("lt_sa", "zeta", "8M"), ("lt_sa", "alpha", "4M"), ("lt_sa", "mid", "12M")] {
        t.ok(&["lvcreate", "-L", size, "-n", lv, vg]);
    }
    for (vg, lv, size) in [("lt_sa", "kappa", "4M"), ("lt_sb", "beta", "16M"), ("lt_sb", "aa", "20M")] {
        t.ok(&["lvcreate", "-L", size, "-n", lv, vg]);
    }
    t.ok(&["lvextend", "-L", "+4M", "lt_sa/alpha"]);
    let l = "lv_name,vg_name,lv_size";
    for args in [
        &["lvs", "-O", "lv_size", "-o", l, "lt_sa"][..],
        &["lvs", "-O", "-lv_size", "-o", l, "lt_sa"],
        &["lvs", "-O", "-vg_name", "-o", l],
        &["lvs", "-O", "vg_name", "-O", "-lv_name", "-o", l],
        &["lvs", "-O", "+name", "-o", l],
        &["lvs", "-O", "-size,lv_name"],
        &["lvs", "-O", "lv_uuid", "-o", "lv_name", "lt_sa"],
        &["lvs", "--segments", "-O", "-seg_start,lv_name", "-o", "+seg_start", "--units", "s"],
        &["lvs", "-O", "-lv_size", "--reportformat", "json"],
        &["vgs", "-O", "-vg_free"],
        &["vgs", "-O", "lv_count,-vg_name", "-o", "vg_name,lv_count"],
        &["pvs", "-O", "-pv_free"],
        &["pvs", "-O", "pv_size", "-o", "pv_name,pv_size", "--units", "b"],
        &["lvs", "--aligned", "--separator", "|"],
        &["vgs", "--aligned", "--separator", ",", "--units", "k"],
        &["pvs", "--aligned", "--separator", "::", "--noheadings"],
        &["lvs", "--aligned"],
        &["vgdisplay", "--units", "m", "--nosuffix", "lt_sb"],
        &["lvdisplay", "--units", "k", "--nosuffix", "lt_sb/aa"],
    ] {
        same_report(&lvm, &t, args);
    }
    // The orders above differ from the default one, or the cases would prove nothing.
    assert_ne!(t.ok(&["lvs", "-O", "-lv_name", "-o", l]), t.ok(&["lvs", "-o", l]));
    assert_ne!(t.ok(&["lvs", "-O", "-vg_name", "-o", l]), t.ok(&["lvs", "-o", l]));
    // An unknown sort field fails the command, as in lvm2.
    let (ours, theirs) = (t.run(&["lvs", "-O", "bogus"]), lvm.run("lvs", &["-O", "bogus"]));
    assert_eq!(ours.status.code(), theirs.status.code());
    assert!(String::from_utf8_lossy(&ours.stderr).contains("Unrecognised field: bogus"));
}

/// Exit codes and "nothing written" for the same bad commands, lvm2 and lvtool side by side.
#[test]
fn bad_input_exit_codes_match_lvm2() {
    let Some(mut lvm) = lvm2("bad_input_exit_codes_match_lvm2") else { return };
    let file = lvm.scratch.file("a.img", 64 << 20);
    let small = lvm.scratch.file("s.img", 1 << 20);
    let loops = [LoopDev::attach(&file), LoopDev::attach(&small)];
    lvm.devices = loops.iter().map(|l| l.path.clone()).collect();
    let (d, s) = (loops[0].path.to_str().unwrap(), loops[1].path.to_str().unwrap());
    let t = tool_on(&lvm);
    t.ok(&["vgcreate", "bx", d]);
    t.ok(&["lvcreate", "-L", "8M", "-n", "lv1", "bx"]);
    let cases: &[&[&str]] = &[
        &["lvcreate", "-L", "4M", "-n", "bad name", "bx"],
        &["lvcreate", "-L", "4M", "-n", "snapshot1", "bx"],
        &["lvcreate", "-L", "10G", "-n", "big", "bx"],
        &["lvcreate", "-L", "4M", "-n", "lv1", "bx"],
        &["lvcreate", "-L", "4M", "-n", "x", "nosuch"],
        &["lvcreate", "-l", "0", "-n", "z", "bx"],
        &["vgcreate", "bad/vg", s],
        &["vgcreate", "bx", s],
        &["pvcreate", s],
        &["lvextend", "-L", "+10G", "bx/lv1"],
        &["lvreduce", "-L", "-1M", "bx/lv1"],
        &["lvextend", "-L", "4M", "bx/lv1"],
        &["lvremove", "bx/nosuch"],
        &["lvrename", "bx", "nosuch", "other"],
        &["vgs", "nosuch"],
    ];
    let before = [std::fs::read(&file).unwrap(), std::fs::read(&small).unwrap()];
    for args in cases {
        let ours = t.run(args);
        let theirs = lvm.run(args[0], &args[1..]);
        assert_eq!(
            ours.status.code(),
            theirs.status.code(),
            "{args:?}: lvtool said {} / lvm2 said {}",
            String::from_utf8_lossy(&ours.stderr),
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert!(!ours.status.success());
        assert_eq!([std::fs::read(&file).unwrap(), std::fs::read(&small).unwrap()], before, "{args:?} wrote");
    }
}

/// sanlock, or None when it cannot run here and CI is unset.
fn sanlock(test: &str) -> Option<()> {
    let ok = Command::new("sanlock").arg("version").output().is_ok_and(|o| o.status.success());
    if ok {
        return Some(());
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: sanlock is required under CI (apt-get install sanlock)");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: sanlock not installed");
    None
}

fn sanlock_out(args: &[&str]) -> String {
    let out = Command::new("sanlock").args(args).output().expect("run sanlock");
    assert!(out.status.success(), "sanlock {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `sanlock direct dump` rows: (absolute offset, lockspace, resource).
fn dump(path: &str, offset: u64, len: u64) -> Vec<(u64, String, String)> {
    sanlock_out(&["direct", "dump", &format!("{path}:{offset}:{len}")])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.parse().ok()?, f.get(1)?.to_string(), f.get(2)?.to_string()))
        })
        .collect()
}

/// A shared VG made by lvtool, read by real lvm2 (which, without lvmlockd, only reads shared
/// VGs: `--shared` reports work, any change is refused) and by `sanlock direct`.
#[test]
fn shared_vg_made_by_lvtool_read_by_lvm2_and_sanlock() {
    let Some(mut lvm) = lvm2("shared_vg_made_by_lvtool_read_by_lvm2_and_sanlock") else { return };
    let Some(()) = sanlock("shared_vg_made_by_lvtool_read_by_lvm2_and_sanlock") else { return };
    let file = lvm.scratch.file("sh.img", 400 << 20);
    let lp = LoopDev::attach(&file);
    lvm.devices = vec![lp.path.clone()];
    let d = lp.path.to_str().unwrap();
    let t = tool_on(&lvm);
    t.ok(&["vgcreate", "--shared", "lt_sh", d]);
    t.ok(&["lvcreate", "-L", "8M", "-n", "l1", "lt_sh"]);
    t.ok(&["lvcreate", "-L", "4M", "-n", "l2", "lt_sh"]);
    t.ok(&["lvextend", "-L", "+4M", "lt_sh/l1"]);

    let vg_fields = "vg_name,vg_uuid,vg_attr,vg_size,vg_free,vg_lock_type,vg_lock_args,vg_seqno,lv_count";
    let ours = t.rows(&["vgs", "-o", vg_fields, "--units", "s"]);
    assert_eq!(ours[0][5..7], ["sanlock".to_string(), "1.0.0:lvmlock".into()]);
    assert_eq!(ours[0][2], "wz--ns");
    assert_eq!(lvm.report("vgs", &["--shared", "-o", vg_fields, "--units", "s"]), ours);
    let lv_fields = "lv_name,lv_uuid,lv_size,lv_lockargs,seg_count,devices,lv_attr";
    let ours = t.rows(&["lvs", "-a", "-o", lv_fields, "--units", "s", "lt_sh"]);
    assert_eq!(lvm.report("lvs", &["--shared", "-a", "-o", lv_fields, "--units", "s", "lt_sh"]), ours);
    let args: Vec<&str> = ours.iter().map(|r| r[3].as_str()).collect();
    assert_eq!(args, ["1.0.0:70254592", "1.0.0:70254592", "1.0.0:71303168", ""], "l1 has two segments");
    // Without lvmlockd, real lvm2 refuses to change a shared VG (and so to run vgck on it).
    let out = lvm.run("lvcreate", &["-L", "4M", "-n", "x", "lt_sh"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("requires lvmlockd"));

    // The lease area where lvmlockd would find it: the lvmlock LV at PE 0, after pe_start.
    let pe_start: u64 = t.rows(&["pvs", "-o", "pe_start", "--units", "b", "--nosuffix"])[0][0].parse().unwrap();
    let ls = sanlock_out(&["direct", "read_leader", "-s", &format!("lvm_lt_sh:1:{d}:{pe_start}")]);
    assert!(ls.contains("magic 0x12212010") && ls.contains("space_name lvm_lt_sh"), "{ls}");
    assert!(ls.contains("sector_size 512") && ls.contains("io_timeout 10"), "{ls}");
    let m = 1u64 << 20;
    let rows = dump(d, pe_start + 65 * m, 6 * m);
    let uuids: Vec<String> = [&ours[0], &ours[2]].iter().map(|r| r[1].clone()).collect();
    let expect = vec![
        (pe_start + 65 * m, "lvm_lt_sh".to_string(), "GLLK".to_string()),
        (pe_start + 66 * m, "lvm_lt_sh".into(), "VGLK".into()),
        (pe_start + 67 * m, "lvm_lt_sh".into(), uuids[0].clone()),
        (pe_start + 68 * m, "lvm_lt_sh".into(), uuids[1].clone()),
        (pe_start + 69 * m, "lvm_lt_sh".into(), "#unused".into()),
        (pe_start + 70 * m, "lvm_lt_sh".into(), "#unused".into()),
    ];
    assert_eq!(rows, expect);
    let vgl = sanlock_out(&["direct", "read_leader", "-r", &format!("lvm_lt_sh:VGLK:{d}:{}", pe_start + 66 * m)]);
    assert!(vgl.contains("magic 0x06152010") || vgl.contains("magic 0x6152010"), "{vgl}");
    assert!(vgl.contains("num_hosts 2000"), "{vgl}");
    // The last slot of the 256 MiB LV is #unused too.
    assert_eq!(dump(d, pe_start + 255 * m, m), vec![(pe_start + 255 * m, "lvm_lt_sh".into(), "#unused".into())]);

    // lvremove frees the slot as lvmlockd's free_lv does.
    t.ok(&["lvremove", "lt_sh/l1"]);
    assert_eq!(dump(d, pe_start + 67 * m, m), vec![(pe_start + 67 * m, "lvm_lt_sh".into(), "#unused".into())]);
    t.ok(&["vgremove", "-f", "lt_sh"]);
    assert!(lvm.report("vgs", &["--shared"]).is_empty());
}

/// Real lvm2 changing a shared VG made by lvtool, through `lvmlockd -T` (common::lvmlockd_t):
/// the metadata side only; leases are checked with `sanlock direct` above.
#[test]
fn shared_vg_made_by_lvtool_changed_by_lvm2_through_lvmlockd() {
    let test = "shared_vg_made_by_lvtool_changed_by_lvm2_through_lvmlockd";
    let Some(mut lvm) = lvm2(test) else { return };
    if !lvmlockd_t::available(test) {
        return;
    }
    let file = lvm.scratch.file("lk.img", 400 << 20);
    let lp = LoopDev::attach(&file);
    lvm.devices = vec![lp.path.clone()];
    let d = lp.path.to_str().unwrap().to_string();
    let t = tool_on(&lvm);
    t.ok(&["vgcreate", "--shared", "lt_lk", &d]);
    let pe_start: u64 = t.rows(&["pvs", "-o", "pe_start", "--units", "b", "--nosuffix"])[0][0].trim().parse().unwrap();
    lvmlockd_t::run(
        &lvm,
        "lt_lk",
        &lp.path,
        pe_start,
        256 << 20,
        "lvm lvcreate $D -an -L 8M -n real lt_lk\nlvm lvextend $D -L +4M lt_lk/real\nlvm vgck $D lt_lk",
    );
    // lvtool reads lvm2's change: the LV, its size, and the lock_args lvmlockd handed out.
    assert_eq!(
        t.rows(&["lvs", "-o", "lv_name,lv_size,lv_lockargs,lv_attr", "lt_lk"]).last().unwrap(),
        &["real", "12.00m", "1.0.0:70254592", "-wi-XX----"]
    );
    assert_eq!(t.rows(&["vgs", "-o", "vg_attr,vg_lock_args", "lt_lk"]), vec![vec!["wz--ns", "1.0.0:lvmlock"]]);
    t.ok(&["lvextend", "-L", "+4M", "lt_lk/real"]);
    assert_eq!(lvm.report("lvs", &["--shared", "-o", "lv_size", "lt_lk/real"]), vec![vec!["16.00m"]]);
}
