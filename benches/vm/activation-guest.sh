#!/usr/bin/env bash
# Guest side of benches/vm-activation.sh (run in the VM by tests/vm/lib.sh:boot_vm): times
# lvtool against the real lvm2 activating the VG the host made on this VM's disk.
#
# usage (by the host): activation-guest.sh VG NLV UDEV_ROUNDS ROUNDS SINGLE NOUDEV LVTOOL_CONFIG PROFILE
#   UDEV_ROUNDS, ROUNDS  rounds of `vgchange -ay VG` / `vgchange -an VG` (all NLV LVs) per tool,
#           with udev and without (with udev each LV costs ~0.7 s of udev's rules under TCG)
#   SINGLE  rounds of `lvchange -ay VG/lv1` / `lvchange -an VG/lv1`
#   NOUDEV  1: after the rounds with udev, stop udevd and do them all again without it
#   PROFILE 1: after the timed rounds without udev, one `strace -f -c -w` run of each tool's
#           vgchange -ay and -an ($SANLVM_SHARED/strace.noudev.TOOL.OP)
# Each round runs both tools, the order alternating; every command is checked (the DM devices,
# /dev/mapper and /dev/VG links after -ay and that nothing is left after -an), and the tables
# and DM UUIDs of all NLV devices must be identical between lvtool and lvm2.
# Results: one line per command in $SANLVM_SHARED/results:
#   PHASE TOOL OP ROUND MS SETTLE_MS USER_MS SYS_MS
# PHASE udev|noudev, TOOL ours|lvm2, OP vg-ay|vg-an|lv-ay|lv-an; MS: the command's wall time;
# SETTLE_MS: `udevadm settle` right after (udev's work left, 0 without udev); USER_MS, SYS_MS: the
# command's CPU time (10 ms ticks).
# shellcheck source-path=SCRIPTDIR source=../../tests/vm/guest/lib.sh
. "$(dirname "$0")/../../tests/vm/guest/lib.sh"

VG=$1 NLV=$2 UDEV_ROUNDS=$3 ROUNDS=$4 SINGLE=$5 NOUDEV=$6 LVTOOL_CONFIG=$7 PROFILE=${8:-0}
disk=$(the_disk benchpv)
lvtool=$SANLVM_TARGET/release/lvtool
OUT=$SANLVM_SHARED/results
: >"$OUT"
modprobe dm_mod
[ -S /run/udev/control ] || fail "udev is not running in the guest"
udevadm settle

# lvm2 sees only the bench disk, and no devices file.
LVM_DEVICES="use_devicesfile=0 filter=[\"a|^$disk\$|\",\"r|.*|\"]"
LVM_CONFIG="devices{$LVM_DEVICES}"
ours() { "$lvtool" "$@" --config "$LVTOOL_CONFIG" --devices "$disk"; }
lvm2() { lvm "$@" --config "$LVM_CONFIG"; }
udev_up() { [ -S /run/udev/control ]; }
# udev's backlog after 500 activations can take minutes under TCG: settle waits up to 30.
settle() { if udev_up; then udevadm settle -t 1800; fi; }

count_dm() { dmsetup ls 2>/dev/null | grep -c "^$VG-" || true; }
n=$(count_dm)
((n == 0)) || fail "$n devices of $VG are active at start (autoactivated at boot? the host sets --setautoactivation n)"
say "disk $disk; $(lvm2 vgs --noheadings -o vg_name,lv_count,vg_size "$VG" 2>&1)"
[ "$(ours lvs --noheadings -o lv_name "$VG" | wc -l)" = "$NLV" ] || fail "lvtool does not see $NLV LVs in $VG"
[ "$(lvm2 lvs --noheadings -o lv_name "$VG" | wc -l)" = "$NLV" ] || fail "lvm2 does not see $NLV LVs in $VG"

# cpu_ms FILE: user and system CPU time (ms) of this shell's finished children, from what the
# `times` builtin wrote to FILE (`times >FILE` runs in this shell: a subshell would not see our
# children).
cpu_ms() { awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); printf "%d ", (t[1] * 60 + t[2]) * 1000 } }' "$1"; }

# timed PHASE TOOL OP ROUND CMD...: runs CMD (output to /tmp/out), appends its times to $OUT: wall
# (what the user waits for), udev's work left after it (`udevadm settle`), the command's user and
# system CPU time.
timed() {
    local phase=$1 tool=$2 op=$3 round=$4 t0 t1 t2 ms settle_ms u0 s0 u1 s1
    shift 4
    settle
    times >/tmp/times0
    t0=$EPOCHREALTIME
    if ! "$@" >/tmp/out 2>&1; then
        cat /tmp/out
        fail "$phase $tool $op round $round failed: $*"
    fi
    t1=$EPOCHREALTIME
    times >/tmp/times1
    settle
    t2=$EPOCHREALTIME
    read -r u0 s0 <<<"$(cpu_ms /tmp/times0)"
    read -r u1 s1 <<<"$(cpu_ms /tmp/times1)"
    ms=$(((${t1/./} - ${t0/./}) / 1000))
    settle_ms=$(((${t2/./} - ${t1/./}) / 1000))
    echo "$phase $tool $op $round $ms $settle_ms $((u1 - u0)) $((s1 - s0))" >>"$OUT"
    say "$phase $tool $op #$round: $ms ms (user $((u1 - u0)) ms, sys $((s1 - s0)) ms; then $settle_ms ms settle)"
}

