#!/usr/bin/env bash
# Benchmark of the client engine (`mcpstorm run`) against `mcpstorm serve` on this machine
# (a benchmark, not a test: nothing here asserts a figure). Prints machine, kernel, limits and
# commit beside the engine's own summary: sessions established per second over the ramp,
# client user-space bytes per connection (RSS growth ÷ sessions held), kernel slab per socket,
# latency and throughput at the offered rate.
#
#   tools/bench-engine.sh [--connections 100000] [--rate 20000] [--seconds 10]
#                         [--source-ips 127.0.0.2-127.0.0.9] [--response json|sse]
# The server is started fresh for each run (a second run against the same server would find
# the first run's sessions still live).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

connections=100000
rate=20000
seconds=10
source_ips=127.0.0.2-127.0.0.9
response=json
while [[ $# -gt 0 ]]; do
    case "$1" in
        --connections) connections="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --source-ips) source_ips="$2"; shift 2 ;;
        --response) response="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

echo "== machine"
echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "commit:    $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "cpu:       $(nproc) × $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "memory:    $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "kernel:    $(uname -r)"
echo "nofile:    soft $(ulimit -Sn) hard $(ulimit -Hn)"
echo "ports:     $(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range)"
echo "thp:       $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)"

cargo build --release --quiet
bin=target/release/mcpstorm
tmp=$(mktemp -d)
cleanup() {
    if [[ -n "${serve_pid:-}" ]]; then kill "$serve_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

"$bin" serve --listen 127.0.0.1:0 --ready-file "$tmp/ready" --response "$response" \
    --max-connections $((connections + connections / 5 + 1000)) >"$tmp/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 200); do [[ -s "$tmp/ready" ]] && break; sleep 0.05; done
addr=$(head -n1 "$tmp/ready")

echo
echo "== mcpstorm run http://$addr/mcp --connections $connections --rate $rate --duration ${seconds}s --source-ips $source_ips (serve --response $response)"
"$bin" run --phases sustained "http://$addr/mcp" --connections "$connections" --rate "$rate" \
    --duration "${seconds}s" --source-ips "$source_ips" --server-pid "$serve_pid" \
    --json "$tmp/report.json"
echo
echo "== server counters"
curl -s "http://$addr/mcpstorm/stats" | tr ',' '\n' | grep -E '"(sessions_created|requests_total|method_[a-z_]+|recv_buffers_exhausted)"' | tr -d '{}'
