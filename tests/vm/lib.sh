# shellcheck shell=bash
# Host side of the VM tier, sourced by tests/vm/run (which sets VM_DIR and REPO). Scenario files
# (scenarios/NAME.sh) define `scenario` and use the functions below; see README.md.
#
# A VM is booted with virtme-ng: the host's / is the guest's root (9p, read-only, with tmpfs
# overlays on /etc, /var, /tmp...), so host-built binaries and host-installed lvm2/sanlock run in
# the guest. Each VM gets: at most one raw disk (virtio-blk, shareable by two VMs), a QMP socket
# logged to NAME.events (JSON lines with host time), a second QMP socket for commands, the
# scenario's shared directory (read-write, same path in the guest), and the i6300esb watchdog vng
# always adds. A guest reset or panic ends QEMU (vng passes -no-reboot).

CACHE=${SANLVM_VM_CACHE:-/var/tmp/sanlvm-vm}
RUN_DIR=$CACHE/last-run
VENV=$CACHE/venv
VM_MEM=${SANLVM_VM_MEM:-768M}
VIRTME_NG_VERSION=1.42
APT_PACKAGES=(qemu-system-x86 linux-image-amd64 busybox-static udev lvm2 sanlock lvm2-lockd python3-venv)

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
# Seconds between two `now` values, one decimal.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# shellcheck source=tests/lib/packages.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/packages.sh"

# Installs qemu, the Debian kernel and the guest userspace on the host (the guest shares it), and
# virtme-ng in a venv. Sets KERNEL, PY, VNG.
setup_host() {
    # Callers test our status, which turns off set -e in here: hence the explicit returns.
    apt_install "${APT_PACKAGES[@]}" || return 1
    if [ ! -x "$VENV/bin/vng" ]; then
        log "installing virtme-ng $VIRTME_NG_VERSION into $VENV"
        local python=python3
        [ -x /usr/bin/python3 ] && python=/usr/bin/python3
        rm -rf "$VENV"
        "$python" -m venv "$VENV" || return 1
        "$VENV/bin/pip" install -q "virtme-ng==$VIRTME_NG_VERSION" || return 1
    fi
    PY=$VENV/bin/python3
    VNG=$VENV/bin/vng
    KERNEL=${SANLVM_VM_KERNEL:-$(find /boot -maxdepth 1 -name 'vmlinuz-*' | sort -V | tail -1)}
    if [ -z "$KERNEL" ] || [ ! -r "$KERNEL" ]; then
        echo "no kernel in /boot (linux-image-amd64)" >&2
        return 1
    fi
}

# Builds what guests run. Sets TARGET (cargo's target directory, visible in the guest).
build_project() {
    (cd "$REPO" && cargo build -q -p lvtool --bins --examples --locked) || return 1
    find_target
}

