#!/usr/bin/env bash
# Benchmark of `mcpstorm serve` (a benchmark, not a test: nothing here asserts a time).
#   1. sessions held and server user-space bytes per session (benches/serve_hold.rs);
#   2. server CPU time per request, mcpstorm serve beside nginx answering the same JSON-RPC
#      bytes, both under the same wrk load in the same run.
# Prints machine, kernel, limits and commit beside the figures.
#
#   tools/bench-serve.sh [--connections 100000] [--seconds 10] [--wrk-connections 64] [--rounds 3]
# The two servers are measured alternately, --rounds times each; the ratio is of the medians,
# so a burst of unrelated load on the machine skews one round, not the figure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

connections=100000
seconds=10
wrk_connections=64
rounds=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --wrk-connections) wrk_connections="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "bench-serve: $1 is missing; install the Debian package $2 (needs root)" >&2
        exit 2
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null
}
need wrk wrk
need nginx nginx
need curl curl

echo "== machine"
echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:    $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "cpu:       $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "memory:    $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "kernel:    $(uname -r)"
echo "nofile:    soft $(ulimit -Sn) hard $(ulimit -Hn)"
echo "ports:     $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range)"
echo "wrk:       $(wrk -v 2>&1 | head -n1)"
echo "nginx:     $(nginx -v 2>&1)"

cargo build --release --quiet
bin=target/release/mcpstorm

echo
echo "== sessions held by serve ($connections requested)"
[[ "$connections" -gt 0 ]] && cargo bench --quiet --bench serve_hold -- --connections "$connections" --serve-bin "$bin"

tmp=$(mktemp -d)
cleanup() {
    if [[ -n "${serve_pid:-}" ]]; then kill "$serve_pid" 2>/dev/null || true; fi
    if [[ -f "$tmp/nginx.pid" ]]; then kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

clk_tck=$(getconf CLK_TCK)
# CPU seconds (user + system) used so far by a set of pids.
cpu_ticks() {
    local total=0 pid
    for pid in "$@"; do
        # Fields 14 and 15 of /proc/PID/stat: utime, stime (the command name may hold spaces).
        total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
    done
    echo "$total"
}

body='{"jsonrpc":"2.0","id":1,"method":"ping"}'
serve_port=18581
nginx_port=18582

# SERVE_EXTRA: extra serve options (word-split on purpose), e.g. "--max-connections 20000".
# shellcheck disable=SC2086
"$bin" serve --listen "127.0.0.1:$serve_port" --shards 2 ${SERVE_EXTRA:-} --ready-file "$tmp/ready" >"$tmp/serve.log" &
serve_pid=$!
for _ in $(seq 100); do [[ -s "$tmp/ready" ]] && break; sleep 0.05; done
session=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$serve_port/mcp" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
    | awk 'tolower($1) == "mcp-session-id:" {print $2}' | tr -d '\r')
reply=$(curl -s -X POST "http://127.0.0.1:$serve_port/mcp" -H 'Content-Type: application/json' -H "Mcp-Session-Id: $session" -d "$body")

cat >"$tmp/ping.lua" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Session-Id"] = "$session"
EOF

cat >"$tmp/nginx.conf" <<EOF
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$nginx_port reuseport;
        location /mcp { default_type application/json; return 200 '$reply'; }
    }
}
EOF
nginx -c "$tmp/nginx.conf"
for _ in $(seq 100); do [[ -s "$tmp/nginx.pid" ]] && break; sleep 0.05; done
mapfile -t nginx_pids < <(pgrep -P "$(cat "$tmp/nginx.pid")")
nginx_reply=$(curl -s -X POST "http://127.0.0.1:$nginx_port/mcp" -H 'Content-Type: application/json' -d "$body")
[[ "$nginx_reply" == "$reply" ]] || { echo "nginx answers different bytes: $nginx_reply vs $reply" >&2; exit 1; }

measure() { # name round url pids…
    local name=$1 round=$2 url=$3; shift 3
    local before after requests non2xx
    before=$(cpu_ticks "$@")
    wrk -t1 -c"$wrk_connections" -d"${seconds}s" -s "$tmp/ping.lua" "$url" >"$tmp/$name.wrk"
    after=$(cpu_ticks "$@")
    requests=$(awk '/requests in/ {print $1}' "$tmp/$name.wrk")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$tmp/$name.wrk")
    awk -v n="$name" -v k="$round" -v r="$requests" -v c="$((after - before))" -v t="$clk_tck" -v s="$seconds" -v e="${non2xx:-0}" \
        'BEGIN { printf "round %d %-9s requests %9d (%7.0f req/s)  non-2xx %s  server CPU %6.2f s  CPU/request %6.2f µs\n", k, n, r, r/s, e, c/t, c/t*1e6/r }'
    awk -v r="$requests" -v c="$((after - before))" -v t="$clk_tck" 'BEGIN { printf "%.4f\n", c/t*1e6/r }' >>"$tmp/$name.cpu_us"
}
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo
echo "== server CPU per request: wrk -t1 -c$wrk_connections -d${seconds}s, POST ping, $rounds alternating rounds"
echo "   reply (same bytes from both): $reply"
for round in $(seq "$rounds"); do
    measure mcpstorm "$round" "http://127.0.0.1:$serve_port/mcp" "$serve_pid"
    measure nginx "$round" "http://127.0.0.1:$nginx_port/mcp" "${nginx_pids[@]}"
done
serve_median=$(median "$tmp/mcpstorm.cpu_us")
nginx_median=$(median "$tmp/nginx.cpu_us")
awk -v s="$serve_median" -v n="$nginx_median" \
    'BEGIN { printf "median CPU/request: mcpstorm %.2f µs, nginx %.2f µs; ratio %.2f (≤ 1.00: mcpstorm spends no more than nginx)\n", s, n, s/n }'
echo "   note: mcpstorm parses the JSON-RPC body and checks the session on every request; nginx returns a constant."
kill -INT "$serve_pid"; wait "$serve_pid" || true; serve_pid=
tail -n1 "$tmp/serve.log"
