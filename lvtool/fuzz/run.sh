#!/usr/bin/env bash
# Fuzzes lvtool's targets (config_text vg_text pv_image) for SECONDS each (default 300) and
# minimises the corpus; see tests/lib/fuzz-run.sh.
#   ./run.sh [SECONDS] [TARGET...]
exec "$(dirname "$0")/../../tests/lib/fuzz-run.sh" "$(dirname "$0")" metadata.dict 16384 "$@"
