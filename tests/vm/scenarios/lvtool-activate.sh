# shellcheck shell=bash
# lvtool-activate: lvtool's DM module creates, reloads and removes an LV's device on a real
# kernel, with and without udev (guest/lvtool-activate.sh). One VM; the disk is big enough for
# the example's extents (PE 102 of 4 MiB extents).
scenario() {
    boot_vm vm1 "$(new_disk pv0 512M)" lvtool-activate.sh
    wait_vms 300 vm1
    expect_guest_pass vm1
}
