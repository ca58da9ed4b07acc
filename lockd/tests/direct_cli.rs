//! `lockd direct` as a whole process, side by side with `sanlock direct` where it is installed.
//!
//! These tests live in the lockd package because only there Cargo builds the lockd binary
//! before the tests and hands over its path (`CARGO_BIN_EXE_lockd`); a test in another package
//! would have to guess target/<profile>/lockd and could run a stale or missing binary.

use sanlvm_tests::{number_after, require_sanlock, sanlock_direct, Ran, Scratch};

const MIB: u64 = 1 << 20;

fn lockd(args: &[&str]) -> Ran {
    let mut v = vec!["direct"];
    v.extend_from_slice(args);
    sanlvm_tests::run(env!("CARGO_BIN_EXE_lockd"), &v)
}

fn lockd_ok(args: &[&str]) -> String {
    let r = lockd(args);
    assert!(r.ok(), "lockd direct {args:?} failed: {r:?}");
    r.stdout
}

fn sanlock_ok(args: &[&str]) -> String {
    let r = sanlock_direct(args);
    assert!(r.ok(), "sanlock direct {args:?} failed: {r:?}");
    r.stdout
}

/// A failure: the given exit code, one `lockd: ...` line on stderr containing `needle`.
fn assert_fails(r: &Ran, code: i32, needle: &str) {
    assert_eq!(r.code, Some(code), "{r:?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {r:?}");
    assert!(lines[0].starts_with("lockd: ") && lines[0].contains(needle), "{needle:?} not in {:?}", lines[0]);
}

/// A scratch file with a lockspace at 0 and resources R1.. at 1, 2, .. areas (512/1M unless
/// sizes are given), all written by lockd with io_timeout 1.
fn setup(tag: &str, resources: u64, sizes: &[&str]) -> Scratch {
    let area = if sizes.contains(&"8M") { 8 * MIB } else { MIB };
    let f = Scratch::new(tag, (resources + 1) * area);
    let mut args = vec!["init".to_string(), "-s".into(), format!("LS:0:{}:0", f.p()), "-o".into(), "1".into()];
    args.extend(sizes.iter().map(|s| s.to_string()));
    lockd_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for r in 1..=resources {
        let mut args = vec!["init".to_string(), "-r".into(), format!("LS:R{r}:{}:{}", f.p(), r * area)];
        args.extend(sizes.iter().map(|s| s.to_string()));
        lockd_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    f
}

#[test]
fn help_and_unknown_actions() {
    let r = sanlvm_tests::run(env!("CARGO_BIN_EXE_lockd"), &["--help"]);
    assert!(r.ok() && r.stdout.contains("lockd direct acquire -r RESOURCE"), "{r:?}");
    assert_fails(&lockd(&["frobnicate"]), 2, "unknown");
    assert_fails(&sanlvm_tests::run(env!("CARGO_BIN_EXE_lockd"), &["bogus"]), 2, "unknown command");
}

#[test]
fn malformed_arguments_change_nothing() {
    let f = setup("badargs", 1, &[]);
    let p = f.p();
    let before = f.all();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["init".into(), "-s".into(), format!("LS:0:{p}")], "invalid LOCKSPACE"),
        (vec!["init".into(), "-s".into(), format!("LS:0:{p}:0:0")], "invalid LOCKSPACE"),
        (vec!["init".into(), "-s".into(), format!(":0:{p}:0")], "invalid LOCKSPACE"),
        (vec!["init".into(), "-s".into(), format!("{}:0:{p}:0", "x".repeat(49))], "invalid name"),
        (vec!["init".into(), "-s".into(), format!("LS:0:{p}:12x")], "not a decimal number"),
        (vec!["init".into(), "-s".into(), format!("LS:0:{p}:100")], "not a multiple of 512"),
        (vec!["init".into(), "-r".into(), format!("LS:R1:{p}")], "invalid RESOURCE"),
        (vec!["init".into(), "-r".into(), format!("LS::{p}:0")], "invalid RESOURCE"),
        (vec!["init".into(), "-r".into(), format!("LS:R1:{p}:{MIB}:EX")], "invalid RESOURCE"),
        (
            vec![
                "init".into(),
                "-r".into(),
                format!("LS:R1:{p}:{MIB}"),
                "-Z".into(),
                "512".into(),
                "-A".into(),
                "8M".into(),
            ],
            "invalid sector size 512 with align 8 MiB",
        ),
        (
            vec!["init".into(), "-r".into(), format!("LS:R1:{p}:{MIB}"), "-n".into(), "2001".into()],
            "num_hosts 2001 exceeds 2000",
        ),
        (vec!["init".into(), "-s".into(), format!("LS:0:{p}:0"), "-o".into(), "0".into()], "io_timeout 0"),
        (vec!["acquire".into(), "-r".into(), format!("LS:R1:{p}:{MIB}"), "-i".into(), "1".into()], "needs -g"),
        (
            vec![
                "acquire".into(),
                "-r".into(),
                format!("LS:R1:{p}:{MIB}"),
                "-i".into(),
                "1".into(),
                "-g".into(),
                "1".into(),
                "-s".into(),
                format!("OTHER:0:{p}:0"),
            ],
            "not the resource's lockspace",
        ),
        (vec!["acquire_id".into(), "-s".into(), format!("LS:1:{p}:0"), "-e".into(), "a:b".into()], "invalid name"),
        (vec!["dump".into(), format!("{p}:zz")], "invalid dump location"),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails(&lockd(&args), 2, needle);
    }
    assert!(f.all() == before, "a rejected command wrote to the disk");
}

