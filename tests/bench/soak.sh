#!/usr/bin/env bash
# Soak: the three shipped policies (rate-limit, least-privilege, anomaly with their reference
# configs; the rate-limit copy with capacities raised so the load is not refused) and a
# strict audit log, at about two thirds of the gateway's measured capacity for a long run.
# A healthy but busy gateway must not refuse good calls: the table counts deadline faults
# (0 expected) and every non-2xx answer, and RSS growth after warm-up (<= 5 % expected).
#
#     tests/bench/soak.sh [seconds]   (default 300; CONNECTIONS=32, LOAD_FRACTION=0.67)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SECONDS_TOTAL="${1:-300}"
CONNECTIONS="${CONNECTIONS:-32}"
LOAD_FRACTION="${LOAD_FRACTION:-0.67}"
WARMUP=20
WORK="$PWD/target/bench-soak"
UPSTREAM_PORT=18200 NGINX_PORT=18201 PORT=18202 ADMIN=18203
source tests/bench/common.sh

gateway_config "$PORT" "$ADMIN" "$(strict_audit)" "$(route fhir /fhir "$SHIPPED_POLICIES")" > "$WORK/soak.toml"
start_gateway soak
wait_port "$PORT"
wait_port "$ADMIN"
url="http://127.0.0.1:$PORT/fhir/Patient/pat-123"
pid=$(cat "$WORK/soak.pid")

# Capacity: full load for a short while.
read -r capacity _ _ capacity_errors <<<"$(load "$CONNECTIONS" 10 "$url")"
rate=$(awk -v c="$capacity" -v f="$LOAD_FRACTION" 'BEGIN { printf "%d", c * f }')
# Paced load: each connection waits between requests so that together they send `rate`
# requests a second (wrk's `delay` hook; Debian's wrk has no fixed-rate mode). A connection
# sends one request per (delay + latency): a 10 s calibration run measures the latency at
# this load and the delay is shortened by it.
pace() { # delay in ms -> the pacing script
    printf 'wrk.headers["Authorization"] = "Bearer %s"\nfunction delay() return %s end\n' "$TOKEN" "$1" > "$WORK/pace.lua"
}
per_connection_ms=$(awk -v c="$CONNECTIONS" -v r="$rate" 'BEGIN { printf "%.3f", c * 1000 / r }')
pace "$per_connection_ms"
calibrated=$(wrk -t1 -c"$CONNECTIONS" -d10s -s "$WORK/pace.lua" "$url" | awk '/Requests\/sec/ { print $2 }')
per_connection_ms=$(awk -v c="$CONNECTIONS" -v r="$rate" -v got="$calibrated" -v d="$per_connection_ms" \
    'BEGIN { latency = c * 1000 / got - d; d2 = c * 1000 / r - latency; if (d2 < 0) d2 = 0; printf "%.3f", d2 }')
pace "$per_connection_ms"
faults_before=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^ehrgate_policy_faults_total/ { s += $2 } END { print s + 0 }')
wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_TOTAL}s" --latency -s "$WORK/pace.lua" "$url" > "$WORK/soak.txt" &
soak=$!
sleep "$WARMUP"
rss_start=$(rss_kib "$pid")
wait "$soak"
rss_end=$(rss_kib "$pid")
metrics=$(curl -s "http://127.0.0.1:$ADMIN/metrics")
deadline_faults=$(awk '/^ehrgate_policy_faults_total\{.*kind="deadline"/ { s += $2 } END { print s + 0 }' <<<"$metrics")
all_faults=$(awk '/^ehrgate_policy_faults_total/ { s += $2 } END { print s + 0 }' <<<"$metrics")
achieved=$(awk '/Requests\/sec/ { print $2 }' "$WORK/soak.txt")
requests=$(awk '/requests in/ { print $1 }' "$WORK/soak.txt")
non2xx=$(awk '/Non-2xx or 3xx responses/ { print $5 }' "$WORK/soak.txt" | grep . || echo 0)
p50=$(to_us "$(awk '$1 == "50%" { print $2 }' "$WORK/soak.txt")")
p99=$(to_us "$(awk '$1 == "99%" { print $2 }' "$WORK/soak.txt")")
growth=$(awk -v a="$rss_start" -v b="$rss_end" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
records=$(awk '/^ehrgate_audit_records_written_total/ { print $2 }' <<<"$metrics")

echo
echo "wrk, $CONNECTIONS connections paced to $LOAD_FRACTION of the measured capacity, ${SECONDS_TOTAL}s, $(nproc) cores shared"
echo "by nginx, the gateway and the load; three shipped policies, strict audit log. RSS from ${WARMUP}s in to the end."
echo
echo "| capacity req/s | target req/s | achieved req/s | requests | non-2xx | deadline faults | all policy faults | p50 / p99 | RSS start → end | RSS growth | audit records |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
echo "| $capacity | $rate | $achieved | $requests | $non2xx | $deadline_faults | $((all_faults - faults_before)) | $p50 / $p99 µs | $((rss_start / 1024)) → $((rss_end / 1024)) MiB | $growth % | $records |"
