#!/usr/bin/env bash
# Shared-VG locking in a real kernel: our stack (wdmd + `lockd daemon` + lvtool, release builds)
# against the real Debian one (sanlock's wdmd + `sanlock daemon` + lvmlockd + lvm2's `lvm` with
# use_lvmlockd=1), in one VM of the VM tier (qemu TCG, tests/vm/lib.sh), booted 1 + REBOOTS times.
# On the host: build the release binaries (stripped copies go to the guest, as a package would
# ship them; lvm2's are stripped too); make two sparse images, each with a shared VG
# (`lvtool vgcreate --shared`, `--driverloaded n`, no locks: fast here) of NLV LVs of LV_SIZE:
# benchours (for our stack) and benchlvm (for the real one); io_timeout N and W go into the
# lvmlocal.toml lvtool is given. udev autoactivation skips shared VGs (pvscan ignores them), and
# the host's lvm2 cannot mark a shared VG `--setautoactivation n` without lvmlockd ("Cannot
# access VG with lock type sanlock that requires lvmlockd"): the guest checks instead that no LV
# is active at boot.
# In the guest (benches/vm/lockd-guest.sh), each stack in phases of its own (start its daemons,
# measure, stop them cleanly), the order alternating each round:
#   boot 1: ROUNDS phases per stack: lock-start (lockspace free), SINGLE rounds of
#           lvchange -aey VG/lv1 / -an, in the first VGROUNDS phases vgchange -aey VG / -an
#           (NLV LVs), lock-stop. Then both stacks at once (ours on the i6300esb, sanlock's on
#           softdog) join their lockspaces and the host quits QEMU (QMP `quit`: a power cut).
#   boot 2..: each stack starts its daemons and times the lock-start after that unclean reboot
#           (expected: sanlock 8N+W+2N, as its host name is random per daemon start; ours 2N,
#           the boot-id rule), then the next reboot the same way, or both stop cleanly.
# The lock-start times run until the lockspace shows joined (`lockd status`; `sanlock client
# status` without ADD): both `vgchange --lock-start` commands wait for that already (lvm2
# unless --lock-opt nowait), so the check has not had to wait so far (the guest logs it if it
# does). lvm2's lock-start is retried when lvmlockd did not find the lvmlock LV's node yet (see
# the guest script; the table says how often). Every command is checked (exit status, DM
# devices present or absent, lock state). Prints a table of medians, ratios (ours/lvm2) and
# speed-ups on stdout.
#
# usage: benches/vm-lockd.sh
#   env: NLV=500 LV_SIZE=4M DISK_SIZE=4G (each of the two images) ROUNDS=3 (fresh phases per
#        stack) SINGLE=4 (lvchange rounds per phase) VGROUNDS=1 (how many of the phases have a
#        vgchange round; udev's rules cost ~0.7 s per DM device under TCG) N=10 (io_timeout, s;
#        also lvmlockd -o) W=60 (watchdog fire timeout; sanlock 3.8.5's is fixed at 60, ours
#        is given the same) REBOOTS=1 (unclean reboots; 0: none) UDEV=1 (0: stop udevd in the
#        guest; lvm2's lock-start then fails once and is retried, see the guest script)
#        ONLY=ours|lvm2 (that stack only) TIMEOUT=10800 (s, a VM's limit), and the VM tier's
#        SANLVM_VM_CACHE, SANLVM_VM_KERNEL, SANLVM_VM_MEM.
# Needs root and the VM tier's packages (installed on first use, see tests/vm/README.md).
# Logs: $SANLVM_VM_CACHE/bench-lockd (default /var/tmp/sanlvm-vm/bench-lockd): vmK.log (the
# guest's output, boot K), shared/results (every command's time), shared/logs (the daemons'),
# table.txt.
set -euo pipefail

