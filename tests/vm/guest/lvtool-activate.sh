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
