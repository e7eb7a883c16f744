#!/usr/bin/env bash
# TLS load generators side by side (a benchmark, not a test): peak RSS per connection of
# `mcpstorm run`, wrk and h2load (all three speak TLS 1.3 with ALPN http/1.1) holding the same
# number of keep-alive TLS connections against the same `mcpstorm serve --tls-cert`, in one
# run; then mcpstorm's own figures for TLS vs plaintext at one offered rate. Prints machine,
# kernel, limits and commit beside the figures.
#
#   tools/bench-tls.sh [--connections 15000] [--seconds 10] [--rate 5000] [--skip-peers]
#
# --skip-peers: only mcpstorm's TLS vs plaintext figures (past RLIMIT_NOFILE, e.g. 100,000
# connections, where wrk and h2load cannot open their sockets).
#
# Fairness notes, printed with the figures: peak RSS (/usr/bin/time %M) of each generator
# process divided by its connections; mcpstorm opens one MCP session per connection and parses
# every reply, wrk and h2load replay one POST on one shared session and check the status only;
# wrk and h2load run closed loop, mcpstorm at --rate (memory does not depend on the rate).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

connections=15000
seconds=10
rate=5000
skip_peers=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --skip-peers) skip_peers=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

# shellcheck source=tools/bench-lib.sh
source tools/bench-lib.sh
install_if_missing wrk wrk
install_if_missing h2load nghttp2-client
install_if_missing curl curl
install_if_missing openssl openssl
[[ -x /usr/bin/time ]] || install_if_missing /usr/bin/time time

print_machine

cargo build --release --quiet
bin=target/release/mcpstorm
tmp=$(mktemp -d)
serve_pid=
cleanup() {
    if [[ -n "$serve_pid" ]]; then kill "$serve_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# A CA and a certificate for 127.0.0.1 it signs (webpki refuses a CA used as the server's).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$tmp/ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
    -days 2 -extfile "$tmp/ext" -out "$tmp/server.pem" 2>/dev/null

port=18593
url="https://127.0.0.1:$port/mcp"
start_server() { # extra serve options…
    "$bin" serve --listen "127.0.0.1:$port" --ready-file "$tmp/ready" "$@" >"$tmp/serve.log" &
    serve_pid=$!
    for _ in $(seq 200); do [[ -s "$tmp/ready" ]] && return 0; sleep 0.05; done
    echo "serve did not start" >&2
    exit 1
}
stop_server() {
    kill -INT "$serve_pid"
    wait "$serve_pid" || true
    serve_pid=
    rm -f "$tmp/ready"
}
tls_serve=(--tls-cert "$tmp/server.pem" --tls-key "$tmp/server.key")
sla=(--sla "p95=off,errors=off,throughput=off,mem=off,recovery=off,dropped=off")
per_conn() { awk -v kib="$1" -v n="$connections" 'BEGIN { printf "%.0f", kib * 1024 / n }'; }

# Peak RSS in KiB from /usr/bin/time's file (its last line; a note precedes it when the
# process ended by a signal).
rss_kib() { tail -n 1 "$1"; }

if [[ $skip_peers == 0 ]]; then
echo
echo "== peak RSS per TLS connection, $connections connections, ${seconds}s each"
start_server "${tls_serve[@]}"
/usr/bin/time -f "%M" -o "$tmp/mcpstorm.rss" "$bin" run "$url" --cacert "$tmp/ca.pem" --phases sustained \
    --connections "$connections" --rate "$rate" --duration "${seconds}s" --quiet "${sla[@]}" \
    --json "$tmp/mcpstorm.json" >"$tmp/mcpstorm.txt"
stop_server
mcp_rss=$(rss_kib "$tmp/mcpstorm.rss")
mcp_held=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['sessions']['held_max'])" "$tmp/mcpstorm.json")

start_server "${tls_serve[@]}"
session=$(curl -s --cacert "$tmp/ca.pem" -D - -o /dev/null -X POST "$url" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' |
    awk 'tolower($1) == "mcp-session-id:" {print $2}' | tr -d '\r')
