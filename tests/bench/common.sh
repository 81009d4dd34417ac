#!/usr/bin/env bash
# Shared by the gateway benches (sourced, not run): installs the load tools, builds the
# release gateway, starts nginx (a static FHIR upstream and a `proxy_pass` in front of it),
# mints a token, writes gateway configs and starts gateways, runs wrk and reads /metrics.
# Every server listens on 127.0.0.1 only and is stopped when the sourcing script exits.
#
# The sourcing script sets WORK (a scratch directory) and UPSTREAM_PORT and NGINX_PORT.
# GATEWAY=/path/to/ehrgate runs another build of the gateway (for example an older commit's,
# to compare) with this tree's guests.

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v curl >/dev/null \
    || ! command -v openssl >/dev/null || ! command -v python3 >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk curl openssl python3 >/dev/null
fi
rustup target add wasm32-wasip2 >/dev/null 2>&1
cargo build --release -p ehrgate --bin ehrgate >&2
GATEWAY="${GATEWAY:-$PWD/target/release/ehrgate}"
GUESTS="$PWD/target/guests/wasm32-wasip2/release"

rm -rf "$WORK" && mkdir -p "$WORK/nginx/tmp" "$WORK/keys"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# A static FHIR resource, as a small EHR read would return.
cat > "$WORK/nginx/patient.json" <<'JSON'
{"resourceType":"Patient","id":"pat-123","meta":{"versionId":"3","lastUpdated":"2026-01-05T10:00:00Z"},"name":[{"family":"Smith","given":["Jane"]}],"gender":"female","birthDate":"1980-04-02"}
JSON
# The patient's observation, for writes by id: what the gateway's read before an update
# finds (version 3, from meta.versionId), and what the update is answered with.
OBSERVATION='{"resourceType":"Observation","id":"obs-1","meta":{"versionId":"3"},"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/pat-123"},"valueQuantity":{"value":72}}'
printf '%s\n' "$OBSERVATION" > "$WORK/nginx/observation.json"
WRITE_PORT=$((UPSTREAM_PORT + 100))
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
        # GET: the stored observation. PUT: answered by the server below, without the
        # gateway's If-Match (nginx itself would answer a \`return\` with If-Match 412, as
        # it has no ETag to match): an upstream where the version always matches.
        location /Observation/ {
            etag off;
            if (\$request_method = PUT) { rewrite ^ /__write last; }
            default_type application/fhir+json; root $WORK/nginx; rewrite ^ /observation.json break;
        }
        location = /__write {
            internal;
            proxy_pass http://127.0.0.1:$WRITE_PORT;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header If-Match "";
        }
    }
    server {
        listen 127.0.0.1:$WRITE_PORT;
        location / { default_type application/fhir+json; return 200 '$OBSERVATION'; }
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
nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)

