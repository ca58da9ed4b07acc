# shellcheck shell=bash
# two-vm-disk: two VMs booted at once share one raw image; a block one writes is read by the
# other, both ways (guest/two-vm-disk.sh). The host then reads both blocks in the image too.
scenario() {
    local img token
    img=$(new_disk shared0 64M)
    token=$RANDOM$RANDOM
    boot_vm vmA "$img" two-vm-disk.sh A "$token"
    boot_vm vmB "$img" two-vm-disk.sh B "$token"
    wait_vms 300 vmA vmB
    expect_guest_pass vmA
    expect_guest_pass vmB
    local role at
    for role in A B; do
        at=$([ $role = A ] && echo 256 || echo 512)
        dd if="$img" bs=4096 skip="$at" count=1 status=none | head -1 | grep -qx "sanlvm two-vm-disk $role $token" ||
            fail "the image does not hold $role's block at block $at"
    done
}
