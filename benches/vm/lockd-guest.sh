#!/usr/bin/env bash
# Guest side of benches/vm-lockd.sh (run in the VM by tests/vm/lib.sh:boot_vm): times our stack
# (wdmd + `lockd daemon` + lvtool) against the real one (sanlock's wdmd + `sanlock daemon` +
# lvmlockd + lvm2's `lvm`, use_lvmlockd=1) on two shared VGs the host made with lvtool, one per
# stack, each on its own disk (serials benchours and benchlvm; VG names = serials).
#
# usage (by the host): lockd-guest.sh MODE BOOT NLV ROUNDS SINGLE VGROUNDS N W UDEV
#   MODE    fresh: ROUNDS phases per stack, the order alternating each round; a phase starts the
#                  stack's daemons, times `vgchange --lock-start VG` (lockspace free: 2N
#                  expected), SINGLE rounds of `lvchange -aey VG/lv1` / `lvchange -an VG/lv1`,
#                  in the first VGROUNDS rounds `vgchange -aey VG` / `vgchange -an VG` (all NLV
#                  LVs), `vgchange --lock-stop VG`, then stops the daemons.
#           unclean: this boot follows a hard kill of the VM while both lockspaces were joined:
#                  per stack (order alternating with BOOT) start the daemons and time the
#                  lock-start (sanlock: 8N+W+2N expected; ours: 2N, boot-id rule).
#           With `kill` appended (fresh-kill, unclean-kill): end by starting both stacks at
#           once (ours on the i6300esb, the real one on softdog: each its own watchdog device),
#           joining both lockspaces, then signalling `kill-BOOT`; the host then quits QEMU.
#           Otherwise both stacks are stopped cleanly and the script passes.
#   BOOT    number of this boot (1, 2...), the key of its results
#   N, W    io_timeout and watchdog fire timeout (sanlock 3.8.5's W is fixed at 60)
#   ONLY    ours|lvm2: run that stack only (for debugging); empty: both
#   UDEV    1: udevd runs (as on any real host); 0: stop it first (lvtool makes /dev nodes
#           itself, lvm2 gets udev_sync=0 udev_rules=0; its lock-start then fails once and
#           is retried, see lvm2_lock_start)
# Every command is checked: its exit status, the DM devices present (NLV or 1 after -aey) or
# absent after -an, the lock state (our `lockd status`; sanlock's `sanlock client status` and
# `lvmlockctl -i`): lockspace joined after lock-start, LV locks held ex after -aey and none
# after -an, no lockspace after lock-stop.
# Results: one line per timed command in $SANLVM_SHARED/results:
#   STACK OP BOOT.ROUND MS USER_MS SYS_MS DAEMON_MS SETTLE_MS TRIES
# STACK ours|lvm2; OP start (daemons up), lock-start, lock-start-unclean, lv-aey, lv-an, vg-aey,
# vg-an, lock-stop; MS: wall time until done (lock-start: until the lockspace shows joined);
# USER_MS, SYS_MS: the command's CPU time; DAEMON_MS: the CPU time the stack's daemons used
# meanwhile (10 ms ticks); SETTLE_MS: `udevadm settle` after (0 without udev); TRIES: how many
# times the command ran (lvm2's lock-start is retried after one known failure, see below).
# Many functions are called by a name built from the stack's (start_$s, ${s}_joined...).
# shellcheck disable=SC2317
# shellcheck source-path=SCRIPTDIR source=../../tests/vm/guest/lib.sh
. "$(dirname "$0")/../../tests/vm/guest/lib.sh"

MODE=$1 BOOT=$2 NLV=$3 ROUNDS=$4 SINGLE=$5 VGROUNDS=$6 N=$7 W=$8 UDEV=$9 ONLY=${10:-}
VG_OURS=benchours VG_LVM=benchlvm HOST_ID=1
OUT=$SANLVM_SHARED/results
BIN=$SANLVM_SHARED/bin # stripped copies of our release binaries (the host made them)
HOME_DIR=/run/bench
OURS_CONF=$HOME_DIR/lvmlocal.toml
OURS_RUN=$HOME_DIR/lockd
OURS_WDMD_RUN=$HOME_DIR/wdmd
LOGS=$SANLVM_SHARED/logs
mkdir -p "$HOME_DIR" "$LOGS"
disk_ours=$(the_disk benchours)
disk_lvm=$(the_disk benchlvm)

