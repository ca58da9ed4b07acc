#!/usr/bin/env bash
# Activation in a real kernel: lvtool against the real lvm2, in one VM of the VM tier (qemu TCG,
# tests/vm/lib.sh). On the host: build lvtool (release); make a VG of NLV LVs of LV_SIZE on a sparse
# image with `lvtool --driverloaded n` (fast here, no device-mapper needed); mark it
# `--setautoactivation n` with the host's lvm2 on a loop device (otherwise the guest's udev rules
# run lvm2's `vgchange -aay` on the disk at boot, minutes under TCG); boot one VM on the image.
# In the guest (benches/vm/activation-guest.sh), interleaved, order alternating each round:
#   vgchange -ay VG / vgchange -an VG     (all NLV LVs)      UDEV_ROUNDS / ROUNDS rounds
#   lvchange -ay VG/lv1 / lvchange -an VG/lv1                        SINGLE rounds
# first with udev running (udev sync for both), then (NOUDEV=1) with udevd stopped: lvtool makes
# /dev nodes itself, lvm2 gets activation{udev_sync=0 udev_rules=0}. lvm2 is given a filter that
# accepts only the disk. Every command is checked: NLV (or 1) DM devices with /dev/mapper and
# /dev/VG links after -ay, none after -an; the tables and DM UUIDs of all NLV devices identical
# between the tools. Prints a table of medians and ratios (lvtool/lvm2) on stdout.
#
# usage: benches/vm-activation.sh
#   env: NLV=500 LV_SIZE=4M DISK_SIZE=4G UDEV_ROUNDS=1 (with udev: ~25 min a round for 500 LVs
#        under TCG, udev's rules cost ~0.7 s per device) ROUNDS=3 (without udev) SINGLE=10
#        NOUDEV=1 PROFILE=0 (1: `strace -c -w` of each vgchange without udev, in shared/)
#        TIMEOUT=10800 (s, the VM's limit), and the VM tier's SANLVM_VM_CACHE, SANLVM_VM_KERNEL,
#        SANLVM_VM_MEM.
# Needs root (loop device), the VM tier's packages (installed on first use, see tests/vm/README.md).
# Logs: $SANLVM_VM_CACHE/bench-activation (default /var/tmp/sanlvm-vm/bench-activation): vm1.log
# (the guest's output), shared/results (every command's time), table.txt.
set -euo pipefail

