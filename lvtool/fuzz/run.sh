#!/usr/bin/env bash
# Fuzzes each target for SECONDS (default 300) on one core, then minimises its corpus into
# corpus/<target>. Works on stable Rust (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags).
#   ./run.sh [SECONDS] [TARGET...]      targets: config_text vg_text pv_image (default: all)
# Env: CORE (CPU to pin to, default 1), MAXLEN (input size cap, default 16384),
# NOBUILD=1 (use binaries already built),
# BIN (directory of the binaries, default the cargo-fuzz target dir).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
secs=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config_text vg_text pv_image)
core=${CORE:-1}
maxlen=${MAXLEN:-16384}
bin=${BIN:-$here/target/x86_64-unknown-linux-gnu/release}

if [ -z "${NOBUILD:-}" ]; then
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    # cargo fuzz build takes one target (or none: all of them).
    for t in "${targets[@]}"; do RUSTC_BOOTSTRAP=1 cargo fuzz build -a "$t"; done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "artifacts/$t" "$work/$t" "$work/$t.min"
    log=$here/artifacts/$t.log
    start=$(date +%s)
    # New inputs go to $work/$t; corpus/$t is read only, minimised into below.
    rc=0
    /usr/bin/time -f "cpu_seconds %U user %S sys" -o "$work/time" \
        taskset -c "$core" "$bin/$t" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 \
        -rss_limit_mb=2048 -dict=metadata.dict -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "$work/$t" "corpus/$t" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$t: exit $rc, $(($(date +%s) - start)) s wall, $(tail -1 "$work/time"), ${execs:-?} execs" | tee -a "$here/artifacts/summary.log"
    if [ "$rc" != 0 ]; then
        echo "$t: crash, see $log and artifacts/$t/" >&2
        continue
    fi
    # Keep a small set of inputs reaching every edge reached (set-cover merge on edges only:
    # hit-count variants are dropped, which keeps the corpus small).
    taskset -c "$core" "$bin/$t" -set_cover_merge=1 -use_counters=0 -max_len="$maxlen" \
        "$work/$t.min" "corpus/$t" "$work/$t" \
        >>"$log" 2>&1
    rm -rf "corpus/$t" && mv "$work/$t.min" "corpus/$t"
    echo "$t: corpus $(ls "corpus/$t" | wc -l) files, $(cat "corpus/$t"/* | wc -c) bytes" | tee -a "$here/artifacts/summary.log"
done
