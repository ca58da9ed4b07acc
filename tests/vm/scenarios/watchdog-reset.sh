# shellcheck shell=bash
# watchdog-reset: a guest that stops petting the i6300esb watchdog is reset, and the host sees
# it on QMP: WATCHDOG (action reset) then SHUTDOWN (guest-reset), a few seconds after the guest
# stopped petting (guest/watchdog.sh).
WATCHDOG=i6300esb
scenario() { watchdog_scenario; }

# Shared with watchdog-softdog.sh.
watchdog_scenario() {
    local timeout=5 stopped reset delay
    boot_vm vm1 none watchdog.sh "$WATCHDOG" "$timeout"
    wait_vms 300 vm1
    [ -e "$SHARED/stopped-petting" ] || { expect_guest_pass vm1; fail "vm1 never stopped petting"; }
    # The guest wrote the file: its mtime is host time, comparable with QMP's timestamps.
    stopped=$(stat -c %.Y "$SHARED/stopped-petting")
    if [ "$WATCHDOG" = i6300esb ]; then
        qmp_event_time vm1 WATCHDOG action=reset >/dev/null ||
            fail "no QMP WATCHDOG reset event (events: $(qmp_events vm1)); $(guest_result vm1)"
    fi
    reset=$(qmp_event_time vm1 SHUTDOWN reason=guest-reset) ||
        fail "no QMP SHUTDOWN guest-reset event (events: $(qmp_events vm1)); $(guest_result vm1)"
    [ "${VM_RC[vm1]}" = 255 ] || fail "vng status ${VM_RC[vm1]}, not 255 (VM died)"
    delay=$(elapsed "$stopped" "$reset")
    timing "reset $delay s after petting stopped (timeout $timeout s)"
    # Not before the timeout (less the signal's own delay), and not long after it.
    awk -v d="$delay" -v t="$timeout" 'BEGIN { exit !(d >= t - 1 && d <= 2 * t + 5) }' ||
        fail "reset $delay s after petting stopped, timeout $timeout s"
}
