#!/usr/bin/env bash
# Noisy neighbour: does a misbehaving policy on one route slow another route down?
# One gateway on 127.0.0.1 with two routes to the same nginx upstream:
#   /clean  least-privilege with its reference config (the well-behaved neighbour),
#   /noisy  the `chaos` fixture module misbehaving on every request: `loop` (runs until its
#           deadline stops it) or `burn` (legal work of about 2.5 ms per call).
# For each, the clean route is measured alone, then again while NOISY_CONNECTIONS clients
# hammer the noisy route; meanwhile /healthz on the admin listener is polled. One table:
# the clean route's p50/p99 under noise as a ratio to alone, /healthz p99 (polled every
# 10 ms), and the noisy
# module's recorded running time p99 (what its 5 ms deadline counts).
#
#     tests/bench/noisy.sh [seconds per run]   (default 10; CLEAN_CONNECTIONS=4, NOISY_CONNECTIONS=32)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DURATION="${1:-10}"
CLEAN_CONNECTIONS="${CLEAN_CONNECTIONS:-4}"
NOISY_CONNECTIONS="${NOISY_CONNECTIONS:-32}"
BURN_ITERATIONS="${BURN_ITERATIONS:-2500000}"
WORK="$PWD/target/bench-noisy"
UPSTREAM_PORT=18190 NGINX_PORT=18191
source tests/bench/common.sh

# run_scenario NAME BEHAVIOUR_CONFIG PORT ADMIN_PORT -> a table row
run_scenario() {
    local name=$1 noisy_config=$2 port=$3 admin=$4
    local routes
    routes="$(route clean /clean "
[[routes.policies]]
name = \"least-privilege\"
module = \"$GUESTS/least_privilege.wasm\"
config_file = \"$PWD/examples/policies/least-privilege.json\"
")
$(route noisy /noisy "
[[routes.policies]]
name = \"noisy\"
module = \"$GUESTS/chaos.wasm\"
config = $noisy_config
")"
    gateway_config "$port" "$admin" "" "$routes" > "$WORK/$name.toml"
    start_gateway "$name"
    wait_port "$port"
    wait_port "$admin"
    local clean="http://127.0.0.1:$port/clean/Patient/pat-123"
    local noisy="http://127.0.0.1:$port/noisy/Patient/pat-123"
    local healthz="http://127.0.0.1:$admin/healthz"
    local alone_rps alone_p50 alone_p99 alone_errors
    read -r alone_rps alone_p50 alone_p99 alone_errors <<<"$(load "$CLEAN_CONNECTIONS" "$DURATION" "$clean")"
    # Noise for the whole measurement, plus a second on each side.
    wrk -t1 -c"$NOISY_CONNECTIONS" -d"$((DURATION + 2))s" -H "Authorization: Bearer $TOKEN" "$noisy" > "$WORK/$name.noisy.txt" &
    local noise=$!
    sleep 1
    # /healthz every 10 ms (wrk's `delay` hook), so that polling it adds no load of its own.
    printf 'function delay() return 10 end\n' > "$WORK/every-10ms.lua"
    wrk -t1 -c1 -d"${DURATION}s" --latency -s "$WORK/every-10ms.lua" "$healthz" > "$WORK/$name.healthz.txt" &
    local health=$!
    local rps p50 p99 errors
    read -r rps p50 p99 errors <<<"$(load "$CLEAN_CONNECTIONS" "$DURATION" "$clean")"
    wait "$health" "$noise"
    local healthz_p99 noisy_rps running_p99 faults
    healthz_p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$WORK/$name.healthz.txt")")
    noisy_rps=$(awk '/Requests\/sec/ { print $2 }' "$WORK/$name.noisy.txt")
    running_p99=$(histogram_quantile "$admin" ehrgate_policy_running_seconds 'module="noisy"' 0.99)
    faults=$(curl -s "http://127.0.0.1:$admin/metrics" | grep '^ehrgate_policy_faults_total{module="noisy"' \
        | sed -E 's/.*kind="([^"]+)"\} ([0-9.e+]+).*/\1=\2/' | paste -sd, - || true)
    kill "$(cat "$WORK/$name.pid")" 2>/dev/null || true
    local p50_ratio p99_ratio
    p50_ratio=$(awk -v a="$p50" -v b="$alone_p50" 'BEGIN { printf "%.2f", a / b }')
    p99_ratio=$(awk -v a="$p99" -v b="$alone_p99" 'BEGIN { printf "%.2f", a / b }')
    echo "| $name | $alone_rps / $rps | $alone_p50 / $p50 µs | ${p50_ratio}x | $alone_p99 / $p99 µs | ${p99_ratio}x | $alone_errors / $errors | $healthz_p99 µs | $running_p99 µs | $noisy_rps (${faults:-none}) |"
}

rows=()
rows+=("$(run_scenario loop '{ behaviour = "loop" }' 18192 18193)")
rows+=("$(run_scenario burn "{ behaviour = \"burn\", burn_iterations = $BURN_ITERATIONS }" 18194 18195)")

echo
echo "wrk, ${DURATION}s per run, $(nproc) cores shared by nginx, the gateway and the load; clean route with"
echo "$CLEAN_CONNECTIONS connections, alone and then beside $NOISY_CONNECTIONS connections on the noisy route; /healthz"
echo "polled every 10 ms meanwhile. Running p99 is the noisy module's recorded running time"
echo "(histogram bucket bound; 1 ms buckets up to 20 ms). Targets: p50 <= 1.5x, p99 <= 2x, /healthz p99 <= 5 ms,"
echo "loop running p99 <= deadline + 1 ms (6 ms)."
echo
echo "| noisy module | clean req/s alone / noisy | clean p50 alone / noisy | p50 ratio | clean p99 alone / noisy | p99 ratio | clean non-2xx alone / noisy | /healthz p99 | noisy running p99 | noisy req/s (faults) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
