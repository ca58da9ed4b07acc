# shellcheck shell=bash
# shared-flow: the seed flows of a shared VG on two VMs (A host_id 1, B host_id 2) sharing one
# disk, each running wdmd on its i6300esb and lockd (N=2, W=10), lvtool with real device-mapper
# (guest/shared-flow.sh): VG created on A seen on B; lvcreate on B; -aey on A, B refused naming
# host 1; -an on A, -aey on B; lvextend on the holder + --refresh shows the new size; lvremove
# leaves no DM device on either host; lvs -o +lock_owner agrees on both hosts at every step.
scenario() {
    build_lockd
    local img
    img=$(new_disk shared0 512M)
    boot_vm vmA "$img" shared-flow.sh A
    boot_vm vmB "$img" shared-flow.sh B
    wait_vms 230 vmA vmB
    local vm
    for vm in vmA vmB; do
        [ "${VM_RC[$vm]}" = 0 ] && [ "$(guest_result $vm)" = PASS ] || daemon_log_tail $vm
    done
    expect_guest_pass vmA
    expect_guest_pass vmB
    # The guests' command times (TIME lines), for the timings summary.
    for vm in vmA vmB; do
        timing "$vm: $(grep -o 'TIME [0-9]* ms: lvt [a-z]* [^ ]*' "$SCEN_DIR/$vm.log" | sed 's/TIME \([0-9]*\) ms: lvt \(.*\)/\2 \1ms/' | paste -sd, -)"
    done
    # The host's own look at the disk: no LV left in sv but the lock LV.
    grep -q "lv1" "$SHARED/owners.3.A" && fail "owners.3.A still lists lv1"
    return 0
}