# check_active TOOL PHASE N: N devices of the VG are up, with their /dev/mapper and /dev/VG links.
check_active() {
    local tool=$1 phase=$2 want=$3 n
    settle
    n=$(count_dm)
    ((n == want)) || fail "$tool ($phase): $n DM devices of $VG after -ay, not $want"
    n=$(find /dev/mapper -name "$VG-*" | wc -l)
    ((n == want)) || fail "$tool ($phase): $n /dev/mapper/$VG-* after -ay, not $want"
    n=$({ find "/dev/$VG" -mindepth 1 2>/dev/null || true; } | wc -l)
    ((n == want)) || fail "$tool ($phase): $n entries in /dev/$VG after -ay, not $want"
    if [ ! -b "/dev/$VG/lv1" ] || [ ! "/dev/$VG/lv1" -ef "/dev/mapper/$VG-lv1" ]; then
        fail "$tool ($phase): /dev/$VG/lv1 is not the block device /dev/mapper/$VG-lv1"
    fi
}

# check_inactive TOOL PHASE: nothing of the VG is left in the kernel or /dev.
check_inactive() {
    local tool=$1 phase=$2 n
    settle
    n=$(count_dm)
    ((n == 0)) || fail "$tool ($phase): $n DM devices of $VG left after -an"
    n=$(find /dev/mapper -name "$VG-*" | wc -l)
    ((n == 0)) || fail "$tool ($phase): $n /dev/mapper/$VG-* left after -an"
    [ ! -e "/dev/$VG" ] || fail "$tool ($phase): /dev/$VG left after -an: $(find "/dev/$VG" | head -3)"
}

# snapshot TOOL PHASE: the tables and DM UUIDs of all devices of the VG, to compare the tools.
snapshot() {
    dmsetup table | grep "^$VG-" | sort >"/tmp/table.$1.$2"
    dmsetup info -c --noheadings --separator ' ' -o name,uuid | grep "^$VG-" | sort >"/tmp/uuid.$1.$2"
}

same_devices() {
    local phase=$1 f
    for f in table uuid; do
        [ -s "/tmp/$f.ours.$phase" ] || continue
        [ -s "/tmp/$f.lvm2.$phase" ] || continue
        cmp -s "/tmp/$f.ours.$phase" "/tmp/$f.lvm2.$phase" ||
            fail "$phase: the ${f}s of $VG's devices differ between lvtool and lvm2: $(diff "/tmp/$f.ours.$phase" "/tmp/$f.lvm2.$phase" | head -4 | tr '\n' ' ')"
    done
    say "$phase: tables and UUIDs of the $VG devices identical for lvtool and lvm2, e.g. $(grep "^$VG-lv1:" "/tmp/table.ours.$phase")"
}

# Tool order alternates with the round.
order() { if (($1 % 2)); then echo ours lvm2; else echo lvm2 ours; fi; }

all_lvs() {
    local phase=$1 rounds=$2 r tool
    for r in $(seq "$rounds"); do
        for tool in $(order "$r"); do
            timed "$phase" "$tool" vg-ay "$r" "$tool" vgchange -ay "$VG"
            check_active "$tool" "$phase" "$NLV"
            [ "$r" != 1 ] || snapshot "$tool" "$phase"
            timed "$phase" "$tool" vg-an "$r" "$tool" vgchange -an "$VG"
            check_inactive "$tool" "$phase"
        done
    done
    same_devices "$phase"
}

one_lv() {
    local phase=$1 r tool
    for r in $(seq "$SINGLE"); do
        for tool in $(order "$r"); do
            timed "$phase" "$tool" lv-ay "$r" "$tool" lvchange -ay "$VG/lv1"
            check_active "$tool" "$phase" 1
            timed "$phase" "$tool" lv-an "$r" "$tool" lvchange -an "$VG/lv1"
            check_inactive "$tool" "$phase"
        done
    done
}

# profile PHASE: a syscall summary (wall-clock time, -w) of each tool's vgchange -ay and -an.
profile() {
    local phase=$1 tool op cmd
    for tool in ours lvm2; do
        for op in ay an; do
            cmd=(lvm vgchange "-$op" "$VG" --config "$LVM_CONFIG")
            [ "$tool" = lvm2 ] || cmd=("$lvtool" vgchange "-$op" "$VG" --config "$LVTOOL_CONFIG" --devices "$disk")
            settle
            strace -f -c -w -o "$SANLVM_SHARED/strace.$phase.$tool.$op" "${cmd[@]}" >/tmp/out 2>&1 ||
                { cat /tmp/out; fail "strace $tool vgchange -$op failed"; }
        done
    done
    check_inactive profile "$phase"
}

say "with udev"
all_lvs udev "$UDEV_ROUNDS"
((SINGLE == 0)) || one_lv udev

if ((NOUDEV)); then
    stop_udev
    # lvm2 makes its own nodes and links, waits for no udev cookie, lists devices itself.
    LVM_CONFIG="devices{$LVM_DEVICES obtain_device_list_from_udev=0} activation{udev_sync=0 udev_rules=0}"
    say "without udev"
    all_lvs noudev "$ROUNDS"
    ((SINGLE == 0)) || one_lv noudev
    ((PROFILE == 0)) || profile noudev
fi
pass
