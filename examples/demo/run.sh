#!/usr/bin/env bash
# The ehrgate demo: a real FHIR server (sekmet-fhir) with synthetic patients, the gateway in
# front of it with the shipped policies and a strict audit log, scripted traffic from eight
# personas through a real FHIR client library (fhirclient), a table of what happened, and
# the auditor's view (`audit verify`, `audit report`). Everything runs on 127.0.0.1 and is
# stopped at the end.
#
#     examples/demo/run.sh            # the demo (release build)
#     examples/demo/run.sh --check    # the same, asserting every expected outcome (tests)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"

CHECK=""
PROFILE="release"
for arg in "$@"; do
    case "$arg" in
        --check) CHECK="--check" ;;
        --debug) PROFILE="debug" ;;
        *) echo "usage: $0 [--check] [--debug]" >&2; exit 2 ;;
    esac
done

say() { printf '\n==> %s\n' "$*"; }

say "installing what the demo needs"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
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
rm -rf "$WORK" && mkdir -p "$WORK/keys" "$WORK/sekmet" "$WORK/audit"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
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

say "starting the gateway"
GATEWAY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
"$VENV/bin/python" examples/demo/demo.py config --cast "$WORK/cast.json" \
    --template examples/demo/gateway.toml --out "$WORK/gateway.toml" \
    --set "listen=127.0.0.1:$GATEWAY_PORT" --set "admin=127.0.0.1:$ADMIN_PORT" \
    --set "upstream=http://127.0.0.1:$SEKMET_PORT/fhir" --set "guests=$GUESTS" \
    --set "work=$WORK" --set "policies=$ROOT/examples/demo/policies"
"$EHRGATE" check --config "$WORK/gateway.toml"
"$EHRGATE" serve --config "$WORK/gateway.toml" --log-format json 2>"$WORK/gateway.log" &
pids+=($!)
wait_for "http://127.0.0.1:$ADMIN_PORT/readyz" "the gateway"

say "personas at work (through the gateway, with fhirclient)"
"$VENV/bin/python" examples/demo/demo.py traffic --cast "$WORK/cast.json" \
    --gateway "http://127.0.0.1:$GATEWAY_PORT" --key "$WORK/keys/idp.key.pem" \
    --fhir "http://127.0.0.1:$SEKMET_PORT/fhir" $CHECK

say "stopping the gateway (it drains, then seals the audit log with a final checkpoint)"
kill -TERM "${pids[-1]}"
wait "${pids[-1]}" 2>/dev/null || true
unset 'pids[-1]'

say "the auditor's view"
"$EHRGATE" audit verify --dir "$WORK/audit" --public-key "$WORK/keys/audit-signing.pub"
"$EHRGATE" audit report --dir "$WORK/audit" --html "$WORK/report.html"
echo
echo "HTML report: $WORK/report.html"
