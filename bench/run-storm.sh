#!/usr/bin/env bash
# Reconnect storm: 10,000 consoles over 20 agencies watch 2,000 units reporting RATE
# reports/s in all (200: each unit every 10 s, 100,000 deliveries/s to 10,000 consoles);
# after the warm-up every console is dropped at once (TCP reset, as when a site's network
# blips) and reconnects and rejoins with {"since":{"epoch":E,"seq":N}} from its previous
# join reply and pushes. Reported: the time from the drop until the last console has its
# join reply (then it holds every position it missed), and how many were recovered (a
# reply with only what changed since N) rather than sent a full snapshot.
# The daemon is pinned to CPU 0, bench/loadgen to CPU 1; a fresh daemon per run.
#
# usage: bench/run-storm.sh [RUNS [CONSOLES]]
#   PARALLEL: handshakes loadgen keeps in flight at once [all of them]
#   LOADGEN_ARGS: extra bench/loadgen options, e.g. --busy-poll (see loadgen --help)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
runs=${1:-3} consoles=${2:-10000}
units=${UNITS:-2000} agencies=${AGENCIES:-20} parallel=${PARALLEL:-$consoles} rate=${RATE:-200}
bench_build gpsrelayd loadgen
bench_mapping "$units" "$agencies"
# The kernel caps every listen backlog at net.core.somaxconn: a storm larger than it within
# one busy loop turn overflows the accept queue, and those consoles retry their SYN after
# 1 s (then 3 s). Said here because it decides the tail.
echo "net.core.somaxconn $(cat /proc/sys/net/core/somaxconn)" >&2

alls=() p99s=()
for ((r = 1; r <= runs; r++)); do
    bench_start_gpsrelay 0 55301 58301
    out=$(taskset -c 1 "$BENCH_BUILD/bench/loadgen" --proto gpsrelay --port 58301 \
        --pub-port 55301 --rate "$rate" --units "$units" --agencies "$agencies" \
        --consoles "$consoles" --parallel "$parallel" --warmup 3 --duration 2 --storm ${LOADGEN_ARGS:-} \
        2>>"$BENCH_DIR/lg.log")
    echo "  daemon: longest loop turn $(metric 58301 gpsrelay_loop_busy_max_seconds) s;" \
        "listeners paused $(metric 58301 gpsrelay_ws_accept_waiting_full_total) times" >&2
    bench_stop_gpsrelay
    storm=$(grep '^storm' <<<"$out") result=$(grep '^result' <<<"$out")
    echo "  connected p50 $(field "$storm" connected_p50_ms) max $(field "$storm" connected_max_ms)" \
        "ms; upgraded p50 $(field "$storm" upgraded_p50_ms) max $(field "$storm" upgraded_max_ms) ms" >&2
    alls+=("$(field "$storm" all_ms)") p99s+=("$(field "$storm" p99_ms)")
    echo "run $r: $(field "$storm" rejoined)/$(field "$storm" dropped) rejoined" \
        "($(field "$storm" failed) failed, $(field "$storm" recovered) recovered with since," \
        "$(field "$storm" snapshot_positions) positions in the replies): all within" \
        "${alls[-1]} ms, p50 $(field "$storm" p50_ms) ms, p99 ${p99s[-1]} ms; after it," \
        "delivery p99 $(field "$result" p99_ms) ms"
done
echo "median of $runs runs: all $consoles consoles rejoined within $(median "${alls[@]}") ms" \
    "(p99 $(median "${p99s[@]}") ms) after being dropped at once ($units units, $rate reports/s)"
