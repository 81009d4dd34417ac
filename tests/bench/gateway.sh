#!/usr/bin/env bash
# Gateway throughput and latency on 127.0.0.1, one table:
#   - the upstream directly (nginx serving a static FHIR JSON resource),
#   - nginx `proxy_pass` to it,
#   - ehrgate with an empty policy chain (token verification, canonicalization, forwarding),
#   - ehrgate with three policies.
# Each is loaded with wrk for a bounded time; ratios are against nginx.
#
#     tests/bench/gateway.sh [seconds per target]     (default 10; CONNECTIONS=32)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DURATION="${1:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
WORK="$PWD/target/bench-gateway"
UPSTREAM_PORT=18180 NGINX_PORT=18181 EMPTY_PORT=18182 POLICIES_PORT=18183

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk curl >/dev/null
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --release -p ehrgate --bin ehrgate >&2

rm -rf "$WORK" && mkdir -p "$WORK/nginx" "$WORK/keys"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# A static FHIR resource, as a small EHR read would return.
cat > "$WORK/nginx/patient.json" <<'JSON'
{"resourceType":"Patient","id":"pat-123","meta":{"versionId":"3","lastUpdated":"2026-01-05T10:00:00Z"},"name":[{"family":"Smith","given":["Jane"]}],"gender":"female","birthDate":"1980-04-02"}
JSON
cat > "$WORK/nginx/nginx.conf" <<NGINX
worker_processes 2;
user root;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
    keepalive_requests 1000000;
    upstream ehr { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / { default_type application/fhir+json; root $WORK/nginx; rewrite ^ /patient.json break; }
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://ehr/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
mkdir -p "$WORK/nginx/tmp"
nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

# A signing key and a token for the bench's one user.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/keys/idp.key.pem" 2>/dev/null
openssl pkey -in "$WORK/keys/idp.key.pem" -pubout -out "$WORK/keys/idp.pub.pem"
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
header=$(printf '{"alg":"RS256","kid":"bench","typ":"JWT"}' | b64url)
payload=$(printf '{"iss":"https://idp.bench","aud":"https://gateway.bench","sub":"dr-adams","client_id":"ward-app","scope":"launch/patient patient/Patient.r patient/Observation.rs","roles":["clinician"],"patient":"pat-123","iat":%d,"exp":%d}' "$now" "$((now + 3600))" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$WORK/keys/idp.key.pem" -binary | b64url)
TOKEN="$header.$payload.$signature"

guests="$PWD/target/guests/wasm32-wasip2/release"
gateway_config() { # port, policies
    cat <<TOML
[server]
listen = "127.0.0.1:$1"

[limits]
max_concurrent_requests = 4096

[[upstreams]]
name = "ehr"
url = "http://127.0.0.1:$UPSTREAM_PORT/"
pool_max_idle = 64

[[routes]]
name = "ehr"
prefix = "/fhir"
upstream = "ehr"
$2

[[identity.issuers]]
issuer = "https://idp.bench"
audience = ["https://gateway.bench"]
algorithms = ["RS256"]
keys = [{ kid = "bench", path = "$WORK/keys/idp.pub.pem" }]
TOML
}
three_policies=""
for name in first second third; do
    three_policies+="
[[routes.policies]]
name = \"$name\"
module = \"$guests/chaos.wasm\"
config = { findings = [{ rule_id = \"bench.$name\", severity = \"info\", detail = \"seen\" }] }
"
done
gateway_config "$EMPTY_PORT" "" > "$WORK/empty.toml"
gateway_config "$POLICIES_PORT" "$three_policies" > "$WORK/policies.toml"
for name in empty policies; do
    ./target/release/ehrgate serve --config "$WORK/$name.toml" --log "warn" 2>"$WORK/$name.log" &
    pids+=($!)
done

for port in $UPSTREAM_PORT $NGINX_PORT $EMPTY_PORT $POLICIES_PORT; do
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

# wrk prints latency in us/ms/s; normalize to microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /ms$/) n *= 1000; else if (v ~ /us$/) n *= 1; else if (v ~ /s$/) n *= 1000000; printf "%.0f", n }'; }
load() { # connections, url -> "rps p50 p99"
    local out
    out=$(wrk -t1 -c"$1" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "$2")
    echo "$(awk '/Requests\/sec/ { print $2 }' <<<"$out")" \
        "$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")" \
        "$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")"
}
run() { # label, url
    local rps p50 p99 rps1 p50_1 p99_1 status
    # Throughput under load, then latency with one connection (no queueing).
    read -r rps p50 p99 <<<"$(load "$CONNECTIONS" "$2")"
    read -r rps1 p50_1 p99_1 <<<"$(load 1 "$2")"
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$2" || true)
    echo "$1|$rps|$p50|$p99|$p50_1|$p99_1|$status"
}
results=()
results+=("$(run "upstream directly" "http://127.0.0.1:$UPSTREAM_PORT/Patient/pat-123")")
results+=("$(run "nginx proxy_pass" "http://127.0.0.1:$NGINX_PORT/Patient/pat-123")")
results+=("$(run "ehrgate, empty chain" "http://127.0.0.1:$EMPTY_PORT/fhir/Patient/pat-123")")
results+=("$(run "ehrgate, three policies" "http://127.0.0.1:$POLICIES_PORT/fhir/Patient/pat-123")")

nginx_rps=$(cut -d'|' -f2 <<<"${results[1]}")
direct_p50=$(cut -d'|' -f5 <<<"${results[0]}")
echo
echo "wrk, 1 thread, ${DURATION}s per run, $(nproc) cores; throughput with $CONNECTIONS connections,"
echo "latency also with 1 connection (no queueing); added p50 is the 1-connection p50 over the upstream's"
echo
echo "| target | requests/s ($CONNECTIONS conn) | vs nginx | p50 / p99 ($CONNECTIONS conn) | p50 / p99 (1 conn) | added p50 (1 conn) | status |"
echo "|---|---|---|---|---|---|---|"
for row in "${results[@]}"; do
    IFS='|' read -r label rps p50 p99 p50_1 p99_1 status <<<"$row"
    ratio=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", a / b }')
    added=$(awk -v a="$p50_1" -v b="$direct_p50" 'BEGIN { printf "%d", a - b }')
    echo "| $label | $rps | ${ratio}x | $p50 / $p99 µs | $p50_1 / $p99_1 µs | $added µs | $status |"
done
