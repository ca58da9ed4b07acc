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

# stop_udev: lets udev finish its work, stops udevd, and removes its control socket, which lvtool
# (and the devicemapper crate, and libdevmapper) take as the sign that udev runs.
stop_udev() {
    udevadm settle -t 1800
    udevadm control --exit
    for _ in $(seq 50); do
        pgrep -x systemd-udevd >/dev/null || break
        sleep 0.1
    done
    ! pgrep -x systemd-udevd >/dev/null || fail "systemd-udevd did not exit"
    rm -f /run/udev/control
}

say "kernel $(uname -r), up $(uptime_s) s, running $(basename "$0") $*"

# --- lockd hosts (shared-flow, canary-002, fence) ----------------------------------------------
# This VM as one host of a shared VG on the scenario disk: wdmd on the real watchdog device,
# lockd with its own lvmlocal.toml, lvtool (`lvt`) pointed at it. Daemon logs go to the shared
# directory ($SANLVM_SHARED/$SANLVM_VM.{wdmd,lockd}.log), so they survive a reset of this VM.
LOCKD_HOME=/run/sanlvm
LVM_CONF=$LOCKD_HOME/lvmlocal.toml
LVTOOL=$LOCKD_HOME/bin/lvtool
LOCKD_PID='' WDMD_PID=''

# lockd_host HOST_ID [IO_TIMEOUT] [FIRE_TIMEOUT] [PV]: config, wdmd, lockd; host_name is
# nodeHOST_ID; the config's `devices` is PV (default: the scenario disk). lockd reads where the
# leases are from the metadata on those devices, so PV must be set before it starts.
# W is the i6300esb's timeout (wdmd programs it); host_dead = 8N+W (default 8*2+10 = 26 s).
lockd_host() {
    local id=$1 n=${2:-2} w=${3:-10} disk=${4:-} log=$SANLVM_SHARED/$SANLVM_VM
    [ -n "$disk" ] || disk=$(the_disk)
    mkdir -p "$LOCKD_HOME"
    cat >"$LVM_CONF" <<EOC
host_id = $id
host_name = "node$id"
io_timeout = $n
watchdog_fire_timeout = $w
use_watchdog = true
devices = ["$disk"]
run_dir = "$LOCKD_HOME/lockd"
wdmd_run_dir = "$LOCKD_HOME/wdmd"
EOC
    # lvtool, copied to tmpfs once: run from the 9p root (mounted sync, no cache) each exec
    # reads it again, which doubles its time under TCG. The host's build_lockd leaves a copy
    # without debug info in the shared directory (7 MB to read instead of 47).
    mkdir -p "$LOCKD_HOME/bin"
    if [ -x "$SANLVM_SHARED/bin/lvtool" ]; then
        cp "$SANLVM_SHARED/bin/lvtool" "$LVTOOL"
    else
        cp "$SANLVM_TARGET/debug/lvtool" "$LVTOOL"
    fi
    modprobe dm_mod
    # udev loads it at boot (30 s heartbeat, not armed until opened); wdmd sets W itself.
    modprobe i6300esb
    [ -c /dev/watchdog ] || fail "no /dev/watchdog"
    "$SANLVM_TARGET/debug/wdmd" --run-dir "$LOCKD_HOME/wdmd" --device /dev/watchdog --fire-timeout "$w" \
        ${WDMD_DEBUG:+--debug} >>"$log.wdmd.log" 2>&1 &
    WDMD_PID=$!
    wait_socket "$LOCKD_HOME/wdmd/wdmd.sock" "$WDMD_PID" wdmd
    "$SANLVM_TARGET/debug/lockd" daemon --config "$LVM_CONF" >>"$log.lockd.log" 2>&1 &
    LOCKD_PID=$!
    wait_socket "$LOCKD_HOME/lockd/lockd.sock" "$LOCKD_PID" lockd
    say "host_id $id: wdmd pid $WDMD_PID ($(cat /sys/class/watchdog/watchdog0/identity), timeout $(cat /sys/class/watchdog/watchdog0/timeout) s), lockd pid $LOCKD_PID, N=$n W=$w"
}

# wait_socket PATH PID NAME: waits up to 30 s for a daemon's socket; fails if the daemon died.
wait_socket() {
    local n
    for n in $(seq 150); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || fail "$3 exited at start; see $SANLVM_SHARED/$SANLVM_VM.$3.log"
        sleep 0.2
    done
    fail "$3 made no socket $1 in 30 s"
}

# lvt ARGS...: lvtool with this host's config (real device-mapper).
lvt() { "$LVTOOL" "$@" --config "$LVM_CONF"; }

# lvt_refused NEEDLE ARGS...: lvtool must fail with exit status 5 and NEEDLE in its output.
lvt_refused() {
    local needle=$1 out rc=0
    shift
    out=$(lvt "$@" 2>&1) || rc=$?
    [ "$rc" = 5 ] || fail "lvtool $* should fail with status 5 (\"$needle\"), got $rc: $out"
    grep -qF -- "$needle" <<<"$out" || fail "lvtool $*: \"$needle\" not in: $out"
    say "refused as expected: lvtool $*: $(head -1 <<<"$out")"
}

# dm_devices VG: the DM devices of VG here (names VG-*), one a line.
dm_devices() { dmsetup ls 2>/dev/null | awk -v p="$1-" 'index($1, p) == 1 { print $1 }' || true; }

# lockd_host_stop [force]: lock-stop every VG (forced with "force"), then lockd, then wdmd (which
# disarms the watchdog when no client has an expiry left).
lockd_host_stop() {
    local pid out
    out=$(lvt vgchange --lock-stop ${1:+--force} 2>&1) || say "lock-stop failed: $out"
    for pid in "$LOCKD_PID" "$WDMD_PID"; do
        [ -n "$pid" ] || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && fail "pid $pid did not exit on SIGTERM"
    done
    say "lockd and wdmd stopped"
}

# clock_mark NAME: relates this VM's CLOCK_MONOTONIC (= /proc/uptime, no suspend here) to host
# time: $SANLVM_SHARED/clock.VM.NAME gets a host mtime between the two uptimes written to
# clock.VM.NAME.u. The host's guest_clock_offset turns them into host time - guest uptime.
clock_mark() {
    local f=$SANLVM_SHARED/clock.$SANLVM_VM.$1 u0
    up_now
    u0=$UP
    echo "$u0" >"$f"
    up_now
    echo "$u0 $UP" >"$f.u"
}

# up_now: sets UP to this VM's uptime in seconds (two decimals) and UP_CS to it in hundredths,
# without forking: under TCG every exec from the 9p root costs a good part of a second.
# shellcheck disable=SC2034 # UP_CS is for the callers
up_now() {
    local _rest
    read -r UP _rest </proc/uptime
    UP_CS=$((10#${UP/./}))
}

# await_peer NAME [TIMEOUT_S]: `await`, but fails at once when the other VM ($PEER_VM, e.g.
# vmB) has already ended with a result that is not PASS (so one failure does not leave its
# partner waiting until the timeout).
await_peer() {
    local n=0 max=$((${2:-180} * 5)) res=$SANLVM_SHARED/${PEER_VM:?}.result
    while [ ! -e "$SANLVM_SHARED/$1" ]; do
        if [ -e "$res" ] && [ "$(cat "$res")" != PASS ]; then
            fail "$PEER_VM failed while this VM waited for $1: $(cat "$res")"
        fi
        ((++n < max)) || fail "timed out waiting for $1"
        sleep 0.2
    done
    say "got $1"
}
