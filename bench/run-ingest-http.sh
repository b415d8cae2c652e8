#!/usr/bin/env bash
# HTTP ingest (issue 19): OsmAnd requests/s gpsrelayd answers on one core from phones on
# keep-alive connections, and, in the same run, the same positions as JSON reports over
# UDP through the existing path, for the ratio.
#
# tools/gpsrelay-sim plays UNITS phones at RATE Hz each (far more than one core answers:
# the daemon, not the offer, sets the figure) over CONNECTIONS keep-alive connections,
# one request in flight on each, as phones do (never pipelined); reports that come due
# while a connection waits queue on it and beyond its bound are dropped by the simulator.
# Then the same units, rate and seed as JSON datagrams over UDP (COMPARE=nmea: RMC+GGA).
# The daemon runs pinned to CPU 0, the simulator to CPU 1; each measurement starts a fresh
# daemon, lets the load run WARMUP seconds, then reads the daemon's own counters
# (gpsrelay_ingest_reports_total: one a request, one a JSON datagram, two an NMEA one;
# gpsrelay_positions_published_total) and its CPU time at the start and the end of SECONDS.
# Medians of RUNS: requests/s, reports/s, the ratio, and the daemon's CPU time per position,
# which a busy neighbour on CPU 0 disturbs less than the rates.
#
# usage: bench/run-ingest-http.sh [RUNS [SECONDS]]
#   UNITS (2000), RATE (100 Hz per unit), CONNECTIONS (256), SHAPE (form: query|form|json),
#   WARMUP (2 s), COMPARE (json|nmea)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
runs=${1:-5} seconds=${2:-5}
units=${UNITS:-2000} rate=${RATE:-100} connections=${CONNECTIONS:-256} shape=${SHAPE:-form}
warmup=${WARMUP:-2} compare=${COMPARE:-json}
udp_port=55401 ws_port=58401 http_port=55455
bench_build gpsrelayd gpsrelay-sim
sim="$BENCH_BUILD/tools/gpsrelay-sim"
"$sim" --units "$units" --agencies 20 --mapping-out "$BENCH_DIR/devices.csv" --mapping-only
# Every phone comes from 127.0.0.1: the per-source limits (ingest_rate_limit in lib.sh's
# config) must not be what the figure measures.
BENCH_CONF_EXTRA="listen_http_ingest 127.0.0.1:$http_port
tcp_max_per_source 1000000"
common=(--units "$units" --agencies 20 --rate "$rate" --seed 1 --stats-interval 0 --quiet
    --duration "$((warmup + seconds + 1))")

# sample: now, the daemon's and the simulator's CPU ticks, and the daemon's two counters.
sample() {
    echo "$(date +%s.%N) $(cpu_ticks "$GR_PID") $(cpu_ticks "$simpid")" \
        "$(metric "$ws_port" gpsrelay_ingest_reports_total)" \
        "$(metric "$ws_port" gpsrelay_positions_published_total)"
}

# per_s FIELD: that field's change from the first sample to the second, per second (CPU
# ticks as a share of a core).
per_s() {
    awk -v f="$1" -v a="$s0" -v b="$s1" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(a, x, " "); split(b, y, " "); v = (y[f] - x[f]) / (y[1] - x[1])
        if (f <= 3) printf "%.0f%%", 100 * v / hz; else printf "%.0f", v }'
}

# cost_us: the daemon's CPU time per published position (µs) between the samples: on a
# shared machine steadier than the rate, which drops whenever a neighbour takes CPU 0.
cost_us() {
    awk -v a="$s0" -v b="$s1" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "%.1f", (y[5] > x[5] ? 1e6 * (y[2] - x[2]) / hz / (y[5] - x[5]) : 0) }'
}

# measure NAME SIM_ARGS...: a fresh daemon, the simulator against it; sets m_reports and
# m_published (per second over SECONDS after WARMUP, from the daemon's counters), m_cpu
# (the daemon's share of its core meanwhile) and m_us (cost_us); shows the simulator's summary, its
# CPU and the daemon's rejections on stderr. Fails when the daemon did not live through
# the run (its status and log on stderr): 139 is a crash, 143 a SIGTERM from elsewhere.
measure() {
    local name=$1
    shift
    bench_start_gpsrelay 0 "$udp_port" "$ws_port"
    taskset -c 1 "$sim" "${common[@]}" "$@" >"$BENCH_DIR/sim.out" 2>>"$BENCH_DIR/sim.log" &
    simpid=$!
    sleep "$warmup"
    s0=$(sample)
    sleep "$seconds"
    s1=$(sample)
    wait "$simpid" || true
    if ! kill -0 "$GR_PID" 2>/dev/null; then
        local status=0
        wait "$GR_PID" || status=$?
        echo "  $name: gpsrelayd exited during the run, status $status; its log ends:" >&2
        tail -n 5 "$BENCH_DIR/gpsrelayd.log" >&2
        GR_PID=
        return 1
    fi
    echo "  $name sim: $(cat "$BENCH_DIR/sim.out"); sim cpu $(per_s 3)" >&2
    curl -s "127.0.0.1:$ws_port/metrics" |
        awk '/^gpsrelay_ingest_rejected_total/ && $2 > 0 { print "  rejected:", $0 }' >&2
    bench_stop_gpsrelay
    m_reports=$(per_s 4) m_published=$(per_s 5) m_cpu=$(per_s 2) m_us=$(cost_us)
}

http_r=() http_p=() http_us=() udp_r=() udp_p=() udp_us=()
for ((r = 1; r <= runs; r++)); do
    measure http --format osmand --osmand-shape "$shape" --target "127.0.0.1:$http_port" \
        --connections "$connections" || { echo "run $r: discarded (see above)"; continue; }
    hr=$m_reports hp=$m_published hc=$m_cpu hu=$m_us
    measure udp --format "$compare" --proto udp --target "127.0.0.1:$udp_port" ||
        { echo "run $r: discarded (see above)"; continue; }
    ur=$m_reports up=$m_published uc=$m_cpu uu=$m_us
    [ "$compare" = nmea ] && ur=$((ur / 2)) # two report lines (RMC, GGA) a position
    http_r+=("$hr") http_p+=("$hp") http_us+=("$hu") udp_r+=("$ur") udp_p+=("$up") udp_us+=("$uu")
    echo "run $r: http $hr requests/s ($hp published/s, daemon cpu $hc, $hu µs each)," \
        "udp $ur reports/s ($up published/s, daemon cpu $uc, $uu µs each)"
done
mh=$(median "${http_r[@]}") mu=$(median "${udp_r[@]}")
echo "median of ${#http_r[@]} runs: http $mh requests/s (published $(median "${http_p[@]}")/s)," \
    "udp $compare $mu reports/s (published $(median "${udp_p[@]}")/s), http/udp" \
    "$(awk -v a="$mh" -v b="$mu" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" \
    "($units units at $rate Hz offered, $connections keep-alive connections, shape $shape);" \
    "daemon CPU per position: http $(median "${http_us[@]}") µs, udp $(median "${udp_us[@]}") µs"
