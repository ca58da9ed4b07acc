#!/usr/bin/env bash
# lockd direct vs sanlock direct, as whole processes on one file, interleaved:
#   1. paxos acquire + release (ITER rounds each; lockd on resource R1, sanlock on R2, both as
#      host_id 1 generation 1: sanlock 3.8.5's `direct release` never writes, so it re-acquires
#      its own lease each round, which costs the same ballot);
#   2. delta acquire_id + release_id at io_timeout 1 (ID_ITER rounds each; ~2N = 2 s by design);
#   3. the I/Os of one uncontended paxos acquire, for both tools.
# Protocol minimum of a paxos acquire: read the area (1), phase 1 write + read (2), phase 2
# write + read (2), commit write (1) = 3 reads + 3 writes. Both tools read 4 KiB first to learn
# the sector and align sizes unless -Z/-A are given.
#
# Usage: benches/compare-sanlock.sh   (env: ITER=50 ID_ITER=5 LOCKD=path DIR=/var/tmp)
set -euo pipefail

ITER=${ITER:-50}
ID_ITER=${ID_ITER:-5}
DIR=${DIR:-/var/tmp}
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${LOCKD:-}" ]]; then
    cargo build --quiet --release -p lockd --manifest-path "$root/Cargo.toml"
    LOCKD="$root/target/release/lockd"
fi
command -v sanlock >/dev/null || { echo "sanlock is not installed" >&2; exit 1; }

f=$(mktemp -p "$DIR" sanlvm-compare-XXXXXX.img)
trap 'rm -f "$f"' EXIT
truncate -s 4M "$f"
M=1048576
"$LOCKD" direct init -s "LS:0:$f:0" -o 1 >/dev/null
"$LOCKD" direct init -r "LS:R1:$f:$M" >/dev/null
"$LOCKD" direct init -r "LS:R2:$f:$((2 * M))" >/dev/null
"$LOCKD" direct init -r "LS:R3:$f:$((3 * M))" >/dev/null

now() { date +%s%N; }
# Milliseconds of one command line, which must succeed.
timed() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    echo $(((t1 - t0) / 1000))
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

lockd_paxos() {
    "$LOCKD" direct acquire -r "LS:R1:$f:$M" -i 1 -g 1 && "$LOCKD" direct release -r "LS:R1:$f:$M" -i 1 -g 1
}
sanlock_paxos() {
    sanlock direct acquire -r "LS:R2:$f:$((2 * M))" -i 1 -g 1 && sanlock direct release -r "LS:R2:$f:$((2 * M))"
}
lockd_id() {
    "$LOCKD" direct acquire_id -s "LS:1:$f:0" -o 1 -e lockd-node && "$LOCKD" direct release_id -s "LS:1:$f:0" -e lockd-node
}
sanlock_id() {
    sanlock direct acquire_id -s "LS:2:$f:0" -o 1 -e sanlock-node && sanlock direct release_id -s "LS:2:$f:0"
}

lp=() sp=()
for _ in $(seq "$ITER"); do
    lp+=("$(timed lockd_paxos)")
    sp+=("$(timed sanlock_paxos)")
done
li=() si=()
for _ in $(seq "$ID_ITER"); do
    li+=("$(timed lockd_id)")
    si+=("$(timed sanlock_id)")
done

report() { # name, lockd samples (µs), sanlock samples (µs)
    local name=$1 l s
    l=$(printf '%s\n' $2 | median)
    s=$(printf '%s\n' $3 | median)
    awk -v n="$name" -v l="$l" -v s="$s" \
        'BEGIN {printf "%-34s lockd %9.2f ms   sanlock %9.2f ms   lockd/sanlock %.2f\n", n, l/1000, s/1000, l/s}'
}
echo "medians over $ITER (paxos) and $ID_ITER (delta) interleaved runs, file $f"
report "acquire+release (paxos, 512/1M)" "${lp[*]}" "${sp[*]}"
report "acquire_id+release_id (-o 1)" "${li[*]}" "${si[*]}"

echo
echo "I/O of one uncontended paxos acquire (protocol minimum: 3 reads + 3 writes):"
out=$("$LOCKD" direct acquire -r "LS:R3:$f:$((3 * M))" -i 1 -g 1 --io-stats 2>&1 >/dev/null)
echo "  lockd:   ${out#io: }  (sizes read from the record)"
"$LOCKD" direct release -r "LS:R3:$f:$((3 * M))" -i 1 -g 1 >/dev/null
out=$("$LOCKD" direct acquire -r "LS:R3:$f:$((3 * M))" -i 1 -g 1 -Z 512 -A 1M --io-stats 2>&1 >/dev/null)
echo "  lockd:   ${out#io: }  (with -Z 512 -A 1M)"
"$LOCKD" direct release -r "LS:R3:$f:$((3 * M))" -i 1 -g 1 >/dev/null
if command -v strace >/dev/null; then
    trace=$(mktemp)
    if strace -f -e trace=io_submit,pread64,pwrite64 -o "$trace" \
        sanlock direct acquire -r "LS:R3:$f:$((3 * M))" -i 1 -g 1 >/dev/null 2>&1; then
        r=$(grep -c 'IOCB_CMD_PREAD' "$trace" || true)
        w=$(grep -c 'IOCB_CMD_PWRITE' "$trace" || true)
        echo "  sanlock: $r reads, $w writes (io_submit calls seen by strace)"
    else
        echo "  sanlock: strace failed"
    fi
    rm -f "$trace"
else
    echo "  sanlock: (install strace to count)"
fi