modprobe dm_mod
# Two watchdog devices: the i6300esb (udev loads it at boot) for our wdmd, softdog for sanlock's
# (its systemd helper also falls back to softdog). Each stack only ever opens its own.
modprobe i6300esb
modprobe softdog
wd_dev() {
    local f
    for f in /sys/class/watchdog/watchdog*; do
        grep -qi "$1" "$f/identity" && { echo "/dev/$(basename "$f")"; return 0; }
    done
    fail "no watchdog device whose identity matches $1: $(cat /sys/class/watchdog/*/identity | tr '\n' ' ')"
}
WD_OURS=$(wd_dev i6300) WD_LVM=$(wd_dev soft)

if [ "$UDEV" = 0 ]; then
    stop_udev
    LVM_ACT="activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }"
    LVM_UDEV_LIST=0
else
    [ -S /run/udev/control ] || fail "udev is not running in the guest"
    udevadm settle
    LVM_ACT="activation { monitoring = 0 }"
    LVM_UDEV_LIST=1
fi
# udev's work after 500 LVs takes minutes under TCG (settle's default limit is 120 s).
settle() { if [ "$UDEV" = 1 ]; then udevadm settle --timeout=3600; fi; }

# lvm2: its own system dir (the guest's /etc is the host's), only the bench disk of its stack,
# no devices file, lvmlockd on.
export LVM_SYSTEM_DIR=$HOME_DIR/lvm
mkdir -p "$LVM_SYSTEM_DIR"
cat >"$LVM_SYSTEM_DIR/lvm.conf" <<EOF
devices {
    use_devicesfile = 0
    filter = [ "a|^$disk_lvm\$|", "r|.*|" ]
    obtain_device_list_from_udev = $LVM_UDEV_LIST
    scan_lvs = 0
}
global { use_lvmlockd = 1 event_activation = 0 }
$LVM_ACT
backup { backup = 0 archive = 0 }
EOF
cat >"$LVM_SYSTEM_DIR/lvmlocal.conf" <<EOF
local { host_id = $HOST_ID }
EOF
# Ours: the same host_id, N and W, only its bench disk.
cat >"$OURS_CONF" <<EOF
host_id = $HOST_ID
host_name = "benchhost"
io_timeout = $N
watchdog_fire_timeout = $W
use_watchdog = true
devices = ["$disk_ours"]
run_dir = "$OURS_RUN"
wdmd_run_dir = "$OURS_WDMD_RUN"
EOF
lvt() { "$BIN/lvtool" "$@" --config "$OURS_CONF"; }

# On failure, first save what the daemons know (lib.sh's fail, wrapped).
eval "lib_$(declare -f fail)"
fail() {
    trap - ERR
    {
        echo "== lockd status"
        "$BIN/lockd" status --config "$OURS_CONF"
        echo "== sanlock client status"
        sanlock client status
        echo "== lvmlockctl -i"
        lvmlockctl -i
        echo "== dmsetup ls"
        dmsetup ls
        echo "== lvmlockctl --dump"
        lvmlockctl --dump
        echo "== sanlock client log_dump"
        sanlock client log_dump
    } >"$LOGS/failure.$BOOT" 2>&1 || true
    lib_fail "$@"
}

count_dm() { # VG: its DM devices but the lock LV
    dmsetup ls 2>/dev/null | awk -v p="$1-" 'index($1, p) == 1 && $1 != p "lvmlock"' | wc -l
}
for vg in "$VG_OURS" "$VG_LVM"; do
    n=$(count_dm "$vg")
    ((n == 0)) || fail "$n devices of $vg are active at boot"
done
say "boot $BOOT ($MODE): disks $disk_ours ($VG_OURS, ours) $disk_lvm ($VG_LVM, lvm2); watchdogs $WD_OURS (ours) $WD_LVM (lvm2); N=$N W=$W udev=$UDEV; lvm2 $(lvm version | sed -n 's/ *LVM version: *\([^ ]*\).*/\1/p'), sanlock $(sanlock version 2>&1 | head -1)"