# Sets TARGET, cargo's target directory; fails if the guest cannot see it (/tmp, /var/tmp).
find_target() {
    TARGET=$(cd "$REPO" && cargo metadata -q --format-version 1 --no-deps |
        "$PY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') || return 1
    case $TARGET/ in
    /tmp/* | /var/tmp/*)
        echo "cargo's target directory $TARGET is under /tmp or /var/tmp, which the guest does not see" >&2
        return 1
        ;;
    esac
}

# --- benches/vm-*.sh ---------------------------------------------------------------------------

# bench_start NAME: the bench's run directory $CACHE/bench-NAME (not last-run: tests/vm/run may be
# using that) made afresh, and the host set up. Needs fail().
bench_start() {
    # shellcheck disable=SC2034 # used by the functions above
    RUN_DIR=$CACHE/bench-$1 SCEN_NAME=vm-$1 SCEN_DIR=$CACHE/bench-$1 SHARED=$CACHE/bench-$1/shared
    rm -rf "$RUN_DIR"
    mkdir -p "$SHARED"
    setup_host >>"$RUN_DIR/setup.log" 2>&1 || fail "host setup failed, see $RUN_DIR/setup.log"
}

# bench_build CARGO_BUILD_ARGS...: a release build of what the bench runs; sets TARGET.
bench_build() {
    (cd "$REPO" && cargo build -q --release --locked "$@") >>"$RUN_DIR/setup.log" 2>&1 ||
        fail "cargo build failed, see $RUN_DIR/setup.log"
    find_target 2>>"$RUN_DIR/setup.log" || fail "no usable cargo target directory, see $RUN_DIR/setup.log"
}

# --- inside a scenario (SCEN_DIR, SHARED set by run_scenario) ---------------------------------

declare -A VM_PID=() VM_T0=() VM_RC=() VM_WALL=() VM_QMPW=()

# Ends the scenario as failed with a reason (one line).
fail() {
    printf '%s\n' "$*" >"$SCEN_DIR/result"
    exit 1
}

# A line for the timings summary.
timing() { printf '%s: %s\n' "$SCEN_NAME" "$*" >>"$RUN_DIR/timings"; }

# new_disk NAME SIZE: a fresh sparse raw image; prints its path. Its name (≤ 20 chars) is the
# virtio serial the guest finds it by.
new_disk() {
    local img=$SCEN_DIR/$1.img
    rm -f "$img"
    truncate -s "$2" "$img"
    echo "$img"
}

# boot_vm NAME DISKS SCRIPT [ARG...]: boots VM NAME in the background running
# tests/vm/guest/SCRIPT ARG... (as root). DISKS: images from new_disk, comma-separated, or "none";
# VMs given the same image share it (no image locking, O_DIRECT, share-rw). Finish with wait_vms.
# VM_QEMU_OPTS adds QEMU options, e.g. VM_QEMU_OPTS="-device pvpanic -action panic=exit-failure"
# boot_vm ... makes a guest panic end QEMU with status 1 (see qemu_rc).
boot_vm() {
    local name=$1 disks=$2 script=$3 serials=() disk serial
    shift 3
    local qopts=(
        -qmp "unix:$SCEN_DIR/$name.qmp,server=on,wait=off"
        -qmp "unix:$SCEN_DIR/$name.qmp-cmd,server=on,wait=off"
    )
    if [ "$disks" != none ]; then
        for disk in ${disks//,/ }; do
            serial=$(basename "$disk" .img)
            serial=${serial:0:20}
            serials+=("$serial")
            qopts+=(-drive "file=$disk,format=raw,if=none,id=$serial,cache=none,file.locking=off"
                -device "virtio-blk-pci,drive=$serial,share-rw=on,serial=$serial")
        done
    fi
    # shellcheck disable=SC2206 # options are words
    qopts+=(${VM_QEMU_OPTS:-})
    local guest
    guest=$(printf '%q ' env "SANLVM_VM=$name" "SANLVM_SHARED=$SHARED" "SANLVM_TARGET=$TARGET" \
        "SANLVM_DISK_SERIALS=${serials[*]}" bash "$VM_DIR/guest/$script" "$@")
    rm -f "$SCEN_DIR/$name.qmp" "$SCEN_DIR/$name.qmp-cmd" "$SHARED/$name.result"
    "$PY" "$VM_DIR/qmp.py" watch "$SCEN_DIR/$name.qmp" "$SCEN_DIR/$name.events" 2>>"$SCEN_DIR/$name.log" &
    VM_QMPW[$name]=$!
    VM_T0[$name]=$(now)
    # setsid: its own process group, so a hung VM (vng and its QEMU) can be killed as a whole.
    # --force-9p: vng otherwise first tries virtiofsd for the root: 3 s here, and it ends on 9p anyway.
    SANLVM_QEMU_RC=$SCEN_DIR/$name.qemu-rc PATH=$VENV/bin:$PATH setsid "$VNG" --run "$KERNEL" \
        --disable-kvm --force-9p -p 1 -m "$VM_MEM" --name "$name" --user root --cwd / \
        --qemu "$VM_DIR/qemu-wrap" ${SANLVM_VM_VERBOSE:+--verbose} --qemu-opts="${qopts[*]}" \
        --rwdir="$SHARED" --exec "$guest" </dev/null >>"$SCEN_DIR/$name.log" 2>&1 &
    VM_PID[$name]=$!
    log "$SCEN_NAME: booting $name (disks: ${serials[*]}): $script $*"
}

# wait_vms TIMEOUT NAME...: waits for the VMs to end; one still running after TIMEOUT seconds is
# killed and gets VM_RC=timeout. Sets VM_RC[NAME] (vng's status: the guest command's, 255 if the
# VM died first) and VM_WALL[NAME].
wait_vms() {
    local timeout=$1 deadline name left
    shift
    deadline=$(($(date +%s) + timeout))
    while :; do
        left=0
        for name in "$@"; do
            [ -n "${VM_RC[$name]:-}" ] && continue
            if kill -0 "${VM_PID[$name]}" 2>/dev/null && (($(date +%s) < deadline)); then
                left=1
                continue
            fi
            if kill -0 "${VM_PID[$name]}" 2>/dev/null; then
                kill_vm "$name"
                VM_RC[$name]=timeout
            else
                VM_RC[$name]=0
                wait "${VM_PID[$name]}" || VM_RC[$name]=$?
            fi
            VM_WALL[$name]=$(elapsed "${VM_T0[$name]}" "$(now)")
            stop_qmp_watch "$name"
            timing "$name vm ${VM_WALL[$name]} s (vng rc ${VM_RC[$name]}, qemu rc $(qemu_rc "$name"))"
            log "$SCEN_NAME: $name ended after ${VM_WALL[$name]} s, vng rc ${VM_RC[$name]}"
        done
        ((left)) || return 0
        sleep 0.5
    done
}

kill_vm() {
    local pid=${VM_PID[$1]} sig
    for sig in TERM KILL; do
        kill "-$sig" -- "-$pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 -- "-$pid" 2>/dev/null || break 2
            sleep 0.5
        done
    done
    wait "$pid" 2>/dev/null || true
}

stop_qmp_watch() {
    local pid=${VM_QMPW[$1]:-}
    [ -n "$pid" ] || return 0
    # It ends by itself when QEMU closes the socket; it waits for a socket that never came.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    VM_QMPW[$1]=
}

# Kills what this scenario still runs (on exit, after a failure).
cleanup_vms() {
    local name
    for name in "${!VM_PID[@]}"; do
        [ -n "${VM_RC[$name]:-}" ] || kill_vm "$name"
        stop_qmp_watch "$name"
    done
}

# host_await NAME [TIMEOUT_S]: waits for a guest's `signal NAME` (see guest/lib.sh).
host_await() {
    local n=0 max=$((${2:-180} * 5))
    while [ ! -e "$SHARED/$1" ]; do
        ((++n < max)) || fail "timed out waiting for signal $1"
        sleep 0.2
    done
}

# host_signal NAME: releases a guest's `await NAME`.
host_signal() { echo "host $(now)" >"$SHARED/$1"; }

qemu_rc() { cat "$SCEN_DIR/$1.qemu-rc" 2>/dev/null || echo none; }

# What the guest script reported: PASS, or its failure reason; empty when it wrote nothing.
guest_result() { cat "$SHARED/$1.result" 2>/dev/null || true; }

# qmp_events NAME: the QMP event names seen, in order, space-separated.
qmp_events() {
    "$PY" -c 'import json, sys
print(" ".join(json.loads(l)["event"] for l in open(sys.argv[1])))' "$SCEN_DIR/$1.events" 2>/dev/null || true
}

# qmp_event_time NAME EVENT [KEY=VALUE]: host time of the first EVENT (whose data has KEY=VALUE);
# fails when there is none.
qmp_event_time() {
    "$PY" - "$SCEN_DIR/$1.events" "$2" "${3:-}" <<'EOF'
import json, sys
path, event, cond = sys.argv[1:]
key, _, value = cond.partition("=")
for line in open(path):
    e = json.loads(line)
    if e["event"] == event and (not key or str(e.get("data", {}).get(key)) == value):
        print(e["t"])
        sys.exit(0)
sys.exit(1)
EOF
}

# qmp_cmd NAME COMMAND [ARGS_JSON]: runs a QMP command on a running VM, prints its return value.
qmp_cmd() { "$PY" "$VM_DIR/qmp.py" cmd "$SCEN_DIR/$1.qmp-cmd" "$2" ${3:+"$3"}; }

# Fails the scenario unless VM NAME's guest script ended normally and reported PASS.
expect_guest_pass() {
    local name=$1 res
    res=$(guest_result "$name")
    [ "${VM_RC[$name]}" = 0 ] && [ "$res" = PASS ] && return 0
    case ${VM_RC[$name]} in
    timeout) fail "$name: timed out (${res:-no result}); see $SCEN_DIR/$name.log" ;;
    255) fail "$name: VM died (QMP: $(qmp_events "$name")); see $SCEN_DIR/$name.log" ;;
    *) fail "$name: ${res:-exit status ${VM_RC[$name]}, no result}; see $SCEN_DIR/$name.log" ;;
    esac
}

# --- running scenarios ------------------------------------------------------------------------

# run_scenario NAME: runs scenarios/NAME.sh in a subshell, prints PASS/FAIL; returns 1 on FAIL.
run_scenario() {
    local name=$1 t0 rc why
    SCEN_NAME=$name SCEN_DIR=$RUN_DIR/$name
    SHARED=$SCEN_DIR/shared
    rm -rf "$SCEN_DIR"
    mkdir -p "$SHARED"
    t0=$(now)
    # Not `( ... ) || rc=$?`: that would turn off set -e inside.
    set +e
    (
        set -euo pipefail
        # The VMs run in sessions of their own: signals for us do not reach them.
        trap cleanup_vms EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        # shellcheck source=/dev/null
        . "$VM_DIR/scenarios/$name.sh"
        scenario
    ) >>"$SCEN_DIR/harness.log" 2>&1
    rc=$?
    set -e
    timing "total $(elapsed "$t0" "$(now)") s"
    if ((rc == 0)); then
        echo "PASS $name"
        return 0
    fi
    why=$(head -1 "$SCEN_DIR/result" 2>/dev/null || true)
    echo "FAIL $name: ${why:-harness error (exit $rc), see $SCEN_DIR/harness.log}"
    return 1
}

# --- lockd hosts (shared-flow, canary-002, fence) ----------------------------------------------

# build_lockd: the daemons the guests run next to lvtool (run only builds lvtool), and
# $SHARED/bin/lvtool: the debug lvtool without its debug info (7 MB instead of 47), which
# guest/lib.sh:lockd_host copies to the guest's tmpfs: lvtool runs often, and reading its pages
# over 9p under TCG costs seconds.
build_lockd() {
    (cd "$REPO" && cargo build -q -p lockd -p wdmd --bins --locked) || fail "cargo build of lockd and wdmd failed"
    [ -x "$TARGET/debug/lockd" ] && [ -x "$TARGET/debug/wdmd" ] || fail "no lockd or wdmd in $TARGET/debug"
    mkdir -p "$SHARED/bin"
    strip --strip-debug -o "$SHARED/bin/lvtool" "$TARGET/debug/lvtool" 2>/dev/null || rm -f "$SHARED/bin/lvtool"
}

# mtime FILE: its modification time (host time for files guests write to the shared directory).
mtime() { stat -c %.Y "$1"; }

# guest_clock_offset VM MARK: host time minus the guest's CLOCK_MONOTONIC (see guest/lib.sh
# clock_mark), from the host mtime of the mark and the guest uptimes around its write; prints
# "OFFSET UNCERTAINTY" in seconds.
guest_clock_offset() {
    local f=$SHARED/clock.$1.$2
    [ -e "$f" ] && [ -e "$f.u" ] || return 1
    awk -v m="$(mtime "$f")" '{ printf "%.3f %.3f\n", m - ($1 + $2) / 2, ($2 - $1) / 2 + 0.005 }' "$f.u"
}

# daemon_log_tail VM: the last lines of a guest's lockd and wdmd logs, for failure reports.
daemon_log_tail() {
    local f
    for f in "$SHARED/$1.lockd.log" "$SHARED/$1.wdmd.log"; do
        [ -e "$f" ] && { echo "--- $f"; tail -15 "$f"; }
    done
    return 0
}
