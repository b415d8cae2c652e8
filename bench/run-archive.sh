#!/usr/bin/env bash
# run-archive.sh - the position archive (issue 18) against a throwaway PostgreSQL 15
# (tests/pg/pg_cluster.sh: fsync=off, as the tests run it; ARCH_FSYNC=on starts it with
# fsync on).
#
#   rate      end to end: bench/udp_flood at each of RATES datagrams/s (DEVICES devices, every
#             datagram a new fix) into a Release gpsrelayd archiving; over a WINDOW-second
#             window after WARMUP: published/s, archived/s (written_total), the queue at
#             both ends of the window, loop turns over 5 ms, CPU of the daemon and PostgreSQL
#   drain     the writer alone: DRAIN positions spooled while PostgreSQL is down, then a
#             fresh daemon started with it up; the time until the queue is empty
#   peer      the same rows (the spool's lines) by bench/archive_insert: multi-row INSERT ...
#             ON CONFLICT DO NOTHING, PEER_ROWS rows per statement, prepared and not, into
#             the same emptied table; run in the same rounds as drain (needs drain)
#   history   one unit's full day (86,400 positions at 1 Hz, loaded by COPY) by
#             /api/history, ndjson and geojson
#   snapshot  /api/snapshot of an agency of SNAP_UNITS units, each with SNAP_HOURS hours of
#             positions every SNAP_EVERY s (loaded by COPY in time order); warm, and first
#             call after PostgreSQL restarted with the page cache dropped (cold)
#
# The daemon (every thread) is pinned to CPU 0 and the flood to CPU 1; PostgreSQL is not
# pinned, so on two cores it shares both with them. Every figure is a median of RUNS runs.
#
# usage: bench/run-archive.sh [PART...]   (default: rate drain peer history snapshot)
# env:   RUNS=3 RATES="25000 50000 100000 150000" DEVICES=2000 WARMUP=3 WINDOW=10
#        PG_CPUS (PostgreSQL pinned there) ARCH_FSYNC=on
#        DRAIN=2000000 PEER_ROWS=1000 SNAP_UNITS=2000 SNAP_HOURS=24 SNAP_EVERY=10
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PG=tests/pg/pg_cluster.sh
RUNS=${RUNS:-3}
RATES=${RATES:-25000 50000 100000 150000}
DEVICES=${DEVICES:-2000}
WARMUP=${WARMUP:-3}
WINDOW=${WINDOW:-10}
DRAIN=${DRAIN:-2000000}
PEER_ROWS=${PEER_ROWS:-1000}
SNAP_UNITS=${SNAP_UNITS:-2000}
SNAP_HOURS=${SNAP_HOURS:-24}
SNAP_EVERY=${SNAP_EVERY:-10}
parts=${*:-rate drain peer history snapshot}

bench_build gpsrelayd udp_flood archive_insert

# PostgreSQL's directory must be reachable by the postgres user; BENCH_DIR is 0700.
PGDIR_PARENT=$(mktemp -d /tmp/gpsrelay-archive.XXXXXX)
chmod 755 "$PGDIR_PARENT"
pgdir=$PGDIR_PARENT/pg
FLOOD_PID=
trap 'archive_cleanup' EXIT
archive_cleanup() {
    [ -z "$FLOOD_PID" ] || kill "$FLOOD_PID" 2>/dev/null || true
    bench_cleanup
    $PG destroy "$pgdir" 2>/dev/null || true
    rm -rf "$PGDIR_PARENT"
}

