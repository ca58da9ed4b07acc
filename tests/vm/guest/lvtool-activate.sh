#!/usr/bin/env bash
# lvtool-activate: the device-mapper crate (devmap/src/lv.rs) on a real kernel, through the
# dmcheck example: an LV's table as lvm2 builds it, data placement on the PV, reload with
# suspend/resume, open count, removal. Once with udev running (lvtool makes the /dev/mapper and
# /dev/VG links and tells udev to leave them; lvm2 has udev make them), once without udev.
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
# udev_db NAME: udev's database entry of the DM device NAME.
udev_db() { cat "/run/udev/data/b$(dmsetup info -c --noheadings -o major,minor --separator : "$1" | tr -d ' ')"; }
# links_ok VG LV WHEN: /dev/VG/LV and /dev/mapper/VG-LV lead to the LV's block device.
links_ok() {
    if [ ! -b "/dev/$1/$2" ] || [ ! "/dev/$1/$2" -ef "/dev/mapper/$1-$2" ]; then
        fail "$3: /dev/$1/$2 or /dev/mapper/$1-$2 missing or not the device"
    fi
}
say "lvtool commands"
t lvt pvcreate "$disk"
t lvt vgcreate vm1 "$disk"
t lvt lvcreate -L 8M -n lv0 vm1
t lvt lvcreate -L 12M -n lv1 vm1
t lvt lvchange -ay vm1/lv1
links_ok vm1 lv1 "right after lvtool lvchange -ay"
# lvtool did not wait for udev; once udev is done, it has left lvtool's links alone and made its
# own /dev/disk/by-id ones.
udevadm settle
links_ok vm1 lv1 "after udev settled"
! udev_db vm1-lv1 | grep -q '^S:mapper/' || fail "udev claims /dev/mapper/vm1-lv1 made by lvtool: $(udev_db vm1-lv1 | grep '^S:')"
[ -L /dev/disk/by-id/dm-name-vm1-lv1 ] || fail "udev made no /dev/disk/by-id/dm-name-vm1-lv1: $(udev_db vm1-lv1 | tr '\n' ' ')"
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
# A device lvm2 activated has links udev made: lvtool removes it waiting for udev, so that an
# activation right after keeps its links.
udevadm settle
udev_db vm1-lv1 | grep -q '^S:mapper/vm1-lv1$' || fail "lvm2's activation: udev made no /dev/mapper link"
t lvt lvchange -an vm1/lv1
if [ -e /dev/mapper/vm1-lv1 ] || [ -e /dev/vm1/lv1 ]; then
    fail "lvtool -an of lvm2's device left links: $(ls -l /dev/mapper/vm1-lv1 /dev/vm1/lv1 2>&1 | tr '\n' ' ' || true)"
fi
t lvt lvchange -ay vm1/lv1
udevadm settle
links_ok vm1 lv1 "lvtool -ay right after lvtool -an of lvm2's device, udev settled"

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

say "vgchange -ay: all devices loaded first, then made live together"
t lvt lvcreate -L 4M -n lv2 vm1 --driverloaded n
t lvt vgchange -an vm1
t lvt vgchange -ay vm1
for lv in lv0 lv2; do
    links_ok vm1 "$lv" "vgchange -ay"
    dmsetup info "vm1-$lv" | grep -q '^State: *ACTIVE' || fail "vm1-$lv is not live after vgchange -ay: $(dmsetup info "vm1-$lv")"
done
udevadm settle
links_ok vm1 lv2 "vgchange -ay, udev settled"
t lvt vgchange -an vm1
t lvt vgremove -f vm1
wipefs -q -a "$disk" >/dev/null 2>&1 || dd if=/dev/zero of="$disk" bs=1M count=4 oflag=direct status=none

say "with udev"
t "$dmcheck" "$disk"

stop_udev
say "without udev"
t "$dmcheck" "$disk"
pass
