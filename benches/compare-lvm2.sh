#!/usr/bin/env bash
# lvtool vs real lvm2 (--driverloaded n) as whole processes on the same loop-device VG made by
# lvm2 (one PV, 21 LVs of 8 MiB), interleaved, order alternating each round:
#   lvs VG;  lvcreate -L 8M -n NAME VG;  lvremove -y VG/NAME
# Prints medians, ratios (lvtool/lvm2) and the device I/O of one run of each command (from
# /sys/block/loopN/stat after flushing the device's buffers; both tools use O_DIRECT).
# PROFILE=1 adds a callgrind instruction profile of lvtool lvs and lvcreate.
#
# Usage: benches/compare-lvm2.sh   (env: ITER=30 LVS=21 LVTOOL=path DIR=/var/tmp PROFILE=)
# Needs root, lvm2, losetup.
set -euo pipefail

ITER=${ITER:-30}
NLV=${LVS:-21}
DIR=${DIR:-/var/tmp}
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${LVTOOL:-}" ]]; then
    cargo build --quiet --release -p lvtool --manifest-path "$root/Cargo.toml"
    LVTOOL="$root/target/release/lvtool"
fi
command -v lvm >/dev/null || { echo "lvm2 is not installed (apt-get install lvm2)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "needs root (loop devices)" >&2; exit 1; }

work=$(mktemp -d -p "$DIR" sanlvm-lvm2-XXXXXX)
loop=
cleanup() {
    if [[ -n "$loop" ]]; then losetup -d "$loop" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# lvm2 as in lvtool/tests: private config, no udev, no devices file, no backups.
mkdir -p "$work/etc"
cat >"$work/etc/lvm.conf" <<'EOF'
devices { use_devicesfile = 0 obtain_device_list_from_udev = 0 scan_lvs = 0 }
global { event_activation = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
backup { backup = 0 archive = 0 }
EOF
export LVM_SYSTEM_DIR=$work/etc LVM_SUPPRESS_FD_WARNINGS=1

truncate -s 1G "$work/pv.img"
loop=$(losetup -f --show "$work/pv.img")
VG=bench_vg
lvm2() { lvm "$1" --driverloaded n --devices "$loop" "${@:2}"; }
ours() { "$LVTOOL" "$1" --driverloaded n --devices "$loop" "${@:2}"; }
lvm2 pvcreate "$loop" >/dev/null 2>&1
lvm2 vgcreate "$VG" "$loop" >/dev/null 2>&1
for i in $(seq "$NLV"); do lvm2 lvcreate -L 8M -n "lv$i" "$VG" >/dev/null 2>&1; done

# Microseconds of one command line, which must succeed. $EPOCHREALTIME (bash 5) costs no
# fork, unlike `date`, whose own start-up would be a large part of lvtool's time.
timed() {
    local t0 t1
    t0=${EPOCHREALTIME/./}
    "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@" >&2; exit 1; }
    t1=${EPOCHREALTIME/./}
    echo $((t1 - t0))
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# Warm-up (page cache of the binaries, the backing file).
ours lvs "$VG" >/dev/null 2>&1
lvm2 lvs "$VG" >/dev/null 2>&1

declare -a o_lvs=() t_lvs=() o_cr=() t_cr=() o_rm=() t_rm=() floor=()
round_ours() {
    o_lvs+=("$(timed ours lvs "$VG")")
    o_cr+=("$(timed ours lvcreate -L 8M -n bench_ours "$VG")")
    o_rm+=("$(timed ours lvremove -y "$VG/bench_ours")")
}
round_lvm2() {
    t_lvs+=("$(timed lvm2 lvs "$VG")")
    t_cr+=("$(timed lvm2 lvcreate -L 8M -n bench_lvm2 "$VG")")
    t_rm+=("$(timed lvm2 lvremove -y "$VG/bench_lvm2")")
}
for i in $(seq "$ITER"); do
    if ((i % 2)); then round_ours; round_lvm2; else round_lvm2; round_ours; fi
    floor+=("$(timed /bin/true)")
done

# Both tools still agree on the VG, and lvm2's checker accepts it.
lvm2 vgck "$VG" >/dev/null 2>&1 || { echo "vgck failed after the benchmark" >&2; exit 1; }
n_ours=$(ours lvs --noheadings -o lv_name "$VG" 2>/dev/null | wc -l)
n_lvm2=$(lvm2 lvs --noheadings -o lv_name "$VG" 2>/dev/null | wc -l)
[[ $n_ours == "$NLV" && $n_lvm2 == "$NLV" ]] || { echo "LV counts: lvtool $n_ours, lvm2 $n_lvm2" >&2; exit 1; }

row() { # name, lvtool samples, lvm2 samples (µs)
    local o t
    o=$(printf '%s\n' $2 | median)
    t=$(printf '%s\n' $3 | median)
    awk -v n="$1" -v o="$o" -v t="$t" 'BEGIN {printf "%-22s %10.2f %10.2f %8.3f\n", n, o/1000, t/1000, o/t}'
}
sum() { # pairwise sums of two sample lists
    paste <(printf '%s\n' $1) <(printf '%s\n' $2) | awk '{print $1 + $2}'
}
echo "$LVTOOL vs lvm2 $(lvm version 2>/dev/null | sed -n 's/ *LVM version: *//p')," \
    "VG of $NLV LVs on $loop, medians of $ITER interleaved rounds"
printf '%-22s %10s %10s %8s\n' command "lvtool ms" "lvm2 ms" ratio
row "lvs" "${o_lvs[*]}" "${t_lvs[*]}"
row "lvcreate -L 8M" "${o_cr[*]}" "${t_cr[*]}"
row "lvremove -y" "${o_rm[*]}" "${t_rm[*]}"
row "lvcreate + lvremove" "$(sum "${o_cr[*]}" "${o_rm[*]}")" "$(sum "${t_cr[*]}" "${t_rm[*]}")"
echo "(process start floor, /bin/true: $(printf '%s\n' "${floor[@]}" | median | awk '{printf "%.2f", $1/1000}') ms)"

# Device I/O of one run: /sys/block/<dev>/stat fields 1,3 (reads, sectors read), 5,7 (writes).
stat_file=/sys/block/$(basename "$loop")/stat
io() { # label, command...
    local a b
    blockdev --flushbufs "$loop"
    read -r -a a <"$stat_file"
    "${@:2}" >/dev/null 2>&1
    read -r -a b <"$stat_file"
    printf '%-22s %4d reads %8d bytes   %4d writes %8d bytes\n' "$1" \
        $((b[0] - a[0])) $(((b[2] - a[2]) * 512)) $((b[4] - a[4])) $(((b[6] - a[6]) * 512))
}
echo
echo "device I/O of one run"
io "lvtool lvs" ours lvs "$VG"
io "lvm2 lvs" lvm2 lvs "$VG"
io "lvtool lvcreate" ours lvcreate -L 8M -n bench_io "$VG"
io "lvtool lvremove" ours lvremove -y "$VG/bench_io"
io "lvm2 lvcreate" lvm2 lvcreate -L 8M -n bench_io "$VG"
io "lvm2 lvremove" lvm2 lvremove -y "$VG/bench_io"

if [[ -n "${PROFILE:-}" ]] && command -v valgrind >/dev/null; then
    echo
    for cmd in "lvs $VG" "lvcreate -L 8M -n bench_prof $VG"; do
        out=$work/callgrind.$$.${cmd%% *}
        # shellcheck disable=SC2086
        valgrind --tool=callgrind --callgrind-out-file="$out" "$LVTOOL" ${cmd%% *} --driverloaded n \
            --devices "$loop" ${cmd#* } >/dev/null 2>&1
        echo "callgrind: lvtool $cmd (instructions; total, then top functions by self cost)"
        callgrind_annotate "$out" >"$out.txt" 2>/dev/null || true
        grep -m1 'PROGRAM TOTALS' "$out.txt" || true
        awk '/file:function/ {on = 1; next} on && NF && n++ < 12' "$out.txt" | cut -c1-150
    done
    ours lvremove -y "$VG/bench_prof" >/dev/null 2>&1
fi
