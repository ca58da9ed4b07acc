//! The shared-VG flow on one machine: three "hosts", each a lockd process with its own host_id,
//! config and run_dir, and lvtool with `--driverloaded n` pointed at one host's config, all on
//! one shared file. The lockd processes are this test binary re-run as a daemon (see
//! `lockd_daemon_entry`), so that they are real processes built from the current lockd code.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Scratch;

const DAEMON_ENV: &str = "SANLVM_TEST_LOCKD_CONFIG";

/// Not a test: the entry point of the lockd processes the tests start.
#[test]
fn lockd_daemon_entry() {
    let Some(cfg) = std::env::var_os(DAEMON_ENV) else { return };
    lockd::init_logging();
    let cfg = lockd::config::Config::load(Some(Path::new(&cfg))).unwrap();
    lockd::run_daemon(cfg, Arc::new(lockd::fence::NoDmFencer)).unwrap();
}

struct Host {
    id: u64,
    config: PathBuf,
    run_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Host {
    fn new(s: &Scratch, id: u64, devices: &[&Path]) -> Host {
        let dir = s.dir.join(format!("host{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("lvmlocal.toml");
        let run_dir = dir.join("run");
        let devs: Vec<String> = devices.iter().map(|d| format!("{:?}", d.display().to_string())).collect();
        std::fs::write(
            &config,
            format!(
                "host_id = {id}\nhost_name = \"node{id}\"\nio_timeout = 1\nwatchdog_fire_timeout = 3\n\
                 use_watchdog = false\nrun_dir = \"{}\"\ndevices = [{}]\n",
                run_dir.display(),
                devs.join(", ")
            ),
        )
        .unwrap();
        Host { id, config, run_dir, log: dir.join("lockd.log"), child: None }
    }

    fn start(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["lockd_daemon_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env(DAEMON_ENV, &self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = Instant::now();
        while lockd::client::Client::connect(&self.run_dir).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "lockd {} did not start", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn lvtool(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lvtool"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--driverloaded")
            .arg("n")
            .output()
            .unwrap()
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.lvtool(args);
        assert!(
            o.status.success(),
            "host {}: lvtool {args:?}: {}\n{}{}",
            self.id,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs and asserts failure (exit 5) with `needle` in stderr; returns stderr.
    fn fails(&self, needle: &str, args: &[&str]) -> String {
        let o = self.lvtool(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(5), "host {}: lvtool {args:?} should fail: {err}", self.id);
        assert!(err.contains(needle), "host {}: lvtool {args:?}: {needle:?} not in {err}", self.id);
        err
    }

    fn rows(&self, args: &[&str]) -> Vec<Vec<String>> {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--noheadings", "--separator", "|"]);
        self.ok(&a).lines().map(|l| l.trim().split('|').map(String::from).collect()).collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("host {} lockd log:\n{}", self.id, std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// Runs `f` on every host at once.
fn parallel<T: Send>(hosts: &[Host], f: impl Fn(&Host) -> T + Sync) -> Vec<T> {
    std::thread::scope(|s| {
        let hs: Vec<_> = hosts.iter().map(|h| s.spawn(|| f(h))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn shared_vg_on_three_hosts() {
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
    let s = Scratch::new("lockd-multi");
    let disks: Vec<PathBuf> = (0..3).map(|i| s.file(&format!("d{i}.img"), 300 << 20)).collect();
    let paths: Vec<&Path> = disks.iter().map(|p| p.as_path()).collect();
    let mut h = Host::new(&s, 7, &paths);
    h.start();
    for (i, d) in disks.iter().enumerate() {
        h.ok(&["vgcreate", "--shared", &format!("mv{i}"), d.to_str().unwrap()]);
        if i == 0 {
            // Later vgcreates need the global lock, which lives in mv0.
            h.ok(&["vgchange", "--lock-start", "mv0"]);
        }
    }
    let out = h.ok(&["vgchange", "--lock-start"]);
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

fn lockd_status(h: &Host) -> String {
    let mut c = lockd::client::Client::connect(&h.run_dir).unwrap();
    match c.call(&lockd::protocol::Request::Status).unwrap() {
        lockd::protocol::Response::Status(s) => lockd::status::render(&s),
        other => panic!("{other:?}"),
    }
}
