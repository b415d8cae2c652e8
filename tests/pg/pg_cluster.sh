#!/bin/sh
# pg_cluster.sh - a throwaway PostgreSQL 15 cluster for tests: a data directory
# under DIR, a free loopback port (saved in DIR/port), trust authentication, its socket in
# DIR. Runs as root (initdb and pg_ctl then run as the postgres user) or as any user
# initdb accepts. Needs postgresql-15 (tools/check installs it).
#
#   pg_cluster.sh init DIR        make DIR (must not exist) and the cluster, and start it
#   pg_cluster.sh start DIR       start it again (same port)
#   pg_cluster.sh start-local DIR start it on its unix socket only: no TCP clients
#   pg_cluster.sh stop DIR        fast shutdown: clients are disconnected
#   pg_cluster.sh freeze DIR      SIGSTOP the postmaster and every process it forked: a
#                                 hung server whose kernel still accepts and ACKs
#   pg_cluster.sh thaw DIR        SIGCONT them (stop and destroy thaw first, too)
#   pg_cluster.sh psql DIR ARGS   psql on it, ON_ERROR_STOP, no psqlrc
#   pg_cluster.sh destroy DIR     stop it if running and remove DIR
set -u

PGBIN=/usr/lib/postgresql/15/bin
cmd=${1:-}
D=${2:-}
if [ -z "$cmd" ] || [ -z "$D" ]; then
    echo "usage: $0 init|start|start-local|stop|freeze|thaw|psql|destroy DIR [psql args]" >&2
    exit 64
fi
shift 2

if [ ! -x "$PGBIN/initdb" ]; then
    echo "pg_cluster: postgresql-15 is not installed" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

start() {
    as_pg "$PGBIN/pg_ctl" -D "$D/data" -l "$D/log" -w -t 30 \
        -o "-c listen_addresses=${1-127.0.0.1} -p $(cat "$D/port") -k $D -c fsync=off" start \
        >/dev/null || {
        cat "$D/log" >&2
        echo "pg_cluster: pg_ctl start failed" >&2
        return 1
    }
}

# The postmaster's pid: the first line of postmaster.pid, while the cluster runs.
postmaster() {
    [ -f "$D/data/postmaster.pid" ] && head -n 1 "$D/data/postmaster.pid"
}

# Signals the postmaster and its children (backends, checkpointer, ...). The postmaster
# goes first when stopping, so it forks no new child meanwhile, and last when continuing.
freeze() {
    pm=$(postmaster) || return 1
    kill -STOP "$pm" || return 1
    for child in $(pgrep -P "$pm"); do kill -STOP "$child"; done
}
thaw() {
    pm=$(postmaster) || return 0 # not running: nothing is stopped
    for child in $(pgrep -P "$pm"); do kill -CONT "$child"; done
    kill -CONT "$pm"
}

case $cmd in
init)
    mkdir -m 0755 "$D" || exit 1
    [ "$(id -u)" = 0 ] && chown postgres "$D"
    # A free port: the kernel picks one; the tiny race with other tests is acceptable.
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
        >"$D/port.tmp" && mv "$D/port.tmp" "$D/port" || exit 1
    if ! as_pg "$PGBIN/initdb" -D "$D/data" -U postgres --auth=trust --no-sync \
        >"$D/initdb.log" 2>&1; then
        cat "$D/initdb.log" >&2
        echo "pg_cluster: initdb failed" >&2
        exit 1
    fi
    start
    ;;
start) start ;;
start-local) start "''" ;;
stop)
    thaw
    as_pg "$PGBIN/pg_ctl" -D "$D/data" -m fast -w stop >/dev/null
    ;;
freeze) freeze ;;
thaw) thaw ;;
psql)
    "$PGBIN/psql" -X -q -h "$D" -p "$(cat "$D/port")" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 "$@"
    ;;
destroy)
    if [ -f "$D/data/postmaster.pid" ]; then
        thaw
        as_pg "$PGBIN/pg_ctl" -D "$D/data" -m immediate -w stop >/dev/null 2>&1
    fi
    rm -rf "$D"
    ;;
*)
    echo "pg_cluster: unknown command $cmd" >&2
    exit 64
    ;;
esac
