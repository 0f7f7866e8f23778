#!/usr/bin/env bash
# Alternated runs of append_loop.sql through each append function named on the command line;
# prints the time of each run and the 1-minute load. Usage: run_loop.sh ROUNDS FN...
set -euo pipefail
cd "$(dirname "$0")"
rounds=$1
shift
for round in $(seq 1 "$rounds"); do
  for fn in "$@"; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    ms=$(sed "s/APPEND_FN/$fn/g" append_loop.sql | psql -X -q 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -n | tail -1)
    printf '%s round=%s fn=%s ms_for_6000_appends=%s us_per_append=%s load=%s\n' \
      "$(date -u +%H:%M:%S)" "$round" "$fn" "$ms" "$(awk -v m="$ms" 'BEGIN{printf "%.1f", m*1000/6000}')" "$load"
  done
done