# PG_CPUS (a cpu list): PostgreSQL pinned there, its postmaster after every start (the
# backends it forks inherit it); by default it is not pinned.
# ARCH_FSYNC=on: started here as pg_cluster.sh starts it, but with fsync on (its own start
# says fsync=off on the command line, which no configuration file overrides).
pg_start() {
    if [ "${ARCH_FSYNC:-off}" = on ]; then
        local as_pg=
        [ "$(id -u)" != 0 ] || as_pg="runuser -u postgres --"
        $as_pg /usr/lib/postgresql/15/bin/pg_ctl -D "$pgdir/data" -l "$pgdir/log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $(cat "$pgdir/port") -k $pgdir -c fsync=on" \
            start >/dev/null
    else
        $PG start "$pgdir"
    fi
    pg_pin
}
pg_pin() {
    [ -z "${PG_CPUS:-}" ] || taskset -a -cp "$PG_CPUS" "$(head -n 1 "$pgdir/data/postmaster.pid")" >/dev/null
}
$PG init "$pgdir"
[ "${ARCH_FSYNC:-off}" != on ] || { $PG stop "$pgdir" && pg_start; }
pg_pin
pgport=$(cat "$pgdir/port")
pg() { $PG psql "$pgdir" "$@"; }
# pg_stat_statements: where PostgreSQL's time goes, per statement (drain and peer).
pg -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null
$PG stop "$pgdir" && pg_start
pg -c "CREATE EXTENSION pg_stat_statements" -f config/archive.sql >/dev/null
echo "PostgreSQL $(pg -tAc 'SHOW server_version'), fsync=$(pg -tAc 'SHOW fsync')," \
    "shared_buffers=$(pg -tAc 'SHOW shared_buffers')"
COPY_COLS="device, time, lat, lon, speed, course, alt, hdop, sats, src, attrs, rx_time, epoch, seq"
conninfo="hostaddr=127.0.0.1 port=$pgport user=postgres dbname=postgres"

# The flood's devices (BENCH-<d>, agency flood) and the history/snapshot units (U-<u>,
# agency snap).
{
    echo "device_id,agency_id,label,source_addr"
    for ((d = 0; d < DEVICES; d++)); do echo "BENCH-$d,flood,,"; done
    for ((u = 0; u < SNAP_UNITS; u++)); do echo "U-$u,snap,,"; done
} >"$BENCH_DIR/devices.csv"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
UDP=$(free_port)
WS=$(free_port)
SPOOL=$BENCH_DIR/spool

# start_daemon [off]: a fresh gpsrelayd on CPU 0 archiving into the cluster through $SPOOL
# (with "off": not archiving, the control of the same run).
start_daemon() {
    cat >"$BENCH_DIR/gpsrelay.conf" <<CONF
listen_udp 127.0.0.1:$UDP
listen_ws 127.0.0.1:$WS
mapping_file devices.csv
auth none
log_level warning
ingest_rate_limit 1000000
CONF
    [ "${1:-}" = off ] || printf 'archive_postgres "%s"\narchive_spool %s\n' "$conninfo" "$SPOOL" \
        >>"$BENCH_DIR/gpsrelay.conf"
    taskset -c 0 "$BENCH_BUILD/gpsrelayd" -c "$BENCH_DIR/gpsrelay.conf" 2>>"$BENCH_DIR/gpsrelayd.log" &
    GR_PID=$!
    bench_wait gpsrelayd "$BENCH_DIR/gpsrelayd.log" curl -sf -o /dev/null "127.0.0.1:$WS/readyz"
}
archive_up() { [ "$(metric "$WS" gpsrelay_archive_up)" = 1 ]; }

