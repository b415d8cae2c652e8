#!/usr/bin/env bash
# UDP ingest through the real daemon: datagrams/s gpsrelayd takes on one core.
# The daemon runs pinned to CPU 0, the flood (bench/udp_flood) to CPU 1. Each run starts
# a fresh daemon, floods for SECONDS, and reads the daemon's own counters; the median of
# RUNS runs is reported. usage: bench/run-ingest.sh [RUNS] [SECONDS] [DEVICES]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5} seconds=${2:-5} devices=${3:-1000}
build=${GR_BENCH_BUILD:-build/bench-release}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target gpsrelayd udp_flood >/dev/null

dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
{
    echo "device_id,agency_id,label,source_addr"
    for ((i = 0; i < devices; i++)); do echo "BENCH-$i,bench,,"; done
} > "$dir/devices.csv"
cat > "$dir/gpsrelay.conf" <<CONF
listen_udp 127.0.0.1:55005
listen_ws 127.0.0.1:58080
mapping_file devices.csv
auth none
log_level warning
# One flood source stands in for many modems: lift the per-source limit (default 50/s).
ingest_rate_limit 1000000
CONF

metric() { curl -s 127.0.0.1:58080/metrics | awk -v m="$1" '$1 == m { print $2 }'; }

results=()
for ((r = 1; r <= runs; r++)); do
    taskset -c 0 "$build/gpsrelayd" -c "$dir/gpsrelay.conf" 2>"$dir/log" &
    pid=$!
    for _ in $(seq 100); do curl -sf 127.0.0.1:58080/readyz >/dev/null && break; sleep 0.05; done
    sent=$(taskset -c 1 "$build/bench/udp_flood" 55005 "$devices" "$seconds")
    sleep 0.5 # let the daemon drain its socket buffer before reading its counters
    got=$(metric gpsrelay_ingest_datagrams_total)
    pub=$(metric gpsrelay_positions_published_total)
    curl -s 127.0.0.1:58080/metrics | awk '/^gpsrelay_ingest_rejected_total/ && $2 > 0 { print "  dropped:", $0 }' 
    kill -TERM $pid; wait $pid || true
    rate=$((got / seconds))
    results+=("$rate")
    echo "run $r: $sent; daemon took $got datagrams ($rate/s), published $pub positions"
done
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median: $median datagrams/s accepted by gpsrelayd on one core ($devices devices, RMC+GGA per datagram)"
