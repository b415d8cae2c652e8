#!/usr/bin/env bash
# Idle scale past this container's descriptor limit: bench/run-idle.sh run inside a
# throw-away KVM guest (bench/vm/boot.sh), where we are real root with a kernel of our own
# and raise RLIMIT_NOFILE to 200,000. Here the hard limit is 20,000 and CAP_SYS_RESOURCE
# is not in the bounding set, so no process can hold 50,000 sockets.
#
# The Release binaries are built on the host (build/bench-release, as every bench script
# does) and copied into the guest's job share first, so a rebuild on the host meanwhile
# cannot change them under the guest. One guest runs every CONSOLES count in turn: RUNS
# fresh daemons each, SECONDS of idle each; run-idle.sh pins the daemon to vCPU 0 and
# loadgen to vCPU 1 of the guest's 2. What the guest prints comes back on its serial
# console and is printed here as it comes.
#
# usage: bench/run-idle-vm.sh [CONSOLES [RUNS [SECONDS [MORE_CONSOLES...]]]]
#   e.g. bench/run-idle-vm.sh 50000 3 30 20000
#   GR_VM_MEM, GR_VM_CPUS, GR_VM_ACCEL, GR_VM_CACHE: see bench/vm/boot.sh and prepare.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
want=${1:-50000} runs=${2:-3} seconds=${3:-30}
counts=("$want" "${@:4}")
started=$(date +%s)
[ "${GR_VM_CPUS:-2}" -ge 2 ] || {
    echo "run-idle-vm: run-idle.sh pins to CPUs 0 and 1: GR_VM_CPUS must be 2 or more" >&2
    exit 2
}

bench_build gpsrelayd loadgen
mkdir -p "$BENCH_DIR/bin/bench"
cp "$BENCH_BUILD/gpsrelayd" "$BENCH_DIR/bin/"
cp "$BENCH_BUILD/bench/loadgen" "$BENCH_DIR/bin/bench/"
{
    echo 'export GR_BENCH_BUILD=/run/job/bin GR_BENCH_NO_BUILD=1'
    for n in "${counts[@]}"; do
        echo "echo 'gpsrelay-vm: bench/run-idle.sh $n $runs $seconds'"
        echo "bash bench/run-idle.sh $n $runs $seconds || exit"
    done
} >"$BENCH_DIR/job.sh"

# Each run: up to 120 s to connect (run-idle.sh's bound), the idle window, a minute to
# spare; a minute for boot and power-off.
export GR_VM_TIMEOUT=${GR_VM_TIMEOUT:-$((${#counts[@]} * runs * (seconds + 180) + 60))}
echo "tree $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src include bench || echo ' with uncommitted changes')," \
    "consoles ${counts[*]}, $runs runs of $seconds s each; guest killed after $GR_VM_TIMEOUT s"
rc=0
bench/vm/boot.sh "$BENCH_DIR" || rc=$?
echo "guest run took $(($(date +%s) - started)) s in all (exit $rc)"
exit "$rc"