# sample NAME: the daemon's /metrics into a file, with the CPU ticks of the daemon and of
# the cluster's processes (postmaster and children) and the wall time appended.
pg_ticks() {
    local pm t=0
    pm=$(head -n 1 "$pgdir/data/postmaster.pid")
    for p in $pm $(pgrep -P "$pm"); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
    echo "$t"
}
sample() {
    {
        curl -s "127.0.0.1:$WS/metrics"
        echo "x_daemon_ticks $(cpu_ticks "$GR_PID")"
        echo "x_pg_ticks $(pg_ticks)"
        echo "x_time $(date +%s.%N)"
    } >"$BENCH_DIR/m.$1"
}
: >"$BENCH_DIR/m.none" # the sample before the start: all counters 0
val() { awk -v m="$2" '$1 == m { print $2 }' "$BENCH_DIR/m.$1"; }
delta() { awk -v a="$(val "$1" "$3")" -v b="$(val "$2" "$3")" 'BEGIN { printf "%.0f", b - a }'; }
per_s() { # A B NAME: NAME's increase per second between samples A and B
    awk -v a="$(val "$1" "$3")" -v b="$(val "$2" "$3")" \
        -v t0="$(val "$1" x_time)" -v t1="$(val "$2" x_time)" \
        'BEGIN { printf "%.0f", (b - a) / (t1 - t0) }'
}
cpu_pct() { # A B NAME: the ticks NAME counts as % of one core between samples A and B
    awk -v a="$(val "$1" "$3")" -v b="$(val "$2" "$3")" -v t0="$(val "$1" x_time)" \
        -v t1="$(val "$2" x_time)" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f", 100 * (b - a) / hz / (t1 - t0) }'
}
busy_over() { # A B BOUND: loop turns longer than BOUND seconds between samples A and B
    local le="gpsrelay_loop_busy_seconds_bucket{le=\"$3\"}" inf='gpsrelay_loop_busy_seconds_bucket{le="+Inf"}'
    echo $(($(delta "$1" "$2" "$inf") - $(delta "$1" "$2" "$le")))
}
batch_ms() { # A B: the mean archive batch between samples A and B
    awk -v s="$(delta "$1" "$2" gpsrelay_archive_batch_seconds_sum)" \
        -v n="$(delta "$1" "$2" gpsrelay_archive_batch_seconds_count)" \
        'BEGIN { if (n > 0) printf "%.0f ms", 1000 * s / n; else print "-" }'
}
longest_turn() { # A B: the smallest bucket bound that holds every turn between A and B
    local b
    for b in 0.0001 0.0005 0.001 0.002 0.005 0.01 0.02 0.05 0.1 0.5; do
        [ "$(busy_over "$1" "$2" "$b")" -gt 0 ] || { echo "<= ${b}s"; return; }
    done
    echo "> 0.5s"
}

truncate_positions() {
    pg -c "TRUNCATE positions" -c "CHECKPOINT" -c "SELECT pg_stat_statements_reset()" >/dev/null
}
# statements: PostgreSQL's own time per statement since truncate_positions, the top four.
statements() {
    pg -tAF ' | ' -c "SELECT calls, round(total_exec_time)::bigint || ' ms', rows,
                             left(regexp_replace(query, '\s+', ' ', 'g'), 70)
                      FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'
                      ORDER BY total_exec_time DESC LIMIT 4" | sed 's/^/      /'
}