NLV=${NLV:-500}
LV_SIZE=${LV_SIZE:-4M}
DISK_SIZE=${DISK_SIZE:-4G}
ROUNDS=${ROUNDS:-3}
SINGLE=${SINGLE:-4}
VGROUNDS=${VGROUNDS:-1}
N=${N:-10}
W=${W:-60}
REBOOTS=${REBOOTS:-1}
UDEV=${UDEV:-1}
TIMEOUT=${TIMEOUT:-10800}

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
VM_DIR=$REPO/tests/vm
# shellcheck source-path=SCRIPTDIR source=../tests/vm/lib.sh
. "$VM_DIR/lib.sh"
fail() {
    log "vm-lockd: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root (the VM tier)"
bench_start lockd
imgs=() tailer=''
cleanup() {
    cleanup_vms
    if [ -n "$tailer" ]; then kill "$tailer" 2>/dev/null || true; fi
    if ((${#imgs[@]})); then rm -f "${imgs[@]}"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$SHARED/bin"
log "building lvtool, lockd, wdmd (release)"
bench_build -p lvtool -p lockd -p wdmd --bins
# Copies, stripped of debug info: the binaries may be rebuilt while the VM runs, and the guest
# reads every exec over 9p (24 MB with debug info instead of a few).
for b in lvtool lockd wdmd; do
    strip --strip-debug -o "$SHARED/bin/$b" "$TARGET/release/$b" || fail "strip $b failed"
done
LVTOOL=$SHARED/bin/lvtool

# --- the VGs, made on the host ---
conf=$SHARED/lvmlocal.toml # no host_id: lvtool takes no locks here
printf 'io_timeout = %s\nwatchdog_fire_timeout = %s\n' "$N" "$W" >"$conf"
t0=$(now)
for vg in benchours benchlvm; do
    img=$(new_disk "$vg" "$DISK_SIZE")
    imgs+=("$img")
    lt() { "$LVTOOL" "$@" --config "$conf" --driverloaded n --devices "$img"; }
    lt pvcreate "$img" >/dev/null
    lt vgcreate --shared "$vg" "$img" >/dev/null
    for i in $(seq "$NLV"); do
        lt lvcreate -an -L "$LV_SIZE" -n "lv$i" "$vg" >/dev/null || fail "lvtool lvcreate $vg/lv$i failed"
    done
    n=$(lt lvs --noheadings -o lv_name "$vg" | wc -l)
    [ "$n" = "$NLV" ] || fail "lvtool sees $n LVs in $vg, not $NLV"
done
log "VGs benchours and benchlvm of $NLV LVs of $LV_SIZE made by lvtool in $(elapsed "$t0" "$(now)") s"

# --- the boots ---
: >"$SHARED/results"
# boot K MODE: boots VM vmK running the guest script in MODE; a *-kill mode is quit by QMP as
# soon as the guest signals kill-K (both lockspaces joined).
boot() {
    local k=$1 mode=$2 vm=vm$1 res
    : >"$SCEN_DIR/$vm.log"
    # The guest's progress lines, as they come.
    tail -n +1 -F --pid=$$ "$SCEN_DIR/$vm.log" 2>/dev/null | grep --line-buffered "^\[$vm " >&2 &
    tailer=$!
    # boot_vm runs tests/vm/guest/SCRIPT: the guest script is ours, reached from there.
    boot_vm "$vm" "${imgs[0]},${imgs[1]}" ../../../benches/vm/lockd-guest.sh "$mode" "$k" "$NLV" "$ROUNDS" \
        "$SINGLE" "$VGROUNDS" "$N" "$W" "$UDEV" "${ONLY:-}"
    if [[ $mode == *-kill ]]; then
        local deadline=$(($(date +%s) + TIMEOUT))
        while [ ! -e "$SHARED/kill-$k" ] && kill -0 "${VM_PID[$vm]}" 2>/dev/null && (($(date +%s) < deadline)); do
            sleep 0.2
        done
        if [ -e "$SHARED/kill-$k" ]; then
            qmp_cmd "$vm" quit >/dev/null 2>&1 || true
            log "vm-lockd: $vm quit by QMP (both lockspaces joined)"
        fi
        wait_vms 60 "$vm"
    else
        wait_vms "$TIMEOUT" "$vm"
    fi
    sleep 0.5
    kill "$tailer" 2>/dev/null || true
    tailer=
    res=$(guest_result "$vm")
    if [[ $mode == *-kill ]]; then
        if [ ! -e "$SHARED/kill-$k" ] || [ -n "$res" ]; then
            fail "guest $vm: ${res:-no kill signal} (vng rc ${VM_RC[$vm]}); see $SCEN_DIR/$vm.log"
        fi
    elif [ "${VM_RC[$vm]}" != 0 ] || [ "$res" != PASS ]; then
        fail "guest $vm: ${res:-no result} (vng rc ${VM_RC[$vm]}); see $SCEN_DIR/$vm.log"
    fi
}
mode=fresh
((REBOOTS == 0)) || mode=fresh-kill
boot 1 "$mode"
for k in $(seq 2 $((REBOOTS + 1))); do
    mode=unclean
    ((k > REBOOTS)) || mode=unclean-kill
    boot "$k" "$mode"
done
rm -f "${imgs[@]}"
imgs=()

# --- the table ---
results=$SHARED/results
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# samples STACK OP FIELD: one column of the results (4: wall, cpu: 5+6, 7: daemons' CPU, 8: settle,
# 9: tries).
samples() {
    awk -v s="$1" -v o="$2" -v f="$3" '$1 == s && $2 == o { print f == "cpu" ? $5 + $6 : $f }' "$results"
}
row() { # OP LABEL
    local o t k
    o=$(samples ours "$1" 4 | median)
    t=$(samples lvm2 "$1" 4 | median)
    k=$(samples ours "$1" 4 | wc -l)
    [ "$o" != - ] && [ "$t" != - ] || return 0
    awk -v l="$2" -v o="$o" -v t="$t" -v k="$k" \
        -v oc="$(samples ours "$1" cpu | median)" -v tc="$(samples lvm2 "$1" cpu | median)" \
        -v od="$(samples ours "$1" 7 | median)" -v td="$(samples lvm2 "$1" 7 | median)" \
        -v os="$(samples ours "$1" 8 | median)" -v ts="$(samples lvm2 "$1" 8 | median)" 'BEGIN {
        printf "%-34s %3d %9.0f %9.0f %6.3f %7.1fx %8.0f %8.0f %8.0f %8.0f %8.0f %8.0f\n", l, k, o, t, o / t, t / o, oc, tc, od, td, os, ts }'
}
lvm_version=$(lvm version 2>/dev/null | sed -n 's/ *LVM version: *\([^ ]*\).*/\1/p')
sanlock_version=$(sanlock version 2>/dev/null | head -1)
{
    echo "ours (wdmd + lockd + lvtool, release) vs lvm2 $lvm_version + lvmlockd + sanlock $sanlock_version (+ its wdmd),"
    echo "one qemu TCG VM ($(basename "$KERNEL"), 1 vCPU, $VM_MEM, udev $([ "$UDEV" = 1 ] && echo on || echo off)), one shared VG per stack of $NLV LVs of $LV_SIZE on its own virtio disk;"
    echo "N (io_timeout) = $N s, W (watchdog fire timeout) = $W s: 2N = $((2 * N)) s, 8N+W+2N = $((10 * N + W)) s."
    echo "medians in ms of n interleaved runs; ratio = ours/lvm2, speedup = lvm2/ours (goals: >= 5x for one LV,"
    echo ">= 10x for $NLV LVs, lock-start ~ 2N for both, ours ~ 2N after an unclean reboot too);"
    echo "cpu = the command's user+sys; dmn = CPU the stack's daemons used during the command;"
    echo "settle = udev's work left after the command returned (udevadm settle; not in the times)"
    printf '%-34s %3s %9s %9s %6s %8s %8s %8s %8s %8s %8s %8s\n' command n ours lvm2 ratio speedup \
        cpu-ours cpu-lvm2 dmn-ours dmn-lvm2 settle-o settle-l
    row start "daemons started (sockets up)"
    row lock-start "vgchange --lock-start (fresh)"
    row lock-start-unclean "--lock-start after unclean reboot"
    row lv-aey "lvchange -aey VG/lv1"
    row lv-an "lvchange -an VG/lv1"
    row vg-aey "vgchange -aey VG ($NLV LVs)"
    row vg-an "vgchange -an VG ($NLV LVs)"
    row lock-stop "vgchange --lock-stop"
    awk '$2 ~ /^lock-start/ && $9 > 1 { n++; t = t " " $2 " " $3 ": " $9 } END {
        if (n) printf "lvm2 lock-start failed first (lvmlockd found no /dev/mapper/VG-lvmlock yet) and was retried, time counted, in %d run(s):%s\n", n, t }' "$results"
    echo "VM wall times:$(for k in $(seq 1 $((REBOOTS + 1))); do printf ' boot %s %s s' "$k" "${VM_WALL[vm$k]}"; done); every run in $results; guest logs $SCEN_DIR/vm*.log"
} | tee "$RUN_DIR/table.txt"
