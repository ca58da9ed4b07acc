# shellcheck shell=bash
# fence-error: renewal failing until 8N makes lockd switch the VG's active LV to the `error`
# target, release and clear its wdmd expiry in time: writes through the LV stop, the VM is not
# reset (guest/fence-error.sh). One VM with wdmd on the i6300esb.
scenario() {
    build_lockd
    boot_vm vm1 "$(new_disk pv0 512M)" fence-error.sh
    wait_vms 300 vm1
    if [ "$(guest_result vm1)" != PASS ]; then
        daemon_log_tail vm1
    fi
    expect_guest_pass vm1
    [ -z "$(qmp_event_time vm1 WATCHDOG action=reset 2>/dev/null)" ] || fail "vm1's watchdog fired"
    local order
    order=$(cat "$SHARED/order")
    echo "fence-error: $order"
    timing "$order"
}
