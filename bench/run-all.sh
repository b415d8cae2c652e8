#!/usr/bin/env bash
# A short version of every benchmark (about a minute on the project's 2-core VM) so a
# reader can reproduce the table in bench/RESULTS.md: one run each, short windows, fewer
# rates. The full scripts take RUNS and SECONDS arguments for the real figures.
# Not part of the test suite: timings are measured here, never asserted.
#
# usage: bench/run-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export GR_BENCH_BUILD=${GR_BENCH_BUILD:-build/bench-release}
cmake -S . -B "$GR_BENCH_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$GR_BENCH_BUILD" -j"$(nproc)" --target gpsrelayd loadgen udp_flood \
    gpsrelay-sim >/dev/null

summary=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step() { # step TITLE COMMAND...: runs it, keeps its last line for the summary
    local title=$1
    shift
    echo "== $title: $*"
    "$@" 2>&1 | tee "$log" || echo "($title exited with status ${PIPESTATUS[0]})" | tee -a "$log"
    summary+=("$title: $(tail -1 "$log")")
}

step "fan-out" env GR_RATES="1000 2000" MQ_RATES="20 40" MQ_TCP_RATES="50" WARMUP=1 \
    bench/run-fanout.sh 1 3
step "dispatch floor" env WARMUP=2 bench/run-floor.sh 1 5
step "reconnect storm" bench/run-storm.sh 1 10000
step "idle consoles" bench/run-idle.sh 5000 1 5
step "ingest" bench/run-ingest.sh 1 3 1000
step "http ingest" env WARMUP=1 bench/run-ingest-http.sh 1 3

echo
echo "== summary (one short run each; see bench/RESULTS.md for medians of full runs)"
printf '%s\n' "${summary[@]}"
