#!/usr/bin/env bash
# Install the official MCP TypeScript SDK (@modelcontextprotocol/sdk 1.32.2 and express, pinned
# by tools/peers/ts-sdk/package-lock.json) for the test peer tests/peers/ts_server.mjs, on the
# machine's Node (20 works). Idempotent: a stamp holds the lock file's hash.
#
#   tools/peers/setup-ts.sh        # into <repo>/target/peers/ts-sdk
#
# The last line on stdout is the install directory (everything else goes to stderr); the
# server runs as:  NODE_PATH=$DIR/node_modules node tests/peers/ts_server.mjs --port P
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dir="${MCPSTORM_TS_PEER_DIR:-$repo/target/peers/ts-sdk}"
stamp="$dir/.mcpstorm-lock.stamp"

log() { printf 'setup-ts: %s\n' "$*" >&2; }

if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: installing Debian's nodejs and npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null; }
fi
want_hash="$(sha256sum "$here/ts-sdk/package-lock.json" | cut -d' ' -f1)"
if [[ -d "$dir/node_modules/@modelcontextprotocol/sdk" && -f "$stamp" && "$(cat "$stamp")" == "$want_hash" ]]; then
    log "up to date: $dir"
    echo "$dir"
    exit 0
fi
mkdir -p "$dir"
cp "$here/ts-sdk/package.json" "$here/ts-sdk/package-lock.json" "$dir/"
log "installing the pinned TypeScript SDK into $dir"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
echo "$want_hash" >"$stamp"
echo "$dir"
