#!/bin/sh
# test_archive_schema.sh - config/archive.sql on a throwaway PostgreSQL 15: it applies
# twice; day partitions are made (idempotently) and expire whole; a position of a day with
# no partition lands in positions_default and moves into its day's partition once made; a
# batch staged and moved twice is archived once; a unit's track is read through the
# (device, time) index of the right days only; values come back exactly. Needs
# postgresql-15 (the test runner installs it); runs as root or as any user initdb accepts.
# Usage: tests/pg/test_archive_schema.sh [path/to/archive.sql]
set -u

HERE=$(dirname "$0")
SCHEMA=${1:-$HERE/../../config/archive.sql}
. "$HERE/lib.sh"

if [ ! -r "$SCHEMA" ]; then
    echo "cannot read $SCHEMA"
    exit 1
fi
pg_start gpsrelay-pgarch

# Far from UTC, so that day bounds that followed the session's TimeZone would show.
export PGTZ=Pacific/Chatham

for i in 1 2; do
    if psql_run -f "$SCHEMA" >"$T/apply$i.out" 2>&1; then
        ok "schema applies (run $i)"
    else
        cat "$T/apply$i.out"
        not_ok "schema applies (run $i)"
    fi
done

value "positions is partitioned by range on time" \
    "SELECT pg_get_partkeydef('positions'::regclass)" "RANGE (\"time\")"
value "the key is (device, time)" "SELECT pg_get_indexdef('positions_pkey'::regclass)" \
    "CREATE UNIQUE INDEX positions_pkey ON ONLY public.positions USING btree (device, \"time\")"
value "a DEFAULT partition" "SELECT pg_get_expr(relpartbound, oid) FROM pg_class
    WHERE relname = 'positions_default'" "DEFAULT"

# Today (UTC) and the next 3 days; a second call makes nothing.
TODAY=$(date -u +%Y-%m-%d)
day() { date -u -d "$TODAY $1 day" +%Y%m%d; }
value "partitions for today..today+3" \
    "SELECT partition || '/' || moved FROM gpsrelay_archive_add_days(3)" \
    "positions_$(day 0)/0 positions_$(day 1)/0 positions_$(day 2)/0 positions_$(day 3)/0"
value "partitions again: none made" "SELECT count(*) FROM gpsrelay_archive_add_days(3)" 0
# The bound is printed in the session's zone: check the instant.
value "today's lower bound is 00:00 UTC" \
    "SELECT to_char(lower_bound AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')
     FROM (SELECT substring(pg_get_expr(relpartbound, oid) FROM 'FROM \(''([^'']+)''\)')::timestamptz
           AS lower_bound FROM pg_class WHERE relname = 'positions_$(day 0)') b" \
    "$(date -u -d "$TODAY" +%Y-%m-%d) 00:00"

# A row of 23:59:59.999 UTC today goes to today's partition, one of 00:00 tomorrow to the next.
psql_run -c "INSERT INTO positions (device, time, lat, lon, src, rx_time, epoch, seq) VALUES
    ('EDGE', '$TODAY 23:59:59.999+00', 1, 1, 'nmea', now(), '0123456789abcdef', 1),
    ('EDGE', '$TODAY 00:00:00+00'::timestamptz + interval '1 day', 1, 1, 'nmea', now(),
     '0123456789abcdef', 2)" >/dev/null
value "day edges route by UTC" "SELECT tableoid::regclass || '/' || seq FROM positions
    WHERE device = 'EDGE' ORDER BY seq" "positions_$(day 0)/1 positions_$(day 1)/2"

# A position of a day without a partition (10 days ago) lands in DEFAULT ...
OLD=$(date -u -d "$TODAY -10 day" +%Y-%m-%d)
psql_run -c "INSERT INTO positions (device, time, lat, lon, src, rx_time, epoch, seq) VALUES
    ('AMB-12', '$OLD 12:00:00+00', 40.7128, -74.006, 'taip', now(), '0123456789abcdef', 10),
    ('AMB-12', '$OLD 12:00:01+00', 40.7129, -74.006, 'taip', now(), '0123456789abcdef', 11),
    ('AMB-12', '$OLD 00:00:00+00'::timestamptz - interval '1 ms', 40.7, -74, 'taip', now(),
     '0123456789abcdef', 12)" >/dev/null
value "an old day's positions land in DEFAULT" \
    "SELECT count(*) FROM positions_default WHERE device = 'AMB-12'" 3
