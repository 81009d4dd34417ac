#!/usr/bin/env bash
# The ehrgate demo: a real FHIR server (sekmet-fhir) with synthetic patients, the gateway in
# front of it with the shipped policies and a strict audit log, scripted traffic from eight
# personas through a real FHIR client library (fhirclient), a table of what happened, and
# the auditor's view (`audit verify`, `audit report`). Everything runs on 127.0.0.1 and is
# stopped at the end.
#
#     examples/demo/run.sh            # the demo (release build)
#     examples/demo/run.sh --check    # the same, asserting every expected outcome (tests)
#     examples/demo/run.sh --redis    # two gateway replicas sharing state on Redis, requests
#                                     # alternating between them
#     examples/demo/run.sh --debug    # a debug build (combines with the others)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"

CHECK=""
PROFILE="release"
REDIS=""
for arg in "$@"; do
    case "$arg" in
        --check) CHECK="--check" ;;
        --debug) PROFILE="debug" ;;
        --redis) REDIS="yes" ;;
        *) echo "usage: $0 [--check] [--debug] [--redis]" >&2; exit 2 ;;
    esac
done

say() { printf '\n==> %s\n' "$*"; }

say "installing what the demo needs"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ -n "$REDIS" ] && { ! command -v redis-server || ! command -v redis-cli; } >/dev/null; then
    need_apt+=(redis-server) # the package's own service is not used: the demo starts its own
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
VENV="$ROOT/.venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r examples/demo/requirements.txt

say "building the gateway and the policies ($PROFILE)"
if [ "$PROFILE" = release ]; then
    cargo build --release -p ehrgate --bin ehrgate
else
    cargo build -p ehrgate --bin ehrgate
fi
EHRGATE="$ROOT/target/$PROFILE/ehrgate"
GUESTS="$ROOT/target/guests/wasm32-wasip2/release"

WORK="$ROOT/target/demo"
rm -rf "$WORK" && mkdir -p "$WORK/keys" "$WORK/sekmet"
pids=()
gateway_pids=()
cleanup() {
    for pid in "${gateway_pids[@]}" "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { # url, what
    for _ in $(seq 1 300); do
        if "$VENV/bin/python" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "error: $2 did not come up at $1" >&2
    return 1
}

say "keys: the identity provider's token signing key and the audit signing key"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/keys/idp.key.pem" 2>/dev/null
openssl pkey -in "$WORK/keys/idp.key.pem" -pubout -out "$WORK/keys/idp.pub.pem"
"$EHRGATE" keygen --out "$WORK/keys" >/dev/null

say "starting the FHIR server (sekmet-fhir) with synthetic patients"
SEKMET_PORT=$(free_port)
(cd "$WORK/sekmet" && exec "$VENV/bin/sekmet" serve --host 127.0.0.1 --port "$SEKMET_PORT" >"$WORK/sekmet.log" 2>&1) &
pids+=($!)
wait_for "http://127.0.0.1:$SEKMET_PORT/fhir/metadata" "sekmet"
"$VENV/bin/python" examples/demo/demo.py seed --fhir "http://127.0.0.1:$SEKMET_PORT/fhir" --out "$WORK/cast.json"

# One gateway, or with --redis two replicas (a and b) sharing state on a Redis server. The
# audit log is each process's own hash chain, so each replica writes its own directory
# (`gateway-a.toml` writes `audit-a/`), and the auditor verifies and reports each.
replicas=("")
state_args=()
if [ -n "$REDIS" ]; then
    say "starting Redis (the replicas' shared state: rate-limit buckets, anomaly windows)"
    REDIS_PORT=$(free_port)
    mkdir -p "$WORK/redis"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
        --protected-mode yes --dir "$WORK/redis" >"$WORK/redis.log" 2>&1 &
    pids+=($!)
    redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
    for _ in $(seq 1 50); do redis_up && break; sleep 0.2; done
    redis_up || { echo "error: redis-server did not come up on 127.0.0.1:$REDIS_PORT" >&2; exit 1; }
    replicas=(a b)
    state_args=(--redis "redis://127.0.0.1:$REDIS_PORT/0")
fi

gateway_urls=()
for replica in "${replicas[@]}"; do
    suffix="${replica:+-$replica}"
    if [ -n "$replica" ]; then say "starting gateway replica ${replica^^}"; else say "starting the gateway"; fi
    GATEWAY_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    "$VENV/bin/python" examples/demo/demo.py config --cast "$WORK/cast.json" \
        --template examples/demo/gateway.toml --out "$WORK/gateway$suffix.toml" \
        --set "listen=127.0.0.1:$GATEWAY_PORT" --set "admin=127.0.0.1:$ADMIN_PORT" \
        --set "upstream=http://127.0.0.1:$SEKMET_PORT/fhir" --set "guests=$GUESTS" \
        --set "work=$WORK" --set "policies=$ROOT/examples/demo/policies" \
        --set "audit=audit$suffix" "${state_args[@]}"
    "$EHRGATE" check --config "$WORK/gateway$suffix.toml"
    "$EHRGATE" serve --config "$WORK/gateway$suffix.toml" --log-format json 2>"$WORK/gateway$suffix.log" &
    gateway_pids+=($!)
    wait_for "http://127.0.0.1:$ADMIN_PORT/readyz" "the gateway${replica:+ replica ${replica^^}}"
    gateway_urls+=(--gateway "http://127.0.0.1:$GATEWAY_PORT")
done

say "personas at work (through the gateway, with fhirclient)"
"$VENV/bin/python" examples/demo/demo.py traffic --cast "$WORK/cast.json" \
    "${gateway_urls[@]}" --key "$WORK/keys/idp.key.pem" \
    --fhir "http://127.0.0.1:$SEKMET_PORT/fhir" $CHECK

if [ -n "$REDIS" ]; then
    say "stopping the replicas (each drains, then seals its audit log with a final checkpoint)"
else
    say "stopping the gateway (it drains, then seals the audit log with a final checkpoint)"
fi
for pid in "${gateway_pids[@]}"; do kill -TERM "$pid"; done
for pid in "${gateway_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
gateway_pids=()

say "the auditor's view"
for replica in "${replicas[@]}"; do
    suffix="${replica:+-$replica}"
    if [ -n "$replica" ]; then printf '\nreplica %s (%s):\n' "${replica^^}" "$WORK/audit$suffix"; fi
    "$EHRGATE" audit verify --dir "$WORK/audit$suffix" --public-key "$WORK/keys/audit-signing.pub"
    "$EHRGATE" audit report --dir "$WORK/audit$suffix" --html "$WORK/report$suffix.html"
    if [ -n "$replica" ]; then
        # The volume finding's count is the shared window's: more distinct patients than
        # this replica ever served the insider.
        echo "the insider's refusals on this replica, by the shared distinct-patient window:"
        "$EHRGATE" audit query --dir "$WORK/audit$suffix" --user nurse-ivan --rule anomaly.volume --json \
            | "$VENV/bin/python" examples/demo/demo.py findings --rule anomaly.volume $CHECK
    fi
done
echo
for replica in "${replicas[@]}"; do
    echo "HTML report${replica:+ (replica ${replica^^})}: $WORK/report${replica:+-$replica}.html"
done
