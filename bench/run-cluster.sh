#!/usr/bin/env bash
# shellcheck disable=SC2046 # the medians below take word-split lists of numbers
# The cluster (docs/cluster.md) against one daemon, measured side by side in each
# run with the same tool (bench/cluster_probe) and the same load:
#
#  latency   modem -> console: 1,000 NMEA RMC reports/s over 200 units. Cluster: the
#            reports go to node A, the console is on node B. Single: both on the one
#            daemon. p50/p99 of send() -> the console's read(), exact to the microsecond.
#  rate      the most positions/s carried end to end: units spread over the nodes' UDP
#            ports, one console per node (single: 3 consoles on the one daemon), rising
#            rates; a rate is sustained when over its whole window p99 < 1 s and the
#            consoles got at least 99% of what was sent. Stops at the first rate that fails.
#  failover  1,000 consoles on node A; kill -9 node A; they reconnect round-robin to B and
#            C and rejoin with since: time from the kill to the last recovered join reply.
#            Single: the same 1,000 consoles' connections reset at once (the daemon stays),
#            reconnecting to it with since: the same client work without a node to lose.
#  stream    (cluster only) the same three NATS servers without gpsrelay (bench/js_stream):
#            each of three connections publishes a third of the messages as the nodes do
#            (async, a message id each, 8,192 awaiting acknowledgement) and reads the whole
#            stream through an ordered consumer. Latency at 1,000/s, then the rates of
#            CLUSTER_RATES until one is not carried (p99 < 1 s, every consumer >= 99%):
#            the stream's own share of the cluster's figures.
#  nats-follower, nats-leader (cluster only; not in the default list)
#            the latency load (A -> B, 1,000/s) while kill -9 takes one NATS server: one
#            that does not lead the stream, or its leader. The window starts at the kill;
#            reported: the longest delay of a position (the pause), p99, and what was lost.
#            Each on a fresh cluster (two of three servers gone leave no quorum).
#
# Cluster: three nats-server (JetStream, one cluster, stores in a temp dir) and three
# gpsrelayd, each with cluster_nats to all three, cluster_replicas 3. Nothing is pinned: six
# servers share the two cores, and the single daemon runs unpinned too, so both are measured
# on the same machine the same way. Every server listens on 127.0.0.1 only, on free ports.
# Fresh servers (and an empty stream) for each half of each run.
#
# usage: bench/run-cluster.sh [RUNS]
#   BENCHES       which, in order [latency rate failover]
#   SINGLE_RATES  reports/s tried on one daemon [25000 50000 75000 100000 125000 150000]
#   CLUSTER_RATES reports/s tried on the cluster [2500 5000 7500 10000 12500 15000 20000 ... 50000]
#   RATE_SECONDS  window per rate [10]     LATENCY_SECONDS [15]    CONSOLES (failover) [1000]
#   MODES         [single cluster]
#   UDP_RMEM      bytes: net.core.rmem_default for the run (restored at the end). gpsrelayd
#                 leaves its UDP sockets' SO_RCVBUF at that default (212,992 B here, about
#                 270 datagrams), so on two shared cores a few ms without a loop turn at
#                 50,000/s overflows it: the kernel's drops (gpsrelay_ingest_socket_drops_total)
#                 then decide the rate figure rather than what a node carries. Unset: untouched.
#   GR_BIN        the daemon to measure [this tree's Release build]
#   LOG_DIR       where the servers' logs are left at the end [/tmp/run-cluster-logs]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
runs=${1:-3}
benches=${BENCHES:-"latency rate failover"}
single_rates=${SINGLE_RATES:-"25000 50000 75000 100000 125000 150000"}
cluster_rates=${CLUSTER_RATES:-"2500 5000 7500 10000 12500 15000 20000 30000 40000 50000"}
rate_seconds=${RATE_SECONDS:-10} latency_seconds=${LATENCY_SECONDS:-15}
failover_consoles=${CONSOLES:-1000}
rate_units=3000
PROBE=$BENCH_BUILD/bench/cluster_probe
NATS_PIDS=() NATS_MON=() NATS_CLIENT=() NODE_PIDS=() NODE_WS=() NODE_UDP=() NAMES=(a b c)

