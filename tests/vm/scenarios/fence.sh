# shellcheck shell=bash
# fence: a host whose lockd stops renewing is reset by its watchdog before another host can
# take its LV, and the other host takes it once host_dead has passed (guest/fence.sh). VM A
# (host_id 1) holds fv/lv1 active and keeps writing to it; its lockd is frozen with SIGSTOP.
# VM B (host_id 2) tries -aey every second. N=2, W=10: host_dead = 8N+W = 26 s.
#
# Every time is on the host's clock: QMP event times, mtimes of files the guests write to the
# shared directory, and lockd/wdmd log lines (guest CLOCK_MONOTONIC) converted with offsets
# measured by clock marks (guest uptime around a file write whose mtime the host sets).
FENCE_N=2
FENCE_W=10
scenario() {
    build_lockd
    local img
    img=$(new_disk shared0 512M)
    boot_vm vmA "$img" fence.sh A
    boot_vm vmB "$img" fence.sh B
    wait_vms 300 vmA vmB
    if [ "$(guest_result vmB)" != PASS ] || [ "${VM_RC[vmA]}" != 255 ]; then
        daemon_log_tail vmA
        daemon_log_tail vmB
    fi
    [ -e "$SHARED/a-frozen" ] || { expect_guest_pass vmA; fail "A never froze its lockd (vmA: $(guest_result vmA))"; }
    [ "${VM_RC[vmA]}" = 255 ] || fail "vmA was not reset: vng status ${VM_RC[vmA]}, $(guest_result vmA); see $SCEN_DIR/vmA.log"
    [ "$(qemu_rc vmA)" = 0 ] || fail "vmA's QEMU ended with status $(qemu_rc vmA), not 0 (reset)"
    local wd reset
    wd=$(qmp_event_time vmA WATCHDOG action=reset) || fail "no QMP WATCHDOG reset event for vmA (events: $(qmp_events vmA))"
    reset=$(qmp_event_time vmA SHUTDOWN reason=guest-reset) || fail "no QMP SHUTDOWN guest-reset for vmA (events: $(qmp_events vmA))"
    expect_guest_pass vmB
    local report
    report=$(fence_check "$wd" "$reset") || fail "fence: $report"
    echo "$report"
    timing "$report"
}

# fence_check WATCHDOG_T RESET_T: the ordering assertions; prints the measured times.
fence_check() {
    local offa offb0 offb1
    offa=$(guest_clock_offset vmA alive) || offa=$(guest_clock_offset vmA start) || { echo "no clock mark of vmA"; return 1; }
    offb0=$(guest_clock_offset vmB b0) && offb1=$(guest_clock_offset vmB b1) || { echo "no clock marks of vmB"; return 1; }
    "$PY" - "$SHARED" "$1" "$2" "$FENCE_N" "$FENCE_W" "$offa" "$offb0" "$offb1" "$(guest_clock_offset vmA start)" <<'PYEOF'
import glob, os, re, sys
shared, t_wd, t_reset, N, W = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
off_a, unc_a = map(float, sys.argv[6].split())
off_b0, unc_b0 = map(float, sys.argv[7].split())
off_b1, unc_b1 = map(float, sys.argv[8].split())
off_a0 = float(sys.argv[9].split()[0]) if sys.argv[9] else off_a
host_dead = 8 * N + W
interval = 2 if 10 <= W < 30 else (1 if W < 10 else 5)  # wdmd's test interval for W
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)
mtime = lambda p: os.stat(p).st_mtime
t_frozen = mtime(f"{shared}/a-frozen")
frozen_mono = float(open(f"{shared}/a-frozen").read().split()[1])
t_alive = mtime(f"{shared}/a-alive")
alive_n = int(open(f"{shared}/a-alive").read().split()[0])
# B's attempts: start = mtime of b-try.I, end = mtime of b-res.I.
tries = []
for p in glob.glob(f"{shared}/b-try.*"):
    i = int(p.rsplit(".", 1)[1])
    res = f"{shared}/b-res.{i}"
    if os.path.exists(res):
        tries.append((i, mtime(p), mtime(res), open(res).read().split()[0]))
tries.sort()
oks = [t for t in tries if t[3] == "ok"]
check(len(oks) == 1 and oks[0] == tries[-1], f"B's attempts: {[(t[0], t[3]) for t in tries]}")
ok = oks[0] if oks else tries[-1]
# Guest CLOCK_MONOTONIC -> host time.
drift_b = off_b1 - off_b0
check(abs(drift_b) < 0.5, f"vmB's clock drifted {drift_b:+.3f} s against the host's during the test")
drift_a = off_a - off_a0
check(abs(drift_a) < 0.5, f"vmA's clock drifted {drift_a:+.3f} s against the host's during the test")
def last_mono(path, pat):
    v = None
    for l in open(path, errors="replace"):
        m = re.search(pat, l)
        if m:
            v = m
    return v