# ---- rate ---------------------------------------------------------------------------------
part_rate() {
    echo "== end to end: $DEVICES devices, window ${WINDOW}s after ${WARMUP}s, $RUNS runs per rate"
    echo "   (each run followed by the same without the archive: the control)"
    local rate r mode
    for rate in $RATES; do
        local pubs=() arcs=() overs=() longs=() offpubs=() offovers=()
        for ((r = 1; r <= RUNS; r++)); do
          for mode in on off; do
            truncate_positions
            rm -f "$SPOOL"
            start_daemon "$mode"
            [ "$mode" = off ] || bench_wait archive "$BENCH_DIR/gpsrelayd.log" archive_up
            taskset -c 1 "$BENCH_BUILD/bench/udp_flood" "$UDP" "$DEVICES" $((WARMUP + WINDOW + 1)) "$rate" \
                >"$BENCH_DIR/flood.out" &
            FLOOD_PID=$!
            sleep "$WARMUP"
            sample a
            sleep "$WINDOW"
            sample b
            wait "$FLOOD_PID" || true
            FLOOD_PID=
            local pub arc over
            pub=$(per_s a b gpsrelay_positions_published_total)
            arc=$(per_s a b gpsrelay_archive_written_total)
            over=$(busy_over a b 0.005)
            if [ "$mode" = off ]; then
                offpubs+=("$pub") offovers+=("$over")
                echo "  rate=$rate run $r archive off: published $pub/s; socket drops" \
                    "$(delta a b gpsrelay_ingest_socket_drops_total); loop turns over 5 ms $over," \
                    "longest $(longest_turn a b); cpu daemon $(cpu_pct a b x_daemon_ticks)%"
                bench_stop_gpsrelay
                continue
            fi
            pubs+=("$pub") arcs+=("$arc") overs+=("$over") longs+=("$(longest_turn a b)")
            echo "  rate=$rate run $r: $(cat "$BENCH_DIR/flood.out"); published $pub/s," \
                "archived $arc/s; socket drops $(delta a b gpsrelay_ingest_socket_drops_total);" \
                "queued $(val a gpsrelay_archive_queued) -> $(val b gpsrelay_archive_queued)," \
                "dropped $(val b gpsrelay_archive_dropped_total);" \
                "loop turns $(delta a b 'gpsrelay_loop_busy_seconds_count'), over 5 ms $over," \
                "longest $(longest_turn a b)" \
                "(max since start $(val b gpsrelay_loop_busy_max_seconds) s);" \
                "batches $(delta a b gpsrelay_archive_batch_seconds_count) ($(batch_ms a b) each);" \
                "cpu daemon $(cpu_pct a b x_daemon_ticks)%, postgres $(cpu_pct a b x_pg_ticks)%"
            bench_stop_gpsrelay
          done
        done
        echo "rate=$rate median: published $(median "${pubs[@]}")/s," \
            "archived $(median "${arcs[@]}")/s," \
            "turns over 5 ms $(median "${overs[@]}") (runs: ${overs[*]}), longest: ${longs[*]};" \
            "archive off: published $(median "${offpubs[@]}")/s," \
            "turns over 5 ms $(median "${offovers[@]}") (runs: ${offovers[*]})"
    done
}

# ---- drain and peer -----------------------------------------------------------------------
ROWS=$BENCH_DIR/spool.full # a copy of the filled spool: the drain's input and the peer's rows

fill_spool() {
    echo "== filling the spool with $DRAIN positions while PostgreSQL is stopped"
    $PG stop "$pgdir"
    rm -f "$SPOOL"
    start_daemon
    taskset -c 1 "$BENCH_BUILD/bench/udp_flood" "$UDP" "$DEVICES" $((DRAIN / 50000 + 10)) 100000 \
        >"$BENCH_DIR/flood.out" &
    FLOOD_PID=$!
    until [ "$(metric "$WS" gpsrelay_archive_queued)" -ge "$DRAIN" ]; do sleep 0.05; done
    kill -INT "$FLOOD_PID"
    wait "$FLOOD_PID" || true
    FLOOD_PID=
    echo "  flood stopped at: queued $(metric "$WS" gpsrelay_archive_queued)," \
        "$(metric "$WS" gpsrelay_archive_spool_bytes) bytes"
    bench_stop_gpsrelay
    cp "$SPOOL" "$ROWS"
    pg_start
    FILLED=$(($(tail -c +4097 "$ROWS" | tr -d '\0' | wc -l)))
    echo "  spool file: $(stat -c %s "$ROWS") bytes, $FILLED lines"
}

drain_once() {
    truncate_positions
    cp "$ROWS" "$SPOOL"
    local t0 t1
    t0=$(date +%s%N)
    start_daemon
    sample a
    until [ "$(metric "$WS" gpsrelay_archive_queued)" = 0 ] &&
        [ "$(metric "$WS" gpsrelay_archive_written_total)" -gt 0 ]; do sleep 0.02; done
    t1=$(date +%s%N)
    sample b
    local ms=$(((t1 - t0) / 1000000))
    DRAIN_RATE=$((FILLED * 1000 / ms))
    DRAIN_BUSY=$(val b gpsrelay_loop_busy_max_seconds)
    echo "  drain: $(val b gpsrelay_archive_written_total) written in $ms ms from exec: $DRAIN_RATE/s;" \
        "loop busy max ${DRAIN_BUSY}s, turns over 5 ms $(busy_over a b 0.005);" \
        "batches $(val b gpsrelay_archive_batch_seconds_count), mean $(batch_ms none b);" \
        "cpu daemon $(cpu_pct a b x_daemon_ticks)%, postgres $(cpu_pct a b x_pg_ticks)%"
    echo "    PostgreSQL's time (calls | total | rows | statement):"
    statements
    bench_stop_gpsrelay
}

