#!/usr/bin/env bash
# Alternated pgbench runs of the scripts here on the unpartitioned `events` and the partitioned
# copy (setup.sql). Usage: run.sh CONNINFO ROUNDS DURATION_S CLIENTS PAIR...
# where PAIR is e.g. "append_flat append_part" or "stream_flat stream_part"; every round runs
# each script of each pair once, in turn, and prints one line per run with the 1-minute load.
set -euo pipefail
cd "$(dirname "$0")"
conninfo=$1 rounds=$2 duration=$3 clients=$4
shift 4
nstreams=$(psql "$conninfo" -Atc "SELECT count(*) FROM bench_streams")
head=$(psql "$conninfo" -Atc "SELECT last_position FROM event_sequencer")
for round in $(seq 1 "$rounds"); do
  for pair in "$@"; do
    for script in $pair; do
      load=$(cut -d' ' -f1 /proc/loadavg)
      out=$(pgbench -n -M prepared -c "$clients" -j "$clients" -T "$duration" \
              -D nstreams="$nstreams" -D head="$head" -f "$script.sql" "$conninfo" 2>&1)
      tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
      lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
      failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
      printf '%s round=%s clients=%s script=%s tps=%s latency_ms=%s failed=%s load=%s\n' \
        "$(date -u +%H:%M:%S)" "$round" "$clients" "$script" "$tps" "$lat" "${failed:-0}" "$load"
    done
  done
done
