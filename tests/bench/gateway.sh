#!/usr/bin/env bash
# Gateway throughput and latency on 127.0.0.1, one table:
#   - the upstream directly (nginx serving a static FHIR JSON resource),
#   - nginx `proxy_pass` to it,
#   - ehrgate with an empty policy chain (token verification, canonicalization, forwarding),
#   - ehrgate with three copies of the `chaos` fixture module (the engine's floor),
#   - ehrgate with the three shipped policies and their reference configs,
#   - the same with a strict (fsynced) audit log,
#   - a patient app's update of its own observation through the shipped policies, with the
#     read of the stored resource first (the default for patient-bound tokens) and without
#     it (`verify_write_owner = "off"`, least-privilege told to trust the upstream): the
#     read's cost,
#   - the three shipped policies with their state on a local redis-server
#     (`[state] backend = "redis"`), as replicas share it: the shared state's cost, also as a
#     ratio to the in-memory row.
# Each is loaded with wrk for a bounded time; ratios are against nginx. BASELINE=/path/to/an
# older ehrgate adds its three-shipped-policies row to the same run, for a comparison that
# the machine's run-to-run drift does not blur.
#
#     tests/bench/gateway.sh [seconds per target]     (default 10; CONNECTIONS=32)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DURATION="${1:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
WORK="$PWD/target/bench-gateway"
UPSTREAM_PORT=18180 NGINX_PORT=18181
source tests/bench/common.sh

fixtures=""
for name in first second third; do
    fixtures+="
