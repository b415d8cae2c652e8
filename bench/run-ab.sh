#!/usr/bin/env bash
# Two builds side by side: the fan-out, UDP ingest and decode benchmarks on an old and a new
# build of gpsrelay, interleaved run by run (old, new, old, new, ...) so that this noisy
# 2-core machine's drift falls on both alike. The load generators are the new build's for
# both daemons, so only the daemon differs. Medians of RUNS runs and new/old ratios.
#
# A build is a Release tree holding gpsrelayd and bench/{loadgen,udp_flood,decode_bench}:
#   cmake -S TREE -B DIR -DCMAKE_BUILD_TYPE=Release
#   cmake --build DIR --target gpsrelayd loadgen udp_flood decode_bench
#
# usage: bench/run-ab.sh OLD_BUILD NEW_BUILD [RUNS [SECONDS]]
#   GR_RATES: fan-out reports/s offered (each reaches every console), as in run-fanout.sh
#   AB_BENCHES: which of "fanout ingest decode" to run (default all three)
set -euo pipefail
[ $# -ge 2 ] || { sed -n 's/^# usage: //p' "$0" >&2; exit 2; }
old=$(realpath "$1") new=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
runs=${3:-3} seconds=${4:-5}
gr_rates=${GR_RATES:-"2000 3000 3500 4000 4500"}
benches=${AB_BENCHES:-"fanout ingest decode"}
consoles=${CONSOLES:-1000} units=${UNITS:-1000} warmup=${WARMUP:-2}
p99_max=100
export BENCH_LOADGEN=$new/bench/loadgen
bench_mapping "$units" 1

# fanout BUILD: the best delivered positions/s with p99 under p99_max (run-fanout.sh's figure).
fanout() {
    GR_BIN=$1/gpsrelayd bench_start_gpsrelay 0 55102 58102
    lg_args=(--proto gpsrelay --port 58102 --pub-port 55102)
    # shellcheck disable=SC2086
    bench_sweep "$(basename "$1")" $gr_rates
    bench_stop_gpsrelay
}

# ingest BUILD: datagrams/s the daemon took from a flood of 1,000 devices (run-ingest.sh).
ingest() {
    GR_BIN=$1/gpsrelayd bench_start_gpsrelay 0 55103 58103
    taskset -c 1 "$new/bench/udp_flood" 55103 "$units" "$seconds" >/dev/null
    sleep 0.5 # the daemon drains its socket buffer before its counter is read
    echo $(($(metric 58103 gpsrelay_ingest_datagrams_total) / seconds))
    bench_stop_gpsrelay
}

# decode BUILD: "mode sentences/s" lines, the median of 3 one-second runs per mode.
decode() {
    taskset -c 0 "$1/bench/decode_bench" 1 3 | awk 'NR > 3 && NF >= 5 { print $1, $2 }'
}

declare -A res
for ((r = 1; r <= runs; r++)); do
    for side in old new; do
        build=${!side}
        case " $benches " in *" fanout "*) res[fanout_$side]+="$(fanout "$build") " ;; esac
        case " $benches " in *" ingest "*) res[ingest_$side]+="$(ingest "$build") " ;; esac
        case " $benches " in *" decode "*)
            while read -r mode rate; do
                res[decode_${mode}_$side]+="$rate "
            done < <(decode "$build") ;;
        esac
        echo "run $r $side: fan-out ${res[fanout_$side]:-}; ingest ${res[ingest_$side]:-}" >&2
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }
echo "| benchmark | old (median of $runs) | new (median of $runs) | new/old |"
echo "|---|---|---|---|"
for key in $(printf '%s\n' "${!res[@]}" | sed -n 's/_old$//p' | sort); do
    # shellcheck disable=SC2086
    o=$(median ${res[${key}_old]}) n=$(median ${res[${key}_new]})
    echo "| $key | $o | $n | $(ratio "$n" "$o") |"
done