# --- the stacks -------------------------------------------------------------------------------
OURS_WDMD_PID='' OURS_LOCKD_PID='' LVM2_PIDS=''
declare -A UP=([ours]=0 [lvm2]=0)

# wait_for TEST_CMD WHAT [TIMEOUT_S]: polls every 0.1 s.
wait_for() {
    local n max=$((${3:-30} * 10))
    for ((n = 0; n < max; n++)); do
        "$1" && return 0
        sleep 0.1
    done
    fail "timed out waiting for $2"
}
# Ready: the daemon answers (a killed lockd leaves its socket file behind).
sock_ours_wdmd() { "$BIN/wdmd" status --run-dir "$OURS_WDMD_RUN" >/dev/null 2>&1; }
sock_ours_lockd() { "$BIN/lockd" status --config "$OURS_CONF" >/dev/null 2>&1; }
sock_lvm_wdmd() { [ -S /run/wdmd/wdmd.sock ]; }
sock_sanlock() { sanlock client status >/dev/null 2>&1; }
sock_lvmlockd() { [ -e /run/lvmlockd.pid ] && lvmlockctl -i >/dev/null 2>&1; }

start_ours() {
    "$BIN/wdmd" --run-dir "$OURS_WDMD_RUN" --device "$WD_OURS" --fire-timeout "$W" >>"$LOGS/ours.wdmd.log" 2>&1 &
    OURS_WDMD_PID=$!
    wait_for sock_ours_wdmd "our wdmd's socket"
    "$BIN/lockd" daemon --config "$OURS_CONF" >>"$LOGS/ours.lockd.log" 2>&1 &
    OURS_LOCKD_PID=$!
    wait_for sock_ours_lockd "lockd's socket"
    UP[ours]=1
}

# lockd has no SIGTERM handler (it dies by the signal: status 143; its lockspaces are stopped
# by then); wdmd exits 0 once no client has an expiry.
stop_ours() {
    local pid rc ok
    for pid in "$OURS_LOCKD_PID" "$OURS_WDMD_PID"; do
        kill -TERM "$pid"
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        ! kill -0 "$pid" 2>/dev/null || fail "ours: pid $pid did not exit on SIGTERM"
        rc=0
        wait "$pid" || rc=$?
        ok=0
        [ "$pid" = "$OURS_LOCKD_PID" ] && ok=143
        [ "$rc" = 0 ] || [ "$rc" = "$ok" ] || fail "ours: pid $pid exited with status $rc on SIGTERM; see $LOGS"
    done
    OURS_WDMD_PID='' OURS_LOCKD_PID=''
    UP[ours]=0
}

# The real stack as its Debian units start it (wdmd, sanlock daemon, lvmlockd: each forks), but
# with the watchdog on (Debian's default sanlock_opts is -w 0) and lvmlockd's -o N.
start_lvm2() {
    mkdir -p /run/lvm
    wdmd -w "$WD_LVM" >>"$LOGS/lvm2.wdmd.log" 2>&1
    wait_for sock_lvm_wdmd "sanlock's wdmd socket"
    sanlock daemon -w 1 >>"$LOGS/lvm2.sanlock.log" 2>&1
    wait_for sock_sanlock "sanlock's socket"
    lvmlockd -o "$N" >>"$LOGS/lvm2.lvmlockd.log" 2>&1
    wait_for sock_lvmlockd "lvmlockd's socket"
    local p
    p=$(cat /run/sanlock/sanlock.pid)
    LVM2_PIDS="$(cat /run/wdmd/wdmd.pid) $p $(pgrep -P "$p" | tr '\n' ' ') $(cat /run/lvmlockd.pid)"
    UP[lvm2]=1
}

stop_lvm2() {
    local pid
    lvmlockctl --quit >/dev/null || fail "lvmlockctl --quit failed"
    wait_for lvmlockd_gone "lvmlockd to exit"
    sanlock client shutdown >/dev/null || fail "sanlock client shutdown failed"
    wait_for sanlock_gone "sanlock to exit"
    pid=$(cat /run/wdmd/wdmd.pid)
    kill -TERM "$pid"
    wait_for wdmd_gone "sanlock's wdmd to exit"
    UP[lvm2]=0
}
lvmlockd_gone() { ! pgrep -x lvmlockd >/dev/null; }
sanlock_gone() { ! pgrep -x sanlock >/dev/null; }
wdmd_gone() { ! pgrep -f '^wdmd' >/dev/null; }

