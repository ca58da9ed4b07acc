# shellcheck shell=bash
# dm-smoke: the guest kernel's device-mapper maps a linear device onto the virtio disk
# (guest/dm-smoke.sh). One VM.
scenario() {
    boot_vm vm1 "$(new_disk smoke 64M)" dm-smoke.sh
    wait_vms 300 vm1
    expect_guest_pass vm1
}