body='{"jsonrpc":"2.0","id":1,"method":"ping"}'
cat >"$tmp/ping.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = "$session"
wrk.headers["Mcp-Protocol-Version"] = "2025-11-25"
EOF
# A hard stop for each peer: at 15K connections h2load can stop reading its last sockets when
# its duration ends (their responses sit unread in its receive queues) and never exit.
peer_stop=$((seconds + 60))
/usr/bin/time -f "%M" -o "$tmp/wrk.rss" timeout -s INT "$peer_stop" wrk -t1 -c"$connections" -d"${seconds}s" --timeout 30s -s "$tmp/ping.lua" "$url" >"$tmp/wrk.txt" 2>&1 || true
printf '%s' "$body" >"$tmp/body.json"
/usr/bin/time -f "%M" -o "$tmp/h2load.rss" timeout -s INT "$peer_stop" h2load --h1 -t1 -c"$connections" -D "$seconds" -d "$tmp/body.json" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -H "Mcp-Session-Id: $session" -H 'Mcp-Protocol-Version: 2025-11-25' "$url" >"$tmp/h2load.txt" 2>&1 || true
stop_server
printf '%-9s peak RSS %8d KiB = %6s B per connection (%s sessions held)\n' mcpstorm "$mcp_rss" "$(per_conn "$mcp_rss")" "$mcp_held"
printf '%-9s peak RSS %8d KiB = %6s B per connection (%s)\n' wrk "$(rss_kib "$tmp/wrk.rss")" "$(per_conn "$(rss_kib "$tmp/wrk.rss")")" \
    "$(grep -E 'requests in' "$tmp/wrk.txt" | sed 's/^ *//')"
printf '%-9s peak RSS %8d KiB = %6s B per connection (%s)\n' h2load "$(rss_kib "$tmp/h2load.rss")" "$(per_conn "$(rss_kib "$tmp/h2load.rss")")" \
    "$(grep -E '^requests:' "$tmp/h2load.txt")"
echo "   mcpstorm: one MCP session per connection at --rate $rate, every reply parsed; wrk/h2load: closed loop on one shared session, status only."
fi

# Past one source address's ~28K ephemeral ports, spread the connections over more loopback
# source addresses (25,000 each).
source_ips=()
if (( connections > 25000 )); then
    source_ips=(--source-ips "127.0.0.2-127.0.0.$((1 + (connections + 24999) / 25000))")
fi

echo
echo "== mcpstorm TLS vs plaintext, $connections sessions at $rate req/s"
for mode in tls plain; do
    if [[ $mode == tls ]]; then start_server "${tls_serve[@]}"; target=("$url" --cacert "$tmp/ca.pem");
    else start_server; target=("http://127.0.0.1:$port/mcp"); fi
    "$bin" run "${target[@]}" "${source_ips[@]}" --phases sustained --connections "$connections" --rate "$rate" \
        --duration "${seconds}s" --quiet "${sla[@]}" --server-pid "$serve_pid" --json "$tmp/$mode.json" >/dev/null
    stop_server
    python3 - "$tmp/$mode.json" "$mode" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
ramp = next(p for p in r["phases"] if p["name"] == "ramp_up")
p = next(p for p in r["phases"] if p["name"] == "sustained")
m, c = p["memory"], p["cpu"]
print(f"{sys.argv[2]:<6} sessions/s {ramp['sessions']['established_per_s'] or 0:8.0f}  "
      f"client {m['client_total_bytes_per_conn'] or 0:6.0f} B/conn  server {m['server_user_bytes_per_conn'] or 0:6.0f} B/conn  "
      f"generator {c['generator_cpu_us_per_request'] or 0:6.2f} µs/request  "
      f"TLS handshakes full {r['counters'].get('tls_handshakes_full', 0)} resumed {r['counters'].get('tls_handshakes_resumed', 0)}")
EOF
done
