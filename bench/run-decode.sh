#!/usr/bin/env bash
# Builds decode_bench in a Release tree (build/bench-release) and runs it: decoder
# throughput on one core, median of 5 runs of about 1 s per mode. Arguments go to the
# benchmark: run-decode.sh [SECONDS [RUNS]].
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/deps.sh
gr_install_packages
cmake -S . -B build/bench-release -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build/bench-release --target decode_bench -j"$(nproc)" >/dev/null
exec build/bench-release/bench/decode_bench "$@"
