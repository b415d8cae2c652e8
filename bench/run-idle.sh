#!/usr/bin/env bash
# Idle scale: CONSOLES WebSocket consoles, each upgraded and joined to one agency, held
# for SECONDS while each sends a Phoenix heartbeat every 30 s (spread evenly, as a floor
# of browsers would). Reported: the daemon's resident memory per console from its own
# process_resident_memory_bytes (before the consoles connect, and once all are joined),
# and the CPU it uses meanwhile (utime + stime from /proc over the window).
# The daemon is pinned to CPU 0, bench/loadgen to CPU 1; a fresh daemon per run.
#
# Both processes need one descriptor per console: the count is capped at what the hard
# RLIMIT_NOFILE allows (raising it needs CAP_SYS_RESOURCE), and the cap is reported.
#
# usage: bench/run-idle.sh [CONSOLES [RUNS [SECONDS]]]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
want=${1:-50000} runs=${2:-3} seconds=${3:-30}
bench_build gpsrelayd loadgen
bench_mapping 1000 1
ulimit -n "$(ulimit -Hn)"
limit=$(($(ulimit -Hn) - 100)) # the daemon's own listeners, files and /metrics requests
consoles=$((want < limit ? want : limit))
[ "$consoles" -lt "$want" ] &&
    echo "note: $want consoles asked, $consoles possible (hard RLIMIT_NOFILE $(ulimit -Hn))" >&2
hz=$(getconf CLK_TCK)

per=() cpus=()
for ((r = 1; r <= runs; r++)); do
    bench_start_gpsrelay 0 55401 58401
    before=$(metric 58401 process_resident_memory_bytes)
    taskset -c 1 "$BENCH_BUILD/bench/loadgen" --proto gpsrelay --port 58401 \
        --consoles "$consoles" --parallel 1000 --warmup 0 --duration $((seconds + 60)) \
        >"$BENCH_DIR/lg.out" 2>>"$BENCH_DIR/lg.log" &
    lg=$!
    for _ in $(seq 1200); do # up to 2 minutes to connect them all
        [ "$(metric 58401 gpsrelay_consoles_connected)" = "$consoles" ] &&
            [ "$(metric 58401 gpsrelay_channels_joined)" = "$consoles" ] && break
        sleep 0.1
    done
    sleep 1 # the last joins' replies leave the daemon
    after=$(metric 58401 process_resident_memory_bytes)
    t0=$(cpu_ticks "$GR_PID")
    sleep "$seconds"
    t1=$(cpu_ticks "$GR_PID")
    connected=$(metric 58401 gpsrelay_consoles_connected)
    kill "$lg"
    wait "$lg" || true
    bench_stop_gpsrelay
    per+=("$(((after - before) / consoles))")
    cpus+=("$(awk -v t=$((t1 - t0)) -v hz="$hz" -v s="$seconds" 'BEGIN { printf "%.2f", 100 * t / hz / s }')")
    echo "run $r: $connected consoles held for $seconds s: RSS $((before / 1024)) KiB ->" \
        "$((after / 1024)) KiB, ${per[-1]} bytes per console; CPU ${cpus[-1]}% of one core"
done
echo "median of $runs runs: $(median "${per[@]}") bytes per idle console, CPU" \
    "$(median "${cpus[@]}")% of one core with $consoles consoles heartbeating every 30 s"
