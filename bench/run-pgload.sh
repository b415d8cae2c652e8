#!/usr/bin/env bash
# run-pgload.sh - how long gpsrelayd takes to load a mapping of DEVICES devices in AGENCIES
# agencies from PostgreSQL, and how long its event loop is held at most meanwhile
# (gpsrelay_loop_busy_max_seconds). Then the same for a 10% change in one transaction
# (a reload through LISTEN/NOTIFY). Needs postgresql-15; makes and removes its own cluster.
#
# Usage: bench/run-pgload.sh [DEVICES] [AGENCIES] [BUILD_DIR]   (100000 2000 build/bench-release)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${1:-100000}
AGENCIES=${2:-2000}
BUILD=${3:-build/bench-release}
PG=tests/pg/pg_cluster.sh

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target gpsrelayd >/dev/null

work=$(mktemp -d /tmp/gpsrelay-pgload.XXXXXX)
chmod 755 "$work" # the postgres user must reach its cluster inside
pgdir=$work/pg
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    $PG destroy "$pgdir"
    rm -rf "$work"
}
trap cleanup EXIT

$PG init "$pgdir"
$PG psql "$pgdir" -f config/schema.sql >/dev/null 2>&1
$PG psql "$pgdir" -c "
  INSERT INTO agencies (id) SELECT 'agency-' || g FROM generate_series(1, $AGENCIES) g;
  INSERT INTO devices (id, label, source_addr)
    SELECT 'DEV-' || g, 'Unit ' || g, ('10.0.0.0'::inet + g) FROM generate_series(1, $DEVICES) g;
  INSERT INTO device_agencies
    SELECT 'DEV-' || g, 'agency-' || (g % $AGENCIES + 1) FROM generate_series(1, $DEVICES) g;"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ws=$(port)
cat >"$work/gpsrelay.conf" <<CONF
listen_udp 127.0.0.1:$(port)
listen_ws 127.0.0.1:$ws
auth none
postgres "host=127.0.0.1 port=$(cat "$pgdir/port") user=postgres dbname=postgres"
mapping_cache $work/cache.csv
log_level info
CONF

metric() { curl -s "127.0.0.1:$ws/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
wait_devices() { # N: polls until the mapping holds N devices; prints the ms it took
    local t0=$(date +%s%N)
    until [ "$(metric gpsrelay_mapping_devices 2>/dev/null)" = "$1" ]; do sleep 0.01; done
    echo $((($(date +%s%N) - t0) / 1000000))
}

t0=$(date +%s%N)
${GR_WRAP:-} "$BUILD/gpsrelayd" -c "$work/gpsrelay.conf" 2>"$work/log" &
pid=$!
until curl -s "127.0.0.1:$ws/healthz" >/dev/null 2>&1; do sleep 0.01; done
wait_devices "$DEVICES" >/dev/null
start_ms=$((($(date +%s%N) - t0) / 1000000))
echo "initial load: $DEVICES devices / $AGENCIES agencies in force ${start_ms} ms after exec" \
     "(PostgreSQL query + build: $(grep -o 'loaded in [0-9]* ms' "$work/log" | head -1));" \
     "loop busy max $(metric gpsrelay_loop_busy_max_seconds) s"

$PG psql "$pgdir" -c "UPDATE device_agencies SET agency_id = 'agency-' || ((substr(device_id, 5)::int + 1) % $AGENCIES + 1)
                      WHERE substr(device_id, 5)::int % 10 = 0" >/dev/null
t1=$(date +%s%N)
until [ "$(metric gpsrelay_mapping_loads_total)" = 2 ]; do sleep 0.01; done
until grep -q "mapping: $DEVICES devices in force" <(grep -c "in force" "$work/log" | awk '$1 >= 2 { print "mapping: '"$DEVICES"' devices in force" }'); do sleep 0.01; done
echo "10% moved in one transaction: applied $((($(date +%s%N) - t1) / 1000000)) ms after psql returned" \
     "($(grep -o 'loaded in [0-9]* ms' "$work/log" | tail -1));" \
     "loop busy max $(metric gpsrelay_loop_busy_max_seconds) s"
curl -s "127.0.0.1:$ws/metrics" | grep '^gpsrelay_loop_busy_seconds_bucket'
