#!/usr/bin/env bash
# Idle console memory: resident bytes per connected, joined console, as the daemon itself
# reports (process_resident_memory_bytes). usage: bench/run-idle.sh [CONSOLES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
consoles=${1:-5000} runs=${2:-3}
build=build/bench-release
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target gpsrelayd idle_consoles >/dev/null
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
printf 'device_id,agency_id,label,source_addr\nAMB-12,county-ems,,\n' > "$dir/devices.csv"
printf 'listen_udp 127.0.0.1:55006\nlisten_ws 127.0.0.1:58081\nmapping_file devices.csv\nauth none\nlog_level warning\nmax_connections_per_source 1000000\n' > "$dir/gpsrelay.conf"
for ((r = 1; r <= runs; r++)); do
    ulimit -n "$(ulimit -Hn)"
    "$build/gpsrelayd" -c "$dir/gpsrelay.conf" 2>"$dir/log" &
    pid=$!
    for _ in $(seq 100); do curl -sf 127.0.0.1:58081/readyz >/dev/null && break; sleep 0.05; done
    "$build/bench/idle_consoles" 58081 "$consoles"
    kill -TERM $pid; wait $pid || true
done
