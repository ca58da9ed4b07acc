#!/usr/bin/env bash
# Fuzzes the daemons' targets (lockd_request wdmd_request) for SECONDS each (default 300) and
# minimises the corpus; see tests/lib/fuzz-run.sh.
#   ./run.sh [SECONDS] [TARGET...]
exec "$(dirname "$0")/../tests/lib/fuzz-run.sh" "$(dirname "$0")" daemons.dict 4096 "$@"