# ... and a repeat of it is refused there too (the key holds in DEFAULT).
value "the key holds in DEFAULT" \
    "INSERT INTO positions (device, time, lat, lon, src, rx_time, epoch, seq) VALUES
    ('AMB-12', '$OLD 12:00:00+00', 0, 0, 'nmea', now(), '0123456789abcdef', 99)
    ON CONFLICT DO NOTHING RETURNING 1" ""
# ... and moves into that day's partition when it is made; the day before's stays.
value "making the old day moves its rows out of DEFAULT" \
    "SELECT partition || '/' || moved FROM gpsrelay_archive_add_days(0, '$OLD')" \
    "positions_$(day -10)/2"
value "moved rows are in the day's partition" "SELECT tableoid::regclass || '/' || seq
    FROM positions WHERE device = 'AMB-12' ORDER BY seq" \
    "positions_$(day -10)/10 positions_$(day -10)/11 positions_default/12"
value "moved rows keep their values" "SELECT lat || ',' || lon || ',' || src FROM positions
    WHERE device = 'AMB-12' AND seq = 11" "40.7129,-74.006,taip"
value "the made partition has the key" "SELECT indexdef FROM pg_indexes
    WHERE tablename = 'positions_$(day -10)'" \
    "CREATE UNIQUE INDEX positions_$(day -10)_pkey ON public.positions_$(day -10) USING btree (device, \"time\")"

# Expiry: days 30..1 before today (all made, as if the daemon had run a month), then a
# retention of 7 days drops the days ending at or before today - 7, i.e. up to today - 8.
psql_run -A -t -c "SELECT count(*) FROM gpsrelay_archive_add_days(29, '$TODAY'::date - 30)" \
    >/dev/null
psql_run -c "INSERT INTO positions (device, time, lat, lon, src, rx_time, epoch, seq)
    SELECT 'OLD', d + interval '6 hours', 1, 1, 'nmea', now(), '0123456789abcdef', 1000 + i
    FROM generate_series(1, 30) i,
         LATERAL (SELECT ('$TODAY'::date - i)::timestamp AT TIME ZONE 'UTC' AS d) x" >/dev/null
value "31 day partitions before expiry" "SELECT count(*) FROM pg_class
    WHERE relname ~ '^positions_[0-9]{8}$'" 34
expect=""
i=30
while [ $i -ge 8 ]; do
    expect="$expect positions_$(day -$i)"
    i=$((i - 1))
done
# (Making those days took AMB-12's last row out of DEFAULT: put one of 2000 there.)
psql_run -c "INSERT INTO positions (device, time, lat, lon, src, rx_time, epoch, seq) VALUES
    ('Y2K', '2000-01-01 00:00:00+00', 1, 1, 'nmea', now(), '0123456789abcdef', 1)" >/dev/null
value "retention 7: days up to today-8 dropped" \
    "SELECT * FROM gpsrelay_archive_drop_days(7)" "${expect# }"
value "retention 7: nothing more to drop" "SELECT count(*) FROM gpsrelay_archive_drop_days(7)" 0
value "kept: today-7..today+3" "SELECT string_agg(relname, ' ' ORDER BY relname) FROM pg_class
    WHERE relname ~ '^positions_[0-9]{8}$'" \
    "$(for i in -7 -6 -5 -4 -3 -2 -1 0 1 2 3; do printf 'positions_%s ' "$(day $i)"; done |
        sed 's/ $//')"
value "positions of kept days remain, of dropped days are gone" \
    "SELECT string_agg((seq - 1000)::text, ' ' ORDER BY seq) FROM positions WHERE device = 'OLD'" \
    "1 2 3 4 5 6 7"
value "DEFAULT is never dropped" "SELECT count(*) FROM positions_default" 1
value "dropped, not deleted: no row deleted in a day partition" "SELECT coalesce(sum(n_tup_del), 0)
    FROM pg_stat_user_tables WHERE relname ~ '^positions_[0-9]{8}$'" 0

# Exactly once: a batch (with a repeat inside it) staged and moved twice.
batch="$T/batch.tsv"
cat >"$batch" <<EOF
E-7	$TODAY 10:00:00.000+00	-33.8688197	151.2092955	6.17	271.5	10.2	0.9	9	nmea	\N	$TODAY 10:00:00.120+00	9f1c2a7b44e0d315	500
E-7	$TODAY 10:00:01.500+00	-33.8688100	151.2093000	\N	\N	\N	\N	\N	json	{"siren": true, "note": "a\\\\tb ü", "n": 1.5}	$TODAY 10:00:01.610+00	9f1c2a7b44e0d315	501
E-8	$TODAY 10:00:00.000+00	0.1	-179.9999999	0	360	-1000	99.99	255	taip	\N	$TODAY 10:00:00.050+00	9f1c2a7b44e0d315	502
E-7	$TODAY 10:00:00.000+00	-33.8688197	151.2092955	6.17	271.5	10.2	0.9	9	nmea	\N	$TODAY 10:00:00.130+00	9f1c2a7b44e0d315	503
EOF
move() {
    psql_run -A -t <<EOF
SELECT gpsrelay_archive_staging();
SELECT gpsrelay_archive_staging();
BEGIN;
\\copy pg_temp.gpsrelay_staging (device, time, lat, lon, speed, course, alt, hdop, sats, src, attrs, rx_time, epoch, seq) from '$batch'
SELECT moved || '/' || undated FROM gpsrelay_archive_move();
COMMIT;
SELECT 'staged after commit: ' || count(*) FROM pg_temp.gpsrelay_staging;
EOF
}
got=$(move 2>&1 | grep -v '^$' | tr '\n' ' ')
if [ "$got" = "3/0 staged after commit: 0 " ]; then ok "first move: 3 new, staging emptied"; else
    not_ok "first move (got '$got')"
fi
got=$(move 2>&1 | grep -v '^$' | tr '\n' ' ')
if [ "$got" = "0/0 staged after commit: 0 " ]; then ok "second move: 0 new"; else
    not_ok "second move (got '$got')"
fi
# A position of a day without a partition lands in positions_default, and says so.
got=$(psql_run -A -t <<EOF 2>&1
SELECT gpsrelay_archive_staging();
BEGIN;
INSERT INTO pg_temp.gpsrelay_staging VALUES ('E-9', '2001-02-03 04:05:06+00', 1, 2, NULL, NULL,
    NULL, NULL, NULL, 'nmea', NULL, '2001-02-03 04:05:07+00', '9f1c2a7b44e0d315', 499);
SELECT moved || '/' || undated FROM gpsrelay_archive_move();
COMMIT;
SELECT tableoid::regclass FROM positions WHERE device = 'E-9';
EOF
)
got=$(printf '%s' "$got" | grep -v '^$' | tr '\n' ' ')
if [ "$got" = "1/1 positions_default " ]; then ok "an undated position: moved, counted, in positions_default"; else
    not_ok "an undated position (got '$got')"
fi
psql_run -q -c "DELETE FROM positions WHERE device = 'E-9'"
value "one row per position" "SELECT device || '/' || seq FROM positions
    WHERE device IN ('E-7', 'E-8') ORDER BY device, time" "E-7/500 E-7/501 E-8/502"
# A COPY committed on its own is not archived (and not kept for a later move).
got=$(psql_run -A -t <<EOF 2>&1
SELECT gpsrelay_archive_staging();
\\copy pg_temp.gpsrelay_staging from '$batch'
SELECT moved FROM gpsrelay_archive_move();
EOF
)
got=$(printf '%s' "$got" | grep -v '^$' | tr '\n' ' ')
if [ "$got" = "0 " ]; then ok "staging is per transaction"; else
    not_ok "staging is per transaction (got '$got')"
fi
value "no staging table in another session" \
    "SELECT to_regclass('pg_temp.gpsrelay_staging') IS NULL" t

# Values round-trip exactly: doubles bit for bit, times to the millisecond in UTC, jsonb.
value "E-7 first position exact" "SELECT lat = -33.8688197::float8 AND lon = 151.2092955::float8
    AND speed = 6.17::float8 AND course = 271.5::float8 AND alt = 10.2::float8
    AND hdop = 0.9::float8 AND sats = 9 AND src = 'nmea' AND attrs IS NULL
    AND to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS') = '${TODAY}T10:00:00.000'
    AND to_char(rx_time AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') = '10:00:00.120'
    AND epoch = '9f1c2a7b44e0d315'
    FROM positions WHERE device = 'E-7' AND seq = 500" t
value "doubles print back as written" "SELECT lat || ' ' || lon FROM positions
    WHERE device = 'E-7' AND seq = 500" "-33.8688197 151.2092955"
value "absent members are NULL" "SELECT num_nulls(speed, course, alt, hdop, sats)
    FROM positions WHERE device = 'E-7' AND seq = 501" 5
value "attrs jsonb exact" "SELECT attrs = '{\"n\": 1.5, \"note\": \"a\\tb ü\", \"siren\": true}'::jsonb
    AND attrs->>'note' = E'a\\tb ü' FROM positions WHERE seq = 501" t
value "bounds of every value" "SELECT lat || ' ' || lon || ' ' || speed || ' ' || course || ' '
    || alt || ' ' || hdop || ' ' || sats FROM positions WHERE device = 'E-8'" \
    "0.1 -179.9999999 0 360 -1000 99.99 255"
value "ms time round-trips through epoch" "SELECT extract(epoch FROM time) * 1000
    = extract(epoch FROM '$TODAY 10:00:01.5+00'::timestamptz) * 1000
    FROM positions WHERE seq = 501" t

# A unit's track: 50 units at 1 Hz for 2 hours today and yesterday, then the track query.
psql_run -c "INSERT INTO positions (device, time, lat, lon, src, rx_time, epoch, seq)
    SELECT 'U-' || u, t, 40 + u / 100.0, -74, 'nmea', t, '0123456789abcdef', 0
    FROM generate_series(1, 50) u,
         generate_series('$TODAY 00:00:00+00'::timestamptz - interval '1 hour',
                         '$TODAY 00:00:00+00'::timestamptz + interval '1 hour',
                         interval '1 second') t
    ORDER BY t, u; -- as they arrive: every unit each second
    ANALYZE positions" >/dev/null
# plan_scans NAME FILE PARTITION... : the plan in FILE reads exactly these partitions, each
# through its (device, time) key (an index scan, or a bitmap of it and a sort by time, as
# the planner prefers for scattered rows), and nothing by a sequential scan.
plan_scans() {
    name=$1 file=$2
    shift 2
    want=$(for p in "$@"; do echo "$p"; done | sort | tr '\n' ' ')
    got=$(grep 'Scan' "$file" | grep -oE 'positions_([0-9]{8}|default)' | sort -u | tr '\n' ' ')
    for p in "$@"; do
        if ! grep -qE "(Index Scan using|Bitmap Index Scan on) ${p}_pkey" "$file"; then
            got="$got(no ${p}_pkey)"
        fi
    done
    if [ "$got" = "$want" ] && ! grep -q 'Seq Scan' "$file"; then ok "$name"; else
        cat "$file"
        not_ok "$name (scans '$got', expected '$want')"
    fi
}
psql_run -c "EXPLAIN (COSTS OFF) SELECT * FROM positions WHERE device = 'U-7'
    AND time BETWEEN '$TODAY 00:10:00+00' AND '$TODAY 00:20:00+00' ORDER BY time" \
    >"$T/explain1.out" 2>&1
plan_scans "track within a day: today's (device, time) index only" "$T/explain1.out" \
    "positions_$(day 0)"
psql_run -c "EXPLAIN (COSTS OFF) SELECT * FROM positions WHERE device = 'U-7'
    AND time BETWEEN '$TODAY 00:00:00+00'::timestamptz - interval '30 min'
                 AND '$TODAY 00:30:00+00' ORDER BY time" >"$T/explain2.out" 2>&1
plan_scans "track over midnight: the two days' indexes only" "$T/explain2.out" \
    "positions_$(day -1)" "positions_$(day 0)"
# As the daemon will send it: parameters, a generic plan, pruning when it runs.
psql_run >"$T/explain3.out" 2>&1 <<EOF
SET plan_cache_mode = force_generic_plan;
PREPARE track(text, timestamptz, timestamptz) AS
    SELECT * FROM positions WHERE device = \$1 AND time BETWEEN \$2 AND \$3 ORDER BY time;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
    EXECUTE track('U-7', '$TODAY 00:10:00+00', '$TODAY 00:20:00+00');
EOF
plan_scans "track with parameters: pruned to today, its index" "$T/explain3.out" \
    "positions_$(day 0)"
if grep -q "Subplans Removed" "$T/explain3.out" &&
    grep -qE "^ (Sort|Append|Index Scan|Bitmap Heap Scan).*actual rows=601 " "$T/explain3.out"; then
    ok "track with parameters: pruned when run, 601 positions"
else
    cat "$T/explain3.out"
    not_ok "track with parameters: pruned when run, 601 positions"
fi

# The schema survives a third run with data in it.
if psql_run -f "$SCHEMA" >/dev/null 2>&1; then ok "schema reapplies over data"; else
    not_ok "schema reapplies over data"
fi
value "data kept" "SELECT count(*) FROM positions WHERE device IN ('E-7', 'E-8')" 3

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