peer_once() { # MODE
    truncate_positions
    local line
    line=$(taskset -c 1 "$BENCH_BUILD/bench/archive_insert" "$conninfo" "$ROWS" "$PEER_ROWS" "$1" 4096)
    PEER_RATE=$(field "$line" rows_per_s)
    echo "  peer $1: ${line#result }"
    statements
    [ "$(field "$line" inserted)" = "$FILLED" ] ||
        echo "  peer $1: inserted $(field "$line" inserted), expected $FILLED" >&2
}

# copy_once: the bound of the design, COPY of the same rows straight into positions (no
# staging, no ON CONFLICT: fails on a duplicate, so not a way to write exactly once).
copy_once() {
    truncate_positions
    local t0 ms
    t0=$(date +%s%N)
    tail -c +4097 "$ROWS" | tr -d '\0' | pg -c "COPY positions ($COPY_COLS) FROM STDIN"
    ms=$((($(date +%s%N) - t0) / 1000000))
    COPY_RATE=$((FILLED * 1000 / ms))
    echo "  COPY straight into positions: $FILLED rows in $ms ms: $COPY_RATE/s"
}

part_drain_peer() {
    [ -f "$ROWS" ] || fill_spool
    local drains=() preps=() params=() ratios=() ratios_p=() copies=() r
    for ((r = 1; r <= RUNS; r++)); do
        echo "-- round $r"
        drain_once
        drains+=("$DRAIN_RATE")
        if [[ " $parts " == *" peer "* ]]; then
            peer_once prepared
            preps+=("$PEER_RATE")
            copy_once
            copies+=("$COPY_RATE")
            ratios+=("$(awk -v a="$DRAIN_RATE" -v b="$PEER_RATE" 'BEGIN { printf "%.2f", a / b }')")
            if [ "$r" = 1 ] || [ -n "${PEER_PARAMS_EVERY:-}" ]; then # slow: once unless asked
                peer_once params
                params+=("$PEER_RATE")
                ratios_p+=("$(awk -v a="$DRAIN_RATE" -v b="$PEER_RATE" 'BEGIN { printf "%.2f", a / b }')")
            fi
        fi
    done
    echo "drain median: $(median "${drains[@]}") positions/s (runs: ${drains[*]})"
    if [ ${#preps[@]} -gt 0 ]; then
        echo "peer prepared median: $(median "${preps[@]}") rows/s (runs: ${preps[*]});" \
            "archive/peer per round: ${ratios[*]}, median $(median "${ratios[@]}")"
        echo "COPY straight into positions median: $(median "${copies[@]}") rows/s (runs: ${copies[*]})"
        echo "peer params median: $(median "${params[@]}") rows/s (runs: ${params[*]});" \
            "archive/peer per round: ${ratios_p[*]}, median $(median "${ratios_p[@]}")"
    fi
}

# ---- history and snapshot -----------------------------------------------------------------
DAY=$(date -u -d yesterday +%F)
DAY_EPOCH=$(date -u -d "$DAY" +%s)

# gen_rows UNITS SECONDS EVERY: COPY text lines, in time order, of U-0..U-(UNITS-1) every
# EVERY seconds over SECONDS from DAY 00:00 UTC; each unit moves on its own track.
gen_rows() {
    awk -v units="$1" -v secs="$2" -v every="$3" -v day="$DAY" 'BEGIN {
        OFS = "\t"
        for (t = 0; t < secs; t += every) {
            ts = sprintf("%s %02d:%02d:%02d.000+00", day, int(t / 3600), int(t / 60) % 60, t % 60)
            for (u = 0; u < units; u++) {
                print "U-" u, ts, 40.7 + u * 0.0001 + t * 1e-6, -74.0 + t * 2e-6, 12.5, 271.5, \
                      10.2, 0.9, 9, "nmea", "\\N", ts, "00000000000000ab", ++seq
            }
        }
    }'
}

load_rows() { # UNITS SECONDS EVERY
    pg -c "TRUNCATE positions" -c "SELECT count(*) FROM gpsrelay_archive_add_days(0, '$DAY')" >/dev/null
    local t0=$(date +%s%N)
    gen_rows "$@" | pg -c "COPY positions ($COPY_COLS) FROM STDIN"
    pg -c "VACUUM ANALYZE positions" >/dev/null
    echo "  loaded $(pg -tAc 'SELECT count(*) FROM positions') rows by COPY in" \
        "$((($(date +%s%N) - t0) / 1000000)) ms (with VACUUM ANALYZE);" \
        "table $(pg -tAc "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid)))
                          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                          WHERE i.inhparent = 'positions'::regclass")"
}