#[test]
fn host_id_out_of_range() {
    let f = setup("hostid", 1, &[]);
    let p = f.p();
    let before = f.all();
    for h in ["0", "2001"] {
        assert_fails(
            &lockd(&["acquire_id", "-s", &format!("LS:{h}:{p}:0"), "-e", "n"]),
            2,
            &format!("host_id {h} is outside 1..=2000"),
        );
        assert_fails(&lockd(&["read_leader", "-s", &format!("LS:{h}:{p}:0")]), 2, "outside 1..=2000");
        let r = lockd(&["acquire", "-r", &format!("LS:R1:{p}:{MIB}"), "-i", h, "-g", "1"]);
        assert_fails(&r, 2, &format!("host_id {h} is outside 1..=2000"));
        assert_fails(
            &lockd(&["release", "-r", &format!("LS:R1:{p}:{MIB}"), "-i", h, "-g", "1"]),
            2,
            "outside 1..=2000",
        );
    }
    assert!(f.all() == before);

    // 4K sectors with 1M areas hold 250 hosts only.
    let f = setup("hostid4k", 1, &["-Z", "4096", "-A", "1M"]);
    let before = f.all();
    let r = lockd(&["acquire_id", "-s", &format!("LS:251:{}:0", f.p()), "-e", "n"]);
    assert_fails(&r, 1, "host_id 251 is outside 1..=250");
    let r = lockd(&["acquire", "-r", &format!("LS:R1:{}:{MIB}", f.p()), "-i", "251", "-g", "1"]);
    assert_fails(&r, 1, "exceeds 250");
    assert!(f.all() == before);
}

#[test]
fn corrupt_records_are_reported_and_nothing_is_written() {
    let f = setup("corrupt", 1, &[]);
    let p = f.p();
    lockd_ok(&["acquire_id", "-s", &format!("LS:1:{p}:0"), "-e", "node1", "-o", "1"]);
    let res = format!("LS:R1:{p}:{MIB}");
    lockd_ok(&["acquire", "-r", &res, "-i", "1", "-g", "1"]);

    // One flipped bit in the resource leader's owner_generation.
    let mut b = f.bytes(MIB + 40, 1);
    b[0] ^= 0x04;
    f.poke(MIB + 40, &b);
    let before = f.all();
    for args in [
        vec!["acquire", "-r", &res, "-i", "2", "-g", "1"],
        vec!["acquire", "-r", &res, "-i", "1", "-g", "1"],
        vec!["release", "-r", &res, "-i", "1", "-g", "1"],
    ] {
        assert_fails(&lockd(&args), 1, "checksum");
    }
    let r = lockd(&["read_leader", "-r", &res]);
    assert_fails(&r, 1, "checksum");
    assert!(r.stdout.starts_with("read_leader done -229\n"), "{r:?}");
    let r = lockd(&["dump", p]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.lines().last().unwrap().contains("checksum"), "{r:?}");
    assert!(f.all() == before, "a command wrote over a corrupt record");

    // The same for the delta lease of host 1 (its io_timeout field is not covered by the
    // checksum, so flip a byte of owner_id).
    let mut b = f.bytes(32, 1);
    b[0] ^= 0x10;
    f.poke(32, &b);
    let before = f.all();
    let ls = format!("LS:1:{p}:0");
    for args in [
        vec!["acquire_id", "-s", &ls, "-e", "node1", "-o", "1"],
        vec!["renew_id", "-s", &ls, "-e", "node1"],
        vec!["release_id", "-s", &ls, "-e", "node1"],
        vec!["read_leader", "-s", &ls],
    ] {
        assert_fails(&lockd(&args), 1, "checksum");
    }
    assert!(f.all() == before);
    if require_sanlock("corrupt_records_are_reported_and_nothing_is_written") {
        // Same report as sanlock's, field for field.
        assert_eq!(lockd(&["read_leader", "-s", &ls]).stdout, sanlock_direct(&["read_leader", "-s", &ls]).stdout);
        assert_eq!(lockd(&["read_leader", "-r", &res]).stdout, sanlock_direct(&["read_leader", "-r", &res]).stdout);
    }

    // A never-initialised area is not free either.
    let blank = Scratch::new("blank", 2 * MIB);
    let r = lockd(&["acquire_id", "-s", &format!("LS:1:{}:0", blank.p()), "-e", "n"]);
    assert_fails(&r, 1, "bad magic 0x00000000");
    let r = lockd(&["acquire", "-r", &format!("LS:R1:{}:{MIB}", blank.p()), "-i", "1", "-g", "1"]);
    assert_fails(&r, 1, "bad magic");
    assert!(blank.all().iter().all(|&x| x == 0));
}

