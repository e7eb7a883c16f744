#!/usr/bin/env bash
# Load generators side by side (a benchmark, not a test): closed-loop throughput and
# generator CPU time per request of `mcpstorm run`, wrk and h2load against the same
# `mcpstorm serve`, at the same connection count, in one run. Prints machine, kernel, limits
# and commit beside the figures.
#
#   tools/bench-generators.sh [--connections 1000] [--seconds 10]
#
# Fairness notes, printed with the figures: mcpstorm opens one MCP session per connection and
# checks every JSON-RPC reply; wrk and h2load replay one POST with one shared session id and
# check only the HTTP status. All three keep connections alive and run one request at a time
# per connection (closed loop). Server and generator share this machine's cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

connections=1000
seconds=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

# shellcheck source=tools/bench-lib.sh
source tools/bench-lib.sh
install_if_missing wrk wrk
install_if_missing h2load nghttp2-client
install_if_missing curl curl
install_if_missing bc bc
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

port=18591
clk_tck=$(getconf CLK_TCK)
server_ticks() { sed 's/.*) //' "/proc/$serve_pid/stat" | awk '{print $12 + $13}'; }

start_server() {
    "$bin" serve --listen "127.0.0.1:$port" --ready-file "$tmp/ready" >"$tmp/serve.log" &
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

# name requests generator_cpu_s server_cpu_s
row() {
    awk -v n="$1" -v r="$2" -v g="$3" -v s="$4" -v t="$seconds" \
        'BEGIN { printf "%-9s %10d requests %9.0f req/s  generator CPU %6.2f µs/request  server CPU %6.2f µs/request\n", n, r, r/t, g*1e6/r, s*1e6/r }'
}

echo
echo "== closed loop, $connections connections, ${seconds}s each, against mcpstorm serve"

# The single load phase (no six-phase scenario) when this build has phases.
single_phase=()
if "$bin" run --help | grep -q -- '--phases'; then single_phase=(--phases sustained); fi
start_server
before=$(server_ticks)
/usr/bin/time -f "%U %S" -o "$tmp/mcpstorm.time" "$bin" run "http://127.0.0.1:$port/mcp" "${single_phase[@]}" \
    --connections "$connections" --rate 0 --duration "${seconds}s" --json "$tmp/mcpstorm.json" >"$tmp/mcpstorm.txt"
after=$(server_ticks)
stop_server
mcp_requests=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(next(p for p in r['phases'] if p['name'] == 'sustained')['requests']['ok'])" "$tmp/mcpstorm.json")
read -r user sys <"$tmp/mcpstorm.time"
row mcpstorm "$mcp_requests" "$(echo "$user + $sys" | bc -l)" "$(echo "($after - $before) / $clk_tck" | bc -l)"

body='{"jsonrpc":"2.0","id":1,"method":"ping"}'
start_server
session=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$port/mcp" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' |
    awk 'tolower($1) == "mcp-session-id:" {print $2}' | tr -d '\r')
cat >"$tmp/ping.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = "$session"
EOF
before=$(server_ticks)
/usr/bin/time -f "%U %S" -o "$tmp/wrk.time" wrk -t1 -c"$connections" -d"${seconds}s" -s "$tmp/ping.lua" "http://127.0.0.1:$port/mcp" >"$tmp/wrk.txt"
after=$(server_ticks)
wrk_requests=$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")
read -r user sys <"$tmp/wrk.time"
row wrk "$wrk_requests" "$(echo "$user + $sys" | bc -l)" "$(echo "($after - $before) / $clk_tck" | bc -l)"

printf '%s' "$body" >"$tmp/body.json"
before=$(server_ticks)
/usr/bin/time -f "%U %S" -o "$tmp/h2load.time" h2load --h1 -t1 -c"$connections" -D "$seconds" -d "$tmp/body.json" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' -H "Mcp-Session-Id: $session" \
    "http://127.0.0.1:$port/mcp" >"$tmp/h2load.txt"
after=$(server_ticks)
h2_requests=$(awk '/^requests:/ {print $8}' "$tmp/h2load.txt")
read -r user sys <"$tmp/h2load.time"
row h2load "$h2_requests" "$(echo "$user + $sys" | bc -l)" "$(echo "($after - $before) / $clk_tck" | bc -l)"
stop_server
echo "   mcpstorm: one MCP session per connection, every reply parsed; wrk/h2load: one shared session, status only."
grep -E "^(latency|generator)" "$tmp/mcpstorm.txt" | sed 's/^/   mcpstorm /'
grep -E "Latency|Non-2xx" "$tmp/wrk.txt" | sed 's/^ */   wrk /'
grep -E "^requests:|^time for request" "$tmp/h2load.txt" | sed 's/^/   h2load /'
