# shellcheck shell=bash
# Sourced by the guest scripts (they run as root inside a VM booted by tests/vm/lib.sh:boot_vm).
# From the host: SANLVM_VM (this VM's name), SANLVM_SHARED (directory shared read-write with the
# host and the other VMs), SANLVM_TARGET (cargo's target dir), SANLVM_DISK_SERIALS (the virtio
# serials of the scenario's disks, space-separated; empty without disks).
#
# A script ends with `pass`, or `fail WHY`; any failing command fails it too (with its line). The
# result goes to $SANLVM_SHARED/$SANLVM_VM.result, which the host reads.
set -eEuo pipefail
# The host's PATH may point at things the guest cannot run; vng leaks its fds into commands,
# which lvm2 would warn about.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LVM_SUPPRESS_FD_WARNINGS=1
RESULT=$SANLVM_SHARED/$SANLVM_VM.result

uptime_s() { cut -d' ' -f1 /proc/uptime; }
say() { echo "[$SANLVM_VM $(uptime_s)] $*"; }

pass() {
    echo PASS >"$RESULT"
    say PASS
    exit 0
}

fail() {
    trap - ERR
    printf '%s\n' "$*" >"$RESULT"
    say "FAIL: $*"
    exit 1
}

on_error() { fail "$(basename "$0") line $2: \"$3\" failed (status $1)"; }
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

# t CMD...: runs CMD, logs how long it took.
t() {
    local s e
    s=$(date +%s%N)
    "$@"
    e=$(date +%s%N)
    say "TIME $(((e - s) / 1000000)) ms: $*"
}

# the_disk [SERIAL]: the device (/dev/vdX) of a scenario disk, by its serial (default: the first
# disk's); the name the kernel gives may vary.
the_disk() {
    local want=${1:-${SANLVM_DISK_SERIALS%% *}} f
    for f in /sys/block/*/serial; do
        [ "$(cat "$f")" = "$want" ] && { echo "/dev/$(basename "$(dirname "$f")")"; return 0; }
    done
    fail "no disk with serial \"$want\""
}

# Barriers between the VMs of a scenario and the host, through the shared directory.
signal() {
    echo "$SANLVM_VM $(uptime_s)" >"$SANLVM_SHARED/$1"
    say "signalled $1"
}

# await NAME [TIMEOUT_S]: waits for another VM's signal NAME (or the host's host_signal).
await() {
    local n=0 max=$((${2:-180} * 5))
    while [ ! -e "$SANLVM_SHARED/$1" ]; do
        ((++n < max)) || fail "timed out waiting for $1"
        sleep 0.2
    done
    say "got $1"
}

# block FILE TEXT: a 4 KiB block holding TEXT then zeros.
block() {
    printf '%s\n' "$2" >"$1"
    truncate -s 4096 "$1"
}

# Writes/reads one 4 KiB block at block index $3 with O_DIRECT, so no page cache hides the disk.
write_block() { dd if="$1" of="$2" bs=4096 seek="$3" count=1 oflag=direct conv=notrunc,fsync status=none; }
read_block() { dd if="$1" of="$2" bs=4096 skip="$3" count=1 iflag=direct status=none; }

say "kernel $(uname -r), up $(uptime_s) s, running $(basename "$0") $*"