timed_get() { # URL: "seconds bytes status"
    curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}' "127.0.0.1:$WS$1"
}

part_history() {
    echo "== history: U-0, 86,400 positions at 1 Hz on $DAY"
    load_rows 1 86400 1
    start_daemon
    bench_wait archive "$BENCH_DIR/gpsrelayd.log" archive_up
    local fmt r out times
    for fmt in ndjson geojson; do
        times=()
        local url="/api/history?device=U-0&from=$DAY_EPOCH&to=$((DAY_EPOCH + 86400))&limit=100000&format=$fmt"
        echo "  $fmt first call: $(timed_get "$url")"
        for ((r = 1; r <= 5; r++)); do
            out=$(timed_get "$url")
            times+=("${out%% *}")
        done
        echo "history $fmt: median of 5 $(median "${times[@]}") s (runs: ${times[*]}; $out)"
    done
    bench_stop_gpsrelay
}

cold_start() { # restarts PostgreSQL with the page cache dropped (when allowed), and the daemon
    [ -z "$GR_PID" ] || bench_stop_gpsrelay
    $PG stop "$pgdir"
    sync
    if echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
        COLD="PostgreSQL restarted, page cache dropped"
    else
        COLD="PostgreSQL restarted (page cache not dropped: not allowed)"
    fi
    pg_start
    start_daemon
    bench_wait archive "$BENCH_DIR/gpsrelayd.log" archive_up
}

part_snapshot() {
    echo "== snapshot: $SNAP_UNITS units, $SNAP_HOURS h every $SNAP_EVERY s on $DAY"
    load_rows "$SNAP_UNITS" $((SNAP_HOURS * 3600)) "$SNAP_EVERY"
    local at=$((DAY_EPOCH + SNAP_HOURS * 3600 - 1)) url r out colds=() warms=()
    url="/api/snapshot?agency=snap&at=$at"
    for ((r = 1; r <= 5; r++)); do
        cold_start
        out=$(timed_get "$url")
        colds+=("${out%% *}")
        echo "  cold $r: $out"
    done
    echo "  ($COLD)"
    for ((r = 1; r <= 5; r++)); do
        out=$(timed_get "$url")
        warms+=("${out%% *}")
    done
    echo "  body: $(curl -s "127.0.0.1:$WS$url" | python3 -c 'import json, sys
d = json.load(sys.stdin)
print(len(d["positions"]), "positions,", len(d["missing"]), "missing")')"
    echo "snapshot: cold (first call) median $(median "${colds[@]}") s (runs: ${colds[*]});" \
        "warm median $(median "${warms[@]}") s (runs: ${warms[*]}; $out)"
    bench_stop_gpsrelay
}

echo "gpsrelay $(git rev-parse --short HEAD), $(date -u +%FT%TZ)," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
for p in $parts; do
    case $p in
    rate) part_rate ;;
    drain) part_drain_peer ;;
    peer) [[ " $parts " == *" drain "* ]] || part_drain_peer ;;
    history) part_history ;;
    snapshot) part_snapshot ;;
    *) echo "unknown part $p" >&2; exit 64 ;;
    esac
done