# A signing key and a token for the bench's one user: a patient-launch app reading its own
# Patient, which every shipped policy allows.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/keys/idp.key.pem" 2>/dev/null
openssl pkey -in "$WORK/keys/idp.key.pem" -pubout -out "$WORK/keys/idp.pub.pem"
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
header=$(printf '{"alg":"RS256","kid":"bench","typ":"JWT"}' | b64url)
payload=$(printf '{"iss":"https://idp.bench","aud":"https://gateway.bench","sub":"dr-adams","client_id":"ward-app","scope":"launch/patient patient/Patient.r patient/Observation.rs","roles":["clinician"],"patient":"pat-123","fhirUser":"Practitioner/dr-adams","iat":%d,"exp":%d}' "$now" "$((now + 3600))" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$WORK/keys/idp.key.pem" -binary | b64url)
TOKEN="$header.$payload.$signature"
# A patient's own app, launched for pat-123, that may update its observations.
payload=$(printf '{"iss":"https://idp.bench","aud":"https://gateway.bench","sub":"pat-123-user","client_id":"patient-app","scope":"launch/patient patient/Observation.rus","patient":"pat-123","fhirUser":"Patient/pat-123","iat":%d,"exp":%d}' "$now" "$((now + 3600))" | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$WORK/keys/idp.key.pem" -binary | b64url)
PATIENT_TOKEN="$header.$payload.$signature"
# wrk's script for that app's update of its observation.
cat > "$WORK/update.lua" <<LUA
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = '$OBSERVATION'
LUA

# The shipped policies with their reference configs (`examples/policies/*.json`). The
# rate-limit reference allows a user 300 requests a minute; a bench that sends thousands a
# second for minutes would measure 429s, so its copy here raises every capacity and refill
# a hundred-thousandfold and keeps everything else (tiers, costs, the chain's work per
# request) as shipped.
python3 - "$PWD/examples/policies/rate-limit.json" "$WORK/rate-limit.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
def raise_capacity(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("capacity", "refill") and isinstance(value, int):
                node[key] = value * 100000
            else:
                raise_capacity(value)
    elif isinstance(node, list):
        for value in node:
            raise_capacity(value)
raise_capacity(config)
json.dump(config, open(sys.argv[2], "w"))
PY
SHIPPED_POLICIES="
[[routes.policies]]
name = \"rate-limit\"
module = \"$GUESTS/rate_limit.wasm\"
config_file = \"$WORK/rate-limit.json\"

[[routes.policies]]
name = \"least-privilege\"
module = \"$GUESTS/least_privilege.wasm\"
config_file = \"$PWD/examples/policies/least-privilege.json\"

[[routes.policies]]
name = \"anomaly\"
module = \"$GUESTS/anomaly.wasm\"
config_file = \"$PWD/examples/policies/anomaly.json\"
"

# strict_audit: the `[audit]` table of a strict (fsynced) audit log in $WORK/audit, with a
# fresh signing key.
strict_audit() {
    mkdir -p "$WORK/audit"
    "$GATEWAY" keygen --out "$WORK/keys" >/dev/null
    printf '[audit]\ndir = "%s"\nmode = "strict"\nsigning_key = "%s"\n' "$WORK/audit" "$WORK/keys/audit-signing.key"
}

# gateway_config PORT ADMIN_PORT EXTRA_TOP ROUTES: a gateway config on 127.0.0.1.
gateway_config() {
    cat <<TOML
[server]
listen = "127.0.0.1:$1"

[admin]
listen = "127.0.0.1:$2"

[limits]
max_concurrent_requests = 4096

$3

[[upstreams]]
name = "ehr"
url = "http://127.0.0.1:$UPSTREAM_PORT/"
pool_max_idle = 64

$4

[[identity.issuers]]
issuer = "https://idp.bench"
audience = ["https://gateway.bench"]
algorithms = ["RS256"]
keys = [{ kid = "bench", path = "$WORK/keys/idp.pub.pem" }]
TOML
}

# route NAME PREFIX POLICIES: one route to the upstream.
route() {
    printf '[[routes]]\nname = "%s"\nprefix = "%s"\nupstream = "ehr"\n%s\n' "$1" "$2" "$3"
}

# start_gateway NAME [BINARY]: starts the gateway with $WORK/NAME.toml, logging to
# $WORK/NAME.log.
start_gateway() {
    "${2:-$GATEWAY}" serve --config "$WORK/$1.toml" --log "warn" 2>"$WORK/$1.log" &
    pids+=($!)
    echo $! > "$WORK/$1.pid"
}

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# wrk prints latency in us/ms/s; normalize to microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /ms$/) n *= 1000; else if (v ~ /us$/) n *= 1; else if (v ~ /s$/) n *= 1000000; printf "%.0f", n }'; }

# load CONNECTIONS SECONDS URL [RATE] -> "rps p50 p99 non2xx" (wrk2-style fixed rates are not
# in Debian's wrk: RATE is ignored there; the soak bench paces with its own script).
# LOAD_TOKEN replaces the bench token; LOAD_SCRIPT is a wrk Lua script (a write's method and
# body).
load() {
    local out
    out=$(wrk -t1 -c"$1" -d"$2s" --latency -H "Authorization: Bearer ${LOAD_TOKEN:-$TOKEN}" \
        ${LOAD_SCRIPT:+-s "$LOAD_SCRIPT"} "$3")
    echo "$(awk '/Requests\/sec/ { print $2 }' <<<"$out")" \
        "$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")" \
        "$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")" \
        "$(awk '/Non-2xx or 3xx responses/ { print $5 }' <<<"$out" | grep . || echo 0)"
}

# metric ADMIN_PORT NAME_WITH_LABELS: one sample's value from /metrics (0 when absent).
metric() {
    curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2; found = 1 } END { if (!found) print 0 }'
}

# histogram_quantile ADMIN_PORT FAMILY LABELS Q: the bucket bound at quantile Q of a histogram.
histogram_quantile() {
    curl -s "http://127.0.0.1:$1/metrics" | python3 -c '
import re, sys
family, labels, q = sys.argv[1], sys.argv[2], float(sys.argv[3])
buckets = []
for line in sys.stdin:
    if line.startswith(family + "_bucket{") and labels in line:
        bound = re.search(r"le=\"([^\"]+)\"", line).group(1)
        buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.split()[-1])))
if not buckets or buckets[-1][1] == 0:
    print("n/a"); sys.exit()
total = buckets[-1][1]
for bound, count in sorted(buckets):
    if count >= q * total:
        print("%.1f" % (bound * 1e6) if bound != float("inf") else "inf"); break
' "$2" "$3" "$4"
}

rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