NLV=${NLV:-500}
LV_SIZE=${LV_SIZE:-4M}
DISK_SIZE=${DISK_SIZE:-4G}
UDEV_ROUNDS=${UDEV_ROUNDS:-1}
ROUNDS=${ROUNDS:-3}
SINGLE=${SINGLE:-10}
NOUDEV=${NOUDEV:-1}
PROFILE=${PROFILE:-0}
TIMEOUT=${TIMEOUT:-10800}
VG=benchvg

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
VM_DIR=$REPO/tests/vm
# shellcheck source-path=SCRIPTDIR source=../tests/vm/lib.sh
. "$VM_DIR/lib.sh"
fail() {
    log "vm-activation: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || fail "needs root (loop device, the VM tier)"
bench_start activation
img='' loop='' tailer=''
cleanup() {
    cleanup_vms
    if [ -n "$tailer" ]; then kill "$tailer" 2>/dev/null || true; fi
    if [ -n "$loop" ]; then losetup -d "$loop" 2>/dev/null || true; fi
    if [ -n "$img" ]; then rm -f "$img"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building lvtool (release)"
bench_build -p lvtool --bin lvtool
LVTOOL=$TARGET/release/lvtool

# --- the VG, made on the host ---
conf=$SHARED/lvmlocal.toml # empty: no devices, no host_id (no locks), whatever /etc holds
: >"$conf"
img=$(new_disk benchpv "$DISK_SIZE")
lt() { "$LVTOOL" "$@" --config "$conf" --driverloaded n --devices "$img"; }
t0=$(now)
lt pvcreate "$img" >/dev/null
lt vgcreate "$VG" "$img" >/dev/null
for i in $(seq "$NLV"); do
    lt lvcreate -L "$LV_SIZE" -n "lv$i" "$VG" >/dev/null || fail "lvtool lvcreate lv$i failed"
done
log "VG $VG of $NLV LVs of $LV_SIZE made by lvtool in $(elapsed "$t0" "$(now)") s"

# lvm2 as in benches/compare-lvm2.sh: private config, no udev, no devices file, no backups.
mkdir -p "$RUN_DIR/lvm-etc"
cat >"$RUN_DIR/lvm-etc/lvm.conf" <<'EOF'
devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 scan_lvs = 0 }
global { event_activation = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
backup { backup = 0 archive = 0 }
EOF
loop=$(losetup -f --show "$img")
LVM_SYSTEM_DIR=$RUN_DIR/lvm-etc LVM_SUPPRESS_FD_WARNINGS=1 \
    lvm vgchange --setautoactivation n "$VG" --driverloaded n --devices "$loop" >>"$RUN_DIR/setup.log" 2>&1 ||
    fail "lvm2 vgchange --setautoactivation n failed, see $RUN_DIR/setup.log"
losetup -d "$loop"
loop=
sync
n=$(lt lvs --noheadings -o lv_name "$VG" | wc -l)
[ "$n" = "$NLV" ] || fail "lvtool sees $n LVs in $VG after lvm2's change, not $NLV"

# --- the VM ---
: >"$SCEN_DIR/vm1.log"
# The guest's progress lines, as they come.
tail -n +1 -F --pid=$$ "$SCEN_DIR/vm1.log" 2>/dev/null | grep --line-buffered '^\[vm1 ' >&2 &
tailer=$!
# boot_vm runs tests/vm/guest/SCRIPT: the guest script is ours, reached from there.
boot_vm vm1 "$img" ../../../benches/vm/activation-guest.sh "$VG" "$NLV" "$UDEV_ROUNDS" "$ROUNDS" "$SINGLE" "$NOUDEV" "$conf" "$PROFILE"
wait_vms "$TIMEOUT" vm1
sleep 0.5
kill "$tailer" 2>/dev/null || true
tailer=
res=$(guest_result vm1)
if [ "${VM_RC[vm1]}" != 0 ] || [ "$res" != PASS ]; then
    fail "guest: ${res:-no result} (vng rc ${VM_RC[vm1]}); see $SCEN_DIR/vm1.log"
fi
rm -f "$img"
img=

# --- the table ---
results=$SHARED/results
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# samples PHASE TOOL OP FIELD: one column of the results (5: wall, 6: udev settle after, 7+8: CPU).
samples() {
    awk -v p="$1" -v t="$2" -v o="$3" -v f="$4" '$1 == p && $2 == t && $3 == o { print f == "cpu" ? $7 + $8 : $f }' "$results"
}
row() { # PHASE OP LABEL
    local o t k
    o=$(samples "$1" ours "$2" 5 | median)
    t=$(samples "$1" lvm2 "$2" 5 | median)
    k=$(samples "$1" ours "$2" 5 | wc -l)
    [ "$o" != - ] || return 0
    awk -v l="$3" -v o="$o" -v t="$t" -v k="$k" -v p="$1" \
        -v oc="$(samples "$1" ours "$2" cpu | median)" -v tc="$(samples "$1" lvm2 "$2" cpu | median)" \
        -v os="$(samples "$1" ours "$2" 6 | median)" -v ts="$(samples "$1" lvm2 "$2" 6 | median)" 'BEGIN {
        printf "%-7s %-25s %3d %9.0f %9.0f %6.3f %7.1fx %8.0f %8.0f %8.0f %8.0f\n", p, l, k, o, t, o / t, t / o, oc, tc, os, ts }'
}
lvm_version=$(lvm version 2>/dev/null | sed -n 's/ *LVM version: *\([^ ]*\).*/\1/p')
{
    echo "lvtool (release) vs lvm2 $lvm_version, one qemu TCG VM ($(basename "$KERNEL"), 1 vCPU, $VM_MEM), VG of $NLV LVs of $LV_SIZE on one virtio disk"
    echo "medians in ms of n interleaved runs; ratio = lvtool/lvm2 (goals: <= 0.1 for $NLV LVs, <= 0.2 for one);"
    echo "cpu = the command's user+sys time; settle = udev's work left after the command returned (udevadm settle)"
    printf '%-7s %-25s %3s %9s %9s %6s %8s %8s %8s %8s %8s\n' udev command n lvtool lvm2 ratio speedup \
        cpu-lvt cpu-lvm settle-t settle-l
    for phase in udev noudev; do
        row "$phase" vg-ay "vgchange -ay ($NLV LVs)"
        row "$phase" vg-an "vgchange -an ($NLV LVs)"
        row "$phase" lv-ay "lvchange -ay VG/lv1"
        row "$phase" lv-an "lvchange -an VG/lv1"
    done
    echo "VM wall time ${VM_WALL[vm1]} s; every run in $results; guest log $SCEN_DIR/vm1.log"
} | tee "$RUN_DIR/table.txt"