cluster_cleanup() {
    local pid
    [ -z "${RMEM_BEFORE:-}" ] || sysctl -qw net.core.rmem_default="$RMEM_BEFORE" || true
    # The servers' and the probe's logs outlive the temp dir, for a crash or a refusal.
    rm -rf "${LOG_DIR:=/tmp/run-cluster-logs}" && mkdir -p "$LOG_DIR" &&
        cp "$BENCH_DIR"/*.log "$LOG_DIR"/ 2>/dev/null || true
    for pid in "${NODE_PIDS[@]}" "${NATS_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    bench_cleanup
}
trap 'cluster_cleanup' EXIT

# free_ports N: N loopback ports free for both TCP and UDP right now.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
held, ports = [], []
while len(ports) < int(sys.argv[1]):
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        t.close()
        continue
    held += [t, u]
    ports.append(p)
print(" ".join(map(str, ports)))
PY
}

# wait_for NAME PID LOG SECONDS PROBE...: as bench_wait, with a longer limit (a JetStream
# cluster elects its meta leader, then the nodes make the stream and catch up); gives up
# at once if PID has exited.
wait_for() {
    local name=$1 pid=$2 log=$3 limit=$4
    shift 4
    for _ in $(seq $((limit * 20))); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "$name did not become ready" >&2
    tail -20 "$log" >&2
    return 1
}

# node_conf FILE UDP WS [NAME NATS_PORT...]: a daemon's config; cluster mode when NAME is given.
node_conf() {
    local file=$1 udp=$2 ws=$3
    shift 3
    {
        echo "listen_udp 127.0.0.1:$udp"
        echo "listen_ws 127.0.0.1:$ws"
        echo "mapping_file $BENCH_DIR/devices.csv"
        echo "auth none"
        echo "log_level warning"
        # One probe stands in for every modem and console: lift the per-source limits.
        echo "ingest_rate_limit 1000000"
        echo "max_connections_per_source 1000000"
        # One RMC per fix, handed on at the end of its datagram: no wait for other sentences.
        echo "merge_window 0"
        if [ $# -gt 0 ]; then
            echo "node_name $1"
            echo "cluster_name bench"
            echo "cluster_replicas 3"
            # The stream keeps 5 minutes, so a run's millions of positions do not pile up.
            echo "cluster_history 300"
            shift
            local p
            for p in "$@"; do echo "cluster_nats nats://127.0.0.1:$p"; done
        fi
    } >"$file"
}

# start_node NAME CONF WS: a daemon, unpinned; waits for /readyz 200.
start_node() {
    ulimit -n "$(ulimit -Hn)"
    "${GR_BIN:-$BENCH_BUILD/gpsrelayd}" -c "$2" 2>>"$BENCH_DIR/$1.log" &
    NODE_PIDS+=($!)
    wait_for "gpsrelayd $1" "${NODE_PIDS[-1]}" "$BENCH_DIR/$1.log" 60 curl -sf -o /dev/null "127.0.0.1:$3/readyz"
}

start_single() {
    local ports
    read -r -a ports <<<"$(free_ports 2)"
    NODE_UDP=("${ports[0]}") NODE_WS=("${ports[1]}")
    node_conf "$BENCH_DIR/single.conf" "${ports[0]}" "${ports[1]}"
    start_node single "$BENCH_DIR/single.conf" "${ports[1]}"
}

# start_cluster: three NATS servers in one JetStream cluster, then three nodes.
start_cluster() {
    local ports i j names=("${NAMES[@]}") routes
    read -r -a ports <<<"$(free_ports 15)"
    local client=("${ports[@]:0:3}") mon=("${ports[@]:3:3}") route=("${ports[@]:6:3}")
    NODE_UDP=("${ports[@]:9:3}") NODE_WS=("${ports[@]:12:3}")
    for i in 0 1 2; do
        routes=
        for j in 0 1 2; do
            [ "$j" = "$i" ] || routes+="${routes:+,}nats://127.0.0.1:${route[j]}"
        done
        mkdir -p "$BENCH_DIR/js-${names[i]}"
        nats-server -a 127.0.0.1 -js -sd "$BENCH_DIR/js-${names[i]}" -n "nats-${names[i]}" \
            -p "${client[i]}" -m "${mon[i]}" --cluster_name bench \
            --cluster "nats://127.0.0.1:${route[i]}" --routes "$routes" \
            2>>"$BENCH_DIR/nats-${names[i]}.log" &
        NATS_PIDS+=($!)
    done
    for i in 0 1 2; do
        wait_for "nats-${names[i]}" "${NATS_PIDS[i]}" "$BENCH_DIR/nats-${names[i]}.log" 30 \
            curl -sf -o /dev/null "127.0.0.1:${mon[i]}/healthz?js-enabled-only=true"
    done
    NATS_MON=("${mon[@]}") NATS_CLIENT=("${client[@]}")
    for i in 0 1 2; do
        # Its own NATS server first, then the others.
        node_conf "$BENCH_DIR/node-${names[i]}.conf" "${NODE_UDP[i]}" "${NODE_WS[i]}" \
            "node-${names[i]}" "${client[i]}" "${client[(i + 1) % 3]}" "${client[(i + 2) % 3]}"
    done
    # Started one after the other: the first makes the stream, the others find it.
    for i in 0 1 2; do
        start_node "node-${names[i]}" "$BENCH_DIR/node-${names[i]}.conf" "${NODE_WS[i]}"
    done
}

# alive BENCH: says which daemons died during BENCH (their logs are kept in LOG_DIR).
alive() {
    local i
    for i in "${!NODE_PIDS[@]}"; do
        # Node A after the cluster's failover: killed by the probe, as meant.
        [ "$1/$i/${#NODE_PIDS[@]}" != failover/0/3 ] || continue
        kill -0 "${NODE_PIDS[i]}" 2>/dev/null ||
            echo "  after $1: daemon $i (pid ${NODE_PIDS[i]}) is not running" >&2
    done
}

stop_all() {
    local pid
    for pid in "${NODE_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${NODE_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for pid in "${NATS_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${NATS_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    NODE_PIDS=() NATS_PIDS=()
    rm -rf "$BENCH_DIR"/js-*
}

# settle: until every node's gpsrelay_cluster_lag is 0 (at most 30 s), so a backlog left by
# a failed rate does not spill into the next measurement.
settle() {
    local ws lag v
    for _ in $(seq 300); do
        lag=0
        for ws in "${NODE_WS[@]}"; do
            v=$(metric "$ws" gpsrelay_cluster_lag)
            v=${v%.*}
            lag=$((lag + ${v:-0}))
        done
        [ "$lag" -eq 0 ] && return 0
        sleep 0.1
    done
    echo "  nodes still $lag messages behind the stream" >&2
}

# counters: the sum over the nodes of the metrics that tell where positions went.
counters() {
    local name ws sum out=
    for name in gpsrelay_ingest_socket_drops_total gpsrelay_positions_published_total \
        gpsrelay_cluster_published_total gpsrelay_cluster_publish_failures_total \
        gpsrelay_cluster_queued 'gpsrelay_cluster_skipped_total{reason="out_of_order"}' \
        gpsrelay_consoles_closed_total; do
        sum=0
        for ws in "${NODE_WS[@]}"; do
            sum=$(awk -v a="$sum" -v b="$(metric "$ws" "$name")" 'BEGIN { print a + b }')
        done
        out+=" ${name#gpsrelay_}=$sum"
    done
    echo "$out"
}

probe() {
    "$PROBE" "$@" 2>>"$BENCH_DIR/probe.log"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }

# bench_latency MODE: modem -> console at 1,000/s; prints "p50 p99".
bench_latency() {
    local console_ws=${NODE_WS[0]}
    [ "$1" = single ] || console_ws=${NODE_WS[1]}
    local line
    line=$(probe --ws "$console_ws" --udp "${NODE_UDP[0]}" --rate 1000 --units 200 \
        --consoles 1 --warmup 3 --duration "$latency_seconds" --drain 1 | grep '^result') || true
    echo "  $1 latency: p50 $(field "$line" p50_ms) p99 $(field "$line" p99_ms)" \
        "p99.9 $(field "$line" p999_ms) max $(field "$line" max_ms) ms," \
        "delivered $(field "$line" delivered), dup $(field "$line" dup)" >&2
    echo "$(field "$line" p50_ms) $(field "$line" p99_ms)"
}

# bench_rate MODE RATES...: the highest rate sustained; prints it (0 if none).
bench_rate() {
    local mode=$1 best=0 rate line p99 delivered ws udp
    shift
    ws=$(
        IFS=,
        echo "${NODE_WS[*]}"
    )
    udp=$(
        IFS=,
        echo "${NODE_UDP[*]}"
    )
    for rate in "$@"; do
        [ "$mode" = single ] || settle
        line=$(probe --ws "$ws" --udp "$udp" --rate "$rate" --units "$rate_units" --consoles 3 \
            --warmup 3 --duration "$rate_seconds" --drain 2 | grep '^result') || true
        p99=$(field "$line" p99_ms) delivered=$(field "$line" delivered)
        echo "  $mode rate=$rate/s: delivered $delivered (worst console $(field "$line" worst)," \
            "reached none $(field "$line" reached_none), some not all" \
            "$(field "$line" reached_some_not_all)), p50 $(field "$line" p50_ms)" \
            "p99 $p99 p99.9 $(field "$line" p999_ms) max $(field "$line" max_ms) ms," \
            "dup $(field "$line" dup), probe cpu $(field "$line" probe_cpu);$(counters)" >&2
        if [ -n "$p99" ] && awk -v p="$p99" -v d="$delivered" 'BEGIN { exit !(p < 1000 && d >= 0.99) }'; then
            best=$rate
        else
            break
        fi
    done
    echo "$best"
}

# stream_leader: the NATS server name (nats-a..c) leading the stream, from /jsz.
stream_leader() {
    local mon
    for mon in "${NATS_MON[@]}"; do
        curl -s "127.0.0.1:$mon/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for a in d.get("account_details") or []:
    for s in a.get("stream_detail") or []:
        if s.get("name") == "bench" and (s.get("cluster") or {}).get("leader"):
            print(s["cluster"]["leader"])
            sys.exit(0)
sys.exit(1)' 2>/dev/null && return 0
    done
    return 1
}

# bench_natskill follower|leader: prints "max_ms p99_ms delivered".
bench_natskill() {
    local leader victim=0 i line
    leader=$(stream_leader) || {
        echo "  no stream leader found" >&2
        echo "- - -"
        return
    }
    for i in 0 1 2; do
        if [ "$1" = leader ]; then
            [ "nats-${NAMES[i]}" != "$leader" ] || victim=$i
        elif [ "nats-${NAMES[i]}" != "$leader" ]; then
            victim=$i
        fi
    done
    line=$(probe --ws "${NODE_WS[1]}" --udp "${NODE_UDP[0]}" --rate 1000 --units 200 \
        --consoles 1 --warmup 3 --duration 10 --drain 15 --kill-pid "${NATS_PIDS[victim]}" |
        grep '^result') || true
    echo "  kill -9 nats-${NAMES[victim]} (stream leader: $leader): longest delay" \
        "$(field "$line" max_ms) ms, p50 $(field "$line" p50_ms) p99 $(field "$line" p99_ms)" \
        "p99.9 $(field "$line" p999_ms) ms, delivered $(field "$line" delivered)," \
        "dup $(field "$line" dup);$(counters)" >&2
    echo "$(field "$line" max_ms) $(field "$line" p99_ms) $(field "$line" delivered)"
}

# bench_stream RATES...: prints "p50 p99 best" (latency at 1,000/s, highest rate carried).
bench_stream() {
    local urls line best=0 rate p50 p99
    urls=$(printf 'nats://127.0.0.1:%s,' "${NATS_CLIENT[@]}")
    urls=${urls%,}
    line=$("$BENCH_BUILD/bench/js_stream" --servers "$urls" --rate 1000 --seconds \
        "$latency_seconds" 2>>"$BENCH_DIR/probe.log" | grep '^result') || true
    p50=$(field "$line" p50_ms) p99=$(field "$line" p99_ms)
    echo "  stream alone at 1000/s: p50 $p50 p99 $p99 max $(field "$line" max_ms) ms," \
        "worst consumer $(field "$line" worst)" >&2
    for rate in "$@"; do
        line=$("$BENCH_BUILD/bench/js_stream" --servers "$urls" --rate "$rate" --seconds \
            "$rate_seconds" 2>>"$BENCH_DIR/probe.log" | grep '^result') || true
        echo "  stream alone rate=$rate/s: offered $(field "$line" offered_per_s)/s, worst" \
            "consumer $(field "$line" worst), p50 $(field "$line" p50_ms) p99" \
            "$(field "$line" p99_ms) max $(field "$line" max_ms) ms, acked $(field "$line" acked)," \
            "ack failures $(field "$line" ack_failures), refused $(field "$line" refused)" >&2
        if awk -v p="$(field "$line" p99_ms)" -v d="$(field "$line" worst)" \
            'BEGIN { exit !(p != "" && p < 1000 && d >= 0.99) }'; then
            best=$rate
        else
            break
        fi
    done
    echo "$p50 $p99 $best"
}

# bench_failover MODE: prints "all_ms recovered/dropped".
bench_failover() {
    local line args
    if [ "$1" = single ]; then
        args=(--ws "${NODE_WS[0]}" --udp "${NODE_UDP[0]}" --drop --failover "${NODE_WS[0]}")
    else
        args=(--ws "${NODE_WS[0]}" --udp "${NODE_UDP[1]},${NODE_UDP[2]}"
            --kill-pid "${NODE_PIDS[0]}" --failover "${NODE_WS[1]},${NODE_WS[2]}")
    fi
    line=$(probe "${args[@]}" --rate 200 --units 200 --consoles "$failover_consoles" \
        --warmup 3 --duration 3 --drain 1 | grep '^failover') || true
    echo "  $1 failover: $(field "$line" rejoined)/$(field "$line" to_drop) rejoined," \
        "$(field "$line" recovered) recovered, $(field "$line" not_recovered) not," \
        "$(field "$line" failed) failed, $(field "$line" connect_retries) connect retries," \
        "all within $(field "$line" all_ms) ms (p50 $(field "$line" p50_ms))," \
        "$(field "$line" reply_positions) positions in the replies, dup $(field "$line" dup)" >&2
    echo "$(field "$line" all_ms) $(field "$line" recovered)/$(field "$line" to_drop)"
}

bench_build gpsrelayd cluster_probe
[[ " $benches " != *" stream "* ]] || bench_build js_stream
if [ -n "${UDP_RMEM:-}" ]; then
    RMEM_BEFORE=$(sysctl -n net.core.rmem_default)
    sysctl -qw net.core.rmem_default="$UDP_RMEM"
fi
bench_mapping "$rate_units" 1
echo "machine: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)," \
    "net.core.rmem_default $(sysctl -n net.core.rmem_default)," \
    "$(nats-server --version), gpsrelay $(git rev-parse --short HEAD 2>/dev/null || echo ?)" >&2

declare -A res
for ((r = 1; r <= runs; r++)); do
    for mode in ${MODES:-single cluster}; do
        echo "run $r, $mode" >&2
        if [ "$mode" = single ]; then start_single; else start_cluster; fi
        for b in $benches; do
            case $b in
            latency) res[$mode.latency.$r]=$(bench_latency "$mode") ;;
            rate)
                if [ "$mode" = single ]; then
                    # shellcheck disable=SC2086
                    res[$mode.rate.$r]=$(bench_rate "$mode" $single_rates)
                else
                    # shellcheck disable=SC2086
                    res[$mode.rate.$r]=$(bench_rate "$mode" $cluster_rates)
                fi
                ;;
            failover)
                if [ "$mode" = cluster ]; then
                    # Fresh nodes and stream: a rate that failed can leave retries behind.
                    stop_all
                    start_cluster
                fi
                res[$mode.failover.$r]=$(bench_failover "$mode")
                ;;
            stream)
                [ "$mode" = cluster ] || continue
                # shellcheck disable=SC2086
                res[$mode.stream.$r]=$(bench_stream $cluster_rates)
                ;;
            nats-follower | nats-leader)
                [ "$mode" = cluster ] || continue
                stop_all
                start_cluster
                res[$mode.$b.$r]=$(bench_natskill "${b#nats-}")
                ;;
            esac
            alive "$b"
        done
        stop_all
    done
    echo "run $r:" \
        "latency single ${res[single.latency.$r]:-} cluster ${res[cluster.latency.$r]:-} (p50 p99 ms);" \
        "rate single ${res[single.rate.$r]:-} cluster ${res[cluster.rate.$r]:-}/s;" \
        "failover single ${res[single.failover.$r]:-} cluster ${res[cluster.failover.$r]:-} (ms recovered)"
done

# col MODE BENCH FIELD: the FIELDth value of each run's result.
col() {
    local r
    for ((r = 1; r <= runs; r++)); do
        [ -z "${res[$1.$2.$r]:-}" ] || awk -v f="$3" '{ print $f }' <<<"${res[$1.$2.$r]}"
    done
}
for b in $benches; do
    case $b in
    latency)
        sp50=$(median $(col single latency 1)) sp99=$(median $(col single latency 2))
        cp50=$(median $(col cluster latency 1)) cp99=$(median $(col cluster latency 2))
        echo "latency, median of $runs: single p50 $sp50 p99 $sp99 ms; cluster (A -> B) p50" \
            "$cp50 p99 $cp99 ms; added p50 $(awk -v a="$cp50" -v b="$sp50" 'BEGIN { printf "%.3f", a - b }')" \
            "p99 $(awk -v a="$cp99" -v b="$sp99" 'BEGIN { printf "%.3f", a - b }') ms;" \
            "ratio p50 $(ratio "$cp50" "$sp50")x p99 $(ratio "$cp99" "$sp99")x" \
            "(per run p99: single $(col single latency 2 | xargs), cluster $(col cluster latency 2 | xargs))"
        ;;
    rate)
        s=$(median $(col single rate 1)) c=$(median $(col cluster rate 1))
        echo "rate, median of $runs: single $s/s, cluster (R3, 3 nodes) $c/s, ratio $(ratio "$c" "$s")" \
            "(per run: single $(col single rate 1 | xargs), cluster $(col cluster rate 1 | xargs))"
        ;;
    failover)
        s=$(median $(col single failover 1)) c=$(median $(col cluster failover 1))
        echo "failover of $failover_consoles consoles, median of $runs: single (connections reset)" \
            "$s ms, cluster (node A killed) $c ms, ratio $(ratio "$c" "$s")" \
            "(per run: single $(col single failover 1 | xargs) recovered $(col single failover 2 | xargs);" \
            "cluster $(col cluster failover 1 | xargs) recovered $(col cluster failover 2 | xargs))"
        ;;
    stream)
        echo "stream alone (3 NATS servers, R3, no gpsrelay), median of $runs: at 1000/s p50" \
            "$(median $(col cluster stream 1)) p99 $(median $(col cluster stream 2)) ms;" \
            "carried $(median $(col cluster stream 3))/s (per run: $(col cluster stream 3 | xargs))"
        ;;
    nats-*)
        echo "$b killed, median of $runs: longest delay $(median $(col cluster "$b" 1)) ms," \
            "p99 $(median $(col cluster "$b" 2)) ms (per run: longest $(col cluster "$b" 1 | xargs);" \
            "delivered $(col cluster "$b" 3 | xargs))"
        ;;
    esac
done
