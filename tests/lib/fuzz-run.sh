#!/usr/bin/env bash
# Fuzzes the targets of one cargo-fuzz crate (lvtool/fuzz, fuzz/) for SECONDS each on one core,
# then minimises what it found into corpus/<target>: named seeds (from the crate's seed
# script) stay, the fuzzer's inputs (content-hash names) are replaced by a small set reaching
# every edge reached. Works on stable Rust (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags).
#   fuzz-run.sh CRATE_DIR DICT DEFAULT_MAXLEN [SECONDS] [TARGET...]
# Env: CORE (CPU to pin to, default 1), MAXLEN (input size cap), NOBUILD=1 (use binaries
# already built), BIN (directory of the binaries, default the cargo-fuzz target dir).
set -euo pipefail

here=$(cd "$1" && pwd)
dict=$2
default_maxlen=$3
shift 3
cd "$here"
secs=${1:-300}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi
core=${CORE:-1}
maxlen=${MAXLEN:-$default_maxlen}
bin=${BIN:-$here/target/x86_64-unknown-linux-gnu/release}

if [ -z "${NOBUILD:-}" ]; then
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    # cargo fuzz build takes one target (or none: all of them).
    for t in "${targets[@]}"; do RUSTC_BOOTSTRAP=1 cargo fuzz build -a "$t"; done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "artifacts/$t" "$work/$t"
    log=$here/artifacts/$t.log
    start=$(date +%s)
    rc=0
    /usr/bin/time -f "cpu_seconds %U user %S sys" -o "$work/time" \
        taskset -c "$core" "$bin/$t" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 \
        -rss_limit_mb=2048 -dict="$dict" -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "$work/$t" "corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$t: exit $rc, $(($(date +%s) - start)) s wall, $(tail -1 "$work/time"), ${execs:-?} execs" | tee -a "$here/artifacts/summary.log"
    if [ "$rc" != 0 ]; then
        echo "$t: crash, see $log and artifacts/$t/" >&2
        continue
    fi
    # The named seeds stay; the fuzzer's inputs (content-hash names) are replaced by a small set
    # reaching every edge reached (set-cover merge on edges only).
    mkdir -p "$work/$t.min"
    taskset -c "$core" "$bin/$t" -set_cover_merge=1 -use_counters=0 -max_len="$maxlen" \
        "$work/$t.min" "corpus/$t" "$work/$t" >>"$log" 2>&1
    find "corpus/$t" -type f -regextype egrep -regex '.*/[0-9a-f]{40}' -delete
    cp -n "$work/$t.min"/* "corpus/$t/"
    echo "$t: corpus $(ls "corpus/$t" | wc -l) files, $(cat "corpus/$t"/* | wc -c) bytes" | tee -a "$here/artifacts/summary.log"
done
