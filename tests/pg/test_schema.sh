#!/bin/sh
# test_schema.sh - config/schema.sql on a throwaway PostgreSQL 15: it applies twice, and
# every INSERT, UPDATE and DELETE on the mapping tables (cascades included) notifies
# gpsrelay_mapping. Needs postgresql-15 (the test runner installs it); runs as root or as
# any user initdb accepts. Usage: tests/pg/test_schema.sh [path/to/schema.sql]
set -u

HERE=$(dirname "$0")
SCHEMA=${1:-$HERE/../../config/schema.sql}
. "$HERE/lib.sh"

if [ ! -r "$SCHEMA" ]; then
    echo "cannot read $SCHEMA"
    exit 1
fi
pg_start gpsrelay-pg

# Applying twice must work: the second run re-creates functions and triggers only.
for i in 1 2; do
    if psql_run -f "$SCHEMA" >"$T/apply$i.out" 2>&1; then
        ok "schema applies (run $i)"
    else
        cat "$T/apply$i.out"
        not_ok "schema applies (run $i)"
    fi
done

# Each statement-level trigger exists exactly once after two runs.
n=$(psql_run -A -t -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'gpsrelay_mapping_notify'
                       AND NOT tgisinternal")
if [ "$n" = 3 ]; then ok "three triggers"; else not_ok "three triggers (got '$n')"; fi

# session NAME SQL EXPECT... : runs SQL after LISTEN in one psql session and checks that a
# notification with each expected payload was printed ("-" expects none at all).
session() {
    name=$1 sql=$2
    shift 2
    out=$(printf 'LISTEN gpsrelay_mapping;\n%s\n' "$sql" | psql_run 2>&1)
    rc=$?
    if [ $rc != 0 ]; then
        printf '%s\n' "$out"
        not_ok "$name (psql exit $rc)"
        return
    fi
    for payload in "$@"; do
        if [ "$payload" = - ]; then
            if printf '%s\n' "$out" | grep -q 'Asynchronous notification'; then
                printf '%s\n' "$out"
                not_ok "$name: unexpected notification"
                return
            fi
        elif ! printf '%s\n' "$out" |
            grep -q "^Asynchronous notification \"gpsrelay_mapping\" with payload \"$payload\" received"; then
            printf '%s\n' "$out"
            not_ok "$name: no notification with payload \"$payload\""
            return
        fi
    done
    ok "$name"
}

# value NAME SQL EXPECTED : a query's single value.
value() {
    got=$(psql_run -A -t -c "$2" 2>&1)
    if [ "$got" = "$3" ]; then ok "$1"; else not_ok "$1 (got '$got', expected '$3')"; fi
}

session "a SELECT does not notify" "SELECT count(*) FROM devices;" -
session "INSERT agencies" "INSERT INTO agencies (id, name) VALUES ('city-fire', 'City Fire'),
    ('county-ems', 'County EMS');" agencies
session "INSERT devices" "INSERT INTO devices (id, label, source_addr) VALUES
    ('AMB-12', 'Medic 12', NULL), ('E-7', 'Engine 7', '10.20.0.7');" devices
session "INSERT device_agencies" "INSERT INTO device_agencies VALUES ('AMB-12', 'county-ems'),
    ('AMB-12', 'city-fire'), ('E-7', 'city-fire');" device_agencies
session "UPDATE devices.source_addr" \
    "UPDATE devices SET source_addr = '2001:db8::7' WHERE id = 'E-7';" devices
session "UPDATE agencies" "UPDATE agencies SET name = 'City Fire Dept' WHERE id = 'city-fire';" \
    agencies
session "rolled back INSERT does not notify" "BEGIN;
    INSERT INTO agencies (id) VALUES ('temp'); ROLLBACK;" -
session "DELETE device (cascade)" "DELETE FROM devices WHERE id = 'E-7';" devices device_agencies
value "cascade removed E-7's rows" "SELECT count(*) FROM device_agencies WHERE device_id = 'E-7'" 0
session "DELETE agency (cascade)" "DELETE FROM agencies WHERE id = 'county-ems';" \
    agencies device_agencies
value "cascade removed county-ems rows" \
    "SELECT string_agg(device_id || '/' || agency_id, ' ') FROM device_agencies" "AMB-12/city-fire"
session "DELETE device_agencies" "DELETE FROM device_agencies;" device_agencies
session "TRUNCATE devices (cascade)" "TRUNCATE devices CASCADE;" devices

# The CHECKs refuse what the daemon would refuse.
refuse() {
    if psql_run -c "$2" >/dev/null 2>&1; then not_ok "$1 refused"; else ok "$1 refused"; fi
}
refuse "agency id with ':'" "INSERT INTO agencies (id) VALUES ('agency:x')"
refuse "network as source_addr" "INSERT INTO devices (id, source_addr) VALUES ('X', '10.0.0.0/8')"
refuse "label with a line break" "INSERT INTO devices (id, label) VALUES ('X', E'a\nb')"
refuse "duplicate source_addr" "INSERT INTO devices (id, source_addr) VALUES ('X', '10.0.0.1'),
    ('Y', '10.0.0.1')"
# The daemon takes ::ffff:10.0.0.1 as 10.0.0.1: as a second device's address, the same one.
refuse "IPv4-mapped IPv6 source_addr" "INSERT INTO devices (id, source_addr) VALUES
    ('X', '::ffff:10.0.0.1')"
value "IPv6 source_addr accepted" "INSERT INTO devices (id, source_addr) VALUES ('X', '2001:db8::1')
    RETURNING host(source_addr)" "2001:db8::1"
psql_run -c "DELETE FROM devices WHERE id = 'X'" >/dev/null 2>&1

# A table from before the constraint, already holding such a row: the schema still applies
# (with a warning), the constraint guards new rows, and is validated once the row is fixed.
psql_run -c "ALTER TABLE devices DROP CONSTRAINT devices_source_addr_not_v4_mapped;
    INSERT INTO devices (id, source_addr) VALUES ('M', '::ffff:10.0.0.9')" >/dev/null 2>&1
if psql_run -f "$SCHEMA" >"$T/apply-mapped.out" 2>&1 &&
    grep -q 'WARNING:  devices: some source_addr is an IPv4-mapped' "$T/apply-mapped.out"; then
    ok "schema applies over a mapped address, warning"
else
    cat "$T/apply-mapped.out"
    not_ok "schema applies over a mapped address, warning"
fi
refuse "new IPv4-mapped source_addr after that" "INSERT INTO devices (id, source_addr) VALUES
    ('X', '::ffff:10.0.0.1')"
psql_run -c "UPDATE devices SET source_addr = '10.0.0.9' WHERE id = 'M'" >/dev/null 2>&1
psql_run -f "$SCHEMA" >/dev/null 2>&1
value "constraint validated once the row is fixed" "SELECT convalidated FROM pg_constraint
    WHERE conname = 'devices_source_addr_not_v4_mapped'" t
psql_run -c "DELETE FROM devices WHERE id = 'M'" >/dev/null 2>&1

# The schema survives a third run with data in it.
psql_run -c "INSERT INTO agencies (id) VALUES ('keep')" >/dev/null 2>&1
psql_run -f "$SCHEMA" >/dev/null 2>&1 && ok "schema reapplies over data" ||
    not_ok "schema reapplies over data"
value "data kept" "SELECT count(*) FROM agencies WHERE id = 'keep'" 1

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