# B's lockd: the grant of LV fv/lv1.
m = last_mono(f"{shared}/vmB.lockd.log", r"LV fv/lv1 held ex \(persistent\) mono_ms=(\d+)")
t_grant = int(m.group(1)) / 1000 + off_b1 if m else None
check(t_grant is not None, "B's lockd logged no grant of fv/lv1")
# A's lockd: the last renewal before the freeze (debug line: renewed in DURATION mono_ms=).
def dur(s):
    m = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", s)
    return float(m.group(1)) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1}[m.group(2)] if m else 0
last_renew_start = None
renewals = 0
for l in open(f"{shared}/vmA.lockd.log", errors="replace"):
    m = re.search(r"lvm_fv: renewed in (\S+) mono_ms=(\d+)", l)
    if m and int(m.group(2)) / 1000 <= frozen_mono:
        renewals += 1
        last_renew_start = int(m.group(2)) / 1000 - dur(m.group(1)) + off_a
check(renewals > 0, "A's lockd logged no renewal before the freeze")
# A's wdmd: when it stopped petting.
m = last_mono(f"{shared}/vmA.wdmd.log", r"petting stopped.* now=([\d.]+)")
t_stop_pet = float(m.group(1)) + off_a if m else None
check(t_stop_pet is not None, "A's wdmd never logged that it stopped petting")
refused_frozen = sum(1 for t in tries if t[3] == "refused" and t[1] >= t_frozen)

# 1. The watchdog, not something else, ended A: WATCHDOG then SHUTDOWN, after the freeze,
#    8N-2N-2*interval+W .. 8N+W after it (the last renewal was up to 2N before the freeze).
check(t_wd <= t_reset, f"QMP WATCHDOG at {t_wd} after SHUTDOWN at {t_reset}")
d_reset = t_reset - t_frozen
check(8 * N - 2 * N - 2 * interval + W - 1 <= d_reset <= host_dead + 3,
      f"reset {d_reset:.1f} s after the freeze, expected {8*N - 2*N - 2*interval + W - 1}..{host_dead + 3}")
# 2. A was alive and writing to the LV until shortly before the reset (the danger is real).
check(t_alive > t_frozen + 8 * N and t_alive <= t_reset + 0.5,
      f"A's last sign of life {t_alive - t_frozen:.1f} s after the freeze, reset at {d_reset:.1f} s")
#    B, once granted, reads A's last record on the LV: the one A wrote last (or the one after,
#    whose write A started but did not report), and no later write.
m = re.search(r"record (\d+),", open(f"{shared}/b-saw").read())
saw_n = int(m.group(1)) if m else None
check(saw_n in (alive_n, alive_n + 1), f"B reads A's record {saw_n} on the LV, A reported {alive_n} last")
# 3. B kept trying while A was frozen and was refused until A was reset.
check(refused_frozen >= 3, f"only {refused_frozen} refused attempts of B after the freeze")
last_refused = max((t for t in tries if t[3] == "refused"), key=lambda t: t[1], default=None)
check(last_refused is not None and last_refused[1] >= t_frozen + 8 * N - 2 * N,
      "B made no attempt after A's lease had expired (8N after its last renewal) and before A's reset")
for i, s, e, r in tries:
    if e < t_reset:
        check(r == "refused", f"B's attempt {i} ended ({r}) at {e - t_frozen:.1f} s, before A's reset at {d_reset:.1f} s")
# 4. The reset precedes B's grant (lockd's decision and the end of lvchange), and A's last sign
#    of life too.
if t_grant is not None:
    check(t_grant > t_reset + unc_b1, f"B's lockd granted fv/lv1 {t_grant - t_reset:+.2f} s after A's reset (uncertainty {unc_b1:.2f})")
    check(t_grant > t_alive, "B was granted before A's last write")
check(ok[2] > t_reset, f"B's -aey returned {ok[2] - t_reset:+.2f} s after A's reset")
# 5. ... and comes after host_dead: 8N+W after A's last renewal (started), and after wdmd's
#    decision plus W.
if last_renew_start is not None and t_grant is not None:
    check(t_grant >= last_renew_start + host_dead - unc_a - unc_b1,
          f"B granted {t_grant - last_renew_start:.2f} s after A's last renewal began, host_dead is {host_dead}")
    check(t_grant <= last_renew_start + host_dead + 2 * N + 10,
          f"B granted only {t_grant - last_renew_start:.2f} s after A's last renewal (host_dead {host_dead})")
if errors:
    print("; ".join(errors))
    sys.exit(1)
rel = lambda t: f"{t - t_frozen:+.1f}"
print(f"fence OK (host_dead {host_dead} s): relative to the freeze: last renewal {rel(last_renew_start)} s, "
      f"wdmd stopped petting {rel(t_stop_pet)} s, A's last write {rel(t_alive)} s (record {alive_n}, B reads {saw_n}), "
      f"WATCHDOG {rel(t_wd)} s, SHUTDOWN {rel(t_reset)} s, B granted {rel(t_grant)} s "
      f"(lvchange returned {rel(ok[2])} s; {refused_frozen} refusals after the freeze); "
      f"reset->grant {t_grant - t_reset:.2f} s, last renewal->grant {t_grant - last_renew_start:.2f} s; "
      f"clock offset uncertainty A {unc_a:.3f} B {unc_b1:.3f} s, drift A {drift_a:+.3f} B {drift_b:+.3f} s")
PYEOF
}
