#!/usr/bin/env bash
# Dispatch-floor latency: 2,000 units reporting at 1 Hz as id-prefixed NMEA (RMC+GGA) over
# UDP, 1,000 consoles over 20 agencies (50 consoles and 100 units per agency), receive to
# console. The daemon is pinned to CPU 0, the load (consoles and modems) to CPU 1; every
# run starts a fresh daemon, warms up, then times every delivered position for SECONDS.
#
# Latency is the console's wall clock minus the fix time, which the sender sets to its
# wall clock at send with milliseconds (hhmmss.sss): the figures include up to 1 ms of
# truncation (0.5 ms on average) on top of the true latency.
#
# usage: bench/run-floor.sh [RUNS [SECONDS]]
#   PUBLISHER=sim: the modems are tools/gpsrelay-sim instead of loadgen's own publisher
#   LOADGEN_ARGS: extra bench/loadgen options, e.g. --busy-poll (see loadgen --help)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
runs=${1:-3} seconds=${2:-10}
units=${UNITS:-2000} consoles=${CONSOLES:-1000} agencies=${AGENCIES:-20} warmup=${WARMUP:-3}
publisher=${PUBLISHER:-loadgen}
if [ "$publisher" = sim ]; then
    bench_build gpsrelayd loadgen gpsrelay-sim
    names=$(seq -s, -f 'bench-%g' 0 $((agencies - 1)))
    sim_args=(--proto udp --format nmea --units "$units" --agency-names "$names" --rate 1 --quiet)
    "$BENCH_BUILD/tools/gpsrelay-sim" "${sim_args[@]}" --mapping-out "$BENCH_DIR/devices.csv" \
        --mapping-only >/dev/null
else
    bench_build gpsrelayd loadgen
    bench_mapping "$units" "$agencies"
fi

p50s=() p99s=() p999s=() maxs=()
for ((r = 1; r <= runs; r++)); do
    bench_start_gpsrelay 0 55201 58201
    lg_args=(--proto gpsrelay --port 58201 --format nmea --consoles "$consoles"
        --agencies "$agencies" --units "$units" --warmup "$warmup" --duration "$seconds" ${LOADGEN_ARGS:-})
    if [ "$publisher" = sim ]; then
        taskset -c 1 "$BENCH_BUILD/tools/gpsrelay-sim" "${sim_args[@]}" \
            --target 127.0.0.1:55201 >"$BENCH_DIR/sim.out" &
        sim=$!
        line=$(taskset -c 1 "$BENCH_BUILD/bench/loadgen" "${lg_args[@]}" 2>>"$BENCH_DIR/lg.log" |
            grep '^result')
        kill -INT "$sim"
        wait "$sim" || true
        echo "  sim: $(cat "$BENCH_DIR/sim.out")" >&2
    else
        line=$(taskset -c 1 "$BENCH_BUILD/bench/loadgen" "${lg_args[@]}" --pub-port 55201 \
            --rate "$units" 2>>"$BENCH_DIR/lg.log" | grep '^result')
    fi
    curl -s 127.0.0.1:58201/metrics |
        awk '/^gpsrelay_ingest_rejected_total/ && $2 > 0 { print "  rejected:", $0 }
             /^gpsrelay_(delivery_latency|loop_busy)_seconds_(bucket|count)/ { print "  daemon:", $0 }' >&2
    bench_stop_gpsrelay
    p50s+=("$(field "$line" p50_ms)") p99s+=("$(field "$line" p99_ms)")
    p999s+=("$(field "$line" p999_ms)") maxs+=("$(field "$line" max_ms)")
    echo "run $r: delivered $(field "$line" delivered_per_s)/s (expected" \
        "$(field "$line" expected_per_s)/s), latency p50 ${p50s[-1]} p99 ${p99s[-1]}" \
        "p99.9 ${p999s[-1]} max ${maxs[-1]} ms"
done
echo "median of $runs runs: p50 $(median "${p50s[@]}") ms, p99 $(median "${p99s[@]}") ms," \
    "p99.9 $(median "${p999s[@]}") ms, max $(median "${maxs[@]}") ms ($units units at 1 Hz NMEA" \
    "over UDP via $publisher, $consoles consoles over $agencies agencies)"
