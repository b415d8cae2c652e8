# lib.sh - sourced by the tests/pg/test_*.sh scripts: a throwaway PostgreSQL 15 (pg_cluster.sh)
# under a temporary folder T, removed at exit; psql_run on it; ok, not_ok and value for
# the checks, counted in passed and failed. The caller sets HERE (its folder) first and calls
# pg_start PREFIX.

CLUSTER=$HERE/pg_cluster.sh

pg_start() {
    T=$(mktemp -d "/tmp/$1.XXXXXX") || exit 1
    chmod 0755 "$T" # the cluster under it runs as postgres when this runs as root
    D=$T/pg
    trap '"$CLUSTER" destroy "$D"; rm -rf "$T"' EXIT
    trap 'exit 1' INT TERM HUP
    "$CLUSTER" init "$D" || exit 1
}

psql_run() {
    "$CLUSTER" psql "$D" "$@"
}

passed=0
failed=0
ok() {
    passed=$((passed + 1))
    echo "ok: $1"
}
not_ok() {
    failed=$((failed + 1))
    echo "FAILED: $1"
}

# value NAME SQL EXPECTED : the output of SQL (unaligned, tuples only, rows joined by ' ').
value() {
    got=$(psql_run -A -t -c "$2" 2>&1 | tr '\n' ' ' | sed 's/ $//')
    if [ "$got" = "$3" ]; then ok "$1"; else not_ok "$1 (got '$got', expected '$3')"; fi
}