# daemon_ticks STACK: the CPU time (user+sys, clock ticks) of the stack's daemons so far.
daemon_ticks() {
    local pids pid total=0 f a
    if [ "$1" = ours ]; then
        pids="$OURS_WDMD_PID $OURS_LOCKD_PID"
    else
        pids=$LVM2_PIDS
    fi
    for pid in $pids; do
        read -r f <"/proc/$pid/stat" || continue
        # Fields after the command's ")": utime is the 12th, stime the 13th.
        f=${f##*) }
        read -r -a a <<<"$f"
        total=$((total + a[11] + a[12]))
    done
    echo "$total"
}

# --- lock state -------------------------------------------------------------------------------
ours_status() { "$BIN/lockd" status --config "$OURS_CONF"; }
# ours_joined / lvm2_joined: the stack's lockspace for its VG is joined (not still adding).
ours_joined() { ours_status 2>/dev/null | grep -q "^lockspace lvm_$VG_OURS (VG $VG_OURS) running"; }
lvm2_joined() { # its line has no ADD (joining) or REM (leaving) after the lockspace
    sanlock client status 2>/dev/null |
        awk -v p="lvm_$VG_LVM:$HOST_ID:" '$1 == "s" && index($2, p) == 1 { f = 1; if (NF > 2) b = 1 } END { exit !(f && !b) }'
}
ours_left() { ! ours_status | grep -q "^lockspace lvm_$VG_OURS "; }
lvm2_left() { ! sanlock client status | grep -q "^s lvm_$VG_LVM:"; }
# lv_locks STACK: how many LV locks the stack holds, all ex (an sh one counts as an error).
lv_locks() {
    if [ "$1" = ours ]; then
        ours_status | awk '/^  locks:/ { l = 1; next } /^[^ ]/ { l = 0 } l && $1 == "ex" && / persistent/ { n++ } l && $1 == "sh" { n += 100000 } END { print n + 0 }'
    else
        # lvmlockd's view (an LV lock released stays listed as "un"), then sanlock's (its
        # resources in the lockspace but the VG and global locks): they must agree.
        local l r
        l=$(lvmlockctl -i | awk '$1 == "LK" && $2 == "LV" && $3 != "un" { n += ($3 == "ex" ? 1 : 100000) } END { print n + 0 }')
        r=$(sanlock client status | awk -v p="lvm_$VG_LVM:" '$1 == "r" && index($2, p) == 1 && $2 !~ /:(VGLK|GLLK):/ { n++ } END { print n + 0 }')
        if [ "$l" = "$r" ]; then echo "$l"; else echo "lvmlockd $l, sanlock $r"; fi
    fi
}

check_joined() {
    "$1_joined" || fail "$1: lockspace not joined after lock-start: $(state "$1")"
}
check_left() {
    "$1_left" || fail "$1: lockspace still there after lock-stop: $(state "$1")"
    local n
    n=$(dmsetup ls | grep -c "^$(vg_of "$1")-" || true)
    ((n == 0)) || fail "$1: $n DM devices of $(vg_of "$1") after lock-stop: $(dmsetup ls | tr '\n' ' ')"
}
state() {
    if [ "$1" = ours ]; then ours_status 2>&1 | tr '\n' ' '; else
        sanlock client status 2>&1 | tr '\n' ' '
        lvmlockctl -i 2>&1 | head -20 | tr '\n' ' '
    fi
}
vg_of() { if [ "$1" = ours ]; then echo "$VG_OURS"; else echo "$VG_LVM"; fi; }

# check_active STACK N: N DM devices of the stack's VG (besides its lock LV), /dev links, N ex
# LV locks held.
check_active() {
    local s=$1 want=$2 vg n
    vg=$(vg_of "$s")
    settle
    n=$(count_dm "$vg")
    ((n == want)) || fail "$s: $n DM devices of $vg after -aey, not $want"
    n=$(find /dev/mapper -name "$vg-*" ! -name "$vg-lvmlock" | wc -l)
    ((n == want)) || fail "$s: $n /dev/mapper/$vg-* after -aey, not $want"
    if [ ! -b "/dev/$vg/lv1" ] || [ ! "/dev/$vg/lv1" -ef "/dev/mapper/$vg-lv1" ]; then
        fail "$s: /dev/$vg/lv1 is not the block device /dev/mapper/$vg-lv1"
    fi
    n=$(lv_locks "$s")
    [ "$n" = "$want" ] || fail "$s: $n ex LV locks held after -aey, not $want: $(state "$s")"
}

check_inactive() {
    local s=$1 vg n
    vg=$(vg_of "$s")
    settle
    n=$(count_dm "$vg")
    ((n == 0)) || fail "$s: $n DM devices of $vg left after -an"
    n=$(find /dev/mapper -name "$vg-*" ! -name "$vg-lvmlock" | wc -l)
    ((n == 0)) || fail "$s: $n /dev/mapper/$vg-* left after -an"
    [ ! -e "/dev/$vg/lv1" ] || fail "$s: /dev/$vg/lv1 left after -an"
    n=$(lv_locks "$s")
    [ "$n" = 0 ] || fail "$s: $n LV locks still held after -an: $(state "$s")"
}

# --- timing -----------------------------------------------------------------------------------
# cpu_ms FILE: user and system CPU time (ms) of this shell's finished children, from what the
# `times` builtin wrote to FILE.
cpu_ms() { awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); printf "%d ", (t[1] * 60 + t[2]) * 1000 } }' "$1"; }
usec() { local t=${1/./}; echo $((10#$t)); }

# timed STACK OP ROUND CMD...: runs CMD (output to /tmp/out, shown on failure); for a
# lock-start, then waits until the lockspace shows joined (a guard: so far both commands
# returned only once joined). Appends a results line.
timed() {
    local s=$1 op=$2 round=$3 t0 t0_up t1 t2 ms settle_ms u0 s0 u1 s1 d0 d1 tries
    shift 3
    settle
    d0=$(daemon_ticks "$s")
    times >/tmp/times0
    read -r t0_up _ </proc/uptime
    t0=$EPOCHREALTIME
    if ! "$@" >/tmp/out 2>&1; then
        cat /tmp/out
        fail "$s $op round $round failed: $*: $(tail -3 /tmp/out | tr '\n' ' ')"
    fi
    case $op in
    lock-start*)
        if ! "${s}_joined"; then
            say "$s: vgchange --lock-start returned before the lockspace showed joined; waiting"
            wait_for "${s}_joined" "$s's lockspace to show joined" 600
        fi
        ;;
    esac
    t1=$EPOCHREALTIME
    times >/tmp/times1
    settle
    t2=$EPOCHREALTIME
    d1=$(daemon_ticks "$s")
    read -r u0 s0 <<<"$(cpu_ms /tmp/times0)"
    read -r u1 s1 <<<"$(cpu_ms /tmp/times1)"
    ms=$((($(usec "$t1") - $(usec "$t0")) / 1000))
    settle_ms=$((($(usec "$t2") - $(usec "$t1")) / 1000))
    tries=1
    [ ! -e /tmp/tries ] || read -r tries </tmp/tries
    rm -f /tmp/tries
    echo "$s $op $round $ms $((u1 - u0)) $((s1 - s0)) $(((d1 - d0) * 10)) $settle_ms $tries" >>"$OUT"
    say "$s $op #$round: $ms ms from uptime ${t0_up} (user $((u1 - u0)) ms, sys $((s1 - s0)) ms, daemons $(((d1 - d0) * 10)) ms; settle $settle_ms ms)"
}

# timed_start STACK ROUND: starts the stack's daemons, timed (until their sockets are up).
timed_start() {
    local t0 ms
    t0=$EPOCHREALTIME
    "start_$1"
    ms=$((($(usec "$EPOCHREALTIME") - $(usec "$t0")) / 1000))
    echo "$1 start $2 $ms 0 0 0 0 1" >>"$OUT"
    say "$1 daemons up in $ms ms"
}

# The commands, per stack.
ours_cmd() { lvt "$@"; }
lvm2_cmd() { lvm "$@"; }

# lvm2's lock-start activates the lvmlock LV, then lvmlockd sleeps 1 s and stats its
# /dev/mapper node: under TCG udev may not have made it yet ("prepare_lockspace_san stat error
# 2", "VG ... start failed: invalid parameters for sanlock"); without udev libdm makes it only
# at the command's end, and the first try failed every time we ran it. Such a failure is
# retried (at most twice; the LV is then active and its node there) and counted: the time of
# every try is in the result.
ours_lock_start() { lvt vgchange --lock-start "$1"; }
lvm2_lock_start() {
    local try rc line
    for try in 1 2 3; do
        echo "$try" >/tmp/tries
        rc=0
        lvm vgchange --lock-start "$1" >/tmp/try.out 2>&1 || rc=$?
        # Shown with builtins: no extra process inside the timed command.
        while IFS= read -r line; do printf '%s\n' "$line"; done </tmp/try.out
        ((rc != 0)) || return 0
        grep -q "start failed: invalid parameters for sanlock" /tmp/try.out || return 1
        say "lvm2: lock-start try $try failed: $(tr '\n' ' ' </tmp/try.out)"
    done
    return 1
}
lock_start() { # STACK OP ROUND
    rm -f /tmp/tries
    timed "$1" "$2" "$3" "$1_lock_start" "$(vg_of "$1")"
    check_joined "$1"
}
lock_stop() {
    timed "$1" lock-stop "$2" "$1_cmd" vgchange --lock-stop "$(vg_of "$1")"
    check_left "$1"
}

phase() { # STACK ROUND: one fresh phase
    local s=$1 r=$2 vg i
    vg=$(vg_of "$s")
    say "--- $s, round $r"
    timed_start "$s" "$BOOT.$r"
    lock_start "$s" lock-start "$BOOT.$r"
    for i in $(seq "$SINGLE"); do
        timed "$s" lv-aey "$BOOT.$r.$i" "${s}_cmd" lvchange -aey "$vg/lv1"
        check_active "$s" 1
        timed "$s" lv-an "$BOOT.$r.$i" "${s}_cmd" lvchange -an "$vg/lv1"
        check_inactive "$s"
    done
    if ((r <= VGROUNDS)); then
        timed "$s" vg-aey "$BOOT.$r" "${s}_cmd" vgchange -aey "$vg"
        check_active "$s" "$NLV"
        timed "$s" vg-an "$BOOT.$r" "${s}_cmd" vgchange -an "$vg"
        check_inactive "$s"
    fi
    lock_stop "$s" "$BOOT.$r"
    "stop_$s"
}

order() {
    if [ -n "$ONLY" ]; then echo "$ONLY"; elif (($1 % 2)); then echo ours lvm2; else echo lvm2 ours; fi
}

# Both stacks joined, then wait for the host to quit QEMU (never returns).
joined_and_wait_for_kill() {
    local s
    for s in $(order 1); do
        if [ "${UP[$s]}" = 0 ]; then
            "start_$s"
            "${s}_lock_start" "$(vg_of "$s")" >/tmp/out 2>&1 || { cat /tmp/out; fail "$s lock-start before the kill failed"; }
            check_joined "$s"
        fi
    done
    say "both lockspaces joined: ours $(ours_status | grep -A1 '^lockspace' | tail -1 | sed 's/^ *//'); lvm2 $(sanlock client status | grep '^s ')"
    signal "kill-$BOOT"
    sleep 3600
    fail "the host did not kill this VM"
}

case $MODE in
fresh*)
    for r in $(seq "$ROUNDS"); do
        for s in $(order "$r"); do
            phase "$s" "$r"
        done
    done
    ;;
unclean*)
    for s in $(order "$BOOT"); do
        say "--- $s, after an unclean reboot"
        timed_start "$s" "$BOOT"
        lock_start "$s" lock-start-unclean "$BOOT"
        # The other stack is started next while this one stays joined, each on its own watchdog:
        # the one left running only renews its delta lease every 2N.
    done
    ;;
*) fail "unknown mode $MODE" ;;
esac

case $MODE in
*-kill) joined_and_wait_for_kill ;;
esac
for s in ours lvm2; do
    [ "${UP[$s]}" = 1 ] || continue
    "${s}_cmd" vgchange --lock-stop "$(vg_of "$s")" >/tmp/out 2>&1 || { cat /tmp/out; fail "$s: final lock-stop failed"; }
    check_left "$s"
    "stop_$s"
done
pass
