#!/usr/bin/env bash
# watchdog-*: arm a watchdog, pet it every second for 2 timeouts (so petting demonstrably works), then stop
# petting. The VM must reset; the host sees it through QMP. This script never passes by itself:
# reaching its end means no reset. usage: watchdog.sh i6300esb|softdog TIMEOUT_S
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
kind=$1 timeout=$2
# vng always adds an i6300esb and udev loads its driver with a 30 s heartbeat: reload it with
# ours, or unload it so that softdog becomes /dev/watchdog.
rmmod i6300esb 2>/dev/null || true
case $kind in
i6300esb) modprobe i6300esb heartbeat="$timeout" ;;
softdog) modprobe softdog soft_margin="$timeout" ;;
*) fail "unknown watchdog $kind" ;;
esac
w=/sys/class/watchdog/watchdog0
say "watchdog0: $(cat $w/identity), timeout $(cat $w/timeout) s"
exec 3>/dev/watchdog
signal armed
for _ in $(seq $((2 * timeout))); do
    sleep 1
    printf . >&3
done
signal stopped-petting
say "stopped petting"
for i in $(seq 120); do
    sleep 1
    ((i % 10)) || say "still alive"
done
fail "no reset 120 s after the watchdog stopped being petted"
