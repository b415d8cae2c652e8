# Sourced by the bench/run-*.sh scripts: build, start and stop the servers under test, read
# the load generator's key=value lines, take medians. Everything runs on 127.0.0.1.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_BUILD=${GR_BENCH_BUILD:-build/bench-release}
BENCH_DIR=$(mktemp -d)
GR_PID= MQ_PID=
trap 'bench_cleanup' EXIT

bench_cleanup() {
    [ -z "$GR_PID" ] || kill "$GR_PID" 2>/dev/null || true
    [ -z "$MQ_PID" ] || kill "$MQ_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$BENCH_DIR"
}

# bench_build TARGET...: a Release tree of its own, so timings never come from a debug or
# sanitizer build. GR_BENCH_NO_BUILD=1 takes GR_BENCH_BUILD as it is (bench/run-idle-vm.sh:
# the guest sees the tree read-only and runs binaries the host built).
bench_build() {
    [ -z "${GR_BENCH_NO_BUILD:-}" ] || return 0
    cmake -S . -B "$BENCH_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BENCH_BUILD" -j"$(nproc)" --target "$@" >/dev/null
}

# Debian's mosquitto, only when a script compares with it. Its own systemd service is
# never used: bench_start_mosquitto runs it with a config of ours on loopback ports.
bench_need_mosquitto() {
    command -v mosquitto >/dev/null && return 0
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends mosquitto
}

# bench_mapping UNITS AGENCIES: devices.csv with U-<u> in agency bench-<u % AGENCIES>.
bench_mapping() {
    {
        echo "device_id,agency_id,label,source_addr"
        for ((u = 0; u < $1; u++)); do echo "U-$u,bench-$((u % $2)),,"; done
    } >"$BENCH_DIR/devices.csv"
}

# bench_wait NAME LOG PROBE...: runs PROBE every 50 ms until it succeeds, at most 10 s;
# then says NAME never became ready and shows its LOG.
bench_wait() {
    local name=$1 log=$2
    shift 2
    for _ in $(seq 200); do
        "$@" && return 0
        sleep 0.05
    done
    echo "$name did not become ready" >&2
    cat "$log" >&2
    return 1
}

# bench_start_gpsrelay CPU UDP_PORT WS_PORT: a fresh daemon pinned to CPU (a cpu list for
# taskset), loopback only, auth none, limits lifted for the load generator: every console
# comes from 127.0.0.x and every report from one UDP source. BENCH_CONF_EXTRA: more
# directive lines (another listener).
bench_start_gpsrelay() {
    cat >"$BENCH_DIR/gpsrelay.conf" <<CONF
listen_udp 127.0.0.1:$2
listen_ws 127.0.0.1:$3
mapping_file devices.csv
auth none
log_level warning
ingest_rate_limit 1000000
max_connections_per_source 1000000
${BENCH_CONF_EXTRA:-}
CONF
    ulimit -n "$(ulimit -Hn)"
    taskset -c "$1" "${GR_BIN:-$BENCH_BUILD/gpsrelayd}" -c "$BENCH_DIR/gpsrelay.conf" 2>>"$BENCH_DIR/gpsrelayd.log" &
    GR_PID=$!
    bench_wait gpsrelayd "$BENCH_DIR/gpsrelayd.log" curl -sf -o /dev/null "127.0.0.1:$3/readyz"
}

bench_stop_gpsrelay() {
    kill -TERM "$GR_PID" 2>/dev/null
    wait "$GR_PID" 2>/dev/null || true
    GR_PID=
}

# bench_start_mosquitto CPU MQTT_PORT WS_PORT: mosquitto with a plain MQTT listener (the
# publisher's) and an MQTT-over-WebSockets listener (the consoles'). Debian 12's 2.0.11
# refuses to start with a WebSockets listener alone ("Unable to start any listening
# sockets", eclipse/mosquitto#2284: libwebsockets built without external poll); with a
# plain listener beside it, it serves both. TCP_NODELAY on, as gpsrelay's sockets have it.
bench_start_mosquitto() {
    cat >"$BENCH_DIR/mosquitto.conf" <<CONF
allow_anonymous true
persistence false
set_tcp_nodelay true
max_connections -1
log_dest stderr
log_type error
log_type warning
listener $2 127.0.0.1
listener $3 127.0.0.1
protocol websockets
CONF
    ulimit -n "$(ulimit -Hn)"
    taskset -c "$1" mosquitto -c "$BENCH_DIR/mosquitto.conf" 2>>"$BENCH_DIR/mosquitto.log" &
    MQ_PID=$!
    bench_wait mosquitto "$BENCH_DIR/mosquitto.log" tcp_open "$3"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

bench_stop_mosquitto() {
    kill -TERM "$MQ_PID" 2>/dev/null
    wait "$MQ_PID" 2>/dev/null || true
    MQ_PID=
}

# bench_sweep NAME RATES...: runs loadgen (BENCH_LOADGEN, default this build's) with
# lg_args at each rate against the server already started, with $consoles consoles,
# $units units, $warmup and $seconds; prints the best delivered/s with p99 under
# $p99_max ms (0 if none).
bench_sweep() {
    local name=$1 best=0 line rate delivered p99
    shift
    for rate in "$@"; do
        line=$(taskset -c 1 "${BENCH_LOADGEN:-$BENCH_BUILD/bench/loadgen}" "${lg_args[@]}" --rate "$rate" \
            --consoles "$consoles" --units "$units" --warmup "$warmup" --duration "$seconds" \
            2>>"$BENCH_DIR/loadgen.log" | grep '^result') || true
        delivered=$(field "$line" delivered_per_s)
        p99=$(field "$line" p99_ms)
        echo "  $name rate=$rate/s: delivered=${delivered:-?}/s p50=$(field "$line" p50_ms)" \
            "p99=${p99:-?} p99.9=$(field "$line" p999_ms) max=$(field "$line" max_ms) ms," \
            "$(field "$line" positions_per_frame) positions/frame," \
            "loadgen cpu $(field "$line" loadgen_cpu)" >&2
        if [ -n "$delivered" ] && awk -v p="$p99" -v m="$p99_max" 'BEGIN { exit !(p < m) }' &&
            [ "${delivered%.*}" -gt "$best" ]; then
            best=${delivered%.*}
        fi
    done
    echo "$best"
}

# field LINE KEY: the value of KEY=value in a loadgen result line.
field() {
    tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'
}

# median VALUE...: the middle value (the lower middle of an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

# metric PORT NAME: one sample of the daemon's /metrics.
metric() {
    curl -s "127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}

# cpu_ticks PID: user + system clock ticks the process has used so far.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