#[test]
fn delta_lease_offline_cycle() {
    let f = setup("delta-cli", 0, &[]);
    let ls = format!("LS:3:{}:0", f.p());
    let out = lockd_ok(&["acquire_id", "-s", &ls, "-e", "node-a", "-o", "1"]);
    assert_eq!(number_after(&out, "generation"), Some(1), "{out}");
    let out = lockd_ok(&["renew_id", "-s", &ls, "-e", "node-a"]);
    assert_eq!(number_after(&out, "generation"), Some(1), "{out}");
    let before = f.all();
    assert_fails(&lockd(&["renew_id", "-s", &ls, "-e", "node-b"]), 1, "held by host name \"node-a\"");
    assert_fails(&lockd(&["release_id", "-s", &ls, "-e", "node-b"]), 1, "held by host name \"node-a\"");
    assert_fails(&lockd(&["renew_id", "-s", &format!("LS:4:{}:0", f.p()), "-e", "node-a"]), 1, "not ours");
    assert!(f.all() == before);
    lockd_ok(&["release_id", "-s", &ls, "-e", "node-a"]);
    assert_fails(&lockd(&["renew_id", "-s", &ls, "-e", "node-a"]), 1, "not held");
    let rl = lockd_ok(&["read_leader", "-s", &ls]);
    assert!(rl.contains("\ntimestamp 0\n") && rl.contains("\nresource_name node-a\n"), "{rl}");
    // Released: another name takes it after 2N only.
    let out = lockd_ok(&["acquire_id", "-s", &ls, "-e", "node-b", "-o", "1"]);
    assert_eq!(number_after(&out, "generation"), Some(2), "{out}");
}

#[test]
fn init_matches_sanlock_byte_for_byte() {
    if !require_sanlock("init_matches_sanlock_byte_for_byte") {
        return;
    }
    let cases: [(&str, &[&str]); 6] = [
        ("-s LS:0:{}:{a}", &[]),
        ("-s LS:0:{}:{a}", &["-o", "5"]),
        ("-s LS:0:{}:{a}", &["-Z", "4096", "-A", "8M"]),
        ("-r LS:RES:{}:{a}", &[]),
        ("-r LS:RES:{}:{a}", &["-Z", "4096", "-A", "2M", "-n", "10"]),
        ("-r LS:RES:{}:{a}", &["-z", "1"]),
    ];
    for (spec, opts) in cases {
        let a = if opts.contains(&"4096") { 8 * MIB } else { MIB };
        let (ours, theirs) = (Scratch::new("init-ours", 2 * a), Scratch::new("init-theirs", 2 * a));
        for (f, tool) in [(&ours, "lockd"), (&theirs, "sanlock")] {
            let spec = spec.replace("{}", f.p()).replace("{a}", &a.to_string());
            let (what, loc) = spec.split_once(' ').unwrap();
            let mut args = vec!["init", what, loc];
            args.extend_from_slice(opts);
            if tool == "lockd" {
                lockd_ok(&args);
            } else {
                sanlock_ok(&args);
            }
        }
        let (mut o, mut t) = (ours.all(), theirs.all());
        if opts.contains(&"-z") {
            // A clear init stamps write_timestamp with the writer's monotime (sanlock 3.8.5);
            // ours leaves it 0. Informational only: not checksummed, and never read.
            o[a as usize + 192..a as usize + 200].fill(0);
            t[a as usize + 192..a as usize + 200].fill(0);
        }
        assert!(o == t, "init {spec} {opts:?}: lockd and sanlock wrote different bytes");
    }
}

