#!/usr/bin/env bash
# One sitting of docs/performance.md's figures, run from the repository's root on a machine with
# nothing else of ours running: the release build, the peers (`run-peers.sh 64`), payledger and
# the HTTP peer side by side (`run-http-peer.sh 64 16`), two load runs of 64 clients on fresh
# stores, the open-loop projector-lag run at half the better of them, three rebuilds of 1 M
# events, and the peers again (the machine's speed drifts; only ratios within a sitting count).
#
# Usage: docs/tools/quiet_sitting.sh PEER_BENCH_DIR > sitting.log
#   PEER_BENCH_DIR: the folder of run-peers.sh and run-http-peer.sh (the shared bench).
# Env:   CARGO_TARGET_DIR for the peers' build (default /tmp/peers-target), LAG_RATE to fix the
#        open-loop rate, SCRATCH for the throw-away stores (default a new temporary folder).
set -uo pipefail
bench=${1:?usage: quiet_sitting.sh PEER_BENCH_DIR}
bench=$(cd "$bench" && pwd)
scratch=${SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/payledger-sitting.XXXXXX")}
# The benchmark's managed PostgreSQL runs as the `postgres` user when this runs as root, and
# needs to enter the stores' folder (mktemp makes it 0700).
chmod 755 "$scratch"
peers_target=${CARGO_TARGET_DIR:-/tmp/peers-target}
unset CARGO_TARGET_DIR
stamp() { echo "=== $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) :: $*"; }

stamp build; CARGO_INCREMENTAL=0 cargo build --release -p payledger 2>&1 | tail -1
stamp commit "$(git rev-parse --short HEAD)"
stamp run-peers 64; CARGO_TARGET_DIR=$peers_target "$bench/run-peers.sh" 64 2>&1 | tail -15
stamp run-http-peer 64 16; CARGO_TARGET_DIR=$peers_target "$bench/run-http-peer.sh" 64 16 2>&1 | tail -25
peak=0
for i in 1 2; do
  stamp bench 64 run "$i"
  target/release/payledger bench --clients 64 --duration-s 15 --store-dir "$scratch/load$i" 2>&1 \
    | tail -4 | tee "$scratch/load.out"
  rm -rf "$scratch/load$i"
  got=$(grep -o 'commands_per_s=[0-9]*' "$scratch/load.out" | tail -1 | cut -d= -f2)
  [ -n "$got" ] && [ "$got" -gt "$peak" ] && peak=$got
done
rate=${LAG_RATE:-$((peak / 2))}
stamp lag at "$rate"
target/release/payledger bench --clients 32 --duration-s 15 --rate "$rate" --measure-lag \
  --store-dir "$scratch/lag" 2>&1 | tail -6
rm -rf "$scratch/lag"
for i in 1 2 3; do
  stamp rebuild "$i"
  target/release/payledger bench rebuild --events 1000000 --store-dir "$scratch/rebuild" 2>&1 | tail -2
done
target/release/payledger --data-dir "$scratch/rebuild" stop-database >/dev/null 2>&1
stamp run-peers 64 again; CARGO_TARGET_DIR=$peers_target "$bench/run-peers.sh" 64 2>&1 | tail -15
rm -rf "$scratch"
stamp done
