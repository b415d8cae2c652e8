#!/usr/bin/env bash
# Fan-out capacity: 1,000 consoles on one agency of 1,000 units, gpsrelayd against
# mosquitto (MQTT over WebSockets, QoS 0, 1,000 subscribers on one topic) in the same run.
# The server is pinned to CPU 0, bench/loadgen (consoles + publisher) to CPU 1. Each rate
# is one loadgen run: connect, warm up, then count deliveries and latency over SECONDS.
# A system's figure in a run is its highest delivered positions/s with p99 under 100 ms;
# the median over RUNS is reported, with the ratio of the medians.
#
# mosquitto is also measured over plain MQTT/TCP (its fastest path, no WebSocket framing):
# not the like-for-like figure, but it shows the WebSocket layer is not what limits it.
#
# usage: bench/run-fanout.sh [RUNS [SECONDS]]
#   GR_RATES / MQ_RATES / MQ_TCP_RATES: reports/s offered (each reaches every console)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
runs=${1:-3} seconds=${2:-5}
gr_rates=${GR_RATES:-"1000 2000 3000 3500 4000"}
mq_rates=${MQ_RATES:-"20 40 60 80 100"}
mq_tcp_rates=${MQ_TCP_RATES:-"50 100 150 200"}
consoles=${CONSOLES:-1000} units=${UNITS:-1000} warmup=${WARMUP:-2}
p99_max=100
bench_need_mosquitto
bench_build gpsrelayd loadgen
bench_mapping "$units" 1

gr_best=() mq_best=() mq_tcp_best=()
for ((r = 1; r <= runs; r++)); do
    echo "run $r" >&2
    bench_start_gpsrelay 0 55101 58101
    lg_args=(--proto gpsrelay --port 58101 --pub-port 55101)
    # shellcheck disable=SC2086
    gr_best+=("$(bench_sweep gpsrelay $gr_rates)")
    bench_stop_gpsrelay

    bench_start_mosquitto 0 18101 18102
    lg_args=(--proto mqtt-ws --port 18102 --pub-port 18101)
    # shellcheck disable=SC2086
    mq_best+=("$(bench_sweep mosquitto-ws $mq_rates)")
    lg_args=(--proto mqtt-tcp --port 18101 --pub-port 18101)
    # shellcheck disable=SC2086
    mq_tcp_best+=("$(bench_sweep mosquitto-tcp $mq_tcp_rates)")
    bench_stop_mosquitto
    echo "run $r: gpsrelay ${gr_best[-1]}/s, mosquitto ${mq_best[-1]}/s over WebSockets," \
        "${mq_tcp_best[-1]}/s over TCP (p99 < $p99_max ms)"
done
gr=$(median "${gr_best[@]}") mq=$(median "${mq_best[@]}") mq_tcp=$(median "${mq_tcp_best[@]}")
echo "median of $runs runs: gpsrelay $gr positions/s, mosquitto (MQTT over WebSockets) $mq" \
    "positions/s, ratio $(awk -v a="$gr" -v b="$mq" 'BEGIN { printf "%.1f", b ? a / b : 0 }')x" \
    "($consoles consoles, $units units, one server core, p99 < $p99_max ms);" \
    "mosquitto over plain MQTT/TCP $mq_tcp positions/s," \
    "ratio $(awk -v a="$gr" -v b="$mq_tcp" 'BEGIN { printf "%.1f", b ? a / b : 0 }')x"
