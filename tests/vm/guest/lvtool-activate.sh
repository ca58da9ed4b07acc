#!/usr/bin/env bash
# lvtool-activate: lvtool's device-mapper module (lvtool/src/dm.rs) on a real kernel, through the
# dmcheck example: an LV's table as lvm2 builds it, data placement on the PV, reload with
# suspend/resume, open count, removal. Once with udev making /dev/mapper and /dev/VG links, once
# without udev, where lvtool must make them itself.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
disk=$(the_disk)
dmcheck=$SANLVM_TARGET/debug/examples/dmcheck
modprobe dm_mod
[ -S /run/udev/control ] || fail "udev is not running in the guest"

# --- lvtool's own commands against real lvm2 on this kernel ---
lvtool=$SANLVM_TARGET/debug/lvtool
lvt() { "$lvtool" "$@" --devices "$disk"; }
lvm() { "$@" --config "devices{use_devicesfile=0 filter=[\"a|^$disk\$|\",\"r|.*|\"]}"; }
size_of() { blockdev --getsize64 "$1"; }
say "lvtool commands"
t lvt pvcreate "$disk"
t lvt vgcreate vm1 "$disk"
t lvt lvcreate -L 8M -n lv0 vm1
t lvt lvcreate -L 12M -n lv1 vm1
t lvt lvchange -ay vm1/lv1
[ -b /dev/mapper/vm1-lv1 ] && [ -e /dev/vm1/lv1 ] || fail "lvchange -ay made no /dev/mapper/vm1-lv1 or /dev/vm1/lv1"
ours_table=$(dmsetup table vm1-lv1)
ours_uuid=$(dmsetup info -c --noheadings -o uuid vm1-lv1)
lvm lvs --noheadings -o lv_attr vm1/lv1 | grep -q '^ *-wi-a' || fail "real lvs does not show our vm1/lv1 active: $(lvm lvs vm1 2>&1)"

say "the table is the one lvm2 loads"
t lvt lvchange -an vm1/lv1
! dmsetup info vm1-lv1 >/dev/null 2>&1 || fail "lvchange -an left vm1-lv1 behind"
t lvm lvchange -ay vm1/lv1
lvm2_table=$(dmsetup table vm1-lv1)
lvm2_uuid=$(dmsetup info -c --noheadings -o uuid vm1-lv1)
[ "$ours_table" = "$lvm2_table" ] || fail "table differs: ours \"$ours_table\", lvm2 \"$lvm2_table\""
[ "$ours_uuid" = "$lvm2_uuid" ] || fail "DM uuid differs: ours $ours_uuid, lvm2 $lvm2_uuid"
t lvm lvchange -an vm1/lv1
t lvt lvchange -ay vm1/lv1

say "data lands at the LV's extents on the PV"
pe_start=$(lvm pvs --noheadings --nosuffix --units b -o pe_start "$disk" | tr -d ' ')
extent=$(lvm vgs --noheadings --nosuffix --units b -o vg_extent_size vm1 | tr -d ' ')
first_pe=$(lvm lvs --noheadings -o seg_pe_ranges vm1/lv1 | sed 's/.*:\([0-9]*\)-.*/\1/')
block /tmp/pattern "sanlvm block through vm1/lv1"
write_block /tmp/pattern /dev/mapper/vm1-lv1 1
read_block "$disk" /tmp/back $(((pe_start + first_pe * extent) / 4096 + 1))
cmp -s /tmp/pattern /tmp/back || fail "block 1 of vm1/lv1 is not at PV byte $((pe_start + first_pe * extent + 4096))"

say "lvextend elsewhere, then --refresh here"
before=$(size_of /dev/mapper/vm1-lv1)
t lvt lvextend -L +8M vm1/lv1 --driverloaded n
[ "$(size_of /dev/mapper/vm1-lv1)" = "$before" ] || fail "size changed before --refresh"
t lvt lvchange --refresh vm1/lv1
[ "$(size_of /dev/mapper/vm1-lv1)" = $((before + 8 * 1024 * 1024)) ] || fail "--refresh did not grow vm1-lv1 to 20 MiB"
cmp -s /tmp/pattern <(dd if=/dev/mapper/vm1-lv1 bs=4096 skip=1 count=1 iflag=direct status=none) ||
    fail "data moved after --refresh"

say "an LV removed elsewhere leaves a stale device: reported, then removed by vgchange --refresh"
t lvt lvremove -f vm1/lv1 --driverloaded n
report=$(lvt lvs vm1 2>&1)
grep -q "WARNING: Device vm1-lv1 is active" <<<"$report" || fail "lvs does not report the stale vm1-lv1: $report"
t lvt vgchange --refresh vm1
! dmsetup info vm1-lv1 >/dev/null 2>&1 || fail "vgchange --refresh left the stale vm1-lv1"
t lvt vgchange -an vm1
t lvt vgremove -f vm1
wipefs -q -a "$disk" >/dev/null 2>&1 || dd if=/dev/zero of="$disk" bs=1M count=4 oflag=direct status=none

say "with udev"
t "$dmcheck" "$disk"

udevadm settle
udevadm control --exit
for _ in $(seq 50); do
    pgrep -x systemd-udevd >/dev/null || break
    sleep 0.1
done
! pgrep -x systemd-udevd >/dev/null || fail "systemd-udevd did not exit"
# The devicemapper crate takes this socket as the sign that udev runs.
rm -f /run/udev/control
say "without udev"
t "$dmcheck" "$disk"
pass