[[routes.policies]]
name = \"$name\"
module = \"$GUESTS/chaos.wasm\"
config = { findings = [{ rule_id = \"bench.$name\", severity = \"info\", detail = \"seen\" }] }
"
done
gateway_config 18182 18192 "" "$(route fhir /fhir "")" > "$WORK/empty.toml"
gateway_config 18183 18193 "" "$(route fhir /fhir "$fixtures")" > "$WORK/fixtures.toml"
gateway_config 18184 18194 "" "$(route fhir /fhir "$SHIPPED_POLICIES")" > "$WORK/shipped.toml"
gateway_config 18185 18195 "$(strict_audit)" "$(route fhir /fhir "$SHIPPED_POLICIES")" > "$WORK/audited.toml"
# The same chain with least-privilege trusting the upstream with unread writes.
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["allow_unverified_instance_writes"] = True; json.dump(c, open(sys.argv[2], "w"))' \
    "$PWD/examples/policies/least-privilege.json" "$WORK/least-privilege-unverified.json"
unverified=$(sed "s|$PWD/examples/policies/least-privilege.json|$WORK/least-privilege-unverified.json|" <<<"$SHIPPED_POLICIES")
gateway_config 18187 18197 "" "$(route fhir /fhir "verify_write_owner = \"off\"
$unverified")" > "$WORK/unread.toml"
# The shared state backend: a redis-server on 127.0.0.1, no persistence.
command -v redis-server >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}
mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port 18188 --save "" --appendonly no --dir "$WORK/redis" >/dev/null &
pids+=($!)
gateway_config 18189 18199 '[state]
backend = "redis"

[state.redis]
url = "redis://127.0.0.1:18188/0"' "$(route fhir /fhir "$SHIPPED_POLICIES")" > "$WORK/redis.toml"
wait_port 18188
for name in empty fixtures shipped audited unread redis; do
    start_gateway "$name"
done
for port in $UPSTREAM_PORT $NGINX_PORT 18182 18183 18184 18185 18187 18189; do
    wait_port "$port"
done
if [ -n "${BASELINE:-}" ]; then
    gateway_config 18186 18196 "" "$(route fhir /fhir "$SHIPPED_POLICIES")" > "$WORK/baseline.toml"
    start_gateway baseline "$BASELINE"
    wait_port 18186
fi

run() { # label, url
    local rps p50 p99 errors rps1 p50_1 p99_1 errors1 status
    # Throughput under load, then latency with one connection (no queueing).
    read -r rps p50 p99 errors <<<"$(load "$CONNECTIONS" "$DURATION" "$2")"
    read -r rps1 p50_1 p99_1 errors1 <<<"$(load 1 "$DURATION" "$2")"
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$2" || true)
    echo "$1|$rps|$p50|$p99|$p50_1|$p99_1|$status|$((errors + errors1))"
}
run_update() { # label, url: the patient app's PUT of its observation
    local rps p50 p99 errors rps1 p50_1 p99_1 errors1 status
    read -r rps p50 p99 errors <<<"$(LOAD_TOKEN=$PATIENT_TOKEN LOAD_SCRIPT=$WORK/update.lua load "$CONNECTIONS" "$DURATION" "$2")"
    read -r rps1 p50_1 p99_1 errors1 <<<"$(LOAD_TOKEN=$PATIENT_TOKEN LOAD_SCRIPT=$WORK/update.lua load 1 "$DURATION" "$2")"
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $PATIENT_TOKEN" \
        -H "Content-Type: application/fhir+json" --data "$OBSERVATION" "$2" || true)
    echo "$1|$rps|$p50|$p99|$p50_1|$p99_1|$status|$((errors + errors1))"
}
results=()
results+=("$(run "upstream directly" "http://127.0.0.1:$UPSTREAM_PORT/Patient/pat-123")")
results+=("$(run "nginx proxy_pass" "http://127.0.0.1:$NGINX_PORT/Patient/pat-123")")
results+=("$(run "ehrgate, empty chain" "http://127.0.0.1:18182/fhir/Patient/pat-123")")
results+=("$(run "ehrgate, three fixture modules" "http://127.0.0.1:18183/fhir/Patient/pat-123")")
results+=("$(run "ehrgate, three shipped policies" "http://127.0.0.1:18184/fhir/Patient/pat-123")")
results+=("$(run "ehrgate, shipped policies + strict audit" "http://127.0.0.1:18185/fhir/Patient/pat-123")")
results+=("$(run "ehrgate, three shipped policies, state on Redis" "http://127.0.0.1:18189/fhir/Patient/pat-123")")
if [ -n "${BASELINE:-}" ]; then
    results+=("$(run "baseline build, three shipped policies" "http://127.0.0.1:18186/fhir/Patient/pat-123")")
fi
results+=("$(run_update "patient app update, shipped policies, not read first" "http://127.0.0.1:18187/fhir/Observation/obs-1")")
results+=("$(run_update "patient app update, shipped policies, read first (default)" "http://127.0.0.1:18184/fhir/Observation/obs-1")")

nginx_rps=$(cut -d'|' -f2 <<<"${results[1]}")
direct_p50=$(cut -d'|' -f5 <<<"${results[0]}")
echo
echo "wrk, 1 thread, ${DURATION}s per run, $(nproc) cores; throughput with $CONNECTIONS connections,"
echo "latency also with 1 connection (no queueing); added p50 is the 1-connection p50 over the upstream's."
echo "Shipped policies: rate-limit (capacities raised), least-privilege and anomaly, reference configs."
echo
echo "| target | requests/s ($CONNECTIONS conn) | vs nginx | p50 / p99 ($CONNECTIONS conn) | p50 / p99 (1 conn) | added p50 (1 conn) | status | non-2xx |"
echo "|---|---|---|---|---|---|---|---|"
for row in "${results[@]}"; do
    IFS='|' read -r label rps p50 p99 p50_1 p99_1 status errors <<<"$row"
    ratio=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", a / b }')
    added=$(awk -v a="$p50_1" -v b="$direct_p50" 'BEGIN { printf "%d", a - b }')
    echo "| $label | $rps | ${ratio}x | $p50 / $p99 µs | $p50_1 / $p99_1 µs | $added µs | $status | $errors |"
done
memory=$(printf '%s\n' "${results[@]}" | grep '^ehrgate, three shipped policies|')
redis=$(printf '%s\n' "${results[@]}" | grep '^ehrgate, three shipped policies, state on Redis|')
echo
echo "State on Redis vs in memory (three shipped policies): $(awk -v a="$(cut -d'|' -f2 <<<"$redis")" \
    -v b="$(cut -d'|' -f2 <<<"$memory")" 'BEGIN { printf "%.2f", a / b }')x throughput, \
$(awk -v a="$(cut -d'|' -f5 <<<"$redis")" -v b="$(cut -d'|' -f5 <<<"$memory")" 'BEGIN { printf "%+d", a - b }') µs p50 (1 conn)."