/// After a mix of operations by both tools, every read-only report of lockd is the same text
/// as sanlock's.
#[test]
fn reports_match_sanlock() {
    if !require_sanlock("reports_match_sanlock") {
        return;
    }
    for sizes in [&[][..], &["-Z", "4096", "-A", "8M"][..]] {
        let area = if sizes.is_empty() { MIB } else { 8 * MIB };
        let f = setup("reports", 3, sizes);
        let p = f.p();
        let ls = |h: u64| format!("LS:{h}:{p}:0");
        let res = |r: u64| format!("LS:R{r}:{p}:{}", r * area);
        let out = lockd_ok(&["acquire_id", "-s", &ls(1), "-e", "lockd-node", "-o", "1"]);
        let g1 = number_after(&out, "generation").unwrap().to_string();
        sanlock_ok(&["acquire_id", "-s", &ls(2), "-e", "sanlock-node", "-o", "1"]);
        lockd_ok(&["acquire", "-r", &res(1), "-i", "1", "-g", &g1]);
        sanlock_ok(&["acquire", "-r", &res(2), "-i", "2", "-g", "1"]);
        lockd_ok(&["acquire", "-r", &format!("{}:SH", res(3)), "-i", "1", "-g", &g1]);
        for extra in [&[][..], &["-f", "1"][..], &["-f", "2"][..]] {
            let mut args = vec!["dump", p];
            args.extend_from_slice(extra);
            assert_eq!(lockd_ok(&args), sanlock_ok(&args), "dump {extra:?}");
        }
        let ranged = format!("{p}:{area}:{}", 2 * area);
        assert_eq!(lockd_ok(&["dump", &ranged]), sanlock_ok(&["dump", &ranged]));
        for h in [1, 2, 3] {
            assert_eq!(lockd_ok(&["read_leader", "-s", &ls(h)]), sanlock_ok(&["read_leader", "-s", &ls(h)]));
        }
        for r in [1, 2, 3] {
            assert_eq!(lockd_ok(&["read_leader", "-r", &res(r)]), sanlock_ok(&["read_leader", "-r", &res(r)]));
        }
    }
}

/// lockd (host 1) and sanlock (host 2) alternate on one resource through the command lines;
/// each step's loser must fail and leave the leader as it was.
#[test]
fn cli_paxos_contention_with_sanlock() {
    if !require_sanlock("cli_paxos_contention_with_sanlock") {
        return;
    }
    let f = setup("cli-contend", 1, &[]);
    let p = f.p();
    let res = format!("LS:R1:{p}:{MIB}");
    let ls0 = format!("LS:0:{p}:0");
    let owner = || {
        let rl = lockd_ok(&["read_leader", "-r", &res]);
        (number_after(&rl, "owner_id").unwrap(), number_after(&rl, "timestamp").unwrap())
    };
    let g1 = number_after(
        &lockd_ok(&["acquire_id", "-s", &format!("LS:1:{p}:0"), "-e", "lockd-node", "-o", "1"]),
        "generation",
    )
    .unwrap()
    .to_string();
    for round in 0..5 {
        lockd_ok(&["acquire", "-r", &res, "-i", "1", "-g", &g1, "-s", &ls0]);
        sanlock_ok(&["acquire_id", "-s", &format!("LS:2:{p}:0"), "-o", "1", "-e", "sanlock-node"]);
        let rl = sanlock_ok(&["read_leader", "-s", &format!("LS:2:{p}:0")]);
        let g2 = number_after(&rl, "owner_generation").unwrap().to_string();
        let r = sanlock_direct(&["acquire", "-r", &res, "-i", "2", "-g", &g2]);
        assert!(!r.ok(), "round {round}: sanlock won while lockd held: {r:?}");
        assert_eq!(owner().0, 1);
        lockd_ok(&["release", "-r", &res, "-i", "1", "-g", &g1]);
        assert_eq!(owner().1, 0, "released");
        sanlock_ok(&["acquire", "-r", &res, "-i", "2", "-g", &g2]);
        assert_eq!(owner().0, 2);
        // Without -s lockd, like sanlock, cannot judge the owner and must not write anything.
        let before = f.all();
        assert_fails(&lockd(&["acquire", "-r", &res, "-i", "1", "-g", &g1]), 1, "liveness is unknown");
        assert!(f.all() == before, "round {round}: a failed acquire wrote");
        // With -s it sees host 2's live delta lease.
        assert_fails(&lockd(&["acquire", "-r", &res, "-i", "1", "-g", &g1, "-s", &ls0]), 1, "held by host 2");
        assert!(f.all() == before, "round {round}");
        // Releasing as someone else is refused.
        assert_fails(&lockd(&["release", "-r", &res, "-i", "1", "-g", &g1]), 1, "held by host_id 2");
        assert!(f.all() == before, "round {round}");
        sanlock_ok(&["release_id", "-s", &format!("LS:2:{p}:0")]);
    }
}
