#!/usr/bin/env bash
# Runs both latency benchmarks against Postfix+Dovecot and then against our relay, back to
# back on this machine ("in the same run"), and leaves the raw JSON in $OUT.
#
#   load/latency/run.sh                 # both systems
#   SYSTEMS=postfix-dovecot load/latency/run.sh
#   SYSTEMS=relay load/latency/run.sh
#
# Environment: OUT (default /tmp/latency-results/<timestamp>), IDLE_COUNT (1000),
# DC_COUNT (50), DC_BACK_TO_BACK (1: also a Delta Chat run without pauses), PYTHON (a python with deltachat-rpc-client; default /work/main/.venv),
# RELAY_BIN (default target/release/examples/relay, built with
# `cargo build --release --example relay` beforehand).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-/tmp/latency-results/$(date +%Y%m%dT%H%M%S)}
IDLE_COUNT=${IDLE_COUNT:-1000}
DC_COUNT=${DC_COUNT:-50}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
RELAY_BIN=${RELAY_BIN:-$ROOT/target/release/examples/relay}
SYSTEMS=${SYSTEMS:-postfix-dovecot relay}
DC_BACK_TO_BACK=${DC_BACK_TO_BACK:-1}
RELAY_DOMAIN=_latency.localhost
mkdir -p "$OUT"

machine_info() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "cpus: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
        echo "kernel: $(uname -r)"
        echo "loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "postfix: $(postconf -h mail_version 2>/dev/null || echo -)"
        echo "dovecot: $(dovecot --version 2>/dev/null || echo -)"
        echo "python: $("$PYTHON" --version 2>&1)"
        echo "deltachat-rpc-server: $("$PYTHON" -m pip show deltachat-rpc-server 2>/dev/null | sed -n 's/^Version: //p')"
        echo "relay commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo -)"
    } >>"$OUT/machine.txt"
}

bench_pair() { # label imaps_port submissions_port domain [password]
    local label=$1 imaps=$2 smtps=$3 domain=$4 password=${5:-}
    local pw_arg=()
    if [ -n "$password" ]; then pw_arg=(--password "$password"); fi
    echo "== $label: IDLE wake-up, $IDLE_COUNT messages" >&2
    echo "loadavg before $label idle: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
    python3 "$HERE/idle_latency.py" --imap-port "$imaps" --smtp-port "$smtps" \
        --domain "$domain" "${pw_arg[@]}" --count "$IDLE_COUNT" --label "$label" \
        --json-out "$OUT/idle-$label.json" >"$OUT/idle-$label.txt" || echo "idle bench for $label failed" >&2
    echo "== $label: Delta Chat send-to-receive, $DC_COUNT messages" >&2
    echo "loadavg before $label dc: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
    "$PYTHON" "$HERE/dc_latency.py" --imap-port "$imaps" --smtp-port "$smtps" \
        --domain "$domain" "${pw_arg[@]}" --count "$DC_COUNT" --label "$label" \
        --json-out "$OUT/dc-$label.json" >"$OUT/dc-$label.txt" 2>"$OUT/dc-$label.log" ||
        echo "dc bench for $label failed (see $OUT/dc-$label.log)" >&2
    if [ "$DC_BACK_TO_BACK" = 1 ]; then
        echo "== $label: Delta Chat back to back (no pause: includes the client's send limiter)" >&2
        "$PYTHON" "$HERE/dc_latency.py" --imap-port "$imaps" --smtp-port "$smtps" \
            --domain "$domain" "${pw_arg[@]}" --count "$DC_COUNT" --pause 0 \
            --label "$label-back-to-back" --json-out "$OUT/dc-$label-back-to-back.json" \
            >"$OUT/dc-$label-back-to-back.txt" 2>"$OUT/dc-$label-back-to-back.log" ||
            echo "dc back-to-back bench for $label failed" >&2
    fi
}

run_postfix_dovecot() {
    "$HERE/postfix_dovecot.sh" start >&2
    bench_pair postfix-dovecot 3993 3465 bench.localhost benchpassword
    "$HERE/postfix_dovecot.sh" stop >&2
}

run_relay() {
    [ -x "$RELAY_BIN" ] || { echo "no relay binary at $RELAY_BIN (cargo build --release --example relay)" >&2; return 1; }
    local data=$OUT/relay-data
    rm -rf "$data"
    mkdir -p "$data"
    # The bench config: loopback ports of their own, and send limits raised so that one
    # sender may submit 1,000 messages back to back (defaults: 60/min, burst 10).
    cat >"$OUT/relay.ini" <<EOF
[params]
mail_domain = $RELAY_DOMAIN
listen_address = 127.0.0.1
smtp_port = 4025
submission_port = 4587
submissions_port = 4465
imap_port = 4143
imaps_port = 4993
https_port = 4443
mailboxes_dir = $data/mail
passdb_path = $data/passdb.sqlite
max_user_send_per_minute = 100000
max_user_send_burst_size = 100000
max_load_1m = 1000
EOF
    "$RELAY_BIN" --config "$OUT/relay.ini" --data-dir "$data" >"$OUT/relay.stdout" 2>"$OUT/relay.stderr" &
    local pid=$!
    local i=0
    until grep -q ready "$OUT/relay.stdout" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then
            echo "relay did not print ready (see $OUT/relay.stderr)" >&2
            kill $pid 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    bench_pair relay 4993 4465 "$RELAY_DOMAIN"
    kill -TERM $pid
    wait $pid || true
}

machine_info
for system in $SYSTEMS; do
    case $system in
    postfix-dovecot) run_postfix_dovecot ;;
    relay) run_relay ;;
    *) echo "unknown system $system" >&2 ;;
    esac
done
python3 "$HERE/summarize.py" "$OUT"
